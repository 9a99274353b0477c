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

dir=$(mktemp -d /tmp/hakmem-bench-redis-flush.XXXXXX)
sock=$dir/redis.sock
server=
cleanup() {
    if [ -n "$server" ]; then kill -9 "$server" 2>/dev/null || true; fi
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' TERM INT

preload=${BENCH_PRELOAD:-libc.so.6}
[ "${LD_PRELOAD_SERVER:-}" = none ] && preload=
LD_PRELOAD=$preload /usr/bin/redis-server --port 0 --unixsocket "$sock" \
    --save '' --appendonly no --dir "$dir" --logfile "$dir/server.log" --daemonize no &
server=$!
for _ in $(seq 500); do
    [ "$(/usr/bin/redis-cli -s "$sock" ping 2>/dev/null)" = PONG ] && break
    sleep 0.01
done
cli() { /usr/bin/redis-cli -s "$sock" "$@"; }
[ "$(cli ping)" = PONG ] || { echo "redis-server did not start"; cat "$dir/server.log"; exit 1; }

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
