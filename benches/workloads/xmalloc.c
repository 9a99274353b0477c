/* xmalloc: producers and consumers in the manner of xmalloc-test. THREADS threads only
 * allocate (batches of 16..512 B objects, filled) and THREADS other threads only check and
 * free what they receive through a shared bounded queue: every free is a remote free. */
#include "common.h"

#define BATCH 256
#define BATCHES 2000

static queue_t g_q;

static void *producer(void *arg) {
    rng_t r = rng_seed(17 + (uintptr_t)arg);
    long batches = thread_share(BATCHES) * g_scale;
    for (long n = 0; n < batches; n++) {
        obj_t *b = check_alloc(malloc(BATCH * sizeof(obj_t)), BATCH * sizeof(obj_t));
        for (int k = 0; k < BATCH; k++) obj_new(&b[k], rnd_range(&r, 16, 512), tag_of(n + k));
        queue_push(&g_q, b);
    }
    return NULL;
}

static void *consumer(void *arg) {
    (void)arg;
    uint64_t ops = 0;
    for (obj_t *b; (b = queue_pop(&g_q)) != NULL;) {
        for (int k = 0; k < BATCH; k++) obj_free(&b[k]);
        free(b);
        ops += 2 * (BATCH + 1);
    }
    add_ops(ops);
    return NULL;
}

static void *role(void *arg) {
    intptr_t i = (intptr_t)arg;
    return i < g_threads ? producer(arg) : consumer(arg);
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    queue_init(&g_q, 64);
    double t0 = now();
    /* Threads 0..T-1 produce, T..2T-1 consume; once every producer is done, one NULL per
     * consumer ends them. */
    pthread_t *t = check_alloc(malloc(sizeof *t * 2 * (size_t)g_threads), sizeof *t * 2 * (size_t)g_threads);
    for (intptr_t i = 0; i < 2 * g_threads; i++) pthread_create(&t[i], NULL, role, (void *)i);
    for (int i = 0; i < g_threads; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < g_threads; i++) queue_push(&g_q, NULL);
    for (int i = g_threads; i < 2 * g_threads; i++) pthread_join(t[i], NULL);
    free(t);
    report(now() - t0);
    return 0;
}
