/* Shared helpers for the memory scenarios of `cargo xtask bench --memory` (our own code).
 *
 * A scenario takes no arguments. It tells the runner where it is with lines on stdout:
 *   phase: NAME    a phase begins (kept with the RSS curve, for the log)
 *   idle: LABEL    the program now allocates and frees nothing for IDLE_SECONDS; the runner
 *                  reports, under LABEL, the RSS it samples 1.5 s after this line
 *   ok CHECKSUM    the last line: the run checked its data, CHECKSUM is the same under any
 *                  correct allocator
 * Objects are checked before they are freed (exit 3 on corruption, 4 on an allocation
 * failure), with the fill patterns of ../workloads/common.h. The programs' own index arrays
 * are malloc'd, as a real program's tables and vectors are: a store's destroy frees its table
 * too, and allocators answer to that (glibc consolidates its free chunks and trims its heap
 * when a large block is freed).
 *
 * MEMORY_SCALE_DOWN=N in the environment (the smoke test of `cargo xtask test`) divides the
 * scenario's sizes and counts marked with `scaled` and its idle pauses by N. */
#pragma GCC diagnostic ignored "-Wunused-function" /* common.h's suite-only helpers */
#include "../workloads/common.h"
#include <unistd.h>

/* How long an `idle:` pause lasts: past the runner's 1.5 s sample, with room for its delays. */
#define IDLE_SECONDS 2.0
#define MiB ((size_t)1 << 20)

/* n divided by MEMORY_SCALE_DOWN (1 when unset), at least 1. */
static size_t scaled(size_t n) {
    static size_t down;
    if (down == 0) {
        const char *s = getenv("MEMORY_SCALE_DOWN");
        long d = s ? atol(s) : 1;
        down = d > 0 ? (size_t)d : 1;
    }
    return n / down > 0 ? n / down : 1;
}

static void phase(const char *name) {
    printf("phase: %s\n", name);
    fflush(stdout);
}

/* Says LABEL to the runner and idles: nothing is allocated or freed meanwhile (other threads
 * of the program wait on locks or condition variables). */
static void idle(const char *label) {
    printf("idle: %s\n", label);
    fflush(stdout);
    double seconds = IDLE_SECONDS * (double)scaled(1000) / 1000.0;
    struct timespec ts = { (time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9) };
    while (nanosleep(&ts, &ts) != 0) {}
}

/* A vector of objects: doubled with realloc when full, as a program's vectors grow. */
typedef struct {
    obj_t *at;
    size_t len, cap;
} objs_t;
static obj_t *objs_add(objs_t *v) {
    if (v->len == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 1024;
        v->at = check_alloc(realloc(v->at, v->cap * sizeof *v->at), v->cap * sizeof *v->at);
    }
    return &v->at[v->len++];
}
static void objs_free(objs_t *v) {
    free(v->at);
    *v = (objs_t){ 0 };
}

/* A checksum of the sizes and tags of the objects a run checked: a sum, so that it does not
 * depend on the order in which threads add to it. */
static uint64_t g_sum;
static inline void sum_add(uint64_t x) {
    x = (x + 1) * 0x9E3779B97F4A7C15ull;
    __atomic_fetch_add(&g_sum, x ^ (x >> 29), __ATOMIC_RELAXED);
}
/* obj_free, counted in the checksum; nothing for an object already freed (NULL). */
static inline void obj_check_free(obj_t *o) {
    if (o->p) {
        sum_add(o->size * 256 + o->tag);
        obj_free(o);
    }
}
static void finish(void) {
    printf("ok %016llx\n", (unsigned long long)g_sum);
    fflush(stdout);
}

/* Fisher-Yates: a random order of n indexes (malloc'd). */
static size_t *shuffled(size_t n, rng_t *r) {
    size_t *order = check_alloc(malloc(n * sizeof *order), n * sizeof *order);
    for (size_t i = 0; i < n; i++) order[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(rnd(r) % i), t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
    return order;
}
