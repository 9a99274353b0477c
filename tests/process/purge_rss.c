/* Memory goes back to the OS: 1 GiB in 64 KiB..1 MiB blocks, freed, RSS falls below
   +200 MiB within seconds; 256 MiB allocated and freed 100 times stays bounded. */
#include "common.h"
#include "../../include/hakmem.h"
#include <dlfcn.h>
#include <malloc.h>
#define MAXB 4096
static void *blk[MAXB];
int main(void) {
    long base = rss_mib();
    uint64_t s = 7;
    size_t total = 0;
    int n = 0;
    while (total < (1UL << 30) && n < MAXB) {
        size_t sz = 65536 + rng(&s) % (1 << 20);
        blk[n] = malloc(sz);
        if (!blk[n]) FAIL("malloc failed");
        memset(blk[n], 1, sz);
        total += sz;
        n++;
    }
    long peak = rss_mib();
    for (int i = 0; i < n; i++) free(blk[i]);
    long after = rss_mib();
    for (int tries = 0; tries < 30 && after > base + 200; tries++) {
        usleep(100000);
        free(malloc(64 * 1024)); /* a slow-path call lets delayed purging run */
        after = rss_mib();
    }
    printf("purge_rss: base %ld MiB, peak %ld MiB, after free %ld MiB\n", base, peak, after);
    if (after > base + 200) FAIL("RSS stayed at %ld MiB", after);
    long worst = 0;
    for (int round = 0; round < 100; round++) {
        int m = 0;
        for (size_t t = 0; t < (256UL << 20); m++) {
            size_t sz = 65536 + rng(&s) % (1 << 20);
            blk[m] = malloc(sz);
            memset(blk[m], 2, sz);
            t += sz;
        }
        for (int i = 0; i < m; i++) free(blk[i]);
        long r = rss_mib();
        if (r > worst) worst = r;
    }
    printf("purge_rss: 100 rounds of 256 MiB, worst RSS after a round %ld MiB\n", worst);
    if (worst > base + 400) FAIL("RSS not bounded: %ld MiB", worst);
    /* hakmem's statistics count what malloc_trim gave back (the preload exports them). */
    int (*stats)(hakmem_stats_t *) = (int (*)(hakmem_stats_t *))dlsym(RTLD_DEFAULT, "hakmem_stats");
    hakmem_stats_t s0 = { 0 }, s1 = { 0 };
    if (stats && stats(&s0) != 0) FAIL("hakmem_stats");
    for (int i = 0; i < 64; i++) blk[i] = malloc(1 << 20); /* leave something to trim */
    for (int i = 0; i < 64; i++) free(blk[i]);
    int trimmed = malloc_trim(0);
    if (stats) {
        if (stats(&s1) != 0) FAIL("hakmem_stats");
        printf("purge_rss: malloc_trim gave back %llu MiB\n",
               (unsigned long long)((s1.bytes_trimmed - s0.bytes_trimmed) >> 20));
        if (!trimmed || s1.bytes_trimmed <= s0.bytes_trimmed) FAIL("malloc_trim not counted");
    }
    return 0;
}
