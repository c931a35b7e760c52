#!/usr/bin/env python3
"""What the HTTP layer costs: the same greedy request through `arbor generate` and through
`arbor api` (streamed and whole), alternated, on one model. Prints a table and the ratios.

  python3 scripts/bench_api.py [--model qwen2.5-coder-1.5b] [--tokens 128] [--reps 5] [--threads 2]

Speeds compared:
- generate: the engine's decode rate, (tokens - 1) / decode time, as `arbor generate --json` reports it;
- api stream: what a client sees, (tokens - 1) / (time of the last text chunk - time of the first);
- api whole: tokens / (request wall time - the prefill time the response reports), client side.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request

p = argparse.ArgumentParser()
p.add_argument("--arbor", default=".build/release/arbor")
p.add_argument("--model", default="qwen2.5-coder-1.5b")
p.add_argument("--tokens", type=int, default=128)
p.add_argument("--reps", type=int, default=5)
p.add_argument("--threads", type=int, default=2)
p.add_argument("--prompt", default="Write a Python function that merges two sorted lists, with a docstring and tests.")
a = p.parse_args()

env = {**os.environ, "ARBOR_DATA_DIR": "/tmp/arbor-bench-api"}
server = subprocess.Popen([a.arbor, "api", "--model", a.model, "--port", "0", "--threads", str(a.threads), "--no-profile"],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
port = int(re.search(r":(\d+)$", server.stdout.readline().strip()).group(1))
base = f"http://127.0.0.1:{port}"
while True:
    try:
        urllib.request.urlopen(base + "/health", timeout=2)
        break
    except Exception:
        time.sleep(0.2)

body = {"messages": [{"role": "user", "content": a.prompt}], "max_tokens": a.tokens, "temperature": 0, "ignore_eos": True, "drafter": "none"}


def post(payload):
    req = urllib.request.Request(base + "/v1/chat/completions", data=json.dumps(payload).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    return urllib.request.urlopen(req, timeout=600)


def generate():
    out = subprocess.run([a.arbor, "generate", "--model", a.model, "--chat", a.prompt, "--max-tokens", str(a.tokens), "--ignore-eos",
                          "--threads", str(a.threads), "--json", "--no-profile"], capture_output=True, text=True, check=True, env=env)
    r = json.loads(out.stdout)
    return r["stats"]["tokens_per_second"], r["text"]


def api_stream():
    first = last = None
    text = ""
    with post({**body, "stream": True, "stream_options": {"include_usage": True}}) as r:
        n = 0
        for line in r:
            line = line.decode().strip()
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            for c in chunk.get("choices", []):
                if c.get("delta", {}).get("content"):
                    now = time.perf_counter()
                    first = first or now
                    last = now
                    text += c["delta"]["content"]
            if chunk.get("usage"):
                n = chunk["usage"]["completion_tokens"]
    return (n - 1) / (last - first), text


def api_whole():
    start = time.perf_counter()
    with post(body) as r:
        reply = json.load(r)
    wall = time.perf_counter() - start
    t = reply["timings"]
    return t["predicted_n"] / (wall - t["prompt_ms"] / 1000), reply["choices"][0]["message"]["content"]


results = {"generate": [], "api stream": [], "api whole": []}
texts = set()
api_whole()  # warm-up
for i in range(a.reps):
    for name, f in (("generate", generate), ("api stream", api_stream), ("api whole", api_whole)):
        speed, text = f()
        results[name].append(speed)
        texts.add(text)
        print(f"rep {i + 1} {name:10s} {speed:7.2f} tok/s", file=sys.stderr)
server.terminate()
server.wait()

ref = statistics.median(results["generate"])
print(f"{a.model}, {a.threads} threads, {a.tokens} tokens greedy, {a.reps} alternated reps (median tok/s; ratio to generate)")
print("| path | median tok/s | min | max | ratio |")
print("|---|---:|---:|---:|---:|")
for name, v in results.items():
    print(f"| {name} | {statistics.median(v):.2f} | {min(v):.2f} | {max(v):.2f} | {statistics.median(v) / ref:.3f} |")
print(f"identical text across all runs: {len(texts) == 1}")
