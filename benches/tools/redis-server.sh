# Sourced by the benchmarks that drive redis-server (benches/real/redis.sh,
# benches/memory/redis-flush.sh): `start_redis_server PRELOAD` starts a server on a unix
# socket in a temporary directory, with PRELOAD (empty: nothing) as its LD_PRELOAD only,
# persistence off, and waits for it; sets `dir`, `sock` and `server` (its pid) and defines
# `cli`. The server is killed and the directory removed when the script exits.

start_redis_server() {
    dir=$(mktemp -d /tmp/hakmem-bench-redis.XXXXXX)
    sock=$dir/redis.sock
    server=
    trap 'if [ -n "$server" ]; then kill -9 "$server" 2>/dev/null || true; fi; rm -rf "$dir"' EXIT
    trap 'exit 1' TERM INT
    LD_PRELOAD=$1 /usr/bin/redis-server --port 0 --unixsocket "$sock" \
        --save '' --appendonly no --dir "$dir" --logfile "$dir/server.log" --daemonize no &
    server=$!
    for _ in $(seq 500); do
        [ "$(/usr/bin/redis-cli -s "$sock" ping 2>/dev/null)" = PONG ] && break
        sleep 0.01
    done
    [ "$(cli ping)" = PONG ] || { echo "redis-server did not start"; cat "$dir/server.log"; exit 1; }
}

cli() { /usr/bin/redis-cli -s "$sock" "$@"; }
