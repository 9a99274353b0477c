/* Alternating sizes: 20 rounds; each allocates 20 000 blocks alternating 128 KiB and 512 B,
 * then checks and frees them all. The 512 B blocks are written whole; the 128 KiB ones in
 * their first and last 64 bytes (buffers sized for the worst case): about 85 MiB in use at
 * the end of each round. `idle: settled` after the last round. 128 KiB is glibc's initial
 * mmap threshold, and a size that allocators serve from slabs or from their large tier. */
#include "memory.h"

#define ROUNDS 20
#define BLOCKS scaled(20000)
#define BIG (128 * 1024)
#define SMALL 512

int main(void) {
    obj_t *blocks = check_alloc(malloc(BLOCKS * sizeof *blocks), BLOCKS * sizeof *blocks);
    phase("rounds");
    for (int round = 0; round < ROUNDS; round++) {
        for (size_t i = 0; i < BLOCKS; i++) {
            obj_t *b = &blocks[i];
            b->size = i % 2 ? SMALL : BIG;
            b->tag = tag_of((uint64_t)round * BLOCKS + i);
            b->p = check_alloc(malloc(b->size), b->size);
            memset(b->p, b->tag, 64);
            memset((char *)b->p + b->size - 64, b->tag, 64);
            if (b->size == SMALL) memset(b->p, b->tag, SMALL);
        }
        for (size_t i = 0; i < BLOCKS; i++) {
            obj_t *b = &blocks[i];
            const unsigned char *c = b->p;
            unsigned char bad = 0;
            for (size_t k = 0; k < 64; k++) bad |= (c[k] ^ b->tag) | (c[b->size - 64 + k] ^ b->tag);
            if (b->size == SMALL)
                for (size_t k = 0; k < SMALL; k++) bad |= c[k] ^ b->tag;
            if (bad) die("contents changed", b->p, b->size);
            sum_add(b->size * 256 + b->tag);
            free(b->p);
        }
    }
    idle("settled");
    free(blocks);
    finish();
    return 0;
}
