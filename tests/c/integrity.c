/* Data integrity under a fixed-seed random mix of malloc/calloc/realloc/free over 10k live
 * slots: each block carries a pattern derived from (slot, size), verified before every
 * realloc (the prefix must survive) and free; calloc blocks are all zero; every byte of
 * malloc_usable_size(p) >= request is writable. */
#include "common.h"
#include <malloc.h>

#define SLOTS 10000
#define OPS 2000000
static struct { unsigned char *p; size_t n; unsigned tag; } slot[SLOTS];
static unsigned char zero[(size_t)4 << 20];

static size_t pick_size(void) {
    uint64_t r = rnd() % 10000;
    if (r < 7000) return rnd_range(1, 256);
    if (r < 9300) return rnd_range(1, 4096);
    if (r < 9996) return rnd_range(1, 70000);
    return rnd_range(70001, (size_t)4 << 20);
}

/* Writes past the request up to the usable size, then the slot's pattern. */
static void settle(int s, unsigned char *p, size_t n, int zeroed) {
    size_t usable = malloc_usable_size(p);
    CHECK(usable >= n, "malloc_usable_size(%p) = %zu < request %zu", (void *)p, usable, n);
    if (zeroed) CHECK(memcmp(p, zero, n) == 0, "calloc block of %zu bytes is not zeroed", n);
    if (usable > n) memset(p + n, 0xEE, usable - n);
    slot[s].p = p;
    slot[s].n = n;
    slot[s].tag = (unsigned)(s * 7 + n);
    fill(p, n, slot[s].tag);
}

static void verify(int s, const char *when) {
    CHECK(intact(slot[s].p, slot[s].n, slot[s].tag), "slot %d (%zu bytes at %p) corrupted before %s",
          s, slot[s].n, (void *)slot[s].p, when);
}

int main(void) {
    pattern_init();
    for (long op = 0; op < OPS; op++) {
        int s = (int)(rnd() % SLOTS);
        uint64_t what = rnd() % 10;
        if (slot[s].p && what < 4) {
            verify(s, "free");
            free(slot[s].p);
            slot[s].p = NULL;
        } else if (slot[s].p && what < 7) {
            verify(s, "realloc");
            size_t n = pick_size(), old = slot[s].n;
            unsigned tag = slot[s].tag;
            unsigned char *q = realloc(slot[s].p, n);
            CHECK(q != NULL, "realloc(%zu -> %zu) returned NULL", old, n);
            if (!q) { slot[s].p = NULL; continue; }
            CHECK(intact(q, old < n ? old : n, tag), "realloc %zu -> %zu lost the prefix", old, n);
            settle(s, q, n, 0);
        } else if (!slot[s].p) {
            size_t n = pick_size();
            int use_calloc = what >= 7;
            unsigned char *p = use_calloc ? calloc(1, n) : malloc(n);
            CHECK(p != NULL, "%s(%zu) returned NULL", use_calloc ? "calloc" : "malloc", n);
            if (p) settle(s, p, n, use_calloc);
        }
    }
    for (int s = 0; s < SLOTS; s++)
        if (slot[s].p) { verify(s, "final free"); free(slot[s].p); }
    return finish("integrity");
}
