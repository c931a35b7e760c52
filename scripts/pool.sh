#!/usr/bin/env bash
# Several `arbor serve` replicas behind HAProxy (deploy/haproxy/arbor.cfg): TCP mode, least
# connections, health checks on each replica's /health. Clients use one address, FRONT.
#
#   scripts/pool.sh up [N]     start N replicas (default 3) and HAProxy; prints the address
#   scripts/pool.sh down       stop them
#
# Settings through the environment: ARBOR (binary), MODEL (target, default qwen2.5-coder-1.5b),
# THREADS per replica (1), FRONT (7900), BASE (replica i listens on BASE+i, 7910),
# METRICS_BASE (its metrics on METRICS_BASE+i, 7920), SERVE_ARGS (more `arbor serve` flags),
# STATE (pids, logs and the generated haproxy.cfg; default $TMPDIR/arbor-pool).
set -euo pipefail
cd "$(dirname "$0")/.."
ARBOR=${ARBOR:-.build/release/arbor}
MODEL=${MODEL:-qwen2.5-coder-1.5b}
THREADS=${THREADS:-1}
FRONT=${FRONT:-7900}
BASE=${BASE:-7910}
METRICS_BASE=${METRICS_BASE:-7920}
STATE=${STATE:-${TMPDIR:-/tmp}/arbor-pool}
SERVE_ARGS=${SERVE_ARGS:-}

# 0 when the replica's metrics port answers GET /health with 200 (bash's /dev/tcp: no curl needed).
healthy() {
    local answer
    answer=$( (exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET /health HTTP/1.0\r\n\r\n' >&3 && head -1 <&3) 2>/dev/null) || return 1
    [[ "$answer" == *" 200 "* ]]
}

down() {
    for f in "$STATE"/*.pid; do
        [ -e "$f" ] || continue
        kill "$(cat "$f")" 2>/dev/null || true
        rm -f "$f"
    done
}

case "${1:-}" in
up)
    n=${2:-3}
    command -v haproxy >/dev/null || { echo "pool.sh: haproxy is not installed (apt-get install haproxy)" >&2; exit 1; }
    mkdir -p "$STATE"
    down
    for i in $(seq 1 "$n"); do
        # shellcheck disable=SC2086
        "$ARBOR" serve --model "$MODEL" --port $((BASE + i)) --metrics-port $((METRICS_BASE + i)) --threads "$THREADS" \
            --name "replica$i" $SERVE_ARGS >"$STATE/replica$i.log" 2>&1 &
        echo $! >"$STATE/replica$i.pid"
    done
    for i in $(seq 1 "$n"); do
        for _ in $(seq 1 300); do
            if healthy $((METRICS_BASE + i)); then continue 2; fi
            kill -0 "$(cat "$STATE/replica$i.pid")" 2>/dev/null || { echo "pool.sh: replica$i exited:" >&2; cat "$STATE/replica$i.log" >&2; exit 1; }
            sleep 0.2
        done
        echo "pool.sh: replica$i is not healthy after 60 s" >&2
        exit 1
    done
    # The committed configuration with its bind address and one server line per replica.
    awk -v n="$n" -v base="$BASE" -v mbase="$METRICS_BASE" -v front="$FRONT" '
        /^[ \t]*bind 127\.0\.0\.1:/ { print "    bind 127.0.0.1:" front; next }
        /^[ \t]*server replica/ { next }
        { print }
        /^[ \t]*# replicas/ { for (i = 1; i <= n; i++) printf "    server replica%d 127.0.0.1:%d check port %d\n", i, base + i, mbase + i }
    ' deploy/haproxy/arbor.cfg >"$STATE/haproxy.cfg"
    haproxy -c -q -f "$STATE/haproxy.cfg"
    haproxy -D -f "$STATE/haproxy.cfg" -p "$STATE/haproxy.pid" >"$STATE/haproxy.log" 2>&1
    for _ in $(seq 1 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$FRONT") 2>/dev/null && break
        sleep 0.1
    done
    echo "pool.sh: $n replica(s) of $MODEL behind HAProxy at 127.0.0.1:$FRONT (state in $STATE)"
    ;;
down)
    down
    ;;
*)
    echo "usage: scripts/pool.sh up [N] | down" >&2
    exit 2
    ;;
esac
