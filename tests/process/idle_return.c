/* Memory comes back while the program is quiet, and a quiet program stays quiet:
   8 threads take turns building and dropping a 32 MiB working set of 16..1040 B objects,
   then all of them wait (alive) while nobody allocates. Within 3 s the resident set must be
   back within 24 MiB of where it started (the purger gives back what the idle threads left),
   the peak must stay below two working sets over the start (the next thread reuses what the
   last one dropped), and once settled the purger thread must not wake up for 2 s. The
   checks in the quiet window use only system calls (no malloc). */
#include "common.h"
#include <dirent.h>
#include <fcntl.h>
#define THREADS 8
#define WORKING_SET (32L << 20)
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int turn, release_all;
static long peak_mib;
static void *objs[WORKING_SET / 16];

/* RSS in MiB with open/read only (fopen would allocate). */
static long rss_raw(void) {
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

/* The purger thread's voluntary context switches (-1: no such thread). */
static long purger_switches(const char *status_path) {
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

int main(void) {
    long base = rss_raw();
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    pthread_mutex_lock(&mu);
    while (turn < THREADS) pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
    /* Find the purger before the quiet window (opendir allocates). */
    char status_path[128] = "";
    DIR *d = opendir("/proc/self/task");
    if (!d) FAIL("cannot list threads");
    for (struct dirent *e; (e = readdir(d));) {
        char path[128], comm[32] = "";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        int fd = open(path, O_RDONLY);
        if (fd < 0) continue;
        ssize_t n = read(fd, comm, sizeof comm - 1);
        close(fd);
        if (n > 0 && strncmp(comm, "hakmem-purge", 12) == 0)
            snprintf(status_path, sizeof status_path, "/proc/self/task/%s/status", e->d_name);
    }
    closedir(d);
    if (!status_path[0]) FAIL("no hakmem-purge thread");
    long settled = rss_raw();
    for (int i = 0; i < 30 && settled > base + 24; i++) {
        usleep(100000);
        settled = rss_raw();
    }
    printf("idle_return: base %ld MiB, peak %ld MiB, settled %ld MiB\n", base, peak_mib, settled);
    if (settled > base + 24) FAIL("RSS stayed at %ld MiB (base %ld)", settled, base);
    if (peak_mib > base + 2 * (WORKING_SET >> 20) + 16) FAIL("peak %ld MiB (base %ld)", peak_mib, base);
    usleep(300000); /* let the purger finish its last look */
    long before = purger_switches(status_path);
    sleep(2);
    long after = purger_switches(status_path);
    printf("idle_return: purger wake-ups in 2 s of quiet: %ld\n", after - before);
    if (before < 0 || after != before) FAIL("the purger woke %ld times while nothing was allocated", after - before);
    pthread_mutex_lock(&mu);
    release_all = 1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
    return 0;
}
