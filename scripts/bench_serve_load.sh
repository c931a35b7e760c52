#!/usr/bin/env bash
# Server throughput with several clients at once, merging their rounds into shared target passes
# or not: one `arbor serve` on loopback, K concurrent `arbor generate --target-host` clients.
#
#   scripts/bench_serve_load.sh            # K="1 4 8" MERGE="64 1"
#
# For each K and each --max-batch-tokens value in MERGE (1 = never merge), prints the aggregate
# generated tokens per second (all clients' tokens / wall time from the first start to the last
# finish) and checks every client's tokens equal the K=1 run of its prompt.
# Environment: ARBOR=.build/release/arbor TARGET=qwen2.5-coder-1.5b TOKENIZER=qwen2.5-coder-0.5b
#   DRAFTER=suffix N=64 THREADS=2 PORT=7890
set -euo pipefail
cd "$(dirname "$0")/.."
ARBOR=${ARBOR:-.build/release/arbor}
TARGET=${TARGET:-qwen2.5-coder-1.5b}
TOKENIZER=${TOKENIZER:-qwen2.5-coder-0.5b}
DRAFTER=${DRAFTER:-suffix}
N=${N:-64}
THREADS=${THREADS:-2}
PORT=${PORT:-7890}
KS=${K:-1 4 8}
MERGES=${MERGE:-64 1}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/arbor-serve-load.XXXXXX")
server=""
cleanup() { [ -z "$server" ] || kill -TERM "$server" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

prompts=(
  "Write a Python function that returns the n-th Fibonacci number."
  "Write a Python function that checks whether a string is a palindrome."
  "Write a Python function that merges two sorted lists."
  "Write a Python function that counts the words in a text."
  "Write a Python class for a stack with push, pop and peek."
  "Write a Python function that flattens a nested list."
  "Write a Python function that returns the prime factors of n."
  "Write a Python function that reverses the words of a sentence."
)

start_server() {
  "$ARBOR" serve --model "$TARGET" --port "$PORT" --threads "$THREADS" --max-batch-tokens "$1" --log-level warning > "$WORK/server.out" 2> "$WORK/server.err" &
  server=$!
  for _ in $(seq 1 600); do grep -q "listening on" "$WORK/server.out" 2>/dev/null && return 0; sleep 0.1; done
  echo "server did not start" >&2; cat "$WORK/server.err" >&2; exit 1
}

client() {  # client INDEX OUTFILE
  "$ARBOR" generate --model "$TOKENIZER" --target-host 127.0.0.1 --target-port "$PORT" --drafter "$DRAFTER" \
    --chat "${prompts[$1]}" --max-tokens "$N" --threads 1 --json > "$2" 2>/dev/null
}

echo "| clients | --max-batch-tokens | wall s | tokens | aggregate tok/s | same as alone |"
echo "|---:|---:|---:|---:|---:|---:|"
for merge in $MERGES; do
  start_server "$merge"
  # Reference tokens: each prompt alone.
  for i in "${!prompts[@]}"; do client "$i" "$WORK/alone-$i.json"; done
  for k in $KS; do
    t0=$(date +%s.%N)
    pids=()
    for i in $(seq 0 $((k - 1))); do client "$i" "$WORK/k$k-m$merge-$i.json" & pids+=($!); done
    for p in "${pids[@]}"; do wait "$p"; done
    t1=$(date +%s.%N)
    python3 - "$WORK" "$k" "$merge" "$t0" "$t1" <<'PY'
import json, sys
work, k, merge, t0, t1 = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
tokens = same = 0
for i in range(k):
    r = json.load(open(f"{work}/k{k}-m{merge}-{i}.json"))
    a = json.load(open(f"{work}/alone-{i}.json"))
    tokens += len(r["tokens"])
    same += r["tokens"] == a["tokens"]
wall = t1 - t0
print(f"| {k} | {merge} | {wall:.2f} | {tokens} | {tokens / wall:.1f} | {same}/{k} |")
PY
  done
  kill -TERM "$server"; wait "$server" || true; server=""
done
echo "(work directory: $WORK)"
