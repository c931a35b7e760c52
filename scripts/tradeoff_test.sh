#!/usr/bin/env bash
# CI test of the cost-aware CLI end to end (~1 min): `arbor tradeoff` on a small local target
# writes JSON, CSV and the chart (PNG, SVG) with every output identical to plain decoding; the
# learned profile is stored and listed; a corrupt or deleted profile database gives a clear
# message and a fresh profile, never a failure; an unreachable SLO says so with the best value.
# One PASS/FAIL line per case, then "N passed, M failed"; non-zero exit on any failure.
#
# Environment: ARBOR=.build/release/arbor MODEL=smollm2-135m
set -uo pipefail
cd "$(dirname "$0")/.."

ARBOR=${ARBOR:-.build/release/arbor}
MODEL=${MODEL:-smollm2-135m}
case $ARBOR in /*) ;; *) ARBOR=$PWD/$ARBOR ;; esac
WORK=$(mktemp -d "${TMPDIR:-/tmp}/arbor-tradeoff-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export ARBOR_DATA_DIR=$WORK/data
passed=0 failed=0
result() { # name status detail
    if [ "$2" = 0 ]; then passed=$((passed + 1)); echo "PASS $1: $3"; else failed=$((failed + 1)); echo "FAIL $1: $3"; fi
}

# 1. The trade-off run: adaptive points and static baselines, outputs identical, chart drawn.
if timeout 600 "$ARBOR" tradeoff --model "$MODEL" --drafter suffix --set humaneval --limit 3 --max-tokens 24 \
    --cs-values 0 1 --baselines one-per-rtt chain4 tree8w2 server-alone --objective total_cost --threads 2 \
    --out "$WORK/t" >"$WORK/t.out" 2>"$WORK/t.err"; then
    detail=$(python3 - "$WORK/t" <<'EOF'
import json, os, sys
d = sys.argv[1]
r = json.load(open(os.path.join(d, "tradeoff.json")))
names = [p["name"] for p in r["points"]]
want = ["one-per-rtt", "chain4", "tree8w2", "server-alone", "cs=0", "cs=1"]
assert names == want, f"settings {names}, want {want}"
# The first setting (one token per round trip: plain decoding) is the reference of the others.
assert r["points"][0]["compared"] == 0
for p in r["points"][1:]:
    assert p["compared"] == 3 and p["identical"] == 3, f"{p['name']}: {p['identical']}/{p['compared']} identical to plain"
for p in r["points"]:
    assert p["tokens"] > 0 and p["decode_ms"] > 0, f"{p['name']}: nothing measured"
    assert p["resources"]["target_ms"] > 0, f"{p['name']}: no target time"
    assert p["draft_energy_source"] in ("measured", "modelled")
rows = open(os.path.join(d, "tradeoff.csv")).read().strip().splitlines()
assert len(rows) == 1 + len(want), f"{len(rows)} CSV lines"
for ext in ("png", "svg"):
    path = os.path.join(d, "tradeoff." + ext)
    assert os.path.getsize(path) > 1000, f"{path} missing or empty"
print(f"{len(names)} settings, all outputs identical to plain, chart written")
EOF
    ) && result "tradeoff run" 0 "$detail" || { tail -n 5 "$WORK/t.err"; result "tradeoff run" 1 "$detail"; }
else
    tail -n 20 "$WORK/t.err"
    result "tradeoff run" 1 "arbor tradeoff exited non-zero"
fi

# 2. The learned profile is stored and listed.
if out=$("$ARBOR" profile list --json 2>&1) && echo "$out" | grep -q '"suffix"'; then
    result "profile stored" 0 "arbor profile list shows the suffix drafter's profile"
else
    result "profile stored" 1 "arbor profile list: $out"
fi

gen() { timeout 120 "$ARBOR" generate --model "$MODEL" --drafter suffix --prompt "def add(a, b):" --max-tokens 12 --json "$@"; }

# 3. A corrupt database: a clear warning, a fresh profile, the generation still succeeds.
db=$ARBOR_DATA_DIR/profiles.sqlite
head -c 4096 /dev/urandom >"$db"
if gen >"$WORK/c.json" 2>"$WORK/c.err" && grep -qi "corrupt" "$WORK/c.err" && "$ARBOR" profile list >/dev/null 2>&1; then
    result "corrupt profile database" 0 "$(grep -i -m1 corrupt "$WORK/c.err")"
else
    cat "$WORK/c.err"
    result "corrupt profile database" 1 "no clear warning, or the run or the fresh database failed"
fi

# 4. A deleted database: silently fresh.
rm -f "$db"
if gen >"$WORK/d.json" 2>"$WORK/d.err" && [ -s "$db" ]; then
    result "deleted profile database" 0 "fresh database created"
else
    cat "$WORK/d.err"
    result "deleted profile database" 1 "run failed or no database written"
fi

# 5. An SLO that cannot be met is reported with the best achievable value.
if gen --min-tokens-per-second 1000000 >"$WORK/s.json" 2>"$WORK/s.err" &&
    note=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stats"]["speculative"]["cost"]["service_level_note"])' "$WORK/s.json" 2>&1) &&
    echo "$note" | grep -q "not met"; then
    result "unreachable SLO" 0 "$note"
else
    result "unreachable SLO" 1 "${note:-no note}"
fi

# 6. With a stored curve (arbor tradeoff's default output under the data directory), generate
#    reports where on it the request ran.
if timeout 300 "$ARBOR" tradeoff --model "$MODEL" --drafter suffix --set humaneval --limit 2 --max-tokens 16 \
    --cs-values 0 1 --baselines none --objective total_cost --threads 2 >"$WORK/u.out" 2>"$WORK/u.err" &&
    timeout 120 "$ARBOR" generate --model "$MODEL" --drafter suffix --prompt "def add(a, b):" --max-tokens 12 \
        --objective total_cost --cs balanced >"$WORK/p.out" 2>"$WORK/p.err" && grep -q "on the trade-off curve" "$WORK/p.err"; then
    result "position on the curve" 0 "$(grep -m1 'on the trade-off curve' "$WORK/p.err")"
else
    tail -n 5 "$WORK/u.err" "$WORK/p.err"
    result "position on the curve" 1 "generate did not report its place on the stored curve"
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
