#!/usr/bin/env bash
# How much of a real program's run is its allocator's (docs/performance.md, "Real
# programs"): runs the `cargo xtask bench --real` scripts under `perf record -e cpu-clock`
# (4 kHz) with hakmem, mimalloc and jemalloc preloaded, interleaved, and prints per program
# and allocator the medians of the samples in the allocator's library and in the rest of
# the run (the program, libc, the kernel), then the ratios the section gives.
#
# usage: benches/tools/alloc-share.sh RUNS PROGRAM...   (PROGRAM: lua perl ruby python sqlite)
# Needs perf, the programs (`cargo xtask bench --real` installs them), target/release/
# libhakmem.so (`cargo xtask build`) and the peers' preload libraries (`cargo xtask bench`
# builds them). Redis is not covered: its server runs beside its client.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
runs=${1:?usage: alloc-share.sh RUNS PROGRAM...}
shift
declare -A lib=(
    [hakmem]=$root/target/release/libhakmem.so
    [mimalloc]=$root/benches/target/release/libmimalloc_preload.so
    [jemalloc]=$root/benches/target/release/libjemalloc_preload.so
)
for a in hakmem mimalloc jemalloc; do
    [ -f "${lib[$a]}" ] || { echo "missing ${lib[$a]}" >&2; exit 1; }
done
real=$root/benches/real
out=$(mktemp -d /tmp/hakmem-alloc-share.XXXXXX)
trap 'rm -rf "$out"' EXIT

for prog in "$@"; do
    case $prog in
        lua) cmd="/usr/bin/lua5.4 $real/lua.lua" ;;
        perl) cmd="/usr/bin/perl $real/perl.pl" ;;
        ruby) cmd="/usr/bin/ruby $real/ruby.rb" ;;
        python) cmd="/usr/bin/python3 $real/python.py" ;;
        sqlite) cmd="/usr/bin/sqlite3 :memory: < $real/sqlite.sql" ;;
        *) echo "unknown program $prog" >&2; exit 1 ;;
    esac
    for i in $(seq "$runs"); do
        for a in hakmem mimalloc jemalloc; do
            data=$out/$prog.$a.$i.data
            perf record -q -e cpu-clock -F 4000 -o "$data" -- \
                env LD_PRELOAD="${lib[$a]}" bash -c "$cmd" >/dev/null 2>&1
            # "<samples> <dso>" per line; the allocator's library is the preloaded one.
            perf report -i "$data" --stdio -n --sort dso 2>/dev/null |
                awk -v p="$prog" -v a="$a" -v lib="$(basename "${lib[$a]}")" '
                    /^ +[0-9.]+%/ { total += $2; if ($3 == lib) own += $2 }
                    END { print p, a, own + 0, total - own }'
            rm -f "$data"
        done
    done
done | python3 -c '
import collections, statistics, sys
runs = collections.defaultdict(list)
order = []
for line in sys.stdin:
    prog, alloc, own, rest = line.split()
    if prog not in order:
        order.append(prog)
    runs[prog, alloc].append((int(own), int(rest)))
print("program   share: hakmem  mimalloc  jemalloc | own h/m | rest h/m  h/j | rest(h)/total(m)  /total(j)")
for prog in order:
    med = {}
    for a in ("hakmem", "mimalloc", "jemalloc"):
        v = runs[prog, a]
        own = statistics.median(o for o, _ in v)
        rest = statistics.median(r for _, r in v)
        share = statistics.median(o / (o + r) for o, r in v)
        med[a] = (own, rest, share)
    (ho, hr, hs), (mo, mr, ms), (jo, jr, js) = med["hakmem"], med["mimalloc"], med["jemalloc"]
    print(f"{prog:8s} {100*hs:12.1f}% {100*ms:8.1f}% {100*js:8.1f}% | {ho/mo:7.2f} |"
          f" {hr/mr:8.2f} {hr/jr:5.2f} | {hr/(mo+mr):16.3f} {hr/(jo+jr):10.3f}")
'
