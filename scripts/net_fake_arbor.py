#!/usr/bin/env python3
"""Stand-in for the `arbor` binary, to test the network scripts without a Swift build.

    ARBOR=scripts/net_fake_arbor.py scripts/remote_test.sh
    ARBOR=scripts/net_fake_arbor.py N=8 scripts/bench_remote.sh

Implements just enough of `arbor serve` and `arbor generate --json` (same flags, same output
shape) over a toy line protocol: the server computes every token, so a remote run only returns
the local run's tokens if the bytes really went through the namespaces / relay. Tokens are a
hash of model + prompt, so runs are deterministic. Faults for testing the harness:
    FAKE_ARBOR_FAULT=hang-serve    serve never says it is listening (and ignores SIGTERM)
    FAKE_ARBOR_FAULT=hang-client   a remote generate never finishes
    FAKE_ARBOR_FAULT=wrong-tokens  the server returns different tokens
    FAKE_ARBOR_FAULT=no-remote     remote runs omit stats.speculative.remote
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import socketserver
import sys
import time

FAULT = os.environ.get("FAKE_ARBOR_FAULT", "")


def token(model: str, prompt: str, i: int) -> int:
    h = hashlib.sha256(f"{model}\0{prompt}\0{i}".encode()).digest()
    return int.from_bytes(h[:4], "little") % 49152


def serve(a: argparse.Namespace) -> int:
    if FAULT == "hang-serve":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            time.sleep(3600)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for line in self.rfile:
                req = json.loads(line)
                t0 = time.perf_counter()
                time.sleep(0.002)  # "verification"
                toks = [token(a.model, req["prompt"], i) + (1 if FAULT == "wrong-tokens" else 0)
                        for i in range(req["start"], req["start"] + req["count"])]
                busy = (time.perf_counter() - t0) * 1000
                self.wfile.write((json.dumps({"tokens": toks, "busy": busy}) + "\n").encode())
                self.wfile.flush()

    class Server(socketserver.ThreadingTCPServer):
        allow_reuse_address = True
        daemon_threads = True

    with Server((a.host, a.port), Handler) as srv:
        print(f"arbor serve: listening on {a.host}:{a.port}", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        srv.serve_forever()
    return 0


def generate(a: argparse.Namespace) -> int:
    prompt = a.prompt if a.prompt is not None else a.chat
    n = a.max_tokens
    t0 = time.perf_counter()
    stats: dict = {"prompt_tokens": len(prompt.split()), "generated_tokens": n, "prefill_ms": 1.0}
    if a.target_host is None:
        tokens = [token(a.model, prompt, i) for i in range(n)]
        time.sleep(0.001 * n)
    else:
        if FAULT == "hang-client":
            while True:
                time.sleep(3600)
        drafting = a.draft is not None or a.drafter not in (None, "none")
        per_round = 4 if drafting else 1
        tokens, sent, received, trips, rtt_ms, busy = [], 0, 0, 0, 0.0, 0.0
        with socket.create_connection((a.target_host, a.target_port), timeout=30) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            f = s.makefile("rb")
            while len(tokens) < n:
                msg = (json.dumps({"prompt": prompt, "start": len(tokens),
                                   "count": min(per_round, n - len(tokens))}) + "\n").encode()
                r0 = time.perf_counter()
                s.sendall(msg)
                line = f.readline()
                if not line:
                    print("fake arbor: server closed the connection", file=sys.stderr)
                    return 1
                rtt_ms += (time.perf_counter() - r0) * 1000
                reply = json.loads(line)
                tokens += reply["tokens"]
                sent, received, trips, busy = sent + len(msg), received + len(line), trips + 1, busy + reply["busy"]
        spec = {"rounds": trips, "remote": {"bytesSent": sent, "bytesReceived": received, "roundTrips": trips,
                                            "roundTripMilliseconds": rtt_ms, "serverBusyMilliseconds": busy,
                                            "rounds": trips}}
        if FAULT == "no-remote":
            del spec["remote"]
        stats["speculative"] = spec
    stats["decode_ms"] = (time.perf_counter() - t0) * 1000
    out = {"text": "<fake>", "prompt_tokens": [], "tokens": tokens, "finish_reason": "length", "stats": stats}
    if a.json:
        print(json.dumps(out))
    else:
        print(out["text"])
    return 0


def main() -> int:
    p = argparse.ArgumentParser(prog="arbor (fake)")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--model", required=True)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=7000)
    s.add_argument("--threads", type=int)
    g = sub.add_parser("generate")
    g.add_argument("--model", required=True)
    g.add_argument("--prompt")
    g.add_argument("--chat")
    g.add_argument("--max-tokens", type=int, default=128)
    g.add_argument("--threads", type=int)
    g.add_argument("--json", action="store_true")
    g.add_argument("--drafter")
    g.add_argument("--draft")
    g.add_argument("--target-host")
    g.add_argument("--target-port", type=int, default=7000)
    a = p.parse_args()
    if a.cmd == "generate" and (a.prompt is None) == (a.chat is None):
        p.error("exactly one of --prompt / --chat")
    return serve(a) if a.cmd == "serve" else generate(a)


if __name__ == "__main__":
    sys.exit(main())
