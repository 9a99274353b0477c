/* The driver of `cargo xtask bench --instructions`: `instr batch N` does N malloc(32) in
 * batches of 64, each batch then freed in allocation order; `instr alternating N` does N
 * malloc(32)+free pairs one at a time. Run under callgrind for two N, the difference of the
 * counts is the cost of the extra calls, start-up cancelled out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *volatile sink; /* keeps the compiler from eliding malloc/free pairs */

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: instr batch|alternating N\n"); return 2; }
    long n = atol(argv[2]);
    if (strcmp(argv[1], "batch") == 0) {
        void *p[64];
        for (long i = 0; i < n; i += 64) {
            for (int j = 0; j < 64; j++) { p[j] = malloc(32); sink = p[j]; }
            for (int j = 0; j < 64; j++) free(p[j]);
        }
    } else if (strcmp(argv[1], "alternating") == 0) {
        for (long i = 0; i < n; i++) { sink = malloc(32); free(sink); }
    } else {
        return 2;
    }
    return 0;
}
