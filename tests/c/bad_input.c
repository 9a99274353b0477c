/* Impossible sizes, invalid alignments, NULL and zero-size edge cases, errno. */
#include "common.h"
#include <malloc.h>

static volatile size_t v_size_max = SIZE_MAX, v_ptrdiff_over = (size_t)PTRDIFF_MAX + 1;
static volatile size_t v_half = SIZE_MAX / 2, v_three = 3;

static void expect_enomem(void *p, const char *what) {
    int e = errno;
    CHECK(p == NULL, "%s returned %p, not NULL", what, p);
    CHECK(e == ENOMEM, "%s: errno %d, not ENOMEM", what, e);
    if (p) free(p);
}

int main(void) {
    errno = 0; expect_enomem(malloc(v_size_max), "malloc(SIZE_MAX)");
    errno = 0; expect_enomem(malloc(v_ptrdiff_over), "malloc(PTRDIFF_MAX + 1)");
    errno = 0; expect_enomem(calloc(v_half, v_three), "calloc(SIZE_MAX / 2, 3)");
    errno = 0; expect_enomem(realloc(NULL, v_size_max), "realloc(NULL, SIZE_MAX)");
    void *q = malloc(10);
    errno = 0; void *r = realloc(q, v_size_max);
    CHECK(r == NULL && errno == ENOMEM, "realloc(p, SIZE_MAX) = %p, errno %d", r, errno);
    free(r ? r : q); /* on failure the old block is still ours */

    size_t bad_aligns[] = {0, 3, 24, 4, 12, 1};
    for (int i = 0; i < 6; i++) {
        void *p = (void *)0x1;
        int rc = posix_memalign(&p, bad_aligns[i], 64);
        CHECK(rc == EINVAL, "posix_memalign(alignment %zu) returned %d, not EINVAL", bad_aligns[i], rc);
        if (rc == 0) free(p);
    }
    void *p = NULL;
    int rc = posix_memalign(&p, 64, v_size_max);
    CHECK(rc == ENOMEM, "posix_memalign(64, SIZE_MAX) returned %d, not ENOMEM", rc);
    size_t bad_aligned_alloc[] = {3, 24, 100};
    for (int i = 0; i < 3; i++) {
        void *a = aligned_alloc(bad_aligned_alloc[i], 64);
        CHECK(a == NULL, "aligned_alloc(%zu, 64) = %p, not NULL", bad_aligned_alloc[i], a);
        free(a);
    }

    errno = 4321;
    free(NULL);
    CHECK(errno == 4321, "free(NULL) changed errno to %d", errno);
    size_t sizes[] = {1, 100, 5000, 100000, (size_t)8 << 20};
    for (int i = 0; i < 5; i++) {
        void *b = keep(malloc(sizes[i]));
        CHECK(b != NULL, "malloc(%zu) failed", sizes[i]);
        memset(b, 1, sizes[i]);
        errno = 1234;
        free(b);
        CHECK(errno == 1234, "free of a %zu-byte block changed errno to %d", sizes[i], errno);
    }

    char *m = realloc(NULL, 100);
    CHECK(m != NULL, "realloc(NULL, 100) returned NULL");
    memset(m, 7, 100);
    /* realloc(p, 0): glibc frees and returns NULL; a unique pointer is allowed too. */
    void *z = realloc(m, 0);
    if (z) { void *z2 = malloc(1); CHECK(z2 != z, "realloc(p, 0) returned a pointer still in use"); free(z2); free(z); }
    void *m0 = malloc(0), *m1 = malloc(0);
    if (m0 && m1) CHECK(m0 != m1, "two malloc(0) returned the same pointer %p", m0);
    free(m0); free(m1);
    return finish("bad_input");
}
