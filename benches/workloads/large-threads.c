/* large-threads: each thread keeps 4 blocks of 256 KiB - 4.25 MiB and replaces one at
 * random ITERS * SCALE times (210,000 at the suite's scale 3), writing and checking only
 * each block's first and last byte: buffers reserved larger than they are filled, so an
 * allocator that faults in more than the touched pages shows it in its peak RSS. */
#include "common.h"

#define BLOCKS 4
#define ITERS 70000
#define MIN_SIZE (256u << 10)
#define MAX_SIZE (4352u << 10)

static void *worker(void *arg) {
    rng_t r = rng_seed(43 + (uintptr_t)arg);
    obj_t slots[BLOCKS];
    memset(slots, 0, sizeof slots);
    uint64_t ops = 0;
    long iters = (long)ITERS * g_scale;
    for (long n = 0; n < iters; n++) {
        obj_t *o = &slots[rnd(&r) % BLOCKS];
        if (o->p) {
            unsigned char *c = o->p;
            if (c[0] != o->tag || c[o->size - 1] != o->tag) die("first or last byte changed", c, o->size);
            free(c);
            ops++;
        }
        o->size = rnd_range(&r, MIN_SIZE, MAX_SIZE);
        o->tag = tag_of(n);
        unsigned char *c = check_alloc(malloc(o->size), o->size);
        c[0] = c[o->size - 1] = o->tag;
        o->p = c;
        ops++;
    }
    for (int i = 0; i < BLOCKS; i++) if (slots[i].p) { free(slots[i].p); ops++; }
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
