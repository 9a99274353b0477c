// expect: overflow past the requested size
#include "common.h"
int main(void) { char *p = launder(malloc(24)); poke(p, 'y', 32); free(p); UNDETECTED(); }
