// expect: free list corrupted
// release: free list corrupted
#include "common.h"
int main(void) {
    char *p = launder(malloc(48));
    free(p);
    poke(p, 'z', 8); /* use after free: the encoded link */
    /* Caught when malloc reaches the freed block's list (once the blocks cached before it
       are used up): the checked build as it hands the block out (it checks the link it
       follows), the release build at the next malloc (it checks a link before following
       it: the block itself is the program's again). */
    for (int i = 0; i < 100000; i++)
        if (launder(malloc(48)) == p) { launder(malloc(48)); break; }
    UNDETECTED();
}
