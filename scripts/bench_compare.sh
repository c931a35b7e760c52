#!/usr/bin/env bash
# Arbor against the reference engine (llama.cpp via xllamacpp), back to back on this machine:
# builds arbor (release), then for each model runs `arbor bench bandwidth|decode|prefill|batch`
# and scripts/bench_reference.py with the same GGUF file and thread count, and prints a markdown
# table (Arbor, reference, Arbor/reference). See docs/BENCHMARKS.md.
#
#   scripts/bench_compare.sh [model...]        (default: smollm2-135m qwen2.5-coder-1.5b)
#
# Environment:
#   THREADS=2 REPEAT=5 WARMUP=1   passed to every benchmark
#   TOKENS=128 PREFILL=512 CONTEXT=64 SIZES=1,2,4,8,16,32,64
#   VERIFY=1                      also time Arbor's verifier shape (tree mask, all logits, B<=16)
#   ARBOR_BUILD_DIR=.build        SwiftPM scratch path
#   BENCH_OUT=<dir>               where the JSON reports go (default: a new temp dir)
set -euo pipefail
cd "$(dirname "$0")/.."

THREADS=${THREADS:-2}
REPEAT=${REPEAT:-5}
WARMUP=${WARMUP:-1}
TOKENS=${TOKENS:-128}
PREFILL=${PREFILL:-512}
CONTEXT=${CONTEXT:-64}
SIZES=${SIZES:-1,2,4,8,16,32,64}
VERIFY=${VERIFY:-1}
BUILD=${ARBOR_BUILD_DIR:-.build}
OUT=${BENCH_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/arbor-bench.XXXXXX")}
mkdir -p "$OUT"
if [ $# -gt 0 ]; then models=("$@"); else models=(smollm2-135m qwen2.5-coder-1.5b); fi

log() { echo "== $*" >&2; }

log "building arbor (release, scratch path $BUILD)"
swift build -c release --product arbor --scratch-path "$BUILD" >&2
ARBOR="$BUILD/release/arbor"
common=(--threads "$THREADS" --repeat "$REPEAT" --warmup "$WARMUP" --json)

uptime > "$OUT/uptime.start"
log "$(cat "$OUT/uptime.start")"
start=$(date +%s)
for m in "${models[@]}"; do
    "$ARBOR" models pull "$m" >&2
    path=$("$ARBOR" models path "$m")
    log "$m: arbor bench bandwidth"
    "$ARBOR" bench bandwidth --model "$m" --tokens "$TOKENS" "${common[@]}" > "$OUT/$m.arbor.bandwidth.json"
    log "$m: arbor bench decode"
    "$ARBOR" bench decode --model "$m" --tokens "$TOKENS" "${common[@]}" > "$OUT/$m.arbor.decode.json"
    log "$m: arbor bench prefill"
    "$ARBOR" bench prefill --model "$m" --tokens "$PREFILL" "${common[@]}" > "$OUT/$m.arbor.prefill.json"
    log "$m: arbor bench batch (causal, last logits: the reference's work)"
    "$ARBOR" bench batch --model "$m" --context "$CONTEXT" --sizes "$SIZES" --logits last "${common[@]}" \
        > "$OUT/$m.arbor.batch.json"
    if [ "$VERIFY" = 1 ]; then
        log "$m: arbor bench batch (tree and causal, all logits: the verifier's work)"
        "$ARBOR" bench batch --model "$m" --context "$CONTEXT" --sizes 1,2,4,8,16 --logits all --tree \
            "${common[@]}" > "$OUT/$m.arbor.verify.json"
    fi
    log "$m: reference (xllamacpp)"
    python3 scripts/bench_reference.py --model "$path" --threads "$THREADS" --repeat "$REPEAT" \
        --warmup "$WARMUP" --tokens "$TOKENS" --prefill-tokens "$PREFILL" --context "$CONTEXT" \
        --sizes "$SIZES" --out "$OUT/$m.reference.json" --log "$OUT/$m.reference.log"
done
uptime > "$OUT/uptime.end"
log "$(cat "$OUT/uptime.end") -- $(( $(date +%s) - start )) s of benchmarks"

python3 - "$OUT" "$THREADS" "${models[@]}" <<'EOF'
import json, os, sys

out, threads, models = sys.argv[1], sys.argv[2], sys.argv[3:]


def load(name):
    path = os.path.join(out, name)
    return json.load(open(path)) if os.path.exists(path) else None


def cell(value, fmt, spread=None):
    if value is None:
        return "—"
    s = format(value, fmt)
    return f"{s} ({spread * 100:.0f}%)" if spread is not None else s


def ratio(a, r):
    return f"{a / r:.2f}" if a is not None and r else "—"


def sizes(report, shape="causal"):
    if not report:
        return {}
    for s in report["shapes"]:
        if s["shape"] == shape:
            return {x["size"]: x for x in s["sizes"]}
    return {}


def cpu_cores(runs, wall_key="ms"):
    wall = sum(r.get(wall_key, r["ms"]) for r in runs)
    return sum(r["cpu_ms"] for r in runs) / wall if wall else None


print()
print(f"### Arbor vs llama.cpp (xllamacpp), {threads} threads")
print()
print("Values are medians; (n%) is the spread (max - min) / median over the timed runs. Ratio = "
      "Arbor / reference: above 1 is better for Arbor in tokens/s rows, below 1 in ms rows.")
for m in models:
    bw, dec, pre = load(f"{m}.arbor.bandwidth.json"), load(f"{m}.arbor.decode.json"), load(f"{m}.arbor.prefill.json")
    bat, ver, ref = load(f"{m}.arbor.batch.json"), load(f"{m}.arbor.verify.json"), load(f"{m}.reference.json")
    info = dec["model"]
    print()
    print(f"#### {m} ({info['architecture']}, {info['file_bytes'] / 2**20:.0f} MiB)")
    print()
    print("| metric | Arbor | reference | Arbor/ref |")
    print("|---|---:|---:|---:|")

    def row(name, a, r, fmt, a_spread=None, r_spread=None, show_ratio=True):
        print(f"| {name} | {cell(a, fmt, a_spread)} | {cell(r, fmt, r_spread)} | "
              f"{ratio(a, r) if show_ratio else '—'} |")

    rd, rp, rb = ref.get("decode"), ref.get("prefill"), ref.get("batch")
    row(f"decode tg{dec['tokens']} (tok/s)", dec["tokens_per_second"]["median"],
        rd and rd["tokens_per_second"]["median"], ".1f",
        dec["tokens_per_second"]["spread"], rd and rd["tokens_per_second"]["spread"])
    row(f"prefill pp{pre['prompt_tokens']} (tok/s)", pre["tokens_per_second"]["median"],
        rp and rp["tokens_per_second"]["median"], ".1f",
        pre["tokens_per_second"]["spread"], rp and rp["tokens_per_second"]["spread"])
    a_sizes, r_sizes = sizes(bat), sizes(rb)
    ctx = bat["context"] if bat else "?"
    for b in sorted(a_sizes):
        a, r = a_sizes[b], r_sizes.get(b)
        row(f"batch B={b} after {ctx} (ms/call)", a["ms"]["median"], r and r["ms"]["median"], ".2f",
            a["ms"]["spread"], r and r["ms"]["spread"])
    for b in (8, 64):
        a, r = a_sizes.get(b), r_sizes.get(b)
        if a:
            row(f"cost B={b} / B=1", a["ratio_to_b1"], r and r["ratio_to_b1"], ".2f", show_ratio=False)
    if ver:
        vc, vt = sizes(ver, "causal"), sizes(ver, "tree")
        for b in (8, 16):
            if b in vt:
                row(f"Arbor verifier: B={b} tree, all logits (ms/call)", vt[b]["ms"]["median"], None, ".2f",
                    vt[b]["ms"]["spread"])
                print(f"| &nbsp;&nbsp;its cost × B=1; tree ÷ causal (both all logits) | "
                      f"{vt[b]['ratio_to_b1']:.2f}; {vt[b]['ms']['median'] / vc[b]['ms']['median']:.2f} | — | — |")
    at, rt = dec["time_to_first_token"], ref["time_to_first_token"]
    row("time to first token, cold process (ms)", at.get("from_process_start_ms"), rt.get("from_process_start_ms"), ".0f")
    arbor_rss = max(x["peak_rss_mib"] for x in (dec, pre, bat) if x)
    row("peak RSS (MiB)", arbor_rss, ref.get("peak_rss_mib"), ".0f")
    row("CPU cores busy while decoding", cpu_cores(dec["runs"]), rd and cpu_cores(rd["runs"], "request_ms"), ".2f",
        show_ratio=False)
    def machine(reports):
        loads = [r["load_average"] for r in reports if r and "load_average" in r]
        la = max((l["start"][0] for l in loads if l.get("start")), default=None)
        steal = sum(l.get("steal_ms") or 0 for l in loads)
        wall = sum(l.get("wall_ms") or 0 for l in loads)
        return la, (steal / wall if wall else None)

    (a_la, a_steal), (r_la, r_steal) = machine([dec, pre, bat, ver]), machine([ref])
    row("load average (1 min, max at start)", a_la, r_la, ".2f", show_ratio=False)
    row("VM steal time during the runs (cores)", a_steal, r_steal, ".2f", show_ratio=False)
    gbs = bw["gb_per_second"]
    row("memory bandwidth (GB/s, same machine)", gbs["median"], None, ".1f", gbs["spread"])
    lim = bw["limit"]
    limit = lim["decode_limit_tokens_per_second"]
    print(f"| decode limit = GB/s ÷ {lim['bytes_per_token'] / 2**20:.1f} MiB/token (tok/s; at the fastest pass) | "
          f"{limit:.1f} ({lim['decode_limit_at_max_bandwidth']:.1f}) | {limit:.1f} | — |")
    bd = bw.get("decode")
    if bd:
        print(f"| decode as a fraction of the limit (Arbor: per round of decode + bandwidth passes, "
              f"{bd['tokens_per_second']['median']:.1f} tok/s) | {bd['fraction_of_limit']:.0%} "
              f"({bd['fractions_of_limit']['min']:.0%}–{bd['fractions_of_limit']['max']:.0%}) | "
              f"{cell(rd and rd['tokens_per_second']['median'] / limit, '.0%')} | — |")
    else:
        row("decode as a fraction of the limit", dec["tokens_per_second"]["median"] / limit,
            rd and rd["tokens_per_second"]["median"] / limit, ".0%", show_ratio=False)
    if rb and not rb["check"]["ok"]:
        print(f"\nWARNING: the reference's batch method check failed: {rb['check']['mismatches'][:3]}")
    if ref["model"].get("repacked_mib"):
        print(f"\nThe reference repacked {ref['model']['repacked_mib']:.0f} MiB of weights into its interleaved CPU layout.")

for name in ("uptime.start", "uptime.end"):
    print(f"\n`{name.split('.')[1]}: {open(os.path.join(out, name)).read().strip()}`")
print(f"\nJSON reports: {out}")
EOF
