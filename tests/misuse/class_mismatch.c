// expect: class mismatch
/* Forge a well-formed header with another class (the check word recomputed from the
   original, so only the class disagrees with the slab). */
#include "common.h"
int main(void) {
    uint64_t *p = launder(malloc(32));
    volatile uint64_t *h = p - 2;
    /* check word = class << 56 ^ address ^ key */
    uint64_t key = ((h[0] >> 8 & 0xff) << 56) ^ h[1] ^ (uint64_t)(uintptr_t)h;
    h[0] = (h[0] & ~0xff00ULL) | (5ULL << 8);
    h[1] = (5ULL << 56) ^ (uint64_t)(uintptr_t)h ^ key;
    free(p);
    UNDETECTED();
}
