/* Rebuilt store: an in-memory store of 300 MiB of objects of 64 B - 4 KiB is built, checked
 * and destroyed (in random order, as a hash table is walked), then rebuilt with other sizes
 * and destroyed again. The first build draws sizes log-uniformly (most objects small), the
 * second uniformly (most objects over 2 KiB). The program idles after each destroy:
 * `idle: destroyed-1`, `idle: destroyed-2`. */
#include "memory.h"

#define STORE scaled(300 * MiB)

static void build_and_destroy(int build, const char *label) {
    rng_t r = rng_seed((uint64_t)build);
    objs_t objs = { 0 };
    size_t bytes = 0;
    phase(build == 1 ? "build-1" : "build-2");
    while (bytes < STORE) {
        size_t size = build == 1 ? rnd_log(&r, 64, 4096) : rnd_range(&r, 64, 4096);
        uint8_t tag = tag_of(objs.len);
        obj_new(objs_add(&objs), size, tag);
        bytes += size;
    }
    phase(build == 1 ? "destroy-1" : "destroy-2");
    size_t *order = shuffled(objs.len, &r);
    for (size_t i = 0; i < objs.len; i++) obj_check_free(&objs.at[order[i]]);
    free(order);
    objs_free(&objs);
    idle(label);
}

int main(void) {
    build_and_destroy(1, "destroyed-1");
    build_and_destroy(2, "destroyed-2");
    finish();
    return 0;
}
