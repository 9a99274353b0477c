/* The random-replacement loop shared by random-mixed, medium and large: each thread owns a
 * working set of SLOTS slots and, thread_share(ITERS) * SCALE times, picks a random slot,
 * checks and frees its object if it has one, and allocates and fills a new one of size
 * SIZE(&rng). */
static void *slots_worker(void *arg) {
    rng_t r = rng_seed(23 + (uintptr_t)arg);
    obj_t *slots = check_alloc(calloc(SLOTS, sizeof(obj_t)), SLOTS * sizeof(obj_t));
    uint64_t ops = 0;
    long iters = thread_share(ITERS) * g_scale;
    for (long n = 0; n < iters; n++) {
        obj_t *o = &slots[rnd(&r) % SLOTS];
        if (o->p) { obj_free(o); ops++; }
        obj_new(o, SIZE(&r), tag_of(n));
        ops++;
    }
    for (int i = 0; i < SLOTS; i++) if (slots[i].p) { obj_free(&slots[i]); ops++; }
    free(slots);
    add_ops(ops);
    return NULL;
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    double t0 = now();
    run_threads(g_threads, slots_worker);
    report(now() - t0);
    return 0;
}
