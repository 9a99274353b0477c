/* Memory comes back while the program is quiet, and a quiet program stays quiet:
   8 threads take turns building and dropping a 32 MiB working set of 16..1040 B objects,
   then all of them wait (alive) while nobody allocates. Within 3 s the resident set must be
   back within 24 MiB of where it started (the purger gives back what the idle threads left),
   the peak must stay below two working sets over the start (the next thread reuses what the
   last one dropped), and once settled the purger thread must not wake up for 2 s. The
   checks in the quiet window use only system calls (no malloc). */
#include "common.h"
#define THREADS 8
#define WORKING_SET (32L << 20)
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int turn, release_all;
static long peak_mib;
static void *objs[WORKING_SET / 16];

static void *worker(void *arg) {
    long id = (long)arg;
    pthread_mutex_lock(&mu);
    while (turn != id) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    uint64_t s = 11 + id;
    long bytes = 0, n = 0;
    while (bytes < WORKING_SET) {
        size_t sz = 16 + rng(&s) % 1025;
        unsigned char *p = malloc(sz);
        if (!p) FAIL("malloc failed");
        fill(p, sz, (unsigned)n);
        objs[n++] = p;
        bytes += sz;
    }
    long r = rss_raw();
    for (long i = 0; i < n; i++) free(objs[i]);
    pthread_mutex_lock(&mu);
    if (r > peak_mib) peak_mib = r;
    turn++;
    pthread_cond_broadcast(&cv);
    while (!release_all) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    return NULL;
}

int main(void) {
    long base = rss_raw();
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    pthread_mutex_lock(&mu);
    while (turn < THREADS) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    /* Find the purger before the quiet window (opendir allocates). */
    char status_path[128];
    find_purger(status_path, sizeof status_path);
    long settled = settle(base + 24);
    printf("idle_return: base %ld MiB, peak %ld MiB, settled %ld MiB\n", base, peak_mib, settled);
    if (settled > base + 24) FAIL("RSS stayed at %ld MiB (base %ld)", settled, base);
    if (peak_mib > base + 2 * (WORKING_SET >> 20) + 16) FAIL("peak %ld MiB (base %ld)", peak_mib, base);
    expect_purger_asleep(status_path);
    pthread_mutex_lock(&mu);
    release_all = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    return 0;
}
