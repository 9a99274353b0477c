/* Under an address-space limit (RLIMIT_AS, `ulimit -v`) below the address map's 16 GiB
 * reservation, hakmem keeps working (its map is chunked instead): small, medium and large
 * blocks, realloc, blocks freed by another thread; a request beyond the limit gets NULL
 * with ENOMEM. The program sets the limit and re-executes itself, so that the loader, the
 * preloaded library and its first malloc all start under it. */
#include "common.h"
#include <errno.h>
#include <sys/resource.h>

#define LIMIT ((rlim_t)2 << 30) /* 2 GiB */
#define N 20000

static void *blocks[N];

static void *free_all(void *arg) {
    (void)arg;
    for (int i = 0; i < N; i += 2) {
        if (!check(blocks[i], 24 + i % 2000, i)) FAIL("block %d damaged before its remote free", i);
        free(blocks[i]);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "child") != 0) {
        struct rlimit r = {LIMIT, LIMIT};
        if (setrlimit(RLIMIT_AS, &r) != 0) FAIL("setrlimit: %s", strerror(errno));
        execl("/proc/self/exe", argv[0], "child", (char *)NULL);
        FAIL("exec: %s", strerror(errno));
    }
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            size_t n = 24 + i % 2000;
            if (i % 1000 == 999) n = 64 << 10;  /* medium */
            if (i % 5000 == 4999) n = 3 << 20;  /* large */
            blocks[i] = malloc(n);
            if (!blocks[i]) FAIL("malloc(%zu) failed under the limit: %s", n, strerror(errno));
            fill(blocks[i], 24 + i % 2000, i);
        }
        pthread_t t;
        if (pthread_create(&t, NULL, free_all, NULL) != 0) FAIL("pthread_create");
        pthread_join(t, NULL);
        for (int i = 1; i < N; i += 2) {
            blocks[i] = realloc(blocks[i], 4000);
            if (!blocks[i] || !check(blocks[i], 24 + i % 2000, i)) FAIL("realloc lost block %d", i);
            free(blocks[i]);
        }
    }
    errno = 0;
    void *huge = malloc((size_t)4 << 30);
    if (huge || errno != ENOMEM) FAIL("malloc(4 GiB) under a 2 GiB limit: %p, errno %d", huge, errno);
    printf("address limit: 3 rounds of %d blocks under a 2 GiB RLIMIT_AS\n", N);
    return 0;
}
