/* libhakmem.so dlopen'ed after start-up (not preloaded): it must either work through its
   own symbols or fail with a clear message; never crash. argv[1] is the library. */
#include "common.h"
#include <dlfcn.h>
int main(int argc, char **argv) {
    if (argc < 2) FAIL("usage: dlopen_late LIB");
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) { printf("dlopen_late: refused cleanly: %s\n", dlerror()); return 0; }
    void *(*hm)(size_t) = (void *(*)(size_t))dlsym(h, "malloc");
    void (*hf)(void *) = (void (*)(void *))dlsym(h, "free");
    if (!hm || !hf) FAIL("symbols missing");
    for (int i = 0; i < 100000; i++) { char *p = hm(i % 3000 + 1); p[0] = 1; hf(p); }
    printf("dlopen_late: loaded and used through its own symbols\n");
    return 0;
}
