/* Tells which shared object provides the malloc family in this process, after exercising it
 * once: `cargo xtask bench` runs it under each LD_PRELOAD to check that the allocator really
 * interposes (a library that does not export malloc would silently measure glibc). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    static const char *names[] = { "malloc", "free", "calloc", "realloc" };
    char *p = malloc(100), *q = calloc(10, 10);
    if (!p || !q) return 1;
    memset(p, 1, 100);
    p = realloc(p, 10000);
    if (!p || p[99] != 1 || q[99] != 0) return 1;
    free(p);
    free(q);
    for (int i = 0; i < 4; i++) {
        Dl_info info;
        void *f = dlsym(RTLD_DEFAULT, names[i]);
        printf("%s %s\n", names[i], f && dladdr(f, &info) && info.dli_fname ? info.dli_fname : "?");
    }
    return 0;
}
