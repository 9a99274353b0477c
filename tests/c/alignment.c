/* Alignment of every block: malloc for every size 0..4096 and samples up to 64 MiB, and
 * posix_memalign / aligned_alloc / memalign for every power-of-two alignment 8 B..2 MiB. */
#include "common.h"
#include <malloc.h>

static void check_malloc(size_t n) {
    char *p = keep(malloc(n));
    if (n > 0) CHECK(p != NULL, "malloc(%zu) returned NULL", n);
    if (!p) return;
    size_t want = n >= 16 ? 16 : 8;
    CHECK((uintptr_t)p % want == 0, "malloc(%zu) = %p is not %zu-aligned", n, (void *)p, want);
    memset(p, 0xA5, n);
    if (n) CHECK(p[0] == (char)0xA5 && p[n - 1] == (char)0xA5, "malloc(%zu): block not writable", n);
    free(p);
}

int main(void) {
    for (size_t n = 0; n <= 4096; n++) check_malloc(n);
    /* Keep some blocks live so later requests do not just reuse one slot. */
    void *held[4097];
    for (size_t n = 0; n <= 4096; n++) {
        held[n] = keep(malloc(n));
        size_t want = n >= 16 ? 16 : 8;
        CHECK(n == 0 || held[n], "malloc(%zu) returned NULL", n);
        CHECK((uintptr_t)held[n] % want == 0, "malloc(%zu) = %p misaligned (held)", n, held[n]);
        if (held[n]) memset(held[n], (int)n, n);
    }
    for (size_t n = 4096; n <= ((size_t)64 << 20); n *= 2) {
        size_t sizes[] = {n - 1, n, n + 1, n + n / 2, n + 4095};
        for (int i = 0; i < 5; i++) check_malloc(sizes[i]);
    }
    for (size_t n = 0; n <= 4096; n++) {
        unsigned char *p = held[n];
        for (size_t i = 0; i < n; i++)
            if (p[i] != (unsigned char)n) { CHECK(0, "held block of %zu bytes overwritten at %zu", n, i); break; }
        free(p);
    }

    for (size_t align = 8; align <= ((size_t)2 << 20); align *= 2) {
        size_t sizes[] = {1, 8, 100, align - 1, align, align + 1, 3 * align + 5, 70000};
        for (int i = 0; i < 8; i++) {
            size_t n = sizes[i];
            void *p[3] = {0};
            int rc = posix_memalign(&p[0], align, n);
            CHECK(rc == 0 && p[0], "posix_memalign(%zu, %zu) failed: %d", align, n, rc);
            p[1] = aligned_alloc(align, n);
            CHECK(p[1], "aligned_alloc(%zu, %zu) returned NULL", align, n);
            p[2] = memalign(align, n);
            CHECK(p[2], "memalign(%zu, %zu) returned NULL", align, n);
            const char *fn[3] = {"posix_memalign", "aligned_alloc", "memalign"};
            for (int k = 0; k < 3; k++) {
                if (!p[k]) continue;
                keep(p[k]);
                CHECK((uintptr_t)p[k] % align == 0, "%s(%zu, %zu) = %p is not aligned", fn[k], align, n, p[k]);
                memset(p[k], 0x5A + k, n);
            }
            for (int k = 0; k < 3; k++)
                if (p[k]) {
                    unsigned char *b = p[k];
                    CHECK(b[0] == 0x5A + k && b[n - 1] == 0x5A + k, "%s(%zu, %zu): block overwritten", fn[k], align, n);
                    free(p[k]);
                }
        }
    }
    return finish("alignment");
}
