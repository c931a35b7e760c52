#!/usr/bin/env bash
# Self-test of scripts/netns.sh and scripts/delay_relay.py without Arbor (root, ~30 s, light CPU):
# brings the namespaces up, runs a TCP echo/sink server in arbor-srv and measures from arbor-cli
#   - the direct round trip (cli -> mid -> srv, routed),
#   - the round trip through the relay in arbor-mid at each DELAYS value (expect direct + D),
#   - download (python3 -m http.server + curl) and upload rate against RATE (tbf both ways),
#   - that a failing `up` leaves nothing behind, and that `down` is idempotent.
#
#   sudo scripts/netns_test.sh          Environment: RATE=20mbit DELAYS="20 80" NETNS_PREFIX=arbor
set -uo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-20mbit}
DELAYS=${DELAYS:-20 80}
PREFIX=${NETNS_PREFIX:-arbor}
NETNS=scripts/netns.sh
RELAY=scripts/delay_relay.py
WORK=$(mktemp -d "${TMPDIR:-/tmp}/arbor-netns-test.XXXXXX")
pids=()
passed=0 failed=0

cleanup() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${pids[@]}"; do timeout 5 tail --pid="$p" -f /dev/null 2>/dev/null || kill -KILL "$p" 2>/dev/null; done
    "$NETNS" down
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

result() { # ok? message
    if [ "$1" = 0 ]; then echo "PASS $2"; passed=$((passed + 1)); else echo "FAIL $2"; failed=$((failed + 1)); fi
}

# Wait (<= $2 s) until file $1 contains $3.
wait_for_line() {
    local deadline=$((SECONDS + $2))
    until grep -q -- "$3" "$1" 2>/dev/null; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.1
    done
}

cat >"$WORK/server.py" <<'EOF'
import socket, sys, threading
# b"E": echo until EOF.  b"S": count bytes until EOF, reply with the count.
def serve(c):
    with c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        kind, n = c.recv(1), 0
        while data := c.recv(65536):
            if kind == b"E": c.sendall(data)
            n += len(data)
        if kind == b"S": c.sendall(str(n).encode())
s = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("listening", flush=True)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
EOF
cat >"$WORK/client.py" <<'EOF'
import socket, statistics, sys, time
host, port, what = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.create_connection((host, port), timeout=20)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
if what == "rtt":
    s.sendall(b"E"); samples = []
    for _ in range(20):
        t0 = time.perf_counter(); s.sendall(b"x")
        assert s.recv(1) == b"x"
        samples.append((time.perf_counter() - t0) * 1000)
    print(f"{statistics.median(samples):.2f} {min(samples):.2f} {max(samples):.2f}")
else:  # upload N bytes, print Mbit/s
    n = int(what); data = b"\0" * n
    t0 = time.perf_counter(); s.sendall(b"S" + data); s.shutdown(socket.SHUT_WR)
    got = int(s.recv(64)); took = time.perf_counter() - t0
    assert got == n, got
    print(f"{n * 8 / took / 1e6:.2f}")
EOF

echo "== netns up (RATE=$RATE)"
RATE=$RATE "$NETNS" up || { echo "FAIL netns up"; echo "0 passed, 1 failed"; exit 1; }
mode=$("$NETNS" mode)
result $? "mode: $mode"

"$NETNS" exec srv python3 "$WORK/server.py" 10.231.2.2 7000 >"$WORK/server.log" 2>&1 &
pids+=($!)
wait_for_line "$WORK/server.log" 10 listening
result $? "echo server listening in $PREFIX-srv"

direct=$("$NETNS" exec cli timeout 30 python3 "$WORK/client.py" 10.231.2.2 7000 rtt)
result $? "direct RTT cli -> srv (median min max ms): $direct"
direct_ms=${direct%% *}

if [ "$mode" = relay ]; then
    for d in $DELAYS; do
        log="$WORK/relay-$d.log"
        "$NETNS" exec mid python3 "$RELAY" --listen 10.231.1.1:7000 --connect 10.231.2.2:7000 --delay-ms "$d" >"$log" 2>&1 &
        rpid=$!
        pids+=("$rpid")
        wait_for_line "$log" 10 "relay ready"
        result $? "relay ready: $(head -1 "$log")"
        rtt=$("$NETNS" exec cli timeout 30 python3 "$WORK/client.py" 10.231.1.1 7000 rtt)
        rc=$?
        added=$(awk -v r="${rtt%% *}" -v b="$direct_ms" 'BEGIN { printf "%.2f", r - b }')
        ok=$(awk -v a="$added" -v d="$d" 'BEGIN { print (a > d - 2 && a < d + 5) ? 0 : 1 }')
        [ $rc = 0 ] || ok=1
        result "$ok" "relay delay $d ms: RTT (median min max ms) $rtt, added $added ms"
        kill -TERM "$rpid"
        timeout 5 tail --pid="$rpid" -f /dev/null
        result $? "relay exits on SIGTERM"
    done
else
    for d in $DELAYS; do
        "$NETNS" set-delay "$d"
        rtt=$("$NETNS" exec cli timeout 30 python3 "$WORK/client.py" 10.231.2.2 7000 rtt)
        result $? "netem delay $d ms: RTT (median min max ms) $rtt (direct $direct_ms)"
    done
    "$NETNS" set-delay 0
fi

if [ "$RATE" != 0 ] && [ "$RATE" != none ]; then
    expect=$(awk -v r="$RATE" 'BEGIN { n = r + 0; u = tolower(r); sub(/^[0-9.]+/, "", u)
        m = (u == "mbit") ? 1 : (u == "kbit") ? 0.001 : (u == "gbit") ? 1000 : -1; print (m < 0) ? -1 : n * m }')
    bytes=$(awk -v e="$expect" 'BEGIN { b = int(e * 1e6 / 8 * 2); print (b < 200000) ? 200000 : b }') # ~2 s
    up=$("$NETNS" exec cli timeout 60 python3 "$WORK/client.py" 10.231.2.2 7000 "$bytes")
    ok=$(awk -v g="$up" -v e="$expect" 'BEGIN { print (e < 0 || (g > 0.8 * e && g < 1.1 * e)) ? 0 : 1 }')
    result "$ok" "upload cli -> srv: $up Mbit/s (RATE $RATE)"

    mkdir -p "$WORK/www"
    head -c "$bytes" /dev/zero >"$WORK/www/blob"
    (cd "$WORK/www" && exec "$OLDPWD/$NETNS" exec srv python3 -m http.server --bind 10.231.2.2 8000 >"$WORK/http.log" 2>&1) &
    pids+=($!)
    "$NETNS" exec cli timeout 10 bash -c 'until exec 3<>/dev/tcp/10.231.2.2/8000; do sleep 0.2; done' 2>/dev/null
    bps=$("$NETNS" exec cli timeout 60 curl -s -o /dev/null -w '%{speed_download}' http://10.231.2.2:8000/blob)
    down=$(awk -v b="$bps" 'BEGIN { printf "%.2f", b * 8 / 1e6 }')
    ok=$(awk -v g="$down" -v e="$expect" 'BEGIN { print (e < 0 || (g > 0.8 * e && g < 1.1 * e)) ? 0 : 1 }')
    result "$ok" "download srv -> cli (http.server + curl): $down Mbit/s (RATE $RATE)"
fi

# Stop our servers before the teardown checks.
for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
for p in "${pids[@]}"; do timeout 5 tail --pid="$p" -f /dev/null; done
pids=()

"$NETNS" down && "$NETNS" down
left=$(ip netns list | grep -c "^$PREFIX-\(cli\|mid\|srv\)\b")
result "$left" "down twice: no namespace left ($left)"

# A failing up (bad tbf rate) must leave nothing behind.
RATE=not-a-rate "$NETNS" up >/dev/null 2>&1
rc=$?
left=$(ip netns list | grep -c "^$PREFIX-\(cli\|mid\|srv\)\b")
[ $rc != 0 ] && [ "$left" = 0 ]
result $? "failed up (RATE=not-a-rate) exits $rc and cleans up ($left namespaces left)"

echo "$passed passed, $failed failed"
[ $failed = 0 ]
