/* cache-thrash: active false sharing, in the manner of cache-thrash. Every thread repeatedly
 * allocates a small object, writes it many times and frees it. An allocator that hands
 * neighbouring small objects to different threads makes them fight over cache lines. */
#include "common.h"

#define OBJ 8
#define ITERS 30000
#define WRITES 500

static void *worker(void *arg) {
    int i = (int)(intptr_t)arg;
    long iters = thread_share(ITERS) * g_scale;
    for (long n = 0; n < iters; n++) {
        volatile unsigned char *p = check_alloc(malloc(OBJ), OBJ);
        for (int w = 0; w < WRITES; w++)
            for (int b = 0; b < OBJ; b++) p[b] = (unsigned char)(w + b + i);
        for (int b = 0; b < OBJ; b++)
            if (p[b] != (unsigned char)(WRITES - 1 + b + i)) die("written value lost", (void *)p, OBJ);
        free((void *)p);
    }
    add_ops(2 * (uint64_t)iters);
    return NULL;
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    double t0 = now();
    run_threads(g_threads, worker);
    report(now() - t0);
    return 0;
}
