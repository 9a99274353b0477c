/* Cross-thread frees: THREADS threads each allocate and fill blocks (8..2048 bytes, some
 * up to 300 KiB) and pass them through a locked ring to the next thread, which verifies and
 * frees them. Then a few hundred short-lived threads allocate, free, and leave blocks
 * behind for later threads (and finally main) to verify and free. */
#include "common.h"
#include <pthread.h>

#define THREADS 4
#define PER_THREAD 200000
#define RING 1024

struct block { unsigned char *p; size_t n; unsigned tag; };
static struct ring {
    pthread_mutex_t lock;
    struct block b[RING];
    size_t head, len;
} rings[THREADS];

static int push(struct ring *r, struct block b) {
    pthread_mutex_lock(&r->lock);
    int ok = r->len < RING;
    if (ok) r->b[(r->head + r->len++) % RING] = b;
    pthread_mutex_unlock(&r->lock);
    return ok;
}
static int pop(struct ring *r, struct block *b) {
    pthread_mutex_lock(&r->lock);
    int ok = r->len > 0;
    if (ok) { *b = r->b[r->head]; r->head = (r->head + 1) % RING; r->len--; }
    pthread_mutex_unlock(&r->lock);
    return ok;
}

static pthread_mutex_t check_lock = PTHREAD_MUTEX_INITIALIZER;
static void verify_free(struct block b, const char *who) {
    if (!intact(b.p, b.n, b.tag)) {
        pthread_mutex_lock(&check_lock);
        CHECK(0, "%s: block of %zu bytes at %p corrupted", who, b.n, (void *)b.p);
        pthread_mutex_unlock(&check_lock);
    }
    free(b.p);
}

static struct block make(uint64_t *seed) {
    uint64_t x = (*seed = *seed * 6364136223846793005ull + 1442695040888963407ull) >> 20;
    size_t n = x % 64 == 0 ? 8 + (x >> 8) % (300 << 10) : 8 + (x >> 8) % 2041;
    struct block b = {malloc(n), n, (unsigned)(x >> 40)};
    if (!b.p) { fprintf(stderr, "malloc(%zu) returned NULL\n", n); exit(1); }
    fill(b.p, n, b.tag);
    return b;
}

static void *worker(void *arg) {
    int me = (int)(intptr_t)arg;
    struct ring *in = &rings[me], *out = &rings[(me + 1) % THREADS];
    uint64_t seed = 1000 + me;
    long received = 0;
    struct block b;
    for (long i = 0; i < PER_THREAD; i++) {
        struct block mine = make(&seed);
        while (!push(out, mine)) /* full: drain our own ring meanwhile */
            if (pop(in, &b)) { verify_free(b, "ring"); received++; }
        if (pop(in, &b)) { verify_free(b, "ring"); received++; }
    }
    while (received < PER_THREAD) /* our predecessor sends exactly PER_THREAD blocks */
        if (pop(in, &b)) { verify_free(b, "ring"); received++; }
    return NULL;
}

/* Blocks left behind by short-lived threads. */
#define ORPHANS 20000
static pthread_mutex_t orphan_lock = PTHREAD_MUTEX_INITIALIZER;
static struct block orphans[ORPHANS];
static size_t n_orphans;

static void *short_lived(void *arg) {
    uint64_t seed = 77 + (uintptr_t)arg;
    struct block own[100];
    for (int i = 0; i < 100; i++) own[i] = make(&seed);
    pthread_mutex_lock(&orphan_lock);
    for (int i = 0; i < 30 && n_orphans > 0; i++) verify_free(orphans[--n_orphans], "orphan");
    for (int i = 50; i < 100 && n_orphans < ORPHANS; i++) orphans[n_orphans++] = own[i], own[i].p = NULL;
    pthread_mutex_unlock(&orphan_lock);
    for (int i = 0; i < 100; i++)
        if (own[i].p) verify_free(own[i], "own");
    return NULL;
}

int main(void) {
    pattern_init();
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        pthread_mutex_init(&rings[i].lock, NULL);
        CHECK(pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) == 0, "pthread_create");
    }
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < THREADS; i++) CHECK(rings[i].len == 0, "ring %d not drained", i);

    for (int round = 0; round < 100; round++) { /* 400 short-lived threads */
        pthread_t s[4];
        for (int i = 0; i < 4; i++)
            CHECK(pthread_create(&s[i], NULL, short_lived, (void *)(intptr_t)(round * 4 + i)) == 0, "create");
        for (int i = 0; i < 4; i++) pthread_join(s[i], NULL);
    }
    CHECK(n_orphans > 0, "no blocks were left behind");
    while (n_orphans > 0) verify_free(orphans[--n_orphans], "orphan (main)");
    return finish("threads");
}
