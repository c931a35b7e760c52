#!/usr/bin/env bash
# The speed–cost trade-off across network namespaces (root; uses both cores; long):
# the server (`arbor serve --threads 1`) pinned to core 0 in arbor-srv, the client
# (`arbor tradeoff --threads 1`, the draft model) pinned to core 1 in arbor-cli, links at RATE
# (tc tbf), DELAYS ms added to the round trip (scripts/netns.sh, scripts/delay_relay.py).
#
# For every prompt set and delay: the static baselines (one token per round trip, a fixed chain,
# a fixed tree) once, then the cost-aware policy at every cs value for each objective. The
# server-side baselines (server alone, server-side speculation) run once per set inside the
# server's namespace (no network involved) and join every delay's chart.
#
#   scripts/bench_tradeoff.sh OUT_DIR
#
# Then per set and delay an SLO run: --min-tokens-per-second at SLO_FRACTION of the fastest setting
# measured there (OUT_DIR/<set>-<delay>ms-slo). At the last delay, the profile check: two
# `arbor generate --json` runs of one prompt against the server from an empty data directory — the
# first learns, the second starts from the stored profile (OUT_DIR/profile-{cold,warm}.json).
#
# Writes OUT_DIR/<set>-<delay>ms-<objective>/tradeoff.{json,csv}, OUT_DIR/<set>-server/…, the
# charts OUT_DIR/tradeoff-<objective>.{png,svg} and the tables OUT_DIR/tables.md.
#
# Environment: ARBOR=.build/release/arbor TARGET=qwen2.5-coder-1.5b DRAFT=qwen2.5-coder-0.5b
#   SETS="humaneval mtbench" LIMIT=20 N=128 DELAYS="0 20 80" OBJECTIVES="total_cost energy_total"
#   CS="0 0.25 0.5 0.75 1" BASELINES="one-per-rtt chain4 tree16w4" SERVER_BASELINES="server-alone server-spec"
#   RATE=20mbit PORT=7000 SERVER_WAIT=300 EXTRA="" (more flags for arbor tradeoff)
# DECODE_DRAFTER="" (e.g. model:qwen2.5-coder-0.5b): the server speculates inside run-ahead rounds
#   (`arbor serve --decode-drafter`); add the run-ahead baseline to BASELINES to measure the
#   server doing all the work across the network.
# With OBJECTIVES="" SERVER_BASELINES="" on an earlier run's OUT_DIR, only the SLO runs and the
# profile check run again (against the profiles that run stored).
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=${1:?usage: scripts/bench_tradeoff.sh OUT_DIR}
ARBOR=${ARBOR:-.build/release/arbor}
TARGET=${TARGET:-qwen2.5-coder-1.5b}
DRAFT=${DRAFT:-qwen2.5-coder-0.5b}
SETS=${SETS:-humaneval mtbench}
LIMIT=${LIMIT:-20}
N=${N:-128}
DELAYS=${DELAYS:-0 20 80}
OBJECTIVES=${OBJECTIVES-total_cost energy_total}
CS=${CS:-0 0.25 0.5 0.75 1}
BASELINES=${BASELINES:-one-per-rtt chain4 tree16w4}
SERVER_BASELINES=${SERVER_BASELINES-server-alone server-spec}
SLO_FRACTION=${SLO_FRACTION:-0.8}
PORT=${PORT:-7000}
SERVER_WAIT=${SERVER_WAIT:-300}
EXTRA=${EXTRA:-}
DECODE_DRAFTER=${DECODE_DRAFTER:-}
export RATE=${RATE:-20mbit}

case $ARBOR in /*) ;; *) ARBOR=$PWD/$ARBOR ;; esac
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)

# shellcheck source=scripts/netlib.sh
. scripts/netlib.sh
die() { log "error: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (network namespaces)"
[ -x "$ARBOR" ] || die "$ARBOR is not an executable (set ARBOR or build it)"

server_pid="" relay_pid="" fg_pid=""
on_exit() {
    local rc=$?
    stop "$fg_pid"
    stop "$relay_pid"
    stop "$server_pid"
    "$NETNS" down 2>/dev/null
    exit $rc
}
trap on_exit EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# Profiles are learned per delay (one data directory each), so environments do not feed each other.
export ARBOR_DATA_DIR=$OUT/profiles/server

log "server-side baselines ($SERVER_BASELINES) in the server's namespace"
"$NETNS" down 2>/dev/null
run timeout -k 5 60 "$NETNS" up >&2 || die "netns.sh up failed"
netmode=$("$NETNS" mode)
for set in $SETS; do
    if [ -n "$SERVER_BASELINES" ]; then
        # shellcheck disable=SC2086
        run "$NETNS" exec srv taskset -c 0 "$ARBOR" tradeoff --model "$TARGET" --draft "$DRAFT" --threads 1 \
            --set "$set" --limit "$LIMIT" --max-tokens "$N" --baselines $SERVER_BASELINES --cs-values none \
            --label server --out "$OUT/$set-server" $EXTRA || die "server-side baselines failed ($set)"
    fi
done

serve_extra=()
[ -n "$DECODE_DRAFTER" ] && serve_extra=(--decode-drafter "$DECODE_DRAFTER")
"$NETNS" exec srv taskset -c 0 "$ARBOR" serve --model "$TARGET" --host "$SRV_IP" --port "$PORT" --threads 1 --profile-target \
    "${serve_extra[@]}" >"$OUT/server.log" 2>&1 &
server_pid=$!
wait_for_line "$OUT/server.log" "listening on" "$SERVER_WAIT" "$server_pid" || { tail -n 20 "$OUT/server.log" >&2; die "server did not start"; }

for d in $DELAYS; do
    add_delay "$d" "$OUT/relay-$d.log" "$netmode" || die "could not add $d ms of delay"
    export ARBOR_DATA_DIR=$OUT/profiles/${d}ms
    for set in $SETS; do
        first=1
        compare=--compare-proactive
        for objective in $OBJECTIVES; do
            baselines=none
            [ $first = 1 ] && baselines=$BASELINES
            first=0
            log "$set, $d ms added, $objective"
            # shellcheck disable=SC2086
            run "$NETNS" exec cli taskset -c 1 "$ARBOR" tradeoff --model "$TARGET" --draft "$DRAFT" --threads 1 \
                --target-host "$host" --target-port "$PORT" --set "$set" --limit "$LIMIT" --max-tokens "$N" \
                --objective "$objective" --cs-values $CS --baselines $baselines --label "$d ms" \
                --out "$OUT/$set-${d}ms-$objective" $compare $EXTRA || die "tradeoff failed ($set, $d ms, $objective)"
            compare=""
        done
        # The SLO: a speed the fastest measured setting reached, scaled by SLO_FRACTION.
        slo=$(python3 scripts/tradeoff_summary.py slo "$SLO_FRACTION" "$OUT/$set-${d}ms-"*/tradeoff.json)
        log "$set, $d ms added, SLO: at least $slo tokens/s"
        # shellcheck disable=SC2086
        run "$NETNS" exec cli taskset -c 1 "$ARBOR" tradeoff --model "$TARGET" --draft "$DRAFT" --threads 1 \
            --target-host "$host" --target-port "$PORT" --set "$set" --limit "$LIMIT" --max-tokens "$N" \
            --objective total_cost --min-tokens-per-second "$slo" --cs-values 1 --baselines none --label "$d ms" \
            --out "$OUT/$set-${d}ms-slo" $EXTRA || die "SLO run failed ($set, $d ms)"
    done
    if [ "$d" = "${DELAYS##* }" ]; then
        log "profile check at $d ms: a cold and a warm run"
        export ARBOR_DATA_DIR=$OUT/profiles/check
        for run_name in cold warm; do
            run "$NETNS" exec cli taskset -c 1 "$ARBOR" generate --model "$TARGET" --draft "$DRAFT" --threads 1 \
                --target-host "$host" --target-port "$PORT" --objective total_cost --cs balanced --max-tokens "$N" \
                --chat "Write a Python function that returns the n-th Fibonacci number iteratively." --json \
                >"$OUT/profile-$run_name.json" 2>"$OUT/profile-$run_name.err" || die "profile check ($run_name) failed"
        done
    fi
    stop "$relay_pid"
    relay_pid=""
done

# The charts are drawn with matplotlib (PyPI), as in scripts/test.sh.
python3 -c "import matplotlib" 2>/dev/null || python3 -m pip install -q matplotlib
shared=()
for d in "$OUT"/*-server/; do [ -d "$d" ] && shared+=("$d"); done
[ ${#shared[@]} -gt 0 ] && shared=(--shared "${shared[@]}")
for objective in $OBJECTIVES; do
    python3 scripts/plot_tradeoff.py "$OUT"/*ms-*/ "${shared[@]}" --objective "$objective" \
        --name "tradeoff-$objective" --out "$OUT" --title "target $TARGET (server, 1 core), draft $DRAFT (client, 1 core), $RATE; $objective"
done
python3 scripts/plot_tradeoff.py "$OUT"/*ms-*/ "${shared[@]}" --table --objectives $OBJECTIVES >"$OUT/tables.md"
python3 scripts/tradeoff_summary.py profile "$OUT" >>"$OUT/tables.md"
log "wrote $OUT/tables.md and the charts"
