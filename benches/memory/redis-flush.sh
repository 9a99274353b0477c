#!/usr/bin/env bash
# Redis after FLUSHALL (cargo xtask bench --memory): redis-server filled with 300,000 values
# of 2 KB by redis-benchmark (50 clients), the same keys overwritten with 200 B values,
# then FLUSHALL and idle (`idle: flushed`): what the server keeps of an emptied store.
#
# The allocator to measure is in BENCH_PRELOAD and goes into redis-server's environment
# only; without one the server gets glibc's malloc (LD_PRELOAD=libc.so.6: Debian's
# redis-server links libjemalloc, which would otherwise serve it). Run by hand with
# BENCH_PRELOAD unset and LD_PRELOAD_SERVER=none to see redis's own jemalloc instead.
# Prints the memory scenarios' protocol (benches/memory/memory.h): phase:, idle:, ok.
set -euo pipefail

preload=${BENCH_PRELOAD:-libc.so.6}
[ "${LD_PRELOAD_SERVER:-}" = none ] && preload=
# shellcheck source=../tools/redis-server.sh
source "$(dirname "$0")/../tools/redis-server.sh"
start_redis_server "$preload"

echo "phase: fill"
/usr/bin/redis-benchmark -s "$sock" -q -t set -n 300000 -r 300000 -d 2000 -c 50 >/dev/null
[ "$(cli dbsize)" -gt 100000 ] || { echo "the fill stored too few keys"; exit 1; }
echo "phase: overwrite"
/usr/bin/redis-benchmark -s "$sock" -q -t set -n 300000 -r 300000 -d 200 -c 50 >/dev/null
echo "phase: flush"
cli flushall >/dev/null
[ "$(cli dbsize)" = 0 ] || { echo "FLUSHALL left keys"; exit 1; }
echo "idle: flushed"
sleep 2
cli shutdown nosave >/dev/null 2>&1 || true
wait "$server" 2>/dev/null || true
server=
echo "ok flushed"
