#!/usr/bin/env python3
"""The reference side of `arbor bench`: the same measurements on llama.cpp (xllamacpp).

Engine: xllamacpp (PyPI, a llama.cpp CPU build) driven in-process through `xllamacpp.Server`
(llama-server semantics) and its loopback HTTP endpoints; nothing leaves the machine. Same GGUF
file, same thread count (prompt and generation), same benchmark text as Arbor
(`ModelBenchmark.text` in Sources/ArborEngine/BenchmarkModel.swift), so both engines see the same
token ids. Timings are llama-server's own (`/completion` -> `timings`), which time the model work
inside the server, not HTTP.

  time to first token  wall time from process start (kernel start time, 10 ms resolution) to the
                       response of the first request (prompt-tokens prompt, n_predict 1): Python
                       start-up, server start and model load (warmup off, as Arbor has none),
                       cold prompt processing.
  decode               prompt of --prompt-tokens tokens, n_predict = N + 1, greedy, ignore_eos,
                       cache_prompt false. llama-server's predicted_ms covers the forward passes
                       after the first sampled token (with n_predict 1 it is ~0), i.e. N forward +
                       sample steps, so tokens/s = (predicted_n - 1) / predicted_ms: the same
                       N steps Arbor times. (The server's own predicted_per_second divides
                       predicted_n by that time and is reported too.)
  prefill              a --prefill-tokens prompt (default 512), cache_prompt false, n_predict 1:
                       tokens/s = prompt_n / prompt_ms (checked: prompt_n == 512, cache_n == 0).
                       n_ubatch 512, so a 512-token prompt is one forward call, logits for the last
                       token only.
  batch                llama-server cannot score B tokens directly, so: a C-token prefix is cached
                       (cache_prompt true), then each request is prefix + B new tokens with
                       n_predict 1; the server reuses the C cached tokens and processes only the B
                       new ones in one forward call (timings.cache_n == C, timings.prompt_n == B,
                       checked on every request), logits for the last token only. Consecutive
                       requests use different new tokens, so the cached common prefix is exactly
                       C each time (the previous request's B tokens are dropped, like Arbor's
                       truncate). ms = prompt_ms.

Prints one JSON object (stdout, or --out FILE) shaped like Arbor's `--json` reports. The
reference's own log (llama.cpp writes to stderr) goes to --log (default: a temp file).

Usage:
  python3 scripts/bench_reference.py --model smollm2-135m [--threads 2] [--repeat 3] [--warmup 1]
      [--tokens 128] [--prompt-tokens 32] [--prefill-tokens 512] [--context 64]
      [--sizes 1,2,4,8,16,32,64] [--only decode,prefill,batch] [--out FILE] [--log FILE]
"""
import argparse
import json
import os
import re
import resource
import statistics
import sys
import tempfile
import time
import urllib.request


import xllamacpp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS_DIR = os.environ.get("ARBOR_MODELS_DIR") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "arbor", "models")
ALIASES = ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "gemma3-270m"]

# Must stay identical to ModelBenchmark.text (Sources/ArborEngine/BenchmarkModel.swift).
TEXT = (
    "The old lighthouse keeper climbed the spiral stairs every evening, carrying a lantern "
    "and a thermos of tea, to watch the ships pass through the narrow channel below. "
    "def merge_sorted(a, b):\n"
    "    out, i, j = [], 0, 0\n"
    "    while i < len(a) and j < len(b):\n"
    "        if a[i] <= b[j]:\n"
    "            out.append(a[i]); i += 1\n"
    "        else:\n"
    "            out.append(b[j]); j += 1\n"
    "    return out + a[i:] + b[j:]\n"
    "In the spring the orchard behind the station filled with blossom, and the keeper's "
    "daughter counted the bees while her brother repaired the nets for the autumn catch.\n"
)


def say(msg):
    print(f"[bench_reference] {msg}", file=sys.stderr, flush=True)


def ms_since_process_start():
    """Wall time since this process started (Linux, 10 ms resolution), or None."""
    try:
        with open("/proc/self/stat") as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 2:].split()
        start = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return (time.clock_gettime(time.CLOCK_BOOTTIME) - start) * 1000
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cpu_ms():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return (r.ru_utime + r.ru_stime) * 1000


def summary(samples):
    s = sorted(samples)
    if not s:
        return {"median": 0, "min": 0, "max": 0, "spread": 0, "count": 0}
    med = statistics.median(s)
    return {"median": med, "min": s[0], "max": s[-1],
            "spread": (s[-1] - s[0]) / med if med else 0, "count": len(s)}


def steal_ms():
    """CPU time the hypervisor stole from this VM, all CPUs, ms since boot (/proc/stat), or None."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK") * 1000
    except (OSError, ValueError, IndexError):
        return None


def load_average():
    try:
        return list(os.getloadavg())
    except OSError:
        return []


def resolve(model):
    if os.path.isfile(model):
        return os.path.abspath(model)
    if model in ALIASES:
        path = os.path.join(MODELS_DIR, model + ".gguf")
        if os.path.isfile(path):
            return path
        sys.exit(f"{model} is not in {MODELS_DIR}: run `arbor models pull {model}` first")
    sys.exit(f"unknown model {model!r}: give an alias ({', '.join(ALIASES)}) or a GGUF path")


class Reference:
    """One xllamacpp.Server (one slot) and its loopback HTTP endpoints."""

    def __init__(self, path, threads, n_ctx):
        p = xllamacpp.CommonParams()
        p.model.path = path
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
        self.settings = {"n_ctx": n_ctx, "n_batch": 2048, "n_ubatch": 512, "flash_attn": "auto",
                         "kv_cache": "f16", "warmup": False}
        self.server = xllamacpp.Server(p)
        self.base = self.server.listening_address

    def post(self, path, body):
        req = urllib.request.Request(self.base + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=3600) as r:
            return json.load(r)

    def tokenize(self, text):
        return self.post("/tokenize", {"content": text, "add_special": True,
                                       "parse_special": False})["tokens"]

    def completion(self, tokens, n_predict, cache_prompt):
        """Runs one request; returns (timings, wall ms of the request, CPU ms of the whole process
        during it: the server's threads run in this process)."""
        c0, t0 = cpu_ms(), time.monotonic()
        r = self.post("/completion", {
            "prompt": tokens, "n_predict": n_predict, "temperature": 0.0, "seed": 42,
            "repeat_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0,
            "dry_multiplier": 0.0, "ignore_eos": True, "cache_prompt": cache_prompt,
            "stream": False})
        return r["timings"], (time.monotonic() - t0) * 1000, cpu_ms() - c0

    def close(self):
        del self.server


def benchmark_tokens(ref, count):
    repeats = 1
    while True:
        ids = ref.tokenize(TEXT * repeats)
        if len(ids) >= count:
            return ids[:count]
        repeats *= 2


def repeats(args, body):
    for _ in range(args.warmup):
        body()
    return [body() for _ in range(args.repeat)]


def run_decode(ref, args, stream):
    prompt = stream[:args.prompt_tokens]

    def one():
        t, wall, cpu = ref.completion(prompt, args.tokens + 1, cache_prompt=False)
        if t["predicted_n"] != args.tokens + 1:
            raise RuntimeError(f"decode: predicted_n {t['predicted_n']} != {args.tokens + 1}")
        steps = t["predicted_n"] - 1
        return {"ms": t["predicted_ms"], "tokens_per_second": steps / (t["predicted_ms"] / 1000),
                "llama_predicted_per_second": t["predicted_per_second"], "cpu_ms": cpu, "request_ms": wall,
                "predicted_n": t["predicted_n"], "peak_rss_mib": peak_rss_mib()}

    runs = repeats(args, one)
    return {
        "benchmark": "decode", "prompt_tokens": len(prompt), "tokens": args.tokens,
        "method": "tokens/s = (predicted_n - 1) / predicted_ms with n_predict = tokens + 1, greedy, "
                  "ignore_eos, cache_prompt false: the same `tokens` forward + sample steps Arbor times",
        "tokens_per_second": summary([r["tokens_per_second"] for r in runs]),
        "ms_per_token": summary([r["ms"] / args.tokens for r in runs]),
        "ms": summary([r["ms"] for r in runs]), "runs": runs}


def run_prefill(ref, args, stream):
    prompt = stream[:args.prefill_tokens]

    def one():
        t, wall, cpu = ref.completion(prompt, 1, cache_prompt=False)
        if t["prompt_n"] != len(prompt) or t.get("cache_n", 0) != 0:
            raise RuntimeError(f"prefill: prompt_n {t['prompt_n']}, cache_n {t.get('cache_n')}, "
                               f"expected {len(prompt)} and 0")
        return {"ms": t["prompt_ms"], "tokens_per_second": t["prompt_n"] / (t["prompt_ms"] / 1000),
                "cpu_ms": cpu, "request_ms": wall, "peak_rss_mib": peak_rss_mib()}

    runs = repeats(args, one)
    return {
        "benchmark": "prefill", "prompt_tokens": len(prompt), "chunk": min(len(prompt), 512),
        "forward_calls": -(-len(prompt) // 512),
        "method": "tokens/s = prompt_n / prompt_ms, cache_prompt false, n_predict 1 (n_ubatch 512)",
        "tokens_per_second": summary([r["tokens_per_second"] for r in runs]),
        "ms": summary([r["ms"] for r in runs]), "runs": runs}


def run_batch(ref, args, stream):
    C = args.context
    sizes = args.sizes
    prefix = stream[:C]
    pool = stream[C:]  # new tokens are windows of this, starting at a rotating offset
    t, _, _ = ref.completion(prefix, 1, cache_prompt=True)  # cache the prefix
    state = {"offset": 0, "last_first": None}
    checks = {"requests": 0, "mismatches": []}

    def new_tokens(b):
        # Next window whose first token differs from the previous request's first new token, so
        # the common prefix with the cached tokens is exactly C.
        for _ in range(len(pool)):
            o = state["offset"] % (len(pool) - b)
            state["offset"] += 1
            toks = pool[o:o + b]
            if toks[0] != state["last_first"]:
                state["last_first"] = toks[0]
                return toks
        raise RuntimeError("batch: no suitable new tokens")

    runs = {b: [] for b in sizes}
    for rnd in range(args.warmup + args.repeat):
        for b in sizes:
            t, wall, cpu = ref.completion(prefix + new_tokens(b), 1, cache_prompt=True)
            checks["requests"] += 1
            if t["prompt_n"] != b or t.get("cache_n", -1) != C:
                checks["mismatches"].append({"size": b, "prompt_n": t["prompt_n"], "cache_n": t.get("cache_n")})
            if rnd >= args.warmup:
                runs[b].append({"ms": t["prompt_ms"], "tokens_per_second": b / (t["prompt_ms"] / 1000),
                                "cpu_ms": cpu, "request_ms": wall, "peak_rss_mib": peak_rss_mib(),
                                "prompt_n": t["prompt_n"], "cache_n": t.get("cache_n")})
    b1 = statistics.median(r["ms"] for r in runs[1]) if 1 in runs else None
    out = []
    for b in sizes:
        s = summary([r["ms"] for r in runs[b]])
        out.append({"size": b, "ms": s, "ratio_to_b1": s["median"] / b1 if b1 else None,
                    "tokens_per_second": b / (s["median"] / 1000), "ms_per_token": s["median"] / b,
                    "runs": runs[b]})
    return {
        "benchmark": "batch", "context": C, "logits": "last",
        "method": "prompt_ms of prefix (C tokens, cached) + B new tokens with cache_prompt true, n_predict 1; "
                  "the server processes only the B new tokens in one forward call (checked: cache_n == C, "
                  "prompt_n == B); rounds interleave the sizes",
        "check": {"ok": not checks["mismatches"], **checks},
        "shapes": [{"shape": "causal", "sizes": out}]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="alias or GGUF path")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=128, help="decode steps")
    ap.add_argument("--prompt-tokens", type=int, default=32, help="decode prompt length")
    ap.add_argument("--prefill-tokens", type=int, default=512)
    ap.add_argument("--context", type=int, default=64, help="batch: cached context tokens")
    ap.add_argument("--sizes", default="1,2,4,8,16,32,64", help="batch sizes")
    ap.add_argument("--only", default="decode,prefill,batch", help="which benchmarks")
    ap.add_argument("--out", help="write the JSON here instead of stdout")
    ap.add_argument("--log", help="llama.cpp's log (default: a temp file)")
    args = ap.parse_args()
    args.sizes = [int(x) for x in args.sizes.split(",") if x.strip()]
    if args.repeat < 1 or args.warmup < 0 or args.threads < 1 or min(args.sizes) < 1:
        ap.error("--repeat and --threads must be >= 1, --warmup >= 0, sizes positive")
    only = set(x.strip() for x in args.only.split(","))
    startup_ms = ms_since_process_start()
    path = resolve(args.model)

    log_path = args.log or os.path.join(tempfile.gettempdir(), "arbor_bench_reference.log")
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stderr = os.fdopen(os.dup(2), "w", buffering=1)  # Python's messages stay visible
    os.dup2(fd, 2)

    load_start, steal_start, wall_start = load_average(), steal_ms(), time.monotonic()
    n_ctx = max(2048, args.prompt_tokens + args.tokens + 8, args.prefill_tokens + 8,
                args.context + max(args.sizes) + 8)
    t0 = time.monotonic()
    ref = Reference(path, args.threads, n_ctx)
    load_ms = (time.monotonic() - t0) * 1000
    stream = benchmark_tokens(ref, max(args.prompt_tokens, args.prefill_tokens,
                                       args.context + 4 * max(args.sizes) + 64))
    # Time to first token: the first request of the process (cold).
    t, wall, _ = ref.completion(stream[:args.prompt_tokens], 1, cache_prompt=False)
    ttft = {"from_process_start_ms": ms_since_process_start(), "startup_ms": startup_ms,
            "load_ms": load_ms, "first_request_ms": wall, "prompt_ms": t["prompt_ms"],
            "prompt_tokens": args.prompt_tokens, "resolution_ms": 10}
    say(f"{args.model}: loaded in {load_ms:.0f} ms, first token after {ttft['from_process_start_ms']:.0f} ms")

    with open(log_path, "rb") as f:
        log = f.read().decode("utf-8", "replace")
    m = re.search(r"CPU_REPACK model buffer size =\s+([\d.]+) MiB", log)
    report = {
        "engine": "xllamacpp", "engine_version": getattr(xllamacpp, "__version__", "unknown"),
        "model": {"model": args.model, "path": path, "file_bytes": os.path.getsize(path),
                  "repacked_mib": float(m.group(1)) if m else 0.0},
        "settings": {"threads": args.threads, "repeat": args.repeat, "warmup": args.warmup,
                     "cores": os.cpu_count(), **ref.settings},
        "time_to_first_token": ttft,
    }
    if "decode" in only:
        say("decode")
        report["decode"] = run_decode(ref, args, stream)
    if "prefill" in only:
        say("prefill")
        report["prefill"] = run_prefill(ref, args, stream)
    if "batch" in only:
        say("batch")
        report["batch"] = run_batch(ref, args, stream)
    report["peak_rss_mib"] = peak_rss_mib()
    steal_end = steal_ms()
    report["load_average"] = {
        "start": load_start, "end": load_average(), "wall_ms": (time.monotonic() - wall_start) * 1000,
        "steal_ms": steal_end - steal_start if steal_start is not None and steal_end is not None else None}
    report["reference_log"] = log_path
    ref.close()
    text = json.dumps(report, indent=2, sort_keys=True)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
