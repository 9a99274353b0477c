/* Size drift: 1.5 M objects of 16 - 1024 B (uniform, about 745 MiB) are allocated, 90% of
 * them freed at random, then objects of 2 - 4 KiB are added until 514 MiB are live: memory
 * freed by small objects can only serve the new ones where the allocator can reuse it across
 * sizes. `idle: refilled` with everything still live; then all is checked and freed. The
 * survivors' index is compacted before the refill, so that the program's own tables hold
 * under 8 MiB at `refilled` (36 MiB before). */
#include "memory.h"

#define SMALL scaled(1500000)
#define LIVE scaled(514 * MiB)

int main(void) {
    rng_t r = rng_seed(7);
    size_t live = 0;
    obj_t *small = check_alloc(malloc(SMALL * sizeof *small), SMALL * sizeof *small);
    phase("small");
    for (size_t i = 0; i < SMALL; i++) {
        obj_new(&small[i], rnd_range(&r, 16, 1024), tag_of(i));
        live += small[i].size;
    }
    phase("free-90%");
    size_t *order = shuffled(SMALL, &r);
    size_t n_kept = SMALL - SMALL / 10 * 9;
    for (size_t i = 0; i < SMALL / 10 * 9; i++) {
        live -= small[order[i]].size;
        obj_check_free(&small[order[i]]);
    }
    free(order);
    obj_t *kept = check_alloc(malloc(n_kept * sizeof *kept), n_kept * sizeof *kept);
    for (size_t i = 0, k = 0; i < SMALL; i++)
        if (small[i].p) kept[k++] = small[i];
    free(small);
    phase("refill");
    objs_t big = { 0 };
    while (live < LIVE) {
        uint8_t tag = tag_of(big.len);
        obj_t *o = objs_add(&big);
        obj_new(o, rnd_range(&r, 2048, 4096), tag);
        live += o->size;
    }
    idle("refilled");
    for (size_t i = 0; i < n_kept; i++) obj_check_free(&kept[i]);
    for (size_t i = 0; i < big.len; i++) obj_check_free(&big.at[i]);
    free(kept);
    objs_free(&big);
    finish();
    return 0;
}
