// expect: overflow past the requested size
#include "common.h"
int main(void) { char *p = launder(malloc(20)); poke(p, 'x', 21); free(p); UNDETECTED(); }
