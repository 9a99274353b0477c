// expect: free of a pointer hakmem did not allocate
// release: free of a pointer hakmem did not allocate
#include "common.h"
int main(void) { int x = 1; free(launder(&x)); UNDETECTED(); }
