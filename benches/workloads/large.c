/* large: log-uniform sizes 64 KiB..32 MiB replaced at random in a working set of 16 slots per
 * thread; every page of each block is touched, as a program using the block would. */
#include "common.h"
#define SLOTS 16
#define ITERS 80
#define SIZE(r) rnd_log(r, 65536, 32u << 20)
#include "slots.h"
