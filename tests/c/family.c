/* The whole malloc family with glibc semantics: calloc after dirty reuse, reallocarray,
 * valloc/pvalloc, malloc_usable_size, realloc ladders, free_sized/free_aligned_sized/cfree. */
#include "common.h"
#include <dlfcn.h>
#include <malloc.h>
#include <unistd.h>

extern void free_sized(void *, size_t) __attribute__((weak));
extern void free_aligned_sized(void *, size_t, size_t) __attribute__((weak));

static unsigned char zero[(size_t)2 << 20];

/* pvalloc(0), as in glibc, is a minimal block: only sizes > 0 are rounded to a page. */
/* The file a function comes from, to tell ours from glibc's. */
static const char *origin(void *f) {
    Dl_info i;
    return f && dladdr(f, &i) && i.dli_fname ? i.dli_fname : "?";
}

static void calloc_after_dirty(void) {
    size_t sizes[] = {1, 8, 16, 24, 100, 256, 1000, 4096, 5000, 16384, 70000, 300000, (size_t)1 << 20};
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < 13; i++) {
            void *dirty[64];
            for (int k = 0; k < 64; k++) { dirty[k] = keep(malloc(sizes[i])); memset(dirty[k], 0xAB, sizes[i]); }
            for (int k = 0; k < 64; k++) free(dirty[k]);
            for (int j = 0; j < 13; j++) { /* the same and other sizes */
                size_t n = sizes[(i + j) % 13];
                unsigned char *c[8];
                for (int k = 0; k < 8; k++) {
                    c[k] = calloc(n, 1);
                    CHECK(c[k] && memcmp(c[k], zero, n) == 0, "calloc(%zu, 1) after dirty frees of %zu is not zero", n, sizes[i]);
                    if (c[k]) memset(c[k], 0xAB, n);
                }
                for (int k = 0; k < 8; k++) free(c[k]);
            }
            unsigned char *c = calloc(sizes[i] / 8 + 1, 8);
            CHECK(c && memcmp(c, zero, sizes[i] / 8 * 8 + 8) == 0, "calloc(%zu, 8) not zero", sizes[i] / 8 + 1);
            free(c);
        }
}

static void usable_sizes(void) {
    for (size_t n = 0; n <= 65536; n++) {
        unsigned char *p = keep(malloc(n));
        if (!p) { CHECK(n == 0, "malloc(%zu) returned NULL", n); continue; }
        size_t u = malloc_usable_size(p);
        CHECK(u >= n, "malloc_usable_size(malloc(%zu)) = %zu", n, u);
        memset(p, 0x11, u);
        free(p);
    }
    for (size_t n = 65536; n <= ((size_t)64 << 20); n = n * 3 / 2 + 7) {
        unsigned char *p = keep(malloc(n));
        CHECK(p != NULL, "malloc(%zu) returned NULL", n);
        if (!p) continue;
        size_t u = malloc_usable_size(p);
        CHECK(u >= n, "malloc_usable_size(malloc(%zu)) = %zu", n, u);
        memset(p, 0x22, u);
        free(p);
    }
    CHECK(malloc_usable_size(NULL) == 0, "malloc_usable_size(NULL) = %zu", malloc_usable_size(NULL));
}

static void realloc_ladder(void) {
    size_t max = (size_t)64 << 20, n = 1;
    unsigned char *p = malloc(1);
    fill(p, 1, 5);
    for (size_t next = 2; next <= max; next = next * 5 / 4 + 1) {
        p = realloc(p, next);
        CHECK(p && intact(p, n, 5), "realloc up %zu -> %zu lost data", n, next);
        if (!p) return;
        fill(p, next, 5);
        n = next;
    }
    while (n > 1) {
        size_t next = n * 3 / 4;
        p = realloc(p, next);
        CHECK(p && intact(p, next, 5), "realloc down %zu -> %zu lost data", n, next);
        if (!p) return;
        n = next;
    }
    free(p);
}

int main(void) {
    pattern_init();
    long page = sysconf(_SC_PAGESIZE);
    calloc_after_dirty();

    volatile size_t huge = SIZE_MAX / 4;
    errno = 0;
    void *ra = reallocarray(NULL, huge, 8);
    CHECK(ra == NULL && errno == ENOMEM, "reallocarray overflow: %p, errno %d", ra, errno);
    int *arr = reallocarray(NULL, 1000, sizeof(int));
    CHECK(arr != NULL, "reallocarray(NULL, 1000, 4) failed");
    for (int i = 0; i < 1000; i++) arr[i] = i;
    arr = reallocarray(arr, 100000, sizeof(int));
    CHECK(arr != NULL, "reallocarray grow failed");
    for (int i = 0; arr && i < 1000; i++) if (arr[i] != i) { CHECK(0, "reallocarray lost element %d", i); break; }
    free(arr);

    const char *lib = origin((void *)malloc);
    size_t vsizes[] = {0, 1, 100, 4095, 4096, 4097, 100000, (size_t)3 << 20};
    for (int i = 0; i < 8; i++) {
        unsigned char *v = valloc(vsizes[i]);
        CHECK(v && (uintptr_t)v % page == 0, "valloc(%zu) = %p not page aligned", vsizes[i], (void *)v);
        if (v) memset(v, 3, vsizes[i]);
        free(v);
    }
    if (strcmp(origin((void *)pvalloc), lib) != 0) {
        printf("note: pvalloc comes from %s, not %s: skipped\n", origin((void *)pvalloc), lib);
    } else {
        for (int i = 0; i < 8; i++) {
            size_t rounded = (vsizes[i] + page - 1) / page * page;
            unsigned char *v = pvalloc(vsizes[i]);
            CHECK(v && (uintptr_t)v % page == 0, "pvalloc(%zu) = %p not page aligned", vsizes[i], (void *)v);
            if (!v) continue;
            CHECK(malloc_usable_size(v) >= rounded, "pvalloc(%zu): usable %zu < %zu", vsizes[i], malloc_usable_size(v), rounded);
            memset(v, 4, rounded);
            free(v);
        }
    }

    usable_sizes();
    realloc_ladder();

    void (*fs)(void *, size_t) = (void (*)(void *, size_t))dlsym(RTLD_DEFAULT, "free_sized");
    void (*fas)(void *, size_t, size_t) = (void (*)(void *, size_t, size_t))dlsym(RTLD_DEFAULT, "free_aligned_sized");
    void (*cf)(void *) = (void (*)(void *))dlsym(RTLD_DEFAULT, "cfree");
    if (fs && strcmp(origin((void *)fs), lib) == 0) {
        for (size_t n = 1; n < ((size_t)4 << 20); n = n * 2 + 1) { void *p = keep(malloc(n)); memset(p, 1, n); fs(p, n); }
        fs(NULL, 0);
        errno = 99; fs(malloc(10), 10);
        CHECK(errno == 99, "free_sized changed errno");
    } else printf("note: free_sized not provided by %s: skipped\n", lib);
    if (fas && strcmp(origin((void *)fas), lib) == 0) {
        for (size_t a = 8; a <= 65536; a *= 4)
            for (size_t n = a; n < ((size_t)1 << 20); n = n * 3) { void *p = aligned_alloc(a, n); memset(p, 1, n); fas(p, a, n); }
    } else printf("note: free_aligned_sized not provided by %s: skipped\n", lib);
    if (cf && strcmp(origin((void *)cf), lib) == 0) {
        for (size_t n = 1; n < 100000; n = n * 4 + 1) { void *p = keep(malloc(n)); memset(p, 1, n); cf(p); }
    } else printf("note: cfree not provided by %s: skipped\n", lib);
    (void)free_sized; (void)free_aligned_sized;
    return finish("family");
}
