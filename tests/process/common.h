/* Shared helpers for the process tests: each program checks itself and exits 0. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#define FAIL(...) do { fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); exit(1); } while (0)
static inline uint64_t rng(uint64_t *s) { *s ^= *s << 13; *s ^= *s >> 7; *s ^= *s << 17; return *s; }
/* Resident set size of this process, in MiB. */
static inline long rss_mib(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, res = 0;
    if (!f || fscanf(f, "%ld %ld", &size, &res) != 2) FAIL("cannot read statm");
    fclose(f);
    return res * sysconf(_SC_PAGESIZE) / (1 << 20);
}
static inline void fill(unsigned char *p, size_t n, unsigned tag) { for (size_t i = 0; i < n; i += 61) p[i] = (unsigned char)(tag + i); if (n) p[n - 1] = (unsigned char)tag; }
static inline int check(const unsigned char *p, size_t n, unsigned tag) { for (size_t i = 0; i + 1 < n; i += 61) if (p[i] != (unsigned char)(tag + i)) return 0; return n == 0 || p[n - 1] == (unsigned char)tag; }
