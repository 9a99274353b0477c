/* churn: small-object churn in the manner of cfrac and espresso. Each thread keeps a few
 * thousand small long-lived "numbers" and, for every step, builds short-lived temporaries
 * (8..128 B, mostly tiny) from two of them, keeps the result in place of one, and frees the
 * rest: most objects die within a few allocations of their birth. */
#include "common.h"

#define LIVE 4096
#define STEPS 1000000

static void *worker(void *arg) {
    rng_t r = rng_seed(1 + (uintptr_t)arg);
    obj_t *live = check_alloc(calloc(LIVE, sizeof(obj_t)), LIVE * sizeof(obj_t));
    uint64_t ops = 0;
    for (int i = 0; i < LIVE; i++) obj_new(&live[i], rnd_range(&r, 8, 64), tag_of(i));
    ops += LIVE;
    long steps = thread_share(STEPS) * g_scale;
    for (long s = 0; s < steps; s++) {
        obj_t *a = &live[rnd(&r) % LIVE], *b = &live[rnd(&r) % LIVE];
        check(a->p, a->size, a->tag);
        check(b->p, b->size, b->tag);
        /* 1..4 temporaries of small sizes (a quotient, a remainder, a product...). */
        int n = 1 + (int)(rnd(&r) % 4);
        obj_t tmp[4];
        for (int t = 0; t < n; t++) {
            size_t sz = (rnd(&r) & 7) ? rnd_range(&r, 8, 32) : rnd_range(&r, 33, 128);
            obj_new(&tmp[t], sz, tag_of(s + t));
        }
        /* The last temporary becomes the new value of a; the others die. */
        obj_free(a);
        *a = tmp[n - 1];
        for (int t = 0; t < n - 1; t++) obj_free(&tmp[t]);
        ops += 2 * (uint64_t)n;
    }
    for (int i = 0; i < LIVE; i++) obj_free(&live[i]);
    free(live);
    add_ops(ops + LIVE);
    return NULL;
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    double t0 = now();
    run_threads(g_threads, worker);
    report(now() - t0);
    return 0;
}
