// expect: free of a pointer hakmem did not allocate
// release: free of a pointer hakmem did not allocate
#include "common.h"
int main(void) { char *p = launder(malloc(64)); free(launder(p + 16)); UNDETECTED(); }
