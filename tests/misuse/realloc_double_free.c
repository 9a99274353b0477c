// expect: double free
// release: double free
// realloc of a block already freed: not resized in place (the free block, still on its
// slab's list, would be handed back); the free of the old pointer reported.
#include "common.h"
int main(void) {
    char *p = launder(malloc(48));
    free(p);
    char *q = launder(realloc(p, 40));
    if (q == p) { fprintf(stderr, "resized in place\n"); return 4; }
    UNDETECTED();
}
