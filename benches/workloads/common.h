/* Shared helpers for the hakmem benchmark workloads (our own code).
 *
 * Every workload is run as `prog THREADS SCALE`: THREADS worker threads (>= 1), and SCALE a
 * positive work multiplier (the work grows linearly with it). It checks the contents
 * of its objects before freeing them, exits with status 3 on corruption (4 on an allocation
 * failure, 2 on bad arguments), and prints `throughput: <ops/s>` where an operation is one
 * call of the malloc family or free. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int g_threads = 1;
static long g_scale = 1;

static void parse_args(int argc, char **argv) {
    if (argc > 1) g_threads = atoi(argv[1]);
    if (argc > 2) g_scale = atol(argv[2]);
    if (g_threads < 1 || g_threads > 1024 || g_scale < 1) {
        fprintf(stderr, "usage: %s [THREADS>=1] [SCALE>=1]\n", argv[0]);
        exit(2);
    }
}

/* The work of one thread: n units with up to FULL_WORK_THREADS threads, so that up to the 2
 * cores of the machines we measure on the threads run side by side, each doing the same work;
 * with more threads, the work of FULL_WORK_THREADS threads split among them, so that a run
 * with more threads than cores (16) lasts about as long as one with 2 instead of growing with
 * the thread count. */
#define FULL_WORK_THREADS 2
static inline long thread_share(long n) {
    if (g_threads <= FULL_WORK_THREADS) return n;
    long share = n * FULL_WORK_THREADS / g_threads;
    return share > 0 ? share : 1;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, const void *p, size_t size) {
    fprintf(stderr, "CORRUPTION: %s (object %p, size %zu)\n", what, p, size);
    exit(3);
}

static void *check_alloc(void *p, size_t size) {
    if (p == NULL) {
        fprintf(stderr, "allocation of %zu bytes failed\n", size);
        exit(4);
    }
    return p;
}

/* xorshift64*: a cheap per-thread generator. */
typedef struct { uint64_t s; } rng_t;
static inline rng_t rng_seed(uint64_t seed) {
    rng_t r = { seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull };
    return r;
}
static inline uint64_t rnd(rng_t *r) {
    uint64_t x = r->s;
    x ^= x >> 12; x ^= x << 25; x ^= x >> 27;
    r->s = x;
    return x * 0x2545F4914F6CDD1Dull;
}
/* Uniform in [lo, hi]. */
static inline size_t rnd_range(rng_t *r, size_t lo, size_t hi) {
    return lo + (size_t)(rnd(r) % (hi - lo + 1));
}
/* Log-uniform in [lo, hi]: as many objects between 64 and 128 B as between 512 B and 1 KiB. */
static inline size_t rnd_log(rng_t *r, size_t lo, size_t hi) {
    int bits_lo = 63 - __builtin_clzll(lo), bits_hi = 63 - __builtin_clzll(hi);
    int b = bits_lo + (int)(rnd(r) % (uint64_t)(bits_hi - bits_lo + 1));
    size_t base = (size_t)1 << b;
    size_t s = base + (size_t)(rnd(r) % base);
    return s < lo ? lo : s > hi ? hi : s;
}

/* Fill patterns: objects up to FULL_FILL bytes are written and checked whole; bigger ones
 * in their first and last 64 bytes and one byte per 4 KiB page (so every page is touched). */
#define FULL_FILL 256
static inline void fill(void *p, size_t n, uint8_t tag) {
    unsigned char *c = p;
    if (n <= FULL_FILL) { memset(c, tag, n); return; }
    memset(c, tag, 64);
    memset(c + n - 64, tag, 64);
    for (size_t i = 4096; i < n - 64; i += 4096) c[i] = tag;
}
static inline void check(const void *p, size_t n, uint8_t tag) {
    const unsigned char *c = p;
    unsigned char bad = 0;
    if (n <= FULL_FILL) {
        for (size_t i = 0; i < n; i++) bad |= c[i] ^ tag;
    } else {
        for (size_t i = 0; i < 64; i++) bad |= (c[i] ^ tag) | (c[n - 64 + i] ^ tag);
        for (size_t i = 4096; i < n - 64; i += 4096) bad |= c[i] ^ tag;
    }
    if (bad) die("fill pattern changed", p, n);
}
static inline uint8_t tag_of(uint64_t x) { return (uint8_t)(x * 131 + 17) | 1; }

/* A live object with its size and fill tag. */
typedef struct { void *p; size_t size; uint8_t tag; } obj_t;

static inline void obj_new(obj_t *o, size_t size, uint8_t tag) {
    o->p = check_alloc(malloc(size), size);
    o->size = size;
    o->tag = tag;
    fill(o->p, size, tag);
}
static inline void obj_free(obj_t *o) {
    if (o->p) {
        check(o->p, o->size, o->tag);
        free(o->p);
        o->p = NULL;
    }
}

/* Starts fn(0..n-1) in n threads; join_threads waits for them. */
static inline pthread_t *start_threads(int n, void *(*fn)(void *)) {
    pthread_t *t = check_alloc(malloc(sizeof *t * (size_t)n), sizeof *t * (size_t)n);
    for (intptr_t i = 0; i < n; i++)
        if (pthread_create(&t[i], NULL, fn, (void *)i) != 0) { perror("pthread_create"); exit(4); }
    return t;
}
static inline void join_threads(pthread_t *t, int n) {
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    free(t);
}
/* Runs fn(0..n-1) in n threads and waits for them. */
static inline void run_threads(int n, void *(*fn)(void *)) {
    join_threads(start_threads(n, fn), n);
}

/* Operation counter summed over threads. */
static uint64_t g_ops;
static inline void add_ops(uint64_t n) { __atomic_fetch_add(&g_ops, n, __ATOMIC_RELAXED); }

static void report(double seconds) {
    printf("throughput: %.0f\n", seconds > 0 ? (double)g_ops / seconds : 0.0);
}

/* A blocking FIFO of pointers with a bounded capacity (mutex + condition variables). */
typedef struct {
    pthread_mutex_t m;
    pthread_cond_t not_empty, not_full;
    void **items;
    size_t cap, head, len;
} queue_t;

static inline void queue_init(queue_t *q, size_t cap) {
    pthread_mutex_init(&q->m, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    pthread_cond_init(&q->not_full, NULL);
    q->items = check_alloc(calloc(cap, sizeof(void *)), cap * sizeof(void *));
    q->cap = cap;
    q->head = q->len = 0;
}
static inline void queue_push(queue_t *q, void *x) {
    pthread_mutex_lock(&q->m);
    while (q->len == q->cap) pthread_cond_wait(&q->not_full, &q->m);
    q->items[(q->head + q->len++) % q->cap] = x;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->m);
}
static inline void *queue_pop(queue_t *q) {
    pthread_mutex_lock(&q->m);
    while (q->len == 0) pthread_cond_wait(&q->not_empty, &q->m);
    void *x = q->items[q->head];
    q->head = (q->head + 1) % q->cap;
    q->len--;
    pthread_cond_signal(&q->not_full);
    pthread_mutex_unlock(&q->m);
    return x;
}
