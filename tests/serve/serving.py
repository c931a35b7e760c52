"""Helpers for the `arbor serve` operations tests: start replicas with a metrics endpoint, run
`arbor generate` clients against them, scrape /metrics."""
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

ARBOR = os.environ.get("ARBOR", ".build/release/arbor")
MODEL = os.environ.get("ARBOR_SERVE_TEST_MODEL", "smollm2-135m")

PROMPTS = [
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "The three most important ideas in computer science are",
    "import numpy as np\n\ndef softmax(x):\n",
    "Once upon a time, in a small village by the sea,",
    "class Stack:\n    def __init__(self):\n",
    "To make a good cup of tea, first",
    "def is_prime(n: int) -> bool:\n",
    "The history of the printing press begins",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Replica:
    """One `arbor serve` with /metrics on its own port."""

    def __init__(self, name, port=None, metrics_port=None, extra=(), threads=1, work=None):
        self.name = name
        self.port = port or free_port()
        self.metrics_port = metrics_port or free_port()
        self.work = work or tempfile.mkdtemp(prefix="arbor-serve-test-")
        self.log_path = os.path.join(self.work, f"{name}.log")
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [ARBOR, "serve", "--model", MODEL, "--port", str(self.port), "--metrics-port", str(self.metrics_port),
             "--threads", str(threads), "--name", name, *extra],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"arbor serve {name} exited: {open(self.log_path).read()}")
            try:
                if self.health() == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"arbor serve {name} did not become healthy: {open(self.log_path).read()}")

    def health(self):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/health", timeout=2) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    def metrics_text(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return r.read().decode()

    def metrics(self):
        return parse_metrics(self.metrics_text())

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


def parse_metrics(text):
    """{name or name{labels}: value} of the text format's samples."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, value = line.rsplit(" ", 1)
        out[key] = float(value)
    return out


def client(port, prompt, max_tokens, drafter="ngram", extra=()):
    """Starts `arbor generate --json` against a server (or a balancer) on `port`."""
    return subprocess.Popen(
        [ARBOR, "generate", "--model", MODEL, "--target-host", "127.0.0.1", "--target-port", str(port), "--prompt", prompt,
         "--max-tokens", str(max_tokens), "--ignore-eos", "--drafter", drafter, "--threads", "1", "--no-profile", "--json", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process, timeout=300):
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, f"client failed ({process.returncode}): {err[-2000:]}"
    return json.loads(out), err


def local(prompt, max_tokens):
    """Plain greedy output of the target in this process (the reference)."""
    r = subprocess.run([ARBOR, "generate", "--model", MODEL, "--prompt", prompt, "--max-tokens", str(max_tokens), "--ignore-eos",
                        "--drafter", "none", "--threads", "2", "--no-profile", "--json"],
                       capture_output=True, text=True, timeout=300, check=True)
    return json.loads(r.stdout)
