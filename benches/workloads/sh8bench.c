/* sh8bench: a model of MicroQuill's sh8bench (SmartHeap's multi-threaded benchmark), written
 * from its published description.
 *
 * Each thread runs the fill-and-free cycle of fill_free.h over an array of BLOCKS / THREADS
 * pointers. Its ITERATIONS * SCALE / THREADS iterations walk a fixed histogram in turn, one
 * entry per iteration: 5000 blocks of 16 B, 1000 of 48 B, 100 of 72 B, ..., one of 168524 B,
 * then 1000 of 8 B, and round again. Meanwhile the main thread allocates FOREIGN blocks of
 * 8 B into a shared array, each holding its slot's address, as fast as it can. The array is
 * cut into THREADS parts and each part into THREADS chunks; thread t frees chunk t of every
 * part, in order, taking at the start of each iteration every block of its share that has
 * appeared: a stream of frees of one thread's blocks by others while that thread is still
 * allocating. The total work does not depend on the thread count (the original splits it
 * the same way); the original's 10 M foreign blocks per 700 000 iterations are kept in
 * proportion. */
#include "common.h"
#include "fill_free.h"

#define BLOCKS 1000000
#define ITERATIONS 12000
#define FOREIGN_PER_ITERATION 14     /* 10 M / 700 000, rounded down */
#define FOREIGN_SIZE 8

static const struct { uint32_t size, count; } HISTOGRAM[] = {
    {8, 1000}, {16, 5000}, {48, 1000}, {72, 100}, {148, 100}, {200, 100},
    {520, 10}, {1056, 5}, {4096, 3}, {9162, 1}, {34562, 1}, {168524, 1},
};
#define SIZES (sizeof HISTOGRAM / sizeof HISTOGRAM[0])

static void **g_foreign;     /* filled by the main thread, emptied by the workers */
static long g_foreign_count; /* a multiple of THREADS squared */

/* Thread t's share of the foreign blocks: chunk t of each of the THREADS parts. */
typedef struct { long part, chunk, next, in_chunk, left; } share_t;

static void free_foreign(long slot) {
    void **p = __atomic_load_n(&g_foreign[slot], __ATOMIC_ACQUIRE);
    if (*p != (void *)&g_foreign[slot]) die("foreign block changed", p, FOREIGN_SIZE);
    free(p);
}

/* Frees the blocks of the share that have appeared (all of them when wait is set). */
static uint64_t take_share(share_t *s, int wait) {
    uint64_t freed = 0;
    while (s->left > 0) {
        if (!__atomic_load_n(&g_foreign[s->next], __ATOMIC_ACQUIRE)) {
            if (!wait) break;
            sched_yield();
            continue;
        }
        free_foreign(s->next);
        freed++;
        s->left--;
        s->next++;
        if (--s->in_chunk == 0) {
            s->in_chunk = s->chunk;
            s->next += s->part - s->chunk;
        }
    }
    return freed;
}

static void *worker(void *arg) {
    long t = (long)(intptr_t)arg;
    long part = g_foreign_count / g_threads, chunk = part / g_threads;
    share_t share = { part, chunk, chunk * t, chunk, part };
    fill_free_t f;
    fill_free_init(&f, BLOCKS / g_threads);
    uint64_t ops = 0;
    long iterations = ITERATIONS * g_scale / g_threads;
    for (long it = 0; it < iterations; it++) {
        ops += take_share(&share, 0);
        unsigned k = (unsigned)((it + 1) % SIZES);
        for (uint32_t c = 0; c < HISTOGRAM[k].count; c++) fill_free_put(&f, HISTOGRAM[k].size);
    }
    ops += take_share(&share, 1);
    add_ops(ops + fill_free_finish(&f));
    return NULL;
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    long squared = (long)g_threads * g_threads;
    g_foreign_count = FOREIGN_PER_ITERATION * ITERATIONS * g_scale / squared * squared;
    /* One slot more, so that the array is never empty. */
    g_foreign = check_alloc(calloc((size_t)g_foreign_count + 1, sizeof(void *)),
                            ((size_t)g_foreign_count + 1) * sizeof(void *));
    double t0 = now();
    pthread_t *workers = start_threads(g_threads, worker);
    for (long i = 0; i < g_foreign_count; i++) {
        void **p = check_alloc(malloc(FOREIGN_SIZE), FOREIGN_SIZE);
        *p = (void *)&g_foreign[i];
        __atomic_store_n(&g_foreign[i], p, __ATOMIC_RELEASE);
    }
    join_threads(workers, g_threads);
    add_ops((uint64_t)g_foreign_count);
    report(now() - t0);
    free(g_foreign);
    return 0;
}
