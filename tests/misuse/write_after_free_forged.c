// expect: free list corrupted
// release: free list corrupted
// A write after free that forges a link: the address of a live block where the freed
// block's link is. Followed, malloc would hand out the live block a second time; the
// link is stored encoded, so the forged word decodes to no block of the slab.
#include "common.h"
int main(void) {
    char *live = launder(malloc(48));
    char *p = launder(malloc(48));
    free(p);
    volatile uintptr_t *w = (uintptr_t *)p;
    w[0] = (uintptr_t)live;
    for (int i = 0; i < 100000; i++) {
        char *q = launder(malloc(48));
        if (q == live) { fprintf(stderr, "live block handed out twice\n"); return 4; }
        if (q == p) { launder(malloc(48)); break; }
    }
    UNDETECTED();
}
