#!/usr/bin/env bash
# Real-program benchmark for redis-server (cargo xtask bench --real).
# Models a cache server under mixed traffic: redis-benchmark (20 clients, pipelines of 8)
# sends a fixed number of SET/GET/INCR/MSET, list, hash, set and sorted-set commands over a
# unix socket, with values of 8 B to 4 KiB on random keys, deletes part of them again, and
# fills hashes of user records; alongside, a known data set is written with redis-cli and read
# back at the end. Persistence is off.
#
# The allocator to measure is in BENCH_PRELOAD and goes into redis-server's environment
# only: redis-benchmark, redis-cli and this shell run as they are. Without one, the server
# gets glibc's malloc (Debian's redis-server links libjemalloc, which would otherwise serve
# it). Prints "server-peak-rss-kib: N" (the server's VmHWM) and "ok <digest>"; the digest is
# the same under any correct allocator.
set -euo pipefail

# shellcheck source=../tools/redis-server.sh
source "$(dirname "$0")/../tools/redis-server.sh"
start_redis_server "${BENCH_PRELOAD:-libc.so.6}"

bench() { /usr/bin/redis-benchmark -s "$sock" -c 20 -P 8 --csv "$@"; }
TESTS=set,get,incr,mset,lpush,rpush,lpop,rpop,lrange_100,sadd,spop,hset,zadd,zpopmin

# The known data set, written in three parts between the benchmark passes.
known() {
    awk -v part="$1" 'BEGIN {
        for (i = part * 4000; i < (part + 1) * 4000; i++) {
            v = sprintf("%0" (i % 300 + 1) "d", i)
            printf "RPUSH known:list %s\n", v
            printf "HSET known:hash:%d f%d %s\n", i % 50, i, v
            printf "APPEND known:string:%d %s\n", i % 20, v
        }
    }' | cli >/dev/null
}

known 0
bench -r 100000 -n 40000 -d 8 -t "$TESTS"
known 1
bench -r 100000 -n 25000 -d 256 -t "$TESTS"
bench -r 100000 -n 50000 DEL key:__rand_int__
bench -r 50000 -n 40000 HSET user:__rand_int__ name some-user-name email user@example.com \
    visits __rand_int__ bio "$(printf '%0200d' 0)"
known 2
bench -r 10000 -n 20000 -d 4096 -t set,get,lpush,lpop
bench -r 100000 -n 50000 DEL key:__rand_int__ user:__rand_int__

digest=$(awk 'BEGIN {
        print "LRANGE known:list 0 -1"
        for (i = 0; i < 50; i++) printf "HLEN known:hash:%d\nHGET known:hash:%d f%d\n", i, i, i + 11950
        for (i = 0; i < 20; i++) printf "GET known:string:%d\n", i
    }' | cli | md5sum | cut -d' ' -f1)
errors=$(cli INFO stats | tr -d '\r' | awk -F: '$1 == "total_error_replies" { print $2 }')
[ "$errors" = 0 ] || { echo "the server answered $errors commands with an error"; exit 1; }
echo "server-peak-rss-kib: $(awk '$1 == "VmHWM:" { print $2 }' "/proc/$server/status")"
cli SHUTDOWN NOSAVE >/dev/null 2>&1 || true
wait "$server" || true
server=
echo "ok $digest"
