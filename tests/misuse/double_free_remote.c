// expect: double free
// release: double free
// A block freed by another thread (queued for its owner, this thread), then freed again
// here before the owner has taken it back.
#include "common.h"
#include <pthread.h>
static char *blocks[2];
static void *other(void *arg) {
    (void)arg;
    free(blocks[0]); /* batched for the owner; handed over when this thread exits */
    free(blocks[1]);
    return 0;
}
int main(void) {
    blocks[0] = launder(malloc(32));
    blocks[1] = launder(malloc(32));
    pthread_t t;
    pthread_create(&t, 0, other, 0);
    pthread_join(t, 0);
    free(blocks[0]);
    UNDETECTED();
}
