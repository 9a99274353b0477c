/* sh6bench: a model of MicroQuill's sh6bench (SmartHeap's portable benchmark), written from
 * its published description.
 *
 * Each thread runs the fill-and-free cycle of fill_free.h over an array of BLOCKS / THREADS
 * pointers, without exchanging blocks with other threads. Each of its
 * REPEATS * SCALE / THREADS repeats sweeps the sizes: for every base size 1, 2, 4, 7, 11, ...
 * (each 3/2 of the last, plus 1) below 1000 B it allocates the base and each of its halvings
 * down to 1 B, 250 blocks of each size below 100 B and 50 of each size from 100 B: 19 300
 * blocks a repeat, nine in ten under 100 B. The total work does not depend on the thread
 * count (the original splits it the same way). */
#include "common.h"
#include "fill_free.h"

#define BLOCKS 10000
#define REPEATS 500
#define MAX_SIZE 1000

static void *worker(void *arg) {
    (void)arg;
    fill_free_t f;
    fill_free_init(&f, BLOCKS / g_threads);
    long repeats = REPEATS * g_scale / g_threads;
    for (long r = 0; r < repeats; r++)
        for (size_t base = 1; base < MAX_SIZE; base = base * 3 / 2 + 1)
            for (size_t size = base; size > 0; size /= 2)
                for (int k = size < 100 ? 250 : 50; k > 0; k--) fill_free_put(&f, size);
    add_ops(fill_free_finish(&f));
    return NULL;
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    double t0 = now();
    run_threads(g_threads, worker);
    report(now() - t0);
    return 0;
}
