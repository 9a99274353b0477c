/* sh6bench: batches freed in LIFO, FIFO and interleaved order, in the manner of sh6bench.
 * Each thread repeatedly allocates a batch of objects whose sizes sweep 16..1024 B, then
 * frees it newest-first, the next batch oldest-first, the next every other one first. */
#include "common.h"

#define BATCH 2000
#define BATCHES 1200

static void *worker(void *arg) {
    rng_t r = rng_seed(11 + (uintptr_t)arg);
    obj_t *b = check_alloc(malloc(BATCH * sizeof(obj_t)), BATCH * sizeof(obj_t));
    long batches = BATCHES * g_scale;
    for (long n = 0; n < batches; n++) {
        size_t lo = 16 + (size_t)(rnd(&r) % 64);
        for (int i = 0; i < BATCH; i++) obj_new(&b[i], lo + (size_t)i * 1008 / BATCH, tag_of(n + i));
        switch (n % 3) {
        case 0: for (int i = BATCH - 1; i >= 0; i--) obj_free(&b[i]); break;
        case 1: for (int i = 0; i < BATCH; i++) obj_free(&b[i]); break;
        default:
            for (int i = 0; i < BATCH; i += 2) obj_free(&b[i]);
            for (int i = BATCH - 1; i >= 0; i -= 2) obj_free(&b[i]);
        }
    }
    free(b);
    add_ops(2 * (uint64_t)batches * BATCH);
    return NULL;
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    double t0 = now();
    run_threads(g_threads, worker);
    report(now() - t0);
    return 0;
}
