// expect: header overwritten
// A one-byte overflow into the header of a free neighbour: caught when malloc hands that
// neighbour out again (its Free tag is the byte the overflow reaches first).
#include "common.h"
int main(void) {
    char *a = launder(malloc(32)), *b = launder(malloc(32));
    char *lo = a < b ? a : b, *hi = a < b ? b : a;
    if ((size_t)(hi - lo) != 48) { fprintf(stderr, "blocks not adjacent\n"); return 4; }
    free(hi);
    poke(lo, '1', 32 + 1); /* one byte past the usable size: the free block's tag */
    /* The freed block comes back once the blocks cached before it are used up. */
    for (int i = 0; i < 100000; i++)
        if (launder(malloc(32)) == hi) break;
    UNDETECTED();
}
