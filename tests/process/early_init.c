/* Allocation before main (.preinit_array, constructors), from dlsym, from atexit handlers
   and from pthread key destructors during thread exit. */
#include "common.h"
#include <dlfcn.h>
static void *early[3];
static void preinit(int argc, char **argv, char **envp) { (void)argc; (void)argv; (void)envp; early[0] = malloc(24); strcpy(early[0], "preinit"); }
__attribute__((section(".preinit_array"), used)) static void (*preinit_p)(int, char **, char **) = preinit;
__attribute__((constructor)) static void ctor(void) { early[1] = calloc(10, 10); early[2] = realloc(malloc(8), 4000); }
static void at_exit(void) { void *p = malloc(1000); memset(p, 1, 1000); free(p); free(early[2]); }
static pthread_key_t key;
static void destructor(void *v) { free(v); void *p = malloc(77); free(p); }
static void *thread(void *a) { pthread_setspecific(key, malloc(50)); return a; }
int main(void) {
    if (!early[0] || strcmp(early[0], "preinit") || !early[1] || !early[2]) FAIL("allocation before main failed");
    free(early[0]);
    free(early[1]);
    atexit(at_exit);
    void *sym = dlsym(RTLD_NEXT, "malloc");
    (void)sym;
    void *h = dlopen("libm.so.6", RTLD_NOW);
    if (h) dlclose(h);
    pthread_key_create(&key, destructor);
    for (int i = 0; i < 100; i++) { pthread_t t; pthread_create(&t, 0, thread, 0); pthread_join(t, 0); }
    puts("early_init ok");
    return 0;
}
