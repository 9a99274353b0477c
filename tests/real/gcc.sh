# program: cc --version
set -euo pipefail
cd "$1"
cat > prog.c <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
struct entry { char key[16]; int count; };
static int cmp(const void *a, const void *b) {
    return strcmp(((const struct entry *)a)->key, ((const struct entry *)b)->key);
}
int main(void) {
    static struct entry e[1000];
    unsigned x = 1;
    for (int i = 0; i < 1000; i++) {
        x = x * 1103515245u + 12345u;
        snprintf(e[i].key, sizeof e[i].key, "w%u", (x >> 16) % 5000);
        e[i].count = i;
    }
    qsort(e, 1000, sizeof e[0], cmp);
    long sum = 0;
    for (int i = 0; i < 1000; i++) sum += (long)e[i].count * (i + 1);
    printf("first %s last %s sum %ld\n", e[0].key, e[999].key, sum);
    return 0;
}
C
cc -O2 -Wall -c prog.c -o prog.o
sha256sum prog.o
cc -O2 -o prog prog.o
./prog
