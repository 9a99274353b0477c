/* The fill-and-free cycle of sh6bench and sh8bench (our own code, after the published
 * description of the SmartHeap benchmarks).
 *
 * A thread owns an array of n block pointers and allocates into it in order, skipping the kept
 * window. When the array is full, the fifth of the array after the current window (the first
 * fifth after the last) becomes the new window, and everything else is freed: the part below
 * the window in allocation order, the part above it in reverse order. So most blocks live for
 * about one fill of the array, and the blocks of the window (allocated in the fill just ended)
 * for one more, interleaved in the heap with the next fill's blocks.
 *
 * Each block gets its first and last byte set to a tag of its slot, checked before the free. */

typedef struct {
    unsigned char **p;      /* the blocks; NULL once freed */
    uint32_t *size;
    long n, next, keep_start, keep_end;
    uint64_t ops;
} fill_free_t;

static inline void fill_free_init(fill_free_t *f, long n) {
    if (n < 5) n = 5;
    f->p = check_alloc(calloc((size_t)n, sizeof *f->p), (size_t)n * sizeof *f->p);
    f->size = check_alloc(calloc((size_t)n, sizeof *f->size), (size_t)n * sizeof *f->size);
    f->n = n;
    f->next = 0;
    f->keep_start = f->keep_end = n;    /* no window: the first fill takes the whole array */
    f->ops = 0;
}

static inline void fill_free_drop(fill_free_t *f, long i) {
    unsigned char *p = f->p[i];
    uint8_t tag = tag_of((uint64_t)i);
    if (p[0] != tag || p[f->size[i] - 1] != tag) die("first or last byte changed", p, f->size[i]);
    free(p);
    f->p[i] = NULL;
    f->ops++;
}

/* The array is full: the next fifth becomes the window, the rest is freed. */
static void fill_free_recycle(fill_free_t *f) {
    long start = f->keep_end < f->n ? f->keep_end : 0;
    long end = start + f->n / 5 < f->n ? start + f->n / 5 : f->n;
    for (long i = 0; i < start; i++) fill_free_drop(f, i);
    for (long i = f->n - 1; i >= end; i--) fill_free_drop(f, i);
    f->keep_start = start;
    f->keep_end = end;
    f->next = 0;
}

static inline void fill_free_put(fill_free_t *f, size_t size) {
    if (f->next == f->keep_start) f->next = f->keep_end;
    if (f->next == f->n) {
        fill_free_recycle(f);
        if (f->next == f->keep_start) f->next = f->keep_end;
    }
    long i = f->next++;
    unsigned char *p = check_alloc(malloc(size), size);
    p[0] = p[size - 1] = tag_of((uint64_t)i);
    f->p[i] = p;
    f->size[i] = (uint32_t)size;
    f->ops++;
}

/* Frees what is left (checked) and the arrays; returns the operations done. */
static inline uint64_t fill_free_finish(fill_free_t *f) {
    for (long i = 0; i < f->n; i++)
        if (f->p[i]) fill_free_drop(f, i);
    free(f->p);
    free(f->size);
    return f->ops;
}
