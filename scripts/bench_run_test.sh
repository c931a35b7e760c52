#!/usr/bin/env bash
# CI test of the benchmark harness end to end (~4 min): `arbor bench run` on a small target runs
# every kind of experiment (baseline, drafters, routing with a mixed workload, ablation, remote
# through a real `arbor serve` and delay relay, cost), writes results (JSON, CSV), charts and
# report.md, with every greedy speculative output identical to plain decoding; a rerun resumes
# (finished cells are read back, a lost one is redone; an interrupted run keeps what it finished);
# malformed configs name the file, line and field; AutoDraft's XML examples run end to end;
# `arbor eval` runs HumanEval tests in the sandbox with greedy pass@1 equal between plain and
# speculative decoding; the chart script's own test.
# One PASS/FAIL line per case, then "N passed, M failed"; non-zero exit on any failure.
#
# Environment: ARBOR=.build/release/arbor MODEL=smollm2-135m
set -uo pipefail
cd "$(dirname "$0")/.."

ARBOR=${ARBOR:-.build/release/arbor}
MODEL=${MODEL:-smollm2-135m}
case $ARBOR in /*) ;; *) ARBOR=$PWD/$ARBOR ;; esac
WORK=$(mktemp -d "${TMPDIR:-/tmp}/arbor-bench-run-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export ARBOR_DATA_DIR=$WORK/data
passed=0 failed=0
result() { # name status detail
    if [ "$2" = 0 ]; then passed=$((passed + 1)); echo "PASS $1: $3"; else failed=$((failed + 1)); echo "FAIL $1: $3"; fi
}

cat >"$WORK/small.yaml" <<YAML
name: small
models: {target: $MODEL, draft: ~, cross_draft: ~}
runtime: {threads: 2, max_tokens: 24}
prompts: {sets: [humaneval, mtbench, sharegpt], limit: 2}
experiments:
  baseline: {}
  drafters: {drafters: [ngram, suffix], shapes: [chain, tree]}
  routing: {drafters: [ngram, suffix], mixed: true}
  ablation: {drafter: suffix, parameter: max_nodes, values: [2, 8]}
  remote: {delays_ms: [0, 20], drafters: [suffix], sets: [humaneval]}
  cost: {objective: total_cost, cs: [0, 1], drafters: [suffix], sets: [humaneval]}
YAML

# 1. A full run: every cell, greedy outputs identical to plain, results, charts, report.
timeout 900 "$ARBOR" bench run --config "$WORK/small.yaml" --out "$WORK/out" >"$WORK/run1.out" 2>"$WORK/run1.err"
status=$?
detail=$(python3 - "$WORK/out" "$status" <<'PY'
import json, os, sys
d, status = sys.argv[1], int(sys.argv[2])
problems = []
if status != 0: problems.append(f"exit status {status}")
try:
    r = json.load(open(os.path.join(d, "results.json")))
except Exception as e:
    print(f"no results.json: {e}"); sys.exit(1)
cells = r["cells"]
kinds = {c["kind"] for c in cells}
if kinds != {"baseline", "drafters", "routing", "ablation", "remote", "cost"}: problems.append(f"kinds {sorted(kinds)}")
for c in cells:
    if c["mode"] == "greedy" and c.get("identical_to_plain") is not None and c["identical_to_plain"] != c["prompts"]:
        problems.append(f"{c['id']}: {c['identical_to_plain']}/{c['prompts']} identical")
    if c["tokens_per_second"] <= 0 and c["kind"] != "remote": problems.append(f"{c['id']}: no speed")
remote = [c for c in cells if c["kind"] == "remote" and c["setting"] != "none"]
if not remote or any(c.get("bytes_per_token") is None or c.get("speedup") is None for c in remote): problems.append("remote cells lack bytes or speedup")
mix = [c for c in cells if c["id"] == "routing/mix/auto/greedy"]
if not mix or sum(mix[0].get("router_choices", {}).values()) != 6 or sorted(mix[0].get("by_set", {})) != ["humaneval", "mtbench", "sharegpt"]:
    problems.append("the mixed routing cell lacks its choices or per-set slices")
csv = open(os.path.join(d, "results.csv")).read().strip().split("\n")
if len(csv) != len(cells) + 1: problems.append(f"CSV has {len(csv)} lines for {len(cells)} cells")
for f in ["report.md", "speedup.png", "speedup.svg", "latency.png", "acceptance_by_depth.png", "ablation.png", "remote.png", "cost.png"]:
    p = os.path.join(d, f)
    if not os.path.exists(p) or os.path.getsize(p) < 500: problems.append(f"missing {f}")
report = open(os.path.join(d, "report.md")).read() if os.path.exists(os.path.join(d, "report.md")) else ""
if "![speedup](speedup.png)" not in report: problems.append("report.md does not embed the speedup chart")
print("; ".join(problems) if problems else f"{len(cells)} cells, every greedy output identical to plain, report and charts written")
sys.exit(1 if problems else 0)
PY
)
result "full run" $? "$detail"
cells=$(ls "$WORK/out/cells" | wc -l)

# 2. Resume: a second run reads every cell back; a lost cell is redone, the others are not.
"$ARBOR" bench run --config "$WORK/small.yaml" --out "$WORK/out" --no-report >/dev/null 2>"$WORK/run2.err"
saved=$(grep -c "^saved cell" "$WORK/run2.err"); done2=$(grep -c "^done cell" "$WORK/run2.err")
[ "$saved" = "$cells" ] && [ "$done2" = 0 ]
result "resume reads finished cells" $? "$saved saved, $done2 run again (of $cells)"
rm "$WORK/out/cells/$(ls "$WORK/out/cells" | grep drafters | head -1)"
"$ARBOR" bench run --config "$WORK/small.yaml" --out "$WORK/out" --no-report >/dev/null 2>"$WORK/run3.err"
saved=$(grep -c "^saved cell" "$WORK/run3.err"); done3=$(grep -c "^done cell" "$WORK/run3.err")
[ "$done3" = 1 ] && [ "$saved" = $((cells - 1)) ]
result "resume redoes a lost cell only" $? "$done3 run again, $saved saved"

# 3. An interrupted run keeps the cells it finished and the rerun completes the rest.
timeout -s INT 12 "$ARBOR" bench run --config "$WORK/small.yaml" --out "$WORK/int" --no-report >/dev/null 2>"$WORK/int1.err"
first=$(ls "$WORK/int/cells" 2>/dev/null | grep -c '\.json$')
"$ARBOR" bench run --config "$WORK/small.yaml" --out "$WORK/int" --no-report >/dev/null 2>"$WORK/int2.err"
saved=$(grep -c "^saved cell" "$WORK/int2.err"); done4=$(grep -c "^done cell" "$WORK/int2.err")
[ "$first" -gt 0 ] && [ "$first" -lt "$cells" ] && [ "$saved" = "$first" ] && [ $((saved + done4)) = "$cells" ]
result "interrupted run resumes" $? "$first cells before the interrupt; then $saved read back, $done4 run"

# 4. Malformed configs: the file, the line and the field.
sed 's/max_tokens: 24/max_tokn: 24/' "$WORK/small.yaml" >"$WORK/typo.yaml"
"$ARBOR" bench run --config "$WORK/typo.yaml" --dry-run >/dev/null 2>"$WORK/typo.err"; s=$?
grep -q "typo.yaml:3:.*runtime.max_tokn: unknown field" "$WORK/typo.err"
result "typo in a field" $(( $? || (s != 2) )) "$(head -1 "$WORK/typo.err")"
sed 's/values: \[2, 8\]/values: [2, eight]/' "$WORK/small.yaml" >"$WORK/type.yaml"
"$ARBOR" bench run --config "$WORK/type.yaml" --dry-run >/dev/null 2>"$WORK/type.err"
grep -q "type.yaml:9:.*experiments.ablation.values.1: expected an integer" "$WORK/type.err"
result "wrong type" $? "$(head -1 "$WORK/type.err")"
printf '<config><objective><AUTODRAFT_CS_LIST>0 fast</AUTODRAFT_CS_LIST></objective></config>\n' >"$WORK/bad.xml"
"$ARBOR" bench run --config "$WORK/bad.xml" --dry-run >/dev/null 2>"$WORK/bad.err"
grep -q "bad.xml:1: AUTODRAFT_CS_LIST" "$WORK/bad.err"
result "bad XML value" $? "$(head -1 "$WORK/bad.err")"

# 5. AutoDraft's XML examples: both expand and both run end to end (one prompt, short), each with
# its own objective and added delay.
n1=$("$ARBOR" bench run --config configs/autodraft/draft_energy_humaneval.xml --dry-run | wc -l)
n2=$("$ARBOR" bench run --config configs/autodraft/total_cost_mt_bench.xml --dry-run | wc -l)
[ "$n1" = 5 ] && [ "$n2" = 5 ]
result "XML examples expand" $? "$n1 and $n2 cells"
for example in "draft_energy_humaneval draft_energy 20" "total_cost_mt_bench total_cost 80"; do
    read -r name objective delay <<<"$example"
    timeout 900 "$ARBOR" bench run --config "configs/autodraft/$name.xml" --limit 1 --max-tokens 12 --out "$WORK/xml-$name" \
        >"$WORK/xml-$name.out" 2>"$WORK/xml-$name.err"
    python3 - "$WORK/xml-$name/results.json" "$objective" "$delay" <<'PY' >"$WORK/xml-$name.detail"
import json, sys
r = json.load(open(sys.argv[1]))
objective, delay = sys.argv[2], float(sys.argv[3])
cost = [c for c in r["cells"] if c["kind"] == "cost"]
ok = (len(r["cells"]) == 5 and len(cost) == 3
      # Zero is a real answer for draft energy: a cost-first policy may not draft at all.
      and all(isinstance(c.get("cost_per_million_tokens"), (int, float)) and c["cost_per_million_tokens"] >= 0
              and c.get("objective") == objective and c.get("delay_ms") == delay for c in cost))
print(f"{len(r['cells'])} cells, {objective} per million tokens {[round(c['cost_per_million_tokens'], 2) for c in cost]} at {delay:g} ms")
sys.exit(0 if ok else 1)
PY
    result "XML example $name runs" $? "$(cat "$WORK/xml-$name.detail" 2>/dev/null || tail -2 "$WORK/xml-$name.err")"
done

# 6. arbor eval: the sandbox runs HumanEval tests; greedy pass@1 equal between plain and speculative.
timeout 600 "$ARBOR" eval --set humaneval --limit 3 --model "$MODEL" --draft "$MODEL" --drafters suffix --max-tokens 48 \
    --out "$WORK/eval.json" >"$WORK/eval.out" 2>"$WORK/eval.err"
s=$?
python3 - "$WORK/eval.json" "$s" <<'PY' >"$WORK/eval.detail"
import json, sys
rows = json.load(open(sys.argv[1]))
suffix = [r for r in rows if r["setting"] == "suffix"][0]
ok = int(sys.argv[2]) == 0 and len(rows) == 2 and suffix.get("identical_to_plain") == 3 and suffix.get("agrees_with_plain")
print(", ".join(f"{r['setting']} pass@1 {r['pass_at_1']['passed']}/{r['pass_at_1']['total']}" for r in rows) + f", {suffix.get('identical_to_plain')}/3 identical")
sys.exit(0 if ok else 1)
PY
result "eval humaneval" $? "$(cat "$WORK/eval.detail" 2>/dev/null || tail -2 "$WORK/eval.err")"

# 7. The chart script's own test.
python3 scripts/bench_report_test.py >"$WORK/charts.out" 2>&1
result "chart script" $? "$(tail -1 "$WORK/charts.out")"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
