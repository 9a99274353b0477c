/* Fails unless every malloc-family function resolves into the library whose basename is
 * argv[1], i.e. unless LD_PRELOAD really interposed that library. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: preload_check LIBRARY-BASENAME\n"); return 2; }
    struct { const char *name; void *addr; } fns[] = {
        {"malloc", (void *)malloc}, {"free", (void *)free}, {"calloc", (void *)calloc},
        {"realloc", (void *)realloc}, {"posix_memalign", (void *)posix_memalign},
        {"aligned_alloc", (void *)aligned_alloc}, {"memalign", (void *)memalign},
        {"malloc_usable_size", (void *)malloc_usable_size},
    };
    int bad = 0;
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        Dl_info info;
        const char *file = dladdr(fns[i].addr, &info) && info.dli_fname ? info.dli_fname : "?";
        const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
        if (strcmp(base, argv[1]) != 0) {
            fprintf(stderr, "%s resolves to %s, not %s\n", fns[i].name, file, argv[1]);
            bad = 1;
        }
    }
    if (!bad) printf("the malloc family resolves to %s\n", argv[1]);
    return bad;
}
