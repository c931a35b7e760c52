#!/usr/bin/env bash
# Long contexts, Arbor against the reference engine (llama.cpp via xllamacpp), alternated on this
# machine: decode after a short and a long prompt, and prompt reading of long prompts in the
# engine's default chunks (256 tokens; the reference uses its default 512-token micro-batches).
# Prints a markdown table (Arbor, reference, ratio) and the loss of decode speed from the short
# to the long prompt for both. Uses the arbor binary already built (release).
#
#   scripts/bench_long_context.sh [model]        (default: qwen2.5-coder-1.5b)
#
# Environment:
#   THREADS=2 REPEAT=2 TOKENS=64 SHORT=32 LONG=4000 PREFILLS="2048 4000" CHUNK=256
#   ARBOR_BUILD_DIR=.build   BENCH_OUT=<dir> (default: a new temp dir)
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL=${1:-qwen2.5-coder-1.5b}
THREADS=${THREADS:-2}
REPEAT=${REPEAT:-2}
TOKENS=${TOKENS:-64}
SHORT=${SHORT:-32}
LONG=${LONG:-4000}
PREFILLS=${PREFILLS:-2048 4000}
CHUNK=${CHUNK:-256}
ARBOR=${ARBOR_BUILD_DIR:-.build}/release/arbor
OUT=${BENCH_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/arbor-long.XXXXXX")}
mkdir -p "$OUT"
[ -x "$ARBOR" ] || { echo "build arbor first: swift build -c release --product arbor" >&2; exit 1; }
log() { echo "== $*" >&2; }
common=(--model "$MODEL" --threads "$THREADS" --repeat "$REPEAT" --warmup 0 --json)
ref=(python3 scripts/bench_reference.py --model "$MODEL" --threads "$THREADS" --repeat "$REPEAT" --warmup 0)

for p in $SHORT $LONG; do
    log "decode after $p tokens: arbor"
    "$ARBOR" bench decode "${common[@]}" --tokens "$TOKENS" --prompt-tokens "$p" > "$OUT/arbor.decode.$p.json"
    log "decode after $p tokens: reference"
    "${ref[@]}" --only decode --tokens "$TOKENS" --prompt-tokens "$p" --out "$OUT/reference.decode.$p.json" \
        --log "$OUT/reference.decode.$p.log"
done
for p in $PREFILLS; do
    log "prefill of $p tokens: arbor (chunks of $CHUNK, invariance checked)"
    "$ARBOR" bench prefill "${common[@]}" --tokens "$p" --chunk "$CHUNK" --check-invariance > "$OUT/arbor.prefill.$p.json"
    log "prefill of $p tokens: reference"
    "${ref[@]}" --only prefill --prefill-tokens "$p" --out "$OUT/reference.prefill.$p.json" \
        --log "$OUT/reference.prefill.$p.log"
done

python3 - "$OUT" "$SHORT" "$LONG" "$PREFILLS" "$CHUNK" <<'EOF'
import json, os, sys

out, short, long_, prefills, chunk = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(), sys.argv[5]


def tps(name, key):
    d = json.load(open(os.path.join(out, name)))
    d = d.get(key, d)
    return (d.get("tokens_per_second") or d["tokensPerSecond"])["median"], d


rows = []
dec = {}
for p in (short, long_):
    a, _ = tps(f"arbor.decode.{p}.json", "decode")
    r, _ = tps(f"reference.decode.{p}.json", "decode")
    dec[p] = (a, r)
    rows.append((f"decode after {p} tokens (tok/s)", a, r))
for p in prefills:
    a, d = tps(f"arbor.prefill.{p}.json", "prefill")
    r, _ = tps(f"reference.prefill.{p}.json", "prefill")
    inv = d.get("batch_invariant", d.get("batchInvariant"))
    rows.append((f"prefill {p} tokens (tok/s; Arbor in {chunk}-token calls, batch-invariant: {'yes' if inv else 'NO'})", a, r))
print("| | Arbor | reference | Arbor ÷ reference |")
print("|---|---:|---:|---:|")
for name, a, r in rows:
    print(f"| {name} | {a:.2f} | {r:.2f} | {a / r:.2f} |")
(a0, r0), (a1, r1) = dec[short], dec[long_]
print(f"| decode speed lost from {short} to {long_} tokens | {100 * (1 - a1 / a0):.0f} % | {100 * (1 - r1 / r0):.0f} % | |")
EOF
