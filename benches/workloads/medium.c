/* medium: random sizes 2..32 KiB replaced at random in a working set of 512 slots per thread. */
#include "common.h"
#define SLOTS 512
#define ITERS 600000
#define SIZE(r) rnd_range(r, 2048, 32768)
#include "slots.h"
