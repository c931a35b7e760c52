# Shell helpers shared by scripts/remote_test.sh and scripts/bench_remote.sh (sourced, not run).
# They expect `fg_pid` to be a variable of the sourcing script.

# The namespace script, the user-space delay relay, and the addresses scripts/netns.sh gives the
# server (arbor-srv) and the relay's side of the middle namespace (arbor-mid).
NETNS=scripts/netns.sh
RELAY=scripts/delay_relay.py
SRV_IP=10.231.2.2 MID_IP=10.231.1.1

log() { echo "== $*" >&2; }

# TERM a process we started, KILL it if it is still there after 5 s.
stop() {
    local pid=$1
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    timeout 5 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 0
}

# Run a command in the background and wait for it: unlike a foreground command, `wait` returns
# at once when a trapped signal (Ctrl-C, TERM) arrives, so teardown is never held up.
run() {
    "$@" &
    fg_pid=$!
    wait "$fg_pid"
    local rc=$?
    fg_pid=""
    return $rc
}

# Wait until file $1 has a line containing $2, at most $3 s; fails early if pid $4 exits.
wait_for_line() {
    local end=$((SECONDS + $3))
    while ! grep -q -- "$2" "$1" 2>/dev/null; do
        if [ $SECONDS -ge $end ] || ! kill -0 "$4" 2>/dev/null; then
            grep -q -- "$2" "$1" 2>/dev/null
            return
        fi
        sleep 0.2
    done
}

# Add $1 ms to the client's round trip to the server on port $PORT: netem on the links when $3 is
# "netem", else the delay relay in arbor-mid (its log in $2; 0 ms needs neither). Sets `host` (the
# address the client connects to) and `relay_pid` (the relay, to stop after the runs).
add_delay() {
    host=$SRV_IP
    if [ "$3" = netem ]; then
        "$NETNS" set-delay "$1" || { log "set-delay $1 failed"; return 1; }
    elif [ "$1" != 0 ]; then
        "$NETNS" exec mid python3 "$RELAY" --listen "$MID_IP:$PORT" --connect "$SRV_IP:$PORT" --delay-ms "$1" >"$2" 2>&1 &
        relay_pid=$!
        wait_for_line "$2" "relay ready" 10 "$relay_pid" || { log "relay did not start"; return 1; }
        host=$MID_IP
    fi
}
