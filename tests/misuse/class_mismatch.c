// expect: class mismatch
/* Forge a well-formed header with another class (the check word, the block's address xor
   a key, stays valid, so only the class disagrees with the slab). */
#include "common.h"
int main(void) {
    uint64_t *p = launder(malloc(32));
    volatile uint64_t *h = p - 2;
    h[0] = (h[0] & ~0xff00ULL) | (5ULL << 8);
    free(p);
    UNDETECTED();
}
