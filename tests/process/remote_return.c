/* Memory freed by another thread comes back although its owners sleep: 4 producer threads
   allocate 256 B - 4 KiB messages (64 MiB each in all, at most 32 MiB in flight) and hand
   them to one consumer thread, which frees them; then every thread waits, alive. The last
   messages the consumer freed wait for their owners, which no longer call the allocator: a
   visit takes back the remote frees of the sleeping owners' full slabs, and the purger
   gives the emptied slabs back. Within 3 s the resident set must be back within 24 MiB of
   where it started (3 of them the ring of messages; without those visits it stays at
   45-51), and once settled the purger must not wake for 2 s. */
#include "common.h"
#define PRODUCERS 4
#define PER_PRODUCER (64L << 20)
#define IN_FLIGHT (32L << 20)
#define RING (IN_FLIGHT / 256 + 1)
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t not_full = PTHREAD_COND_INITIALIZER, not_empty = PTHREAD_COND_INITIALIZER;
static pthread_cond_t state = PTHREAD_COND_INITIALIZER;
static struct msg { unsigned char *p; size_t n; unsigned tag; } ring[RING];
static long head, len, bytes, producers_done, consumer_done, release_all;

static void wait_for_release(void) {
    while (!release_all) pthread_cond_wait(&state, &mu);
    pthread_mutex_unlock(&mu);
}

static void *producer(void *arg) {
    uint64_t s = 7 + (long)arg;
    for (long made = 0, tag = 0; made < PER_PRODUCER; tag++) {
        size_t n = 256 + rng(&s) % 3841;
        unsigned char *p = malloc(n);
        if (!p) FAIL("malloc failed");
        fill(p, n, (unsigned)tag);
        made += n;
        pthread_mutex_lock(&mu);
        while (bytes > 0 && bytes + (long)n > IN_FLIGHT) pthread_cond_wait(&not_full, &mu);
        ring[(head + len++) % RING] = (struct msg){p, n, (unsigned)tag};
        bytes += n;
        pthread_cond_signal(&not_empty);
        pthread_mutex_unlock(&mu);
    }
    pthread_mutex_lock(&mu);
    producers_done++;
    pthread_cond_broadcast(&not_empty);
    wait_for_release();
    return NULL;
}

static void *consumer(void *arg) {
    (void)arg;
    pthread_mutex_lock(&mu);
    for (;;) {
        while (len == 0 && producers_done < PRODUCERS) pthread_cond_wait(&not_empty, &mu);
        if (len == 0) break;
        struct msg m = ring[head];
        head = (head + 1) % RING;
        len--;
        bytes -= m.n;
        pthread_cond_broadcast(&not_full);
        pthread_mutex_unlock(&mu);
        if (!check(m.p, m.n, m.tag)) FAIL("message changed");
        free(m.p);
        pthread_mutex_lock(&mu);
    }
    consumer_done = 1;
    pthread_cond_broadcast(&state);
    wait_for_release();
    return NULL;
}

int main(void) {
    long base = rss_raw();
    pthread_t t[PRODUCERS + 1];
    for (long i = 0; i < PRODUCERS; i++) pthread_create(&t[i], NULL, producer, (void *)i);
    pthread_create(&t[PRODUCERS], NULL, consumer, NULL);
    pthread_mutex_lock(&mu);
    while (!consumer_done) pthread_cond_wait(&state, &mu);
    pthread_mutex_unlock(&mu);
    /* Find the purger before the quiet window (opendir allocates). */
    char status_path[128];
    find_purger(status_path, sizeof status_path);
    long settled = settle(base + 24);
    printf("remote_return: base %ld MiB, settled %ld MiB\n", base, settled);
    if (settled > base + 24) FAIL("RSS stayed at %ld MiB (base %ld)", settled, base);
    expect_purger_asleep(status_path);
    pthread_mutex_lock(&mu);
    release_all = 1;
    pthread_cond_broadcast(&state);
    pthread_mutex_unlock(&mu);
    for (int i = 0; i <= PRODUCERS; i++) pthread_join(t[i], NULL);
    return 0;
}
