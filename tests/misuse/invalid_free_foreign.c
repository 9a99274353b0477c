// expect: free of a pointer hakmem did not allocate
// release: free of a pointer hakmem did not allocate
#include "common.h"
#include <sys/mman.h>
int main(void) {
    /* A block of "another allocator": memory hakmem never handed out. */
    char *m = mmap(0, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    free(launder(m + 64));
    UNDETECTED();
}
