/* mstress: thread churn with survivors, in the manner of mimalloc's stress test. In every
 * round a fresh set of threads allocates objects (mostly small, a few up to 64 KiB), frees
 * most of them at random, and swaps some into a shared transfer array: objects there survive
 * their thread and are checked and freed (or passed on again) by threads of later rounds. */
#include "common.h"

#define ROUNDS 20
#define STEPS 80000
#define LOCAL 512
#define TRANSFER 1024

static obj_t *g_transfer[TRANSFER];

static size_t pick_size(rng_t *r) {
    uint64_t x = rnd(r) % 100;
    return x < 90 ? rnd_range(r, 8, 256) : x < 99 ? rnd_range(r, 257, 4096) : rnd_range(r, 4097, 65536);
}

static obj_t *boxed(rng_t *r) {
    obj_t *o = check_alloc(malloc(sizeof *o), sizeof *o);
    obj_new(o, pick_size(r), tag_of(rnd(r)));
    return o;
}

static uint64_t drop(obj_t *o) {
    if (!o) return 0;
    obj_free(o);
    free(o);
    return 2;
}

static long g_round;

static void *worker(void *arg) {
    rng_t r = rng_seed((uint64_t)g_round * 1024 + (uintptr_t)arg + 1);
    obj_t *local[LOCAL] = {0};
    uint64_t ops = 0;
    long steps = thread_share(STEPS);
    for (long s = 0; s < steps; s++) {
        uint64_t x = rnd(&r) % 100;
        obj_t **slot = &local[rnd(&r) % LOCAL];
        if (x < 60) {                      /* replace a local object */
            ops += drop(*slot) + 2;
            *slot = boxed(&r);
        } else if (x < 90) {               /* free a local object */
            ops += drop(*slot);
            *slot = NULL;
        } else {                           /* swap with the transfer array */
            if (!*slot) { *slot = boxed(&r); ops += 2; }
            obj_t *o = __atomic_exchange_n(&g_transfer[rnd(&r) % TRANSFER], *slot, __ATOMIC_ACQ_REL);
            *slot = o;
            if (o) check(o->p, o->size, o->tag);
        }
    }
    for (int i = 0; i < LOCAL; i++) ops += drop(local[i]);
    add_ops(ops);
    return NULL;
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    double t0 = now();
    long rounds = ROUNDS * g_scale;
    for (g_round = 0; g_round < rounds; g_round++) run_threads(g_threads, worker);
    uint64_t ops = 0;
    for (int i = 0; i < TRANSFER; i++) ops += drop(g_transfer[i]);
    add_ops(ops);
    report(now() - t0);
    return 0;
}
