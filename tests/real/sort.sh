# program: sort --version
set -euo pipefail
cd "$1"
export LC_ALL=C
# About 30 MB of pseudo-random lines (fixed LCGs whose products stay exact in doubles, so
# every awk prints the same).
awk 'BEGIN { x = 12345; for (i = 0; i < 700000; i++) {
    x = (x * 69069 + 1) % 2147483648; y = (x * 1664525 + 1013904223) % 4294967296;
    printf "%010d %08x line-%d %s\n", x, y, i, substr("abcdefghijklmnopqrstuvwxyz", x % 26 + 1, y % 26) } }' > input
wc -c < input
sort --parallel=2 -S 64M input
sort -k2,2 -k1,1n -u input | sha256sum
