/* cache-scratch: passive false sharing, in the manner of cache-scratch. The main thread
 * allocates one small object per thread, side by side, and hands object i to thread i, which
 * frees it and then repeatedly allocates a small object, writes it many times and frees it.
 * An allocator that gives a freed object back to the thread that freed it keeps the threads
 * writing to one cache line. */
#include "common.h"

#define OBJ 8
#define ITERS 50000
#define WRITES 500

static void *g_handed[1024];

static void *worker(void *arg) {
    int i = (int)(intptr_t)arg;
    free(g_handed[i]);
    long iters = thread_share(ITERS) * g_scale;
    for (long n = 0; n < iters; n++) {
        volatile unsigned char *p = check_alloc(malloc(OBJ), OBJ);
        for (int w = 0; w < WRITES; w++)
            for (int b = 0; b < OBJ; b++) p[b] = (unsigned char)(w + b + i);
        for (int b = 0; b < OBJ; b++)
            if (p[b] != (unsigned char)(WRITES - 1 + b + i)) die("written value lost", (void *)p, OBJ);
        free((void *)p);
    }
    add_ops(2 * (uint64_t)iters + 1);
    return NULL;
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    for (int i = 0; i < g_threads; i++) g_handed[i] = check_alloc(malloc(OBJ), OBJ);
    double t0 = now();
    run_threads(g_threads, worker);
    report(now() - t0);
    return 0;
}
