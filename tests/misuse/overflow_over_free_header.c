// expect: header overwritten
// An overflow over the whole header of a free neighbour (its tag and, behind it, the check
// word that holds the free block's link complement): the link no longer checks when malloc
// reaches the block, and the report names the overflow, not a write after free, because
// the tag went first.
#include "common.h"
int main(void) {
    char *a = launder(malloc(32)), *b = launder(malloc(32));
    char *lo = a < b ? a : b, *hi = a < b ? b : a;
    if ((size_t)(hi - lo) != 48) { fprintf(stderr, "blocks not adjacent\n"); return 4; }
    free(hi);
    poke(lo, '1', 32 + 16); /* the 16 bytes past the usable size: the free block's header */
    for (int i = 0; i < 100000; i++)
        if (launder(malloc(32)) == hi) break;
    UNDETECTED();
}
