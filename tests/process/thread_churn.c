/* 10,000 short-lived threads, each allocating and leaving half its blocks for the main
   thread to free: RSS must not grow with the number of threads. */
#include "common.h"
#define PER 64
static void *work(void *arg) {
    void **out = arg;
    uint64_t s = (uintptr_t)arg | 1;
    void *mine[PER];
    for (int i = 0; i < PER; i++) { size_t n = rng(&s) % 1500 + 16; mine[i] = malloc(n); fill(mine[i], 16, i); }
    for (int i = 0; i < PER; i++) { if (i % 2) free(mine[i]); else out[i / 2] = mine[i]; }
    return 0;
}
static void batch(int threads) {
    void *left[PER / 2];
    for (int k = 0; k < threads; k++) {
        pthread_t t;
        if (pthread_create(&t, 0, work, left)) FAIL("pthread_create");
        pthread_join(t, 0);
        for (int i = 0; i < PER / 2; i++) { if (!check(left[i], 16, i * 2)) FAIL("corrupted block"); free(left[i]); }
    }
}
int main(void) {
    batch(1000);
    long base = rss_mib();
    batch(9000);
    long grown = rss_mib() - base;
    printf("thread_churn: RSS %ld MiB after 1000 threads, +%ld MiB after 9000 more\n", base, grown);
    if (grown > 16) FAIL("RSS grew by %ld MiB", grown);
    return 0;
}
