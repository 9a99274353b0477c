/* Rebuilt store: an in-memory store of 300 MiB of objects of 64 B - 4 KiB is built, checked
 * and destroyed (in random order, as a hash table is walked), then rebuilt with other sizes
 * and destroyed again. The first build draws sizes log-uniformly (most objects small), the
 * second uniformly (most objects over 2 KiB). The program idles after each destroy:
 * `idle: destroyed-1`, `idle: destroyed-2`. */
#include "memory.h"

#define STORE scaled(300 * MiB)
#define MAX_OBJECTS (STORE / 64)

static void build_and_destroy(int build, const char *label) {
    rng_t r = rng_seed((uint64_t)build);
    obj_t *objs = table_new(MAX_OBJECTS * sizeof *objs);
    size_t n = 0, bytes = 0;
    phase(build == 1 ? "build-1" : "build-2");
    while (bytes < STORE) {
        size_t size = build == 1 ? rnd_log(&r, 64, 4096) : rnd_range(&r, 64, 4096);
        obj_new(&objs[n], size, tag_of(n));
        bytes += size;
        n++;
    }
    phase(build == 1 ? "destroy-1" : "destroy-2");
    size_t *order = shuffled(n, &r);
    for (size_t i = 0; i < n; i++) obj_check_free(&objs[order[i]]);
    table_free(order, n * sizeof *order);
    table_free(objs, MAX_OBJECTS * sizeof *objs);
    idle(label);
}

int main(void) {
    build_and_destroy(1, "destroyed-1");
    build_and_destroy(2, "destroyed-2");
    finish();
    return 0;
}
