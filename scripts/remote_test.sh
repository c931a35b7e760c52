#!/usr/bin/env bash
# CI network test of `arbor serve` + the remote client (root; ~1-2 min; always < 5 min).
#
# For each added round-trip delay in DELAYS (20 and 80 ms): scripts/netns.sh up, start
#   arbor-srv: $ARBOR serve --model M --host 10.231.2.2 --port 7000 --threads 1
# (waits up to 60 s for "listening on"), start scripts/delay_relay.py in arbor-mid
# (10.231.1.1:7000 -> 10.231.2.2:7000, --delay-ms D) unless netns.sh uses netem (then the client
# goes straight to 10.231.2.2, delayed by netem), and in arbor-cli run
#   $ARBOR generate --model M --target-host H --target-port 7000 --drafter suffix|none|model|cross
#                   --prompt P --max-tokens 48 --json
# (`model` drafts with M itself, --draft M, with proactive drafting on: the case also reports the
# trees drafted ahead and used, and the cost line's objective and energy source)
# Each case passes when its `tokens` equal those of the local run
#   $ARBOR generate --model M --prompt P --max-tokens 48 --json      (no network, no drafter)
# and stats.speculative.remote.roundTrips > 0. At the first delay the server is also killed (SIGKILL)
# under a generating client, which must exit with "cannot reach the target server" within 60 s.
# One PASS/FAIL line per case, then
# "N passed, M failed"; the exit status is non-zero on any failure.
#
# Environment: ARBOR=.build/release/arbor MODEL=smollm2-135m DELAYS="20 80" DRAFTERS="suffix none model cross"
# CROSS_DRAFT=gemma3-270m
#   MAX_TOKENS=48 PROMPT="def fibonacci(n):" RATE=20mbit (tbf, see netns.sh) PORT=7000
#   TOTAL_TIMEOUT=270 (s, hard budget for all waits) SERVER_WAIT=60 CLIENT_TIMEOUT=90
#   KEEP_LOGS=1 keeps the work directory (logs, JSON) and prints its path.
# Everything it starts (namespaces, server, relay, clients) is torn down on exit, Ctrl-C included.
set -uo pipefail
cd "$(dirname "$0")/.."

ARBOR=${ARBOR:-.build/release/arbor}
MODEL=${MODEL:-smollm2-135m}
DELAYS=${DELAYS:-20 80}
DRAFTERS=${DRAFTERS:-suffix none model cross}
CROSS_DRAFT=${CROSS_DRAFT:-gemma3-270m}
MAX_TOKENS=${MAX_TOKENS:-48}
PROMPT=${PROMPT:-def fibonacci(n):}
PORT=${PORT:-7000}
TOTAL_TIMEOUT=${TOTAL_TIMEOUT:-270}
SERVER_WAIT=${SERVER_WAIT:-60}
CLIENT_TIMEOUT=${CLIENT_TIMEOUT:-90}
export RATE=${RATE:-20mbit}

case $ARBOR in /*) ;; *) ARBOR=$PWD/$ARBOR ;; esac
WORK=$(mktemp -d "${TMPDIR:-/tmp}/arbor-remote-test.XXXXXX")
deadline=$((SECONDS + TOTAL_TIMEOUT))
server_pid="" relay_pid="" fg_pid=""
passed=0 failed=0

# shellcheck source=scripts/netlib.sh
. scripts/netlib.sh

# min(want, seconds left before the deadline); 0 when the budget is spent.
budget() {
    local left=$((deadline - SECONDS))
    [ $left -gt 0 ] || left=0
    [ "$1" -lt $left ] && echo "$1" || echo $left
}

teardown() {
    stop "$fg_pid"
    fg_pid=""
    stop "$relay_pid"
    relay_pid=""
    stop "$server_pid"
    server_pid=""
    "$NETNS" down 2>/dev/null
}

on_exit() {
    local rc=$?
    teardown
    if [ "${KEEP_LOGS:-0}" = 1 ]; then log "logs kept in $WORK"; else rm -rf "$WORK"; fi
    exit $rc
}
trap on_exit EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

case_result() { # name ok(0/1) detail
    if [ "$2" = 0 ]; then
        echo "PASS $1${3:+ ($3)}"
        passed=$((passed + 1))
    else
        echo "FAIL $1${3:+: $3}"
        failed=$((failed + 1))
    fi
}

fail_cases() { # detail delay
    local drafter
    for drafter in $DRAFTERS; do case_result "delay $2 ms, drafter $drafter" 1 "$1"; done
}

show_log() { # file
    [ -s "$1" ] || return 0
    echo "---- last lines of $(basename "$1")" >&2
    tail -n 15 "$1" >&2
}

# `model` drafts with the target model itself (same vocabulary, every draft accepted).
# cross: a draft model of another vocabulary (Gemma 3 for SmolLM2), drafting through text; the
# client then reads the target's tokenizer from the target's own file.
drafter_args() {
    case $1 in
        model) echo "--draft $MODEL" ;;
        cross) echo "--drafter cross --draft $CROSS_DRAFT" ;;
        *) echo "--drafter $1" ;;
    esac
}

cat >"$WORK/check.py" <<'EOF'
import json, sys

def load(path):
    text = open(path, encoding="utf-8", errors="replace").read()
    try:
        return json.loads(text)
    except ValueError:
        for line in reversed(text.splitlines()):  # tolerate stray lines around the object
            line = line.strip()
            if line.startswith("{"):
                try:
                    return json.loads(line)
                except ValueError:
                    pass
    raise SystemExit(f"no JSON object in {path}")

def get(d, *names):
    for n in names:
        if isinstance(d, dict) and n in d:
            return d[n]
    return None

mode, ref_path = sys.argv[1], sys.argv[2]
ref = load(ref_path)
ref_tokens = ref.get("tokens")
if not isinstance(ref_tokens, list) or not ref_tokens:
    raise SystemExit(f"local run: no tokens in {ref_path}")
if mode == "ref":
    print(f"{len(ref_tokens)} tokens")
    raise SystemExit(0)
got = load(sys.argv[3])
tokens = got.get("tokens")
problems = []
if tokens != ref_tokens:
    if not isinstance(tokens, list):
        problems.append("no tokens array")
    else:
        first = next((i for i, (a, b) in enumerate(zip(tokens, ref_tokens)) if a != b), min(len(tokens), len(ref_tokens)))
        problems.append(f"tokens differ from the local run at index {first} ({len(tokens)} vs {len(ref_tokens)} tokens)")
remote = get(get(got.get("stats"), "speculative"), "remote")
trips = get(remote, "roundTrips", "round_trips")
if not isinstance(trips, (int, float)) or trips <= 0:
    problems.append(f"stats.speculative.remote.roundTrips is {trips!r}, want > 0")
if problems:
    raise SystemExit("; ".join(problems))
rtt = get(remote, "roundTripMilliseconds", "round_trip_ms")
mean = f", mean round trip {rtt / trips:.1f} ms" if isinstance(rtt, (int, float)) else ""
spec = get(got.get("stats"), "speculative") or {}
ahead = spec.get("proactive") or {}
cost = spec.get("cost") or {}
extra = ""
if ahead.get("started"):
    extra += f", drafted ahead {ahead['started']} (used {ahead.get('hits', 0)})"
if spec.get("run_ahead_rounds"):
    extra += f", {spec['run_ahead_rounds']} run-ahead rounds ({spec.get('run_ahead_tokens', 0)} tokens)"
if cost:
    extra += f", target energy {cost.get('target_energy_source', '?')}"
print(f"{len(tokens)} tokens identical, {trips} round trips{mean}{extra}")
EOF

log "arbor: $ARBOR, model $MODEL, delays: $DELAYS ms, drafters: $DRAFTERS, rate $RATE"
if [ ! -x "$ARBOR" ]; then
    for d in $DELAYS; do fail_cases "$ARBOR is not an executable (set ARBOR or build it)" "$d"; done
    echo "$passed passed, $failed failed"
    exit 1
fi
"$NETNS" down 2>/dev/null # leftovers of an earlier run

log "local reference run"
ref="$WORK/local.json"
t=$(budget "$CLIENT_TIMEOUT")
ref_ok=1
if [ "$t" -gt 0 ] && run timeout -k 5 "$t" "$ARBOR" generate --model "$MODEL" --prompt "$PROMPT" \
        --max-tokens "$MAX_TOKENS" --json >"$ref" 2>"$WORK/local.err" &&
    detail=$(python3 "$WORK/check.py" ref "$ref" 2>&1); then
    ref_ok=0
    log "local: $detail"
else
    show_log "$WORK/local.err"
fi

for d in $DELAYS; do
    if [ $ref_ok != 0 ]; then fail_cases "the local reference run failed" "$d"; continue; fi
    if [ "$(budget 10)" -lt 10 ]; then fail_cases "out of time (TOTAL_TIMEOUT=$TOTAL_TIMEOUT s)" "$d"; continue; fi
    log "delay $d ms: namespaces"
    if ! DELAY_MS=$d run timeout -k 5 30 "$NETNS" up >&2; then fail_cases "netns.sh up failed" "$d"; continue; fi
    mode=$("$NETNS" mode)

    slog="$WORK/server-$d.log"
    "$NETNS" exec srv "$ARBOR" serve --model "$MODEL" --host "$SRV_IP" --port "$PORT" --threads 1 >"$slog" 2>&1 &
    server_pid=$!
    if ! wait_for_line "$slog" "listening on" "$(budget "$SERVER_WAIT")" "$server_pid"; then
        show_log "$slog"
        fail_cases "server did not print 'listening on' within ${SERVER_WAIT} s (or exited)" "$d"
        teardown
        continue
    fi
    log "server: $(grep -m1 'listening on' "$slog")"

    host=$SRV_IP
    if [ "$mode" = relay ]; then
        rlog="$WORK/relay-$d.log"
        "$NETNS" exec mid python3 "$RELAY" --listen "$MID_IP:$PORT" --connect "$SRV_IP:$PORT" --delay-ms "$d" >"$rlog" 2>&1 &
        relay_pid=$!
        if ! wait_for_line "$rlog" "relay ready" "$(budget 10)" "$relay_pid"; then
            show_log "$rlog"
            fail_cases "relay did not start" "$d"
            teardown
            continue
        fi
        log "$(head -n1 "$rlog")"
        host=$MID_IP
    else
        log "netem mode: $d ms added by netem, client connects to $SRV_IP"
    fi

    for drafter in $DRAFTERS; do
        name="delay $d ms, drafter $drafter"
        out="$WORK/remote-$d-$drafter.json" err="$WORK/remote-$d-$drafter.err"
        t=$(budget "$CLIENT_TIMEOUT")
        if [ "$t" -le 0 ]; then case_result "$name" 1 "out of time (TOTAL_TIMEOUT=$TOTAL_TIMEOUT s)"; continue; fi
        run timeout -k 5 "$t" "$NETNS" exec cli "$ARBOR" generate --model "$MODEL" --target-host "$host" \
            --target-port "$PORT" $(drafter_args "$drafter") --prompt "$PROMPT" --max-tokens "$MAX_TOKENS" \
            --no-profile --json >"$out" 2>"$err"
        rc=$?
        if [ $rc = 124 ] || [ $rc = 137 ]; then
            show_log "$err"
            case_result "$name" 1 "client timed out after $t s"
        elif [ $rc != 0 ]; then
            show_log "$err"
            case_result "$name" 1 "client exited $rc"
        elif detail=$(python3 "$WORK/check.py" remote "$ref" "$out" 2>&1); then
            case_result "$name" 0 "$detail"
        else
            show_log "$err"
            case_result "$name" 1 "$detail"
        fi
    done

    # The server killed mid-generation (SIGKILL, no goodbye): the client must end with a clear
    # error after its reconnection attempts, not hang. Once, at the first delay.
    if [ "$d" = "${DELAYS%% *}" ] && [ "$(budget 70)" -ge 70 ]; then
        name="delay $d ms, server killed mid-generation"
        err="$WORK/killed-$d.err"
        "$NETNS" exec cli "$ARBOR" generate --model "$MODEL" --target-host "$host" --target-port "$PORT" \
            --drafter none --prompt "$PROMPT" --max-tokens 4000 --ignore-eos --reconnect-attempts 2 >/dev/null 2>"$err" &
        client_pid=$!
        sleep 3
        kill -KILL "$server_pid" 2>/dev/null
        killed_at=$SECONDS
        while kill -0 "$client_pid" 2>/dev/null && [ $((SECONDS - killed_at)) -lt 60 ]; do sleep 0.2; done
        if kill -0 "$client_pid" 2>/dev/null; then
            kill -KILL "$client_pid" 2>/dev/null
            case_result "$name" 1 "the client still runs 60 s after the server was killed"
        else
            wait "$client_pid"
            rc=$?
            if [ $rc != 0 ] && grep -q "cannot reach the target server" "$err"; then
                case_result "$name" 0 "client exited $rc within $((SECONDS - killed_at)) s: $(grep -o 'cannot reach the target server[^:]*' "$err" | head -n1)"
            else
                show_log "$err"
                case_result "$name" 1 "client exited $rc without the expected error"
            fi
        fi
    fi
    teardown
done

echo "$passed passed, $failed failed"
[ $failed = 0 ] && [ $passed -gt 0 ]
