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
    /* Every other entry point of the family, looked up by name: one we do not export would
     * resolve into glibc (or nowhere) and fail here, like a missing line in `nm -D`. */
    static const char *const by_name[] = {
        "reallocarray", "valloc", "pvalloc", "free_sized", "free_aligned_sized", "cfree",
        "malloc_trim", "malloc_stats", "mallinfo2", "__libc_malloc", "__libc_free",
        "__libc_calloc", "__libc_realloc", "__libc_memalign", "__libc_valloc",
        "__libc_pvalloc", "__posix_memalign",
    };
    for (size_t i = 0; i < sizeof by_name / sizeof by_name[0]; i++) {
        Dl_info info;
        void *addr = dlsym(RTLD_DEFAULT, by_name[i]);
        const char *file = addr && dladdr(addr, &info) && info.dli_fname ? info.dli_fname : "nowhere";
        const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
        if (strcmp(base, argv[1]) != 0) {
            fprintf(stderr, "%s resolves to %s, not %s\n", by_name[i], file, argv[1]);
            bad = 1;
        }
    }
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
