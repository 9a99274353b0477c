/* random-mixed: random sizes 16..1024 B replaced at random in a working set of 8192 slots
 * per thread (the headline benchmark of the C hakmem). */
#include "common.h"
#define SLOTS 8192
#define ITERS 1500000
#define SIZE(r) rnd_range(r, 16, 1024)
#include "slots.h"
