/* larson: a server in the manner of the Larson benchmark. Each of THREADS slot arrays holds
 * objects of random sizes 8..1024 B. In every round a fresh set of threads takes over the
 * arrays, the array of thread i going to thread i+1 of the next round, and each thread
 * replaces random objects of its array (check, free, allocate, fill): objects allocated by
 * one thread are freed by another, and threads come and go as connections would. */
#include "common.h"

#define SLOTS 1000
#define ROUNDS 40
#define REPLACE 50000

static obj_t *g_arrays[1024];
static int g_round;

static void *worker(void *arg) {
    int i = (int)(intptr_t)arg;
    obj_t *a = g_arrays[(i + g_round) % g_threads];
    rng_t r = rng_seed((uint64_t)g_round * 1024 + (uint64_t)i);
    long replace = thread_share(REPLACE);
    for (long k = 0; k < replace; k++) {
        obj_t *o = &a[rnd(&r) % SLOTS];
        obj_free(o);
        obj_new(o, rnd_range(&r, 8, 1024), tag_of(rnd(&r)));
    }
    add_ops(2 * (uint64_t)replace);
    return NULL;
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    rng_t r = rng_seed(7);
    for (int t = 0; t < g_threads; t++) {
        g_arrays[t] = check_alloc(calloc(SLOTS, sizeof(obj_t)), SLOTS * sizeof(obj_t));
        for (int s = 0; s < SLOTS; s++) obj_new(&g_arrays[t][s], rnd_range(&r, 8, 1024), tag_of(s));
    }
    double t0 = now();
    long rounds = ROUNDS * g_scale;
    for (g_round = 0; g_round < rounds; g_round++) run_threads(g_threads, worker);
    double dt = now() - t0;
    for (int t = 0; t < g_threads; t++) {
        for (int s = 0; s < SLOTS; s++) obj_free(&g_arrays[t][s]);
        free(g_arrays[t]);
    }
    report(dt);
    return 0;
}
