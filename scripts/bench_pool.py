#!/usr/bin/env python3
"""Throughput of 1, 2 and 3 `arbor serve` replicas behind HAProxy (scripts/pool.sh): C clients
(`arbor generate`, each its own process) generate T tokens each through the one address; tokens/s
= all generated tokens / wall time from the first client's start to the last one's end. Side by
side in one run, one replica count after another.

    python3 scripts/bench_pool.py [--model smollm2-135m] [--replicas 1 2 3] [--clients 24] [--tokens 300]
        [--drafter ngram] [--threads 1] [--out FILE.json]
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "serve"))
from serving import PROMPTS  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arbor", default=os.path.join(ROOT, ".build", "release", "arbor"))
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--clients", type=int, default=24)
    ap.add_argument("--tokens", type=int, default=300)
    ap.add_argument("--drafter", default="ngram")
    ap.add_argument("--threads", type=int, default=1, help="model threads per replica")
    ap.add_argument("--front", type=int, default=7900)
    ap.add_argument("--out")
    a = ap.parse_args()
    rows = []
    for n in a.replicas:
        env = {**os.environ, "ARBOR": a.arbor, "MODEL": a.model, "THREADS": str(a.threads), "FRONT": str(a.front),
               "BASE": str(a.front + 10), "METRICS_BASE": str(a.front + 20), "STATE": f"/tmp/arbor-bench-pool-{n}"}
        subprocess.run(["bash", os.path.join(ROOT, "scripts", "pool.sh"), "up", str(n)], env=env, check=True)
        try:
            start = time.time()
            procs = [subprocess.Popen(
                [a.arbor, "generate", "--model", a.model, "--target-host", "127.0.0.1", "--target-port", str(a.front),
                 "--prompt", PROMPTS[i % len(PROMPTS)], "--max-tokens", str(a.tokens), "--ignore-eos", "--drafter", a.drafter,
                 "--threads", "1", "--no-profile", "--json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                for i in range(a.clients)]
            outs = [p.communicate(timeout=1800)[0] for p in procs]
            wall = time.time() - start
            failed = sum(p.returncode != 0 for p in procs)
            tokens = sum(len(json.loads(o)["tokens"]) for o, p in zip(outs, procs) if p.returncode == 0)
            rows.append({"replicas": n, "clients": a.clients, "tokens": tokens, "seconds": wall, "tokens_per_second": tokens / wall,
                         "failed": failed})
            print(f"{n} replica(s): {tokens} tokens in {wall:.1f} s = {tokens / wall:.1f} tok/s ({failed} failed)", flush=True)
        finally:
            subprocess.run(["bash", os.path.join(ROOT, "scripts", "pool.sh"), "down"], env=env)
    base = rows[0]["tokens_per_second"]
    print("\n| replicas | tok/s | vs first |\n|---:|---:|---:|")
    for r in rows:
        print(f"| {r['replicas']} | {r['tokens_per_second']:.1f} | {r['tokens_per_second'] / base:.2f}× |")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"model": a.model, "drafter": a.drafter, "cpus": os.cpu_count(), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
