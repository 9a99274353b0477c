// expect: free of a pointer hakmem did not allocate
// release: free of a pointer hakmem did not allocate
// realloc of an interior pointer: not resized in place (nothing of the live block is
// handed out twice); moved, and the free of the old pointer refused.
#include "common.h"
int main(void) {
    char *p = launder(malloc(64));
    char *q = launder(realloc(launder(p + 16), 32));
    if (q == p + 16) { fprintf(stderr, "resized in place\n"); return 4; }
    UNDETECTED();
}
