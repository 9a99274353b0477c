/* Store under a memory limit: 3000 values of 1 - 8 MiB (uniform; every page written) are
 * inserted into a FIFO store that evicts its oldest values while more than 96 MiB are
 * stored, as a cache with a byte limit does. `idle: end` with the last values still stored;
 * then they are checked and freed. */
#include "memory.h"

#define VALUES scaled(3000)
#define LIMIT (96 * MiB)

int main(void) {
    rng_t r = rng_seed(11);
    obj_t *values = check_alloc(malloc(VALUES * sizeof *values), VALUES * sizeof *values);
    size_t oldest = 0, stored = 0;
    phase("inserts");
    for (size_t i = 0; i < VALUES; i++) {
        obj_new(&values[i], rnd_range(&r, 1 * MiB, 8 * MiB), tag_of(i));
        stored += values[i].size;
        while (stored > LIMIT) {
            stored -= values[oldest].size;
            obj_check_free(&values[oldest++]);
        }
    }
    idle("end");
    for (size_t i = oldest; i < VALUES; i++) obj_check_free(&values[i]);
    free(values);
    finish();
    return 0;
}
