#!/usr/bin/env bash
# Remote verification measured across network namespaces (root; 20+ minutes; uses both cores):
# the server (`arbor serve`, --threads 1) is pinned to core 0 in arbor-srv, the client
# (--threads 1) to core 1 in arbor-cli, with DELAYS ms added to the round trip (0 = no relay,
# routed straight through arbor-mid; otherwise scripts/delay_relay.py in arbor-mid, or netem
# when the kernel has it) and tc tbf at RATE on both directions (scripts/netns.sh).
#
# Modes, each run on every prompt (chat-rendered), --max-tokens N:
#   local    taskset -c 0 arbor generate --model TARGET --threads 1   (no network; once, not per delay)
#   none     remote, --drafter none      (one token per round trip)
#   suffix   remote, --drafter suffix
#   draft    remote, --draft DRAFT       (the draft model runs in the client; chains by default)
#   tree     remote, --draft DRAFT --max-width 4 (draft-model trees, for comparison)
#   cross    remote, --drafter cross --draft CROSS_DRAFT (another vocabulary, drafting through text)
#
#   scripts/bench_remote.sh [--out FILE.json]
#
# Prints a markdown table per (delay, mode): tok/s (sum of (generated-1) / sum of decode time,
# arbor's own tokens_per_second definition), bytes per generated token (sent + received, client
# side), server busy seconds per generated token, round trips per generated token, mean round trip,
# and how many runs gave the same tokens as the local run of that prompt (greedy: should be all);
# with --out the runs and the table go to FILE.json too.
#
# Environment: ARBOR=.build/release/arbor TARGET=qwen2.5-coder-1.5b DRAFT=qwen2.5-coder-0.5b
#   CROSS_DRAFT=smollm2-135m
#   REMOTE_ARGS="--max-run-ahead 0"  extra client arguments for every remote mode (this one makes
#                                    `none` one token per round trip, without run-ahead rounds)
#   N=64 DELAYS="0 20 80" MODES="local none suffix draft" RATE=20mbit PORT=7000
#   PROMPTS_FILE=<one chat prompt per line> (default: three short coding prompts)
#   WARMUP=1 (one short untimed local and remote run first) SERVER_WAIT=300 RUN_TIMEOUT=900 (s)
set -uo pipefail
cd "$(dirname "$0")/.."

out_json=""
while [ $# -gt 0 ]; do
    case $1 in
        --out) out_json=${2:?--out needs a file}; shift 2 ;;
        --out=*) out_json=${1#--out=}; shift ;;
        -h | --help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

ARBOR=${ARBOR:-.build/release/arbor}
TARGET=${TARGET:-qwen2.5-coder-1.5b}
DRAFT=${DRAFT:-qwen2.5-coder-0.5b}
CROSS_DRAFT=${CROSS_DRAFT:-smollm2-135m}
N=${N:-64}
DELAYS=${DELAYS:-0 20 80}
MODES=${MODES:-local none suffix draft}
PORT=${PORT:-7000}
WARMUP=${WARMUP:-1}
SERVER_WAIT=${SERVER_WAIT:-300}
RUN_TIMEOUT=${RUN_TIMEOUT:-900}
export RATE=${RATE:-20mbit}

case $ARBOR in /*) ;; *) ARBOR=$PWD/$ARBOR ;; esac
if [ -n "$out_json" ]; then case $out_json in /*) ;; *) out_json=$PWD/$out_json ;; esac; fi

prompts=()
if [ -n "${PROMPTS_FILE:-}" ]; then
    while IFS= read -r line; do [ -n "$line" ] && prompts+=("$line"); done <"$PROMPTS_FILE"
else
    prompts=(
        "Write a Python function that checks whether a string is a palindrome, ignoring case and punctuation."
        "Write a Python function that returns the n-th Fibonacci number iteratively."
        "Write a Python function that merges two sorted lists into one sorted list."
    )
fi

# shellcheck source=scripts/netlib.sh
. scripts/netlib.sh
die() { log "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (network namespaces)"
[ -x "$ARBOR" ] || die "$ARBOR is not an executable (set ARBOR or build it)"
command -v taskset >/dev/null || die "needs taskset (util-linux)"
[ ${#prompts[@]} -gt 0 ] || die "no prompts"
[ "$(nproc)" -ge 2 ] || log "warning: fewer than 2 cores; server and client share one"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/arbor-bench-remote.XXXXXX")
RUNS=$WORK/runs.jsonl
: >"$RUNS"
server_pid="" relay_pid="" fg_pid=""

on_exit() {
    local rc=$?
    stop "$fg_pid"
    stop "$relay_pid"
    stop "$server_pid"
    "$NETNS" down 2>/dev/null
    log "work directory (logs, runs.jsonl): $WORK"
    exit $rc
}
trap on_exit EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# Append one run's numbers to runs.jsonl (or its error).
cat >"$WORK/record.py" <<'EOF'
import hashlib, json, sys
delay, mode, prompt, path, rc, wall = sys.argv[1:7]

def load(p):
    text = open(p, encoding="utf-8", errors="replace").read()
    try:
        return json.loads(text)
    except ValueError:
        for line in reversed(text.splitlines()):
            if line.strip().startswith("{"):
                try:
                    return json.loads(line)
                except ValueError:
                    pass
    raise ValueError("no JSON object in the output")

def get(d, *names):
    for n in names:
        if isinstance(d, dict) and n in d:
            return d[n]
    return None

rec = {"delay_ms": None if delay == "-" else float(delay), "mode": mode, "prompt": int(prompt),
       "wall_s": float(wall), "exit": int(rc)}
try:
    if rec["exit"] != 0:
        raise ValueError(f"exit status {rc}")
    out = load(path)
    stats = out["stats"]
    rec["generated_tokens"] = get(stats, "generated_tokens", "generatedTokens")
    if rec["generated_tokens"] is None:
        rec["generated_tokens"] = len(out["tokens"])
    rec["decode_ms"] = get(stats, "decode_ms", "decodeMilliseconds")
    rec["tokens_sha256"] = hashlib.sha256(json.dumps(out["tokens"]).encode()).hexdigest()[:16]
    spec = get(stats, "speculative")
    remote = get(spec, "remote")
    if mode != "local":
        if not isinstance(remote, dict):
            raise ValueError("no stats.speculative.remote in a remote run")
        for key, names in {"bytes_sent": ("bytesSent", "bytes_sent"),
                           "bytes_received": ("bytesReceived", "bytes_received"),
                           "round_trips": ("roundTrips", "round_trips"),
                           "round_trip_ms": ("roundTripMilliseconds", "round_trip_ms"),
                           "server_busy_ms": ("serverBusyMilliseconds", "server_busy_ms"),
                           "rounds": ("rounds",)}.items():
            rec[key] = get(remote, *names)
    if isinstance(spec, dict):
        rec["mean_accepted_length"] = get(spec, "meanAcceptedLength", "mean_accepted_length")
except (ValueError, KeyError, TypeError, OSError) as err:
    rec["error"] = str(err)
print(json.dumps(rec))
EOF

cat >"$WORK/summary.py" <<'EOF'
import json, sys
runs_path, out_path, config = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
config = {k: int(v) if v.isdigit() else v for k, v in config.items()}
runs = [json.loads(l) for l in open(runs_path) if l.strip()]
order = {m: i for i, m in enumerate(["local", "none", "suffix", "draft", "tree", "cross"])}
local_tokens = {r["prompt"]: r.get("tokens_sha256") for r in runs if r["mode"] == "local" and "error" not in r}
groups = {}
for r in runs:
    groups.setdefault((r["delay_ms"], r["mode"]), []).append(r)

def total(rs, key):
    vals = [r.get(key) for r in rs]
    return None if any(v is None for v in vals) else sum(vals)

rows = []
for (delay, mode), rs in sorted(groups.items(), key=lambda kv: (-1 if kv[0][0] is None else kv[0][0], order.get(kv[0][1], 9))):
    ok = [r for r in rs if "error" not in r]
    row = {"delay_ms": delay, "mode": mode, "runs": len(ok), "failed": len(rs) - len(ok)}
    gen, dec = total(ok, "generated_tokens"), total(ok, "decode_ms")
    if ok and gen and dec:
        row["generated_tokens"] = gen
        row["tokens_per_second"] = sum(max(r["generated_tokens"] - 1, 0) for r in ok) / (dec / 1000)
        if mode != "local":
            sent, recv = total(ok, "bytes_sent"), total(ok, "bytes_received")
            busy, trips, rtt = total(ok, "server_busy_ms"), total(ok, "round_trips"), total(ok, "round_trip_ms")
            row["bytes_per_token"] = None if sent is None or recv is None else (sent + recv) / gen
            row["server_busy_s_per_token"] = None if busy is None else busy / 1000 / gen
            row["round_trips_per_token"] = None if trips is None else trips / gen
            row["mean_round_trip_ms"] = None if not trips or rtt is None else rtt / trips
    if local_tokens and mode != "local":
        row["same_tokens_as_local"] = sum(1 for r in ok if local_tokens.get(r["prompt"]) == r.get("tokens_sha256"))
    rows.append(row)

def fmt(v, spec):
    return "—" if v is None else format(v, spec)

lines = ["| added delay | mode | tok/s | bytes/token | server busy s/token | round trips/token | mean RTT ms | runs | same tokens as local |",
         "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
for r in rows:
    delay = "local" if r["delay_ms"] is None else f"{r['delay_ms']:g} ms"
    runs_cell = f"{r['runs']}" + (f" ({r['failed']} failed)" if r["failed"] else "")
    lines.append(f"| {delay} | {r['mode']} | {fmt(r.get('tokens_per_second'), '.2f')} | {fmt(r.get('bytes_per_token'), '.0f')} | "
                 f"{fmt(r.get('server_busy_s_per_token'), '.4f')} | {fmt(r.get('round_trips_per_token'), '.3f')} | "
                 f"{fmt(r.get('mean_round_trip_ms'), '.1f')} | {runs_cell} | {r.get('same_tokens_as_local', '—')} |")
print("\n".join(lines))
for r in runs:
    if "error" in r:
        print(f"failed run: delay {r['delay_ms']} mode {r['mode']} prompt {r['prompt']}: {r['error']}", file=sys.stderr)
if out_path:
    with open(out_path, "w") as f:
        json.dump({"config": config, "summary": rows, "runs": runs}, f, indent=1)
        f.write("\n")
EOF

# One measured run: delay mode prompt-index command...
measure() {
    local delay=$1 mode=$2 i=$3 tag
    shift 3
    tag="$delay-$mode-$i"
    local t0 t1 rc wall
    t0=$(date +%s.%N)
    run timeout -k 10 "$RUN_TIMEOUT" "$@" >"$WORK/$tag.json" 2>"$WORK/$tag.err"
    rc=$?
    t1=$(date +%s.%N)
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    python3 "$WORK/record.py" "$delay" "$mode" "$i" "$WORK/$tag.json" "$rc" "$wall" >>"$RUNS"
    log "  delay $delay mode $mode prompt $i: exit $rc, $wall s"
    [ $rc = 0 ] || tail -n 5 "$WORK/$tag.err" >&2
}

remote_args() { # mode
    case $1 in
        none) echo "--drafter none" ;;
        suffix) echo "--drafter suffix" ;;
        draft) echo "--draft $DRAFT" ;;
        tree) echo "--draft $DRAFT --max-width 4" ;;
        cross) echo "--drafter cross --draft $CROSS_DRAFT" ;;
        *) die "unknown mode $1" ;;
    esac
}

log "arbor $ARBOR; target $TARGET, draft $DRAFT, N=$N, delays $DELAYS ms, modes $MODES, rate $RATE, ${#prompts[@]} prompts"
"$NETNS" down 2>/dev/null
run timeout -k 5 60 "$NETNS" up >&2 || die "netns.sh up failed"
netmode=$("$NETNS" mode)

"$NETNS" exec srv taskset -c 0 "$ARBOR" serve --model "$TARGET" --host "$SRV_IP" --port "$PORT" --threads 1 \
    >"$WORK/server.log" 2>&1 &
server_pid=$!
wait_for_line "$WORK/server.log" "listening on" "$SERVER_WAIT" "$server_pid" || {
    tail -n 20 "$WORK/server.log" >&2
    die "server did not print 'listening on' within $SERVER_WAIT s"
}
log "$(grep -m1 'listening on' "$WORK/server.log")"

local_cmd=(taskset -c 0 "$ARBOR" generate --model "$TARGET" --threads 1 --json)
cli_cmd=("$NETNS" exec cli taskset -c 1 "$ARBOR" generate --model "$TARGET" --threads 1 --target-port "$PORT" --json)

if [ "$WARMUP" = 1 ]; then
    log "warm-up (untimed)"
    run timeout -k 10 "$RUN_TIMEOUT" "${local_cmd[@]}" --chat "${prompts[0]}" --max-tokens 8 >/dev/null 2>&1 ||
        log "warning: local warm-up failed"
    run timeout -k 10 "$RUN_TIMEOUT" "${cli_cmd[@]}" --target-host "$SRV_IP" --drafter none --chat "${prompts[0]}" \
        --max-tokens 8 >/dev/null 2>"$WORK/warmup.err" || { tail -n 5 "$WORK/warmup.err" >&2; log "warning: remote warm-up failed"; }
fi

case " $MODES " in
    *" local "*)
        log "mode local (server alone, no network)"
        for i in "${!prompts[@]}"; do
            measure - local "$i" "${local_cmd[@]}" --chat "${prompts[$i]}" --max-tokens "$N"
        done ;;
esac

for d in $DELAYS; do
    add_delay "$d" "$WORK/relay-$d.log" "$netmode" || die "could not add $d ms of delay"
    log "added delay $d ms ($netmode mode), client -> $host:$PORT"
    for mode in $MODES; do
        [ "$mode" = local ] && continue
        # shellcheck disable=SC2046
        for i in "${!prompts[@]}"; do
            measure "$d" "$mode" "$i" "${cli_cmd[@]}" --target-host "$host" $(remote_args "$mode") ${REMOTE_ARGS:-} \
                --chat "${prompts[$i]}" --max-tokens "$N"
        done
    done
    stop "$relay_pid"
    relay_pid=""
done

config=$(python3 -c 'import json, sys; print(json.dumps(dict(zip(sys.argv[1::2], sys.argv[2::2]))))' \
    target "$TARGET" draft "$DRAFT" max_tokens "$N" delays_ms "$DELAYS" modes "$MODES" rate "$RATE" \
    delay_mode "$netmode" server_cpu 0 client_cpu 1 threads 1 prompts "$(printf '%s\n' "${prompts[@]}")" \
    kernel "$(uname -r)" date "$(date -u +%Y-%m-%dT%H:%M:%SZ)")
python3 "$WORK/summary.py" "$RUNS" "$out_json" "$config"
[ -z "$out_json" ] || log "wrote $out_json"
! grep -q '"error"' "$RUNS"
