// expect: double free
// release: double free
#include "common.h"
int main(void) {
    char *p = launder(malloc(40));
    free(p);
    void *other[200];
    for (int i = 0; i < 200; i++) other[i] = launder(malloc(100 + i)); /* other classes */
    for (int i = 0; i < 200; i++) free(other[i]);
    free(p);
    UNDETECTED();
}
