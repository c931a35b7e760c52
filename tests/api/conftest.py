"""Starts one `arbor api` (target qwen2.5-coder-1.5b, draft qwen2.5-coder-0.5b, an API key) for
the whole session; the tests talk to it with the official `openai` client, unchanged."""
import json
import os
import re
import subprocess
import tempfile
import time
import urllib.request

import openai
import pytest

ARBOR = os.environ.get("ARBOR", ".build/release/arbor")
TARGET = os.environ.get("ARBOR_API_TARGET", "qwen2.5-coder-1.5b")
DRAFT = os.environ.get("ARBOR_API_DRAFT", "qwen2.5-coder-0.5b")
KEY = "sk-arbor-test-key"


class Server:
    def __init__(self, process, port, log):
        self.process, self.port, self.log = process, port, log
        self.base = f"http://127.0.0.1:{port}"

    def client(self, key=KEY, **kw):
        return openai.OpenAI(base_url=self.base + "/v1", api_key=key, max_retries=0, timeout=300, **kw)

    def health(self):
        try:
            with urllib.request.urlopen(self.base + "/health", timeout=5) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    def raw(self, path, body, key=KEY, method="POST"):
        """(status, parsed JSON or text) of a request with a raw body."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if key:
            req.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())


@pytest.fixture(scope="session")
def server():
    work = tempfile.mkdtemp(prefix="arbor-api-test-")
    key_file = os.path.join(work, "key")
    with open(key_file, "w") as f:
        f.write(KEY + "\n")
    log = open(os.path.join(work, "server.log"), "w+")
    process = subprocess.Popen(
        [ARBOR, "api", "--model", TARGET, "--draft", DRAFT, "--extra-draft", TARGET, "--drafter", "none", "--port", "0",
         "--api-key-file", key_file, "--threads", "2", "--no-profile", "--catalog", os.path.join(work, "servers.sqlite")],
        stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, "ARBOR_DATA_DIR": work})
    line = process.stdout.readline()
    match = re.search(r"listening on http://[^:]+:(\d+)", line)
    assert match, f"arbor api did not start: {line!r}"
    s = Server(process, int(match.group(1)), log)
    s.work = work
    deadline = time.time() + 300
    while s.health()[0] != 200:
        assert process.poll() is None, "arbor api exited while loading"
        assert time.time() < deadline, "the model did not load in 300 s"
        time.sleep(0.2)
    yield s
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
    log.seek(0)
    print(log.read()[-4000:])
