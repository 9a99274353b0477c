/* realloc-chain: growth chains, as of strings and vectors built piece by piece. Each thread
 * keeps 64 chains; a step picks one and grows it by half (plus a little) with realloc, checks
 * that the old contents moved along, and fills the new part; a chain that reaches its target
 * (log-uniform 1..256 KiB) is sometimes shrunk once, then freed and started again. */
#include "common.h"

#define CHAINS 64
#define STEPS 150000

typedef struct { obj_t o; size_t target; int shrunk; } chain_t;

static void *worker(void *arg) {
    rng_t r = rng_seed(29 + (uintptr_t)arg);
    chain_t c[CHAINS] = {0};
    uint64_t ops = 0;
    long steps = thread_share(STEPS) * g_scale;
    for (long n = 0; n < steps; n++, ops++) {
        chain_t *ch = &c[rnd(&r) % CHAINS];
        obj_t *o = &ch->o;
        if (!o->p) {
            obj_new(o, rnd_range(&r, 16, 64), tag_of(n));
            ch->target = rnd_log(&r, 1024, 256 << 10);
            ch->shrunk = 0;
            continue;
        }
        size_t old = o->size, size = old + old / 2 + rnd_range(&r, 0, 64);
        if (size > ch->target) {
            if (!ch->shrunk && (rnd(&r) & 1)) {
                size = old / 3 < 16 ? 16 : old / 3;
                ch->shrunk = 1;
            } else {
                obj_free(o);
                continue;
            }
        }
        unsigned char *p = check_alloc(realloc(o->p, size), size);
        if (size > old) {
            check(p, old, o->tag);
        } else {
            for (size_t i = 0; i < 64 && i < size; i++)
                if (p[i] != o->tag) die("realloc lost the contents", p, size);
        }
        o->p = p;
        o->size = size;
        fill(p, size, o->tag);
    }
    for (int i = 0; i < CHAINS; i++) if (c[i].o.p) { obj_free(&c[i].o); ops++; }
    add_ops(ops);
    return NULL;
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    double t0 = now();
    run_threads(g_threads, worker);
    report(now() - t0);
    return 0;
}
