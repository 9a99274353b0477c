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

/* For quiet windows, where malloc must not be called: */
#include <dirent.h>
#include <fcntl.h>
/* RSS in MiB with open/read only (fopen would allocate). */
static inline long rss_raw(void) {
    char buf[128];
    int fd = open("/proc/self/statm", O_RDONLY);
    if (fd < 0) FAIL("cannot open statm");
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) FAIL("cannot read statm");
    buf[n] = 0;
    char *sp = strchr(buf, ' ');
    return sp ? atol(sp + 1) * sysconf(_SC_PAGESIZE) / (1 << 20) : 0;
}

/* The purger thread's voluntary context switches (-1: no such thread). */
static inline long purger_switches(const char *status_path) {
    char buf[4096];
    int fd = open(status_path, O_RDONLY);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *v = strstr(buf, "\nvoluntary_ctxt_switches:");
    return v ? atol(v + 25) : -1;
}

/* The purger thread's status file, into `path` (allocates: call it before a quiet window). */
static inline void find_purger(char *path, size_t len) {
    path[0] = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d) FAIL("cannot list threads");
    for (struct dirent *e; (e = readdir(d));) {
        char p[128], comm[32] = "";
        snprintf(p, sizeof p, "/proc/self/task/%s/comm", e->d_name);
        int fd = open(p, O_RDONLY);
        if (fd < 0) continue;
        ssize_t n = read(fd, comm, sizeof comm - 1);
        close(fd);
        if (n > 0 && strncmp(comm, "hakmem-purge", 12) == 0)
            snprintf(path, len, "/proc/self/task/%s/status", e->d_name);
    }
    closedir(d);
    if (!path[0]) FAIL("no hakmem-purge thread");
}
/* The resident set once at most `target` MiB, or after 3 s (no malloc). */
static inline long settle(long target) {
    long rss = rss_raw();
    for (int i = 0; i < 30 && rss > target; i++) {
        usleep(100000);
        rss = rss_raw();
    }
    return rss;
}
/* Fails unless the purger sleeps through 2 s in which nothing is allocated (no malloc). */
static inline void expect_purger_asleep(const char *status_path) {
    usleep(300000); /* let the purger finish its last look */
    long before = purger_switches(status_path);
    sleep(2);
    long after = purger_switches(status_path);
    printf("purger wake-ups in 2 s of quiet: %ld\n", after - before);
    if (before < 0 || after != before) FAIL("the purger woke %ld times while nothing was allocated", after - before);
}
