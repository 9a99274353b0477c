/* Idle pool: a pool of 16 threads that take turns with a job that builds a 48 MiB working set
 * of objects (16 B - 8 KiB, log-uniform), checks it and drops it in random order; every
 * thread gets two turns. Then all 16 threads stay alive and idle: the settled RSS is what
 * the pool keeps for the turns to come (`idle: settled`). */
#include "memory.h"

#define THREADS 16
#define ROUNDS 2
#define WORKING_SET scaled(48 * MiB)

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_changed = PTHREAD_COND_INITIALIZER;
static int g_turn; /* the turn being taken: thread g_turn % THREADS */
static int g_quit;

static void job(int turn) {
    rng_t r = rng_seed((uint64_t)turn + 1);
    objs_t objs = { 0 };
    size_t bytes = 0;
    while (bytes < WORKING_SET) {
        size_t size = rnd_log(&r, 16, 8192);
        uint8_t tag = tag_of(objs.len);
        obj_new(objs_add(&objs), size, tag);
        bytes += size;
    }
    size_t *order = shuffled(objs.len, &r);
    for (size_t i = 0; i < objs.len; i++) obj_check_free(&objs.at[order[i]]);
    free(order);
    objs_free(&objs);
}

static void *worker(void *arg) {
    int me = (int)(intptr_t)arg;
    pthread_mutex_lock(&g_lock);
    for (;;) {
        while (!g_quit && (g_turn >= ROUNDS * THREADS || g_turn % THREADS != me))
            pthread_cond_wait(&g_changed, &g_lock);
        if (g_quit) break;
        int turn = g_turn;
        pthread_mutex_unlock(&g_lock);
        job(turn);
        pthread_mutex_lock(&g_lock);
        g_turn++;
        pthread_cond_broadcast(&g_changed);
    }
    pthread_mutex_unlock(&g_lock);
    return NULL;
}

int main(void) {
    phase("turns");
    pthread_t *t = start_threads(THREADS, worker);
    pthread_mutex_lock(&g_lock);
    while (g_turn < ROUNDS * THREADS) pthread_cond_wait(&g_changed, &g_lock);
    pthread_mutex_unlock(&g_lock);
    idle("settled");
    pthread_mutex_lock(&g_lock);
    g_quit = 1;
    pthread_cond_broadcast(&g_changed);
    pthread_mutex_unlock(&g_lock);
    join_threads(t, THREADS);
    finish();
    return 0;
}
