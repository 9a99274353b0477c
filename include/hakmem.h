/* hakmem: C declarations of the hakmem-specific API exported by libhakmem.so.
   The standard malloc family (malloc, free, ..., malloc_stats, mallinfo2, malloc_trim)
   is declared by <stdlib.h> and <malloc.h>. */
#ifndef HAKMEM_H
#define HAKMEM_H
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Totals over all threads since start-up. */
typedef struct hakmem_stats {
    uint64_t allocs, frees;        /* small and medium blocks */
    uint64_t cache_hits;           /* allocations served by malloc's fast path */
    uint64_t refills, misses;      /* slow paths: carves or slab switches; all of them */
    uint64_t remote_frees;         /* frees from a thread other than the owner */
    uint64_t large_allocs, large_frees;
    uint64_t bytes_mapped;         /* segments and large mappings now */
    uint64_t bytes_in_use;         /* held by the program now */
    uint64_t bytes_purged;         /* given back to the OS so far */
    uint64_t bytes_trimmed;        /* given back by malloc_trim (purged or unmapped) */
    uint64_t segments_peak;        /* most 4 MiB segments mapped at once */
    uint64_t heaps;                /* thread heaps created */
} hakmem_stats_t;

/* Fills *out; returns 0, or -1 if out is NULL. */
int hakmem_stats(hakmem_stats_t *out);

#ifdef __cplusplus
}
#endif

#endif
