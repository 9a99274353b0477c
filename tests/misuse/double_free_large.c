// expect: double free
// release: double free
#include "common.h"
int main(void) { char *p = launder(malloc(1 << 20)); p[0] = 1; free(p); free(p); UNDETECTED(); }
