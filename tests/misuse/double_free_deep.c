// expect: double free
// release: double free
// A block freed, then buried under other frees of its class (deep in its slab's list),
// then freed again.
#include "common.h"
int main(void) {
    char *p = launder(malloc(48));
    void *other[50];
    for (int i = 0; i < 50; i++) other[i] = launder(malloc(48));
    free(p);
    for (int i = 0; i < 50; i++) free(other[i]);
    free(p);
    UNDETECTED();
}
