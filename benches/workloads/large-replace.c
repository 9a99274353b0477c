/* large-replace: 20 blocks of 5-25 MiB in all, shared out among the threads; each thread
 * replaces one of its blocks at random, ITERS * SCALE * (its blocks / 20) times, so the
 * process makes about ITERS * SCALE replacements whatever the thread count (750 at the
 * suite's scale 3). Each new block is value-initialised as C++'s `std::vector<char>(n)` or
 * `new char[n]()` does it (malloc, then memset to zero), checked to read zero, then given
 * a fill pattern that is checked before the block is freed. */
#include "common.h"

#define BLOCKS 20
#define ITERS 250
#define MIN_SIZE (5u << 20)
#define MAX_SIZE (25u << 20)

static void check_zero(const unsigned char *c, size_t n) {
    unsigned char bad = c[n - 1];
    for (size_t i = 0; i < n; i += 4096) bad |= c[i];
    if (bad) die("value-initialised block does not read zero", c, n);
}

static void *worker(void *arg) {
    int id = (int)(intptr_t)arg;
    /* This thread's share of the blocks (at least one), and of the replacements. */
    int blocks = BLOCKS / g_threads + (id < BLOCKS % g_threads);
    if (blocks < 1) blocks = 1;
    long iters = (long)ITERS * g_scale * blocks / BLOCKS;
    if (iters < 1) iters = 1;
    rng_t r = rng_seed(41 + (uintptr_t)id);
    obj_t slots[BLOCKS];
    memset(slots, 0, sizeof slots);
    uint64_t ops = 0;
    for (long n = 0; n < iters; n++) {
        obj_t *o = &slots[rnd(&r) % (uint64_t)blocks];
        if (o->p) { obj_free(o); ops++; }
        size_t size = rnd_range(&r, MIN_SIZE, MAX_SIZE);
        unsigned char *p = check_alloc(malloc(size), size);
        /* The compiler would fuse malloc and memset into calloc; a C++ program's
         * `new char[n]()` calls operator new, then clears the block itself. */
        __asm__ volatile("" : "+r"(p));
        memset(p, 0, size);
        check_zero(p, size);
        o->p = p;
        o->size = size;
        o->tag = tag_of(n);
        fill(p, size, o->tag);
        ops++;
    }
    for (int i = 0; i < blocks; i++) if (slots[i].p) { obj_free(&slots[i]); ops++; }
    add_ops(ops);
    return NULL;
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    double t0 = now();
    run_threads(g_threads, worker);
    report(now() - t0);
    return 0;
}
