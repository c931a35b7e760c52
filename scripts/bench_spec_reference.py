#!/usr/bin/env python3
"""The reference side of `arbor bench spec`: llama.cpp's speculative decoding on the same prompts.

Engine: xllamacpp (PyPI, a llama.cpp CPU build) driven in-process through `xllamacpp.Server`
(llama-server semantics) and its loopback HTTP endpoints, as in scripts/bench_reference.py.
Prompts: a JSONL written by `arbor prompts export <set> --model qwen2.5-coder-1.5b --out FILE`;
each request sends the line's `tokens` (the chat-rendered prompt as Arbor tokenizes it), so both
engines see the same token ids. Target qwen2.5-coder-1.5b, greedy (temperature 0), at most
--max-tokens tokens (stops at end of text unless --ignore-eos), cache_prompt false, one slot,
--threads for prompt and generation (the draft model gets the same).

Modes (one server per mode; --modes picks them, default all):
  plain         no speculation
  draft-3       draft model qwen2.5-coder-0.5b, draft n_max 3, n_min 0, p_min 0
  draft-6       the same, n_max 6
  draft-6-p75   n_max 6, p_min 0.75: drafting stops at the first token the draft is less than
                75% sure of
  ngram-simple  prompt lookup: the last 3 tokens looked up in the history (prompt + output),
                the 8 tokens that followed them are the draft (ngram_simple size_n 3, size_m 8)
  ngram-map-k   the same key/draft sizes, drafting only m-grams seen after the key
                (ngram_map_k size_n 3, size_m 8, min_hits 1)
  ngram-mod     rolling-hash n-gram pool (ngram_mod n_match 8, n_min 4, n_max 16; llama.cpp's
                defaults 24/48/64 are tuned for MoE models and long repeats)

This build (xllamacpp 2026.x) exposes `CommonParams.speculative` with `types` (a list of
`common_speculative_type`: NONE, DRAFT_SIMPLE, DRAFT_EAGLE3, DRAFT_MTP, DRAFT_DFLASH,
DRAFT_DSPARK, NGRAM_SIMPLE, NGRAM_MAP_K, NGRAM_MAP_K4V, NGRAM_MOD, NGRAM_CACHE), `draft`
(n_max, n_min, p_min, p_split, mparams.path, cpuparams, ...), `ngram_simple` / `ngram_map_k` /
`ngram_map_k4v` (size_n, size_m, min_hits), `ngram_mod` (n_match, n_min, n_max) and
`ngram_cache` (lookup_cache_static/dynamic files). Speculative settings are per server: a
request's `speculative.n_max` etc. are not honoured, so every mode loads its own server.

Per prompt, from the server's own `timings`: predicted_n, predicted_ms, prompt_n, prompt_ms,
draft_n (tokens drafted) and draft_n_accepted (present whenever speculation is on). Decode tok/s
= (predicted_n - 1) / predicted_ms: the first token comes out of the prompt pass, as in
bench_reference.py. A mode's tok/s is total decode steps / total decode time over its prompts;
speedup is that over plain's; acceptance = accepted / drafted. Each line also records whether
the text equals plain's (greedy speculation must not change it).

Before each prompt the script waits (up to --idle-wait s) until other processes use at most
--max-busy of the CPUs, and records what it saw (`busy_before`, BUSY% column): on this 2-core VM a
competing process slows llama.cpp's spinning thread pools far more than its share, worst with a
draft model (two pools of 2 threads): single prompts fell from ~20 to 0.5-3.5 tok/s. The median
of the per-prompt tok/s is in the JSON too, for runs that were disturbed anyway. (Polling off,
`cpuparams.poll = 0`, is no cure: it made every mode 5-20x slower here.)

Timing, extrapolated from a --limit 5 run on an idle machine (HumanEval, max tokens 128; wall
per mode = server load 1-2.5 s + ~1 s idle check and ~6-10 s per prompt), not from a measured
--limit 20 run: a --limit 20 run takes about
  plain ~2.3 min, draft-3 / draft-6 / draft-6-p75 ~3.5 min each, ngram-* ~2.2 min each,
so ~20 min for all seven modes on one set; waiting for a busy machine comes on top.

Measured with --limit 5 (idle, HumanEval): plain 34.8 tok/s; draft-* 19.7-20.5 tok/s median (0.6x)
at 96-99% acceptance. From llama.cpp's log (draft-3, HumanEval/0): 5.7 s of decode, 1.7 s of it
drafting, the other ~4 s in ~33 target verifications of 4 tokens, ~120 ms each, as much as four
single decode steps (29 ms): small batches buy this build nothing on 2 cores, so the drafting is
pure cost. ngram-simple 1.07x, ngram-map-k 0.9x, ngram-mod 1.22x (free drafts).

Usage:
  arbor prompts export humaneval --model qwen2.5-coder-1.5b --out /tmp/humaneval.jsonl
  python3 scripts/bench_spec_reference.py --prompts /tmp/humaneval.jsonl [--limit 20]
      [--modes plain,draft-3,ngram-simple] [--max-tokens 128] [--threads 2] [--warmup 1]
      [--ignore-eos] [--out FILE] [--log FILE]
"""
import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
import urllib.request

import xllamacpp

MODELS_DIR = os.environ.get("ARBOR_MODELS_DIR") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "arbor", "models")
TARGET = "qwen2.5-coder-1.5b"
DRAFT = "qwen2.5-coder-0.5b"
T = xllamacpp.common_speculative_type

# name -> how to configure CommonParams.speculative for it.
MODES = {
    "plain": {"types": [T.COMMON_SPECULATIVE_TYPE_NONE]},
    "draft-3": {"types": [T.COMMON_SPECULATIVE_TYPE_DRAFT_SIMPLE], "draft": {"n_max": 3, "n_min": 0, "p_min": 0.0}},
    "draft-6": {"types": [T.COMMON_SPECULATIVE_TYPE_DRAFT_SIMPLE], "draft": {"n_max": 6, "n_min": 0, "p_min": 0.0}},
    "draft-6-p75": {"types": [T.COMMON_SPECULATIVE_TYPE_DRAFT_SIMPLE],
                    "draft": {"n_max": 6, "n_min": 0, "p_min": 0.75}},
    "ngram-simple": {"types": [T.COMMON_SPECULATIVE_TYPE_NGRAM_SIMPLE],
                     "ngram_simple": {"size_n": 3, "size_m": 8, "min_hits": 1}},
    "ngram-map-k": {"types": [T.COMMON_SPECULATIVE_TYPE_NGRAM_MAP_K],
                    "ngram_map_k": {"size_n": 3, "size_m": 8, "min_hits": 1}},
    "ngram-mod": {"types": [T.COMMON_SPECULATIVE_TYPE_NGRAM_MOD],
                  "ngram_mod": {"n_match": 8, "n_min": 4, "n_max": 16}},
}


def say(msg):
    print(f"[bench_spec_reference] {msg}", file=sys.stderr, flush=True)


def model_path(alias):
    path = os.path.join(MODELS_DIR, alias + ".gguf")
    if not os.path.isfile(path):
        sys.exit(f"{alias} is not in {MODELS_DIR}: run `arbor models pull {alias}` first")
    return path


def load_prompts(path, limit):
    items = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                for key in ("set", "id", "text", "tokens"):
                    item[key]
            except (ValueError, KeyError, TypeError) as e:
                sys.exit(f"{path}:{number}: not a line of `arbor prompts export` ({e!r})")
            items.append(item)
            if limit and len(items) >= limit:
                break
    if not items:
        sys.exit(f"{path}: no prompts")
    return items


def cpu_busy(seconds=1.0):
    """Fraction of all CPUs that other processes kept busy over the next `seconds`, or None:
    machine-wide busy time (/proc/stat) minus this process's own (/proc/self/stat, all threads,
    so the idle server's threads are not counted), both in clock ticks."""
    def sample():
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        with open("/proc/self/stat") as f:
            own = f.read()
        own = own[own.rindex(")") + 2:].split()
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields[:8]) - idle - int(own[11]) - int(own[12]), sum(fields[:8])
    try:
        busy0, total0 = sample()
        time.sleep(seconds)
        busy1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, (busy1 - busy0) / (total1 - total0)) if total1 > total0 else 0.0


def wait_for_idle(args):
    """Waits (at most --idle-wait seconds) until other work uses under --max-busy of the CPUs:
    on 2 cores a competing process slows llama.cpp's spinning thread pools far more than its
    share. Returns the last busy fraction measured."""
    if args.max_busy >= 1:
        return None
    deadline = time.monotonic() + args.idle_wait
    while True:
        busy = cpu_busy()
        if busy is None or busy <= args.max_busy or time.monotonic() >= deadline:
            return busy
        say(f"machine busy ({100 * busy:.0f}% of CPUs); waiting")


def load_average():
    try:
        return list(os.getloadavg())
    except OSError:
        return []


class Reference:
    """One xllamacpp.Server (one slot) configured for one mode."""

    def __init__(self, mode, threads, n_ctx):
        spec = MODES[mode]
        p = xllamacpp.CommonParams()
        p.model.path = model_path(TARGET)
        p.n_ctx = n_ctx
        p.n_batch = 2048
        p.n_ubatch = 512
        p.n_parallel = 1
        p.cpuparams.n_threads = threads
        p.cpuparams_batch.n_threads = threads
        p.sampling.seed = 42
        p.sampling.temp = 0.0
        p.warmup = False
        p.swa_full = True
        p.n_ctx_checkpoints = 0
        p.cache_ram_mib = 0
        p.verbosity = 4
        s = p.speculative
        s.types = spec["types"]
        if "draft" in spec:
            s.draft.mparams.path = model_path(DRAFT)
            s.draft.cpuparams.n_threads = threads
            s.draft.cpuparams_batch.n_threads = threads
            for key, value in spec["draft"].items():
                setattr(s.draft, key, value)
        for group in ("ngram_simple", "ngram_map_k", "ngram_mod"):
            for key, value in spec.get(group, {}).items():
                setattr(getattr(s, group), key, value)
        self.settings = {k: v for k, v in spec.items() if k != "types"}
        self.settings["types"] = [t.name for t in spec["types"]]
        self.server = xllamacpp.Server(p)
        self.base = self.server.listening_address

    def post(self, path, body):
        req = urllib.request.Request(self.base + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=3600) as r:
            return json.load(r)

    def completion(self, tokens, n_predict, ignore_eos):
        t0 = time.monotonic()
        r = self.post("/completion", {
            "prompt": tokens, "n_predict": n_predict, "temperature": 0.0, "seed": 42,
            "repeat_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0,
            "dry_multiplier": 0.0, "ignore_eos": ignore_eos, "cache_prompt": False, "stream": False})
        return r, (time.monotonic() - t0) * 1000

    def close(self):
        del self.server


def run_mode(mode, prompts, args, n_ctx, plain_texts):
    t0 = time.monotonic()
    ref = Reference(mode, args.threads, n_ctx)
    load_ms = (time.monotonic() - t0) * 1000
    for _ in range(args.warmup):
        ref.completion(prompts[0]["tokens"], 8, args.ignore_eos)
    rows = []
    for item in prompts:
        busy = wait_for_idle(args)
        r, wall = ref.completion(item["tokens"], args.max_tokens, args.ignore_eos)
        t = r["timings"]
        if t["prompt_n"] != len(item["tokens"]):
            raise RuntimeError(f"{mode} {item['id']}: prompt_n {t['prompt_n']} != {len(item['tokens'])} tokens sent")
        steps = t["predicted_n"] - 1
        row = {"id": item["id"], "prompt_tokens": t["prompt_n"], "prompt_ms": t["prompt_ms"],
               "predicted_n": t["predicted_n"], "predicted_ms": t["predicted_ms"],
               "tokens_per_second": steps / (t["predicted_ms"] / 1000) if t["predicted_ms"] > 0 else 0.0,
               "llama_predicted_per_second": t["predicted_per_second"],
               "draft_n": t.get("draft_n", 0), "draft_n_accepted": t.get("draft_n_accepted", 0),
               "stop_type": r.get("stop_type"), "request_ms": wall, "busy_before": busy,
               "text": r["content"]}
        if plain_texts is not None:
            row["same_as_plain"] = plain_texts.get(item["id"]) == r["content"]
        rows.append(row)
        say(f"{mode:13s} {item['id']:14s} {t['predicted_n']:4d} tok {row['tokens_per_second']:6.2f} tok/s "
            f"draft {row['draft_n']:4d} acc {row['draft_n_accepted']:4d}")
    ref.close()
    steps = sum(r["predicted_n"] - 1 for r in rows)
    ms = sum(r["predicted_ms"] for r in rows)
    drafted = sum(r["draft_n"] for r in rows)
    accepted = sum(r["draft_n_accepted"] for r in rows)
    return {
        "mode": mode, "settings": ref.settings, "load_ms": load_ms,
        "prompts": len(rows), "generated_tokens": sum(r["predicted_n"] for r in rows),
        "decode_steps": steps, "decode_ms": ms,
        "tokens_per_second": steps / (ms / 1000) if ms > 0 else 0.0,
        "median_prompt_tokens_per_second": statistics.median(r["tokens_per_second"] for r in rows),
        "draft_tokens": drafted, "accepted_tokens": accepted,
        "acceptance_rate": accepted / drafted if drafted else None,
        "same_as_plain": (sum(1 for r in rows if r.get("same_as_plain")) if plain_texts is not None else None),
        "max_busy_before": max((r["busy_before"] for r in rows if r["busy_before"] is not None), default=None),
        "wall_ms": (time.monotonic() - t0) * 1000, "runs": rows}


def print_table(results, file):
    plain = next((r for r in results if r["mode"] == "plain"), None)
    header = f"{'MODE':13s} {'PROMPTS':>7s} {'TOKENS':>6s} {'TOK/S':>7s} {'SPEEDUP':>7s} " \
             f"{'DRAFTED':>7s} {'ACCEPTED':>8s} {'ACC%':>6s} {'=PLAIN':>6s} {'WALL s':>7s} {'BUSY%':>5s}"
    print(header, file=file)
    for r in results:
        speedup = f"{r['tokens_per_second'] / plain['tokens_per_second']:.2f}x" if plain else "-"
        acc = f"{100 * r['acceptance_rate']:.1f}" if r["acceptance_rate"] is not None else "-"
        same = f"{r['same_as_plain']}/{r['prompts']}" if r["same_as_plain"] is not None else "-"
        busy = f"{100 * r['max_busy_before']:.0f}" if r["max_busy_before"] is not None else "-"
        print(f"{r['mode']:13s} {r['prompts']:7d} {r['generated_tokens']:6d} {r['tokens_per_second']:7.2f} "
              f"{speedup:>7s} {r['draft_tokens']:7d} {r['accepted_tokens']:8d} {acc:>6s} {same:>6s} "
              f"{r['wall_ms'] / 1000:7.1f} {busy:>5s}", file=file)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", required=True, help="JSONL from `arbor prompts export`")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, from: {', '.join(MODES)}")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, help="only the first N prompts")
    ap.add_argument("--warmup", type=int, default=1, help="untimed short requests per mode")
    ap.add_argument("--ignore-eos", action="store_true", help="always generate --max-tokens tokens")
    ap.add_argument("--max-busy", type=float, default=0.3,
                    help="before each prompt, wait until other work uses at most this fraction of the CPUs "
                         "(1 = never wait)")
    ap.add_argument("--idle-wait", type=float, default=120, help="seconds to wait for that at most")
    ap.add_argument("--out", help="write the JSON report here")
    ap.add_argument("--log", help="llama.cpp's log (default: a temp file)")
    args = ap.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        ap.error(f"unknown modes {unknown}; known: {', '.join(MODES)}")
    if args.max_tokens < 1 or args.threads < 1 or (args.limit is not None and args.limit < 1) or args.warmup < 0:
        ap.error("--max-tokens, --threads and --limit must be >= 1, --warmup >= 0")
    prompts = load_prompts(args.prompts, args.limit)

    log_path = args.log or os.path.join(tempfile.gettempdir(), "arbor_bench_spec_reference.log")
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stderr = os.fdopen(os.dup(2), "w", buffering=1)  # Python's messages stay visible
    os.dup2(fd, 2)

    n_ctx = max(len(p["tokens"]) for p in prompts) + args.max_tokens + 64
    n_ctx = max(1024, -(-n_ctx // 256) * 256)
    load_start, wall_start = load_average(), time.monotonic()
    results, plain_texts = [], None
    # plain first, so the others can be checked against its text
    for mode in sorted(modes, key=lambda m: m != "plain"):
        say(f"{mode}: {len(prompts)} prompts")
        result = run_mode(mode, prompts, args, n_ctx, plain_texts)
        if mode == "plain":
            plain_texts = {r["id"]: r["text"] for r in result["runs"]}
        results.append(result)
    plain = next((r for r in results if r["mode"] == "plain"), None)
    for r in results:
        r["speedup"] = r["tokens_per_second"] / plain["tokens_per_second"] if plain else None

    print(f"{os.path.basename(args.prompts)}: {len(prompts)} prompts ({prompts[0]['set']}), "
          f"max tokens {args.max_tokens}, threads {args.threads}, target {TARGET}")
    print_table(results, sys.stdout)
    report = {
        "engine": "xllamacpp", "engine_version": getattr(xllamacpp, "__version__", "unknown"),
        "target": {"model": TARGET, "path": model_path(TARGET)},
        "draft": {"model": DRAFT, "path": model_path(DRAFT)},
        "prompts": {"file": os.path.abspath(args.prompts), "set": prompts[0]["set"], "count": len(prompts)},
        "settings": {"max_tokens": args.max_tokens, "threads": args.threads, "warmup": args.warmup,
                     "max_busy": args.max_busy, "idle_wait_s": args.idle_wait,
                     "ignore_eos": args.ignore_eos, "n_ctx": n_ctx, "temperature": 0.0, "cache_prompt": False,
                     "cores": os.cpu_count()},
        "method": "decode tok/s = sum(predicted_n - 1) / sum(predicted_ms) over the prompts (server timings); "
                  "acceptance = sum(draft_n_accepted) / sum(draft_n); speedup vs plain",
        "modes": results,
        "load_average": {"start": load_start, "end": load_average(),
                         "wall_ms": (time.monotonic() - wall_start) * 1000},
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "reference_log": log_path,
    }
    if args.out:
        with open(args.out, "w") as f:
            f.write(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
