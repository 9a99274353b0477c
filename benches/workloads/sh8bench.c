/* sh8bench: the cross-thread variant of sh6bench. Threads form a ring: each allocates a
 * batch (random sizes 16..1024 B), hands it to the next thread, and frees in reverse order
 * the batch handed to it by the previous one. With one thread the batch comes back to itself. */
#include "common.h"

#define BATCH 2000
#define BATCHES 1200

static queue_t g_mail[1024];

static void *worker(void *arg) {
    int i = (int)(intptr_t)arg;
    rng_t r = rng_seed(13 + (uint64_t)i);
    long batches = BATCHES * g_scale;
    for (long n = 0; n < batches; n++) {
        obj_t *b = check_alloc(malloc(BATCH * sizeof(obj_t)), BATCH * sizeof(obj_t));
        for (int k = 0; k < BATCH; k++) obj_new(&b[k], rnd_range(&r, 16, 1024), tag_of(n + k));
        queue_push(&g_mail[(i + 1) % g_threads], b);
        obj_t *in = queue_pop(&g_mail[i]);
        for (int k = BATCH - 1; k >= 0; k--) obj_free(&in[k]);
        free(in);
    }
    add_ops(2 * (uint64_t)batches * (BATCH + 1));
    return NULL;
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    for (int i = 0; i < g_threads; i++) queue_init(&g_mail[i], 4);
    double t0 = now();
    run_threads(g_threads, worker);
    report(now() - t0);
    return 0;
}
