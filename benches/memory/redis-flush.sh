#!/bin/bash
# Redis after FLUSHALL (issue 19): fill redis-server with 300,000 values of 2 KB, overwrite
# them with 200 B values, FLUSHALL, idle 2 s; prints the RSS filled and after. Not yet part
# of `cargo xtask bench --memory`: run by hand.
# usage: benches/memory/redis-flush.sh [PRELOAD.so] PORT   (no library: the server's own malloc; Debian's redis: jemalloc 5.3, background purging on)
LIB=$1; PORT=$2
env ${LIB:+LD_PRELOAD=$LIB} redis-server --port $PORT --save "" --appendonly no --daemonize no >/dev/null 2>&1 &
PID=$!
sleep 0.5
redis-benchmark -p $PORT -q -t set -n 300000 -r 300000 -d 2000 -c 50 >/dev/null 2>&1
FULL=$(awk '/VmRSS/{print int($2/1024)}' /proc/$PID/status)
redis-benchmark -p $PORT -q -t set -n 300000 -r 300000 -d 200 -c 50 >/dev/null 2>&1
redis-cli -p $PORT flushall >/dev/null
sleep 2
AFTER=$(awk '/VmRSS/{print int($2/1024)}' /proc/$PID/status)
redis-cli -p $PORT shutdown nosave >/dev/null 2>&1
wait $PID 2>/dev/null
echo "$(basename "${LIB:-its-own-malloc}") filled ${FULL} MiB, after FLUSHALL + 2 s ${AFTER} MiB"
