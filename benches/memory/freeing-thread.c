/* Dedicated freeing thread: 4 producer threads allocate messages of 256 B - 4 KiB (uniform)
 * and hand them to one consumer thread, which checks and frees them; producers wait while
 * 16 MiB of messages are in flight. 250 000 messages per producer. Then every thread stays
 * alive and idle (`idle: settled`): the memory the consumer freed belongs to the producers'
 * heaps in a thread-caching allocator, and the producers no longer call it. */
#include "memory.h"

#define PRODUCERS 4
#define MESSAGES ((long)scaled(250000))
#define IN_FLIGHT scaled(16 * MiB)
#define RING (IN_FLIGHT / 256 + 1)

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_not_full = PTHREAD_COND_INITIALIZER, g_not_empty = PTHREAD_COND_INITIALIZER;
static pthread_cond_t g_state = PTHREAD_COND_INITIALIZER; /* g_drained, g_quit */
static obj_t *g_ring; /* a FIFO of RING messages at most */
static size_t g_head, g_len, g_bytes;
static int g_drained, g_quit;

static void *producer(void *arg) {
    int me = (int)(intptr_t)arg;
    rng_t r = rng_seed((uint64_t)me + 1);
    for (long i = 0; i < MESSAGES; i++) {
        obj_t m;
        obj_new(&m, rnd_range(&r, 256, 4096), tag_of((uint64_t)me * MESSAGES + (uint64_t)i));
        pthread_mutex_lock(&g_lock);
        while (g_bytes > 0 && g_bytes + m.size > IN_FLIGHT) pthread_cond_wait(&g_not_full, &g_lock);
        g_ring[(g_head + g_len++) % RING] = m;
        g_bytes += m.size;
        pthread_cond_signal(&g_not_empty);
        pthread_mutex_unlock(&g_lock);
    }
    pthread_mutex_lock(&g_lock);
    while (!g_quit) pthread_cond_wait(&g_state, &g_lock);
    pthread_mutex_unlock(&g_lock);
    return NULL;
}

static void *consumer(void *arg) {
    (void)arg;
    for (long i = 0; i < PRODUCERS * MESSAGES; i++) {
        pthread_mutex_lock(&g_lock);
        while (g_len == 0) pthread_cond_wait(&g_not_empty, &g_lock);
        obj_t m = g_ring[g_head];
        g_head = (g_head + 1) % RING;
        g_len--;
        g_bytes -= m.size;
        pthread_cond_broadcast(&g_not_full);
        pthread_mutex_unlock(&g_lock);
        obj_check_free(&m);
    }
    pthread_mutex_lock(&g_lock);
    g_drained = 1;
    pthread_cond_broadcast(&g_state);
    while (!g_quit) pthread_cond_wait(&g_state, &g_lock);
    pthread_mutex_unlock(&g_lock);
    return NULL;
}

static void *worker(void *arg) {
    intptr_t i = (intptr_t)arg;
    return i < PRODUCERS ? producer(arg) : consumer(arg);
}

int main(void) {
    g_ring = check_alloc(malloc(RING * sizeof *g_ring), RING * sizeof *g_ring);
    phase("messages");
    pthread_t *t = start_threads(PRODUCERS + 1, worker);
    pthread_mutex_lock(&g_lock);
    while (!g_drained) pthread_cond_wait(&g_state, &g_lock);
    pthread_mutex_unlock(&g_lock);
    idle("settled");
    pthread_mutex_lock(&g_lock);
    g_quit = 1;
    pthread_cond_broadcast(&g_state);
    pthread_mutex_unlock(&g_lock);
    join_threads(t, PRODUCERS + 1);
    free(g_ring);
    finish();
    return 0;
}
