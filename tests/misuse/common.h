/* Each misuse program prints nothing on success: it is expected to be stopped by the
   checked build (SIGABRT with a message). Reaching the end means the misuse went unseen. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define UNDETECTED() do { fprintf(stderr, "misuse not detected\n"); return 3; } while (0)
/* Keep the compiler from reasoning about (or removing) our deliberate misuse. */
static void *volatile sink;
static inline void *launder(void *p) { sink = p; return sink; }
/* Stores the compiler cannot drop (a store just before free is otherwise dead). */
static inline void poke(void *p, int byte, size_t n) { volatile unsigned char *v = p; for (size_t i = 0; i < n; i++) v[i] = (unsigned char)byte; }
