/* calloc: calloc-heavy use in a working set of 512 slots per thread (90% of sizes 16..1024 B,
 * 9% 1..16 KiB, 1% 16..256 KiB). Every block must come back zeroed although its memory was
 * dirtied by the block that held it before: up to 16 KiB each byte is checked and then
 * overwritten, above that every 64th byte and the last one. */
#include "common.h"

#define SLOTS 512
#define ITERS 80000
#define DENSE 16384

static inline size_t step_of(size_t n) { return n <= DENSE ? 1 : 64; }

static void check_zero_and_dirty(unsigned char *p, size_t n, uint8_t tag) {
    size_t step = step_of(n);
    unsigned char bad = p[n - 1];
    for (size_t i = 0; i < n; i += step) bad |= p[i];
    if (bad) die("calloc returned memory that is not zero", p, n);
    if (step == 1) { memset(p, tag, n); return; }
    for (size_t i = 0; i < n; i += step) p[i] = tag;
    p[n - 1] = tag;
}

static void check_dirty(const unsigned char *p, size_t n, uint8_t tag) {
    size_t step = step_of(n);
    unsigned char bad = p[n - 1] ^ tag;
    for (size_t i = 0; i < n; i += step) bad |= p[i] ^ tag;
    if (bad) die("fill pattern changed", p, n);
}

static void *worker(void *arg) {
    rng_t r = rng_seed(31 + (uintptr_t)arg);
    obj_t *slots = check_alloc(calloc(SLOTS, sizeof(obj_t)), SLOTS * sizeof(obj_t));
    uint64_t ops = 1;
    long iters = thread_share(ITERS) * g_scale;
    for (long n = 0; n < iters; n++) {
        obj_t *o = &slots[rnd(&r) % SLOTS];
        if (o->p) { check_dirty(o->p, o->size, o->tag); free(o->p); ops++; }
        uint64_t x = rnd(&r) % 100;
        size_t size = x < 90 ? rnd_range(&r, 16, 1024) : x < 99 ? rnd_range(&r, 1025, DENSE)
                                                                : rnd_range(&r, DENSE + 1, 256 << 10);
        size_t elem = (size_t)1 << (rnd(&r) % 5), count = (size + elem - 1) / elem;
        o->size = count * elem;
        o->tag = tag_of(n);
        o->p = check_alloc(calloc(count, elem), o->size);
        check_zero_and_dirty(o->p, o->size, o->tag);
        ops++;
    }
    for (int i = 0; i < SLOTS; i++)
        if (slots[i].p) { check_dirty(slots[i].p, slots[i].size, slots[i].tag); free(slots[i].p); ops++; }
    free(slots);
    add_ops(ops + 1);
    return NULL;
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    double t0 = now();
    run_threads(g_threads, worker);
    report(now() - t0);
    return 0;
}
