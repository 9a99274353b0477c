// expect: free of a pointer hakmem did not allocate
// release: free of a pointer hakmem did not allocate
#include "common.h"
#include <pthread.h>
/* Addresses at or above 2^47 (above user space: non-canonical, or the kernel's) whose low
   47 bits are a live block's: the release build's fast free reads the address map with
   those bits only, so each must still be refused, and the block left as it was. */
static char *block, *block48;
static void *free_from_another_thread(void *arg) {
    (void)arg;
    free(launder((void *)((uintptr_t)block | 1ull << 47)));
    return 0;
}
int main(void) {
    block = launder(malloc(64));
    poke(block, 0x5a, 64);
    /* 48-byte blocks: the block-start test would pass bit 63 with an even multiplier. */
    block48 = launder(malloc(48));
    poke(block48, 0x5a, 48);
    free(launder((void *)((uintptr_t)block48 | 1ull << 63)));
    free(launder((void *)((uintptr_t)block | 1ull << 47)));      /* this thread's slab */
    free(launder((void *)((uintptr_t)block | 0xffff800000000000ull))); /* a kernel address */
    free(launder((void *)0xffff800000001000ull));
    pthread_t t;
    pthread_create(&t, 0, free_from_another_thread, 0);
    pthread_join(t, 0);
    for (int i = 0; i < 64; i++)
        if (block[i] != 0x5a || (i < 48 && block48[i] != 0x5a)) {
            fprintf(stderr, "block overwritten (misfiled)\n");
            return 4;
        }
    free(block);
    free(block48);
    UNDETECTED();
}
