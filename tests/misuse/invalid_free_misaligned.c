// expect: free of a pointer hakmem did not allocate
// release: free of a pointer hakmem did not allocate
// A pointer one byte past a block's start (no block starts there: blocks are 16-aligned).
#include "common.h"
int main(void) { char *p = launder(malloc(24)); free(launder(p + 1)); UNDETECTED(); }
