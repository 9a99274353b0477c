/* Shared helpers of the tests/c programs: a fixed-seed RNG, failure reporting, and a
 * reference pattern: a block tagged `tag` holds the bytes pattern + tag, which can be
 * written with memcpy and checked with memcmp at full speed. */
#define _GNU_SOURCE
#pragma GCC diagnostic ignored "-Wunused-function"
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                     \
            fputc('\n', stderr);                                              \
            if (++failures >= 20) exit(1);                                    \
        }                                                                     \
    } while (0)

/* Exit status: 0 only if no check failed. */
static int finish(const char *name) {
    if (failures) {
        fprintf(stderr, "%s: %d checks failed\n", name, failures);
        return 1;
    }
    printf("%s: all checks passed\n", name);
    return 0;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static inline uint64_t rnd(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1Dull;
}
/* Uniform in [lo, hi]. */
static inline size_t rnd_range(size_t lo, size_t hi) { return lo + rnd() % (hi - lo + 1); }

#define PATTERN_MAX ((size_t)64 << 20)
static unsigned char *pattern; /* pattern[i] = i % 251 (a prime: no power-of-two period) */
static void pattern_init(void) {
    if (pattern) return;
    pattern = malloc(PATTERN_MAX + 256);
    if (!pattern) { fprintf(stderr, "cannot allocate the pattern\n"); exit(1); }
    for (size_t i = 0; i < PATTERN_MAX + 256; i++) pattern[i] = (unsigned char)(i % 251);
}
static inline void fill(void *p, size_t n, unsigned tag) { memcpy(p, pattern + tag % 251, n); }
static inline int intact(const void *p, size_t n, unsigned tag) {
    return memcmp(p, pattern + tag % 251, n) == 0;
}

/* Keeps the compiler from removing allocations it can see through. */
static void *volatile sink;
static inline void *keep(void *p) { sink = p; return sink; }
