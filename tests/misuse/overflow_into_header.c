// expect: header overwritten
// The seed's bug: user data ('1' = 0x31) where the next block's header tag (0xa1) was.
#include "common.h"
int main(void) {
    char *a = launder(malloc(32)), *b = launder(malloc(32));
    char *lo = a < b ? a : b, *hi = a < b ? b : a;
    if ((size_t)(hi - lo) != 48) { fprintf(stderr, "blocks not adjacent\n"); return 4; }
    poke(lo, '1', 32 + 1); /* one byte past the usable size: the next header's tag */
    free(hi);
    UNDETECTED();
}
