// expect: double free
// release: double free
#include "common.h"
int main(void) { char *p = launder(malloc(32)); free(p); free(p); UNDETECTED(); }
