// expect: free list corrupted
#include "common.h"
int main(void) {
    char *p = launder(malloc(48));
    free(p);
    poke(p, 'z', 8); /* use after free: the encoded link */
    /* Caught when malloc reaches the freed block's list (once the blocks cached before it
       are used up). */
    for (int i = 0; i < 100000; i++)
        if (launder(malloc(48)) == p) break;
    UNDETECTED();
}
