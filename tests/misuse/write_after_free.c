// expect: free list corrupted
#include "common.h"
int main(void) {
    char *p = launder(malloc(48));
    free(p);
    poke(p, 'z', 8); /* use after free: the encoded link */
    void *q = launder(malloc(48));
    (void)q;
    UNDETECTED();
}
