/* Built by `cargo xtask test` (step `install`), as C and as C++, against an installed hakmem
 * with `pkg-config --cflags --libs hakmem`, and run with the install's lib directory on
 * LD_LIBRARY_PATH, without LD_PRELOAD: the program's malloc must be hakmem's (linked, not
 * preloaded), `hakmem_stats` (from <hakmem.h>) must count its allocations, and the library
 * mapped must be the installed file named in argv[1]. */
#include <hakmem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
#define CHECK(cond, ...)                                                               \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "uses_hakmem: check failed: %s: ", #cond);                 \
            fprintf(stderr, __VA_ARGS__);                                              \
            fputc('\n', stderr);                                                       \
            failures++;                                                                \
        }                                                                              \
    } while (0)

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: uses_hakmem INSTALLED_LIBRARY\n");
        return 2;
    }
    hakmem_stats_t before, after;
    CHECK(hakmem_stats(&before) == 0, "hakmem_stats did not return 0");
    void *volatile blocks[1000];
    for (int i = 0; i < 1000; i++) {
        blocks[i] = malloc(24 + i % 100);
        CHECK(blocks[i] != NULL, "malloc returned NULL");
    }
    for (int i = 0; i < 1000; i++) free(blocks[i]);
    CHECK(hakmem_stats(&after) == 0, "hakmem_stats did not return 0");
    CHECK(after.allocs - before.allocs >= 1000, "%llu allocations counted for 1000",
          (unsigned long long)(after.allocs - before.allocs));
    CHECK(after.frees - before.frees >= 1000, "%llu frees counted for 1000",
          (unsigned long long)(after.frees - before.frees));
    CHECK(hakmem_stats(NULL) == -1, "hakmem_stats(NULL) did not return -1");

    FILE *maps = fopen("/proc/self/maps", "r");
    CHECK(maps != NULL, "cannot open /proc/self/maps");
    char line[4096];
    int mapped = 0;
    while (maps && fgets(line, sizeof line, maps)) {
        line[strcspn(line, "\n")] = 0;
        const char *path = strchr(line, '/');
        if (path && strcmp(path, argv[1]) == 0) mapped = 1;
    }
    if (maps) fclose(maps);
    CHECK(mapped, "%s is not mapped", argv[1]);
    if (failures) return 1;
    printf("uses_hakmem: all checks passed\n");
    return 0;
}
