"""`arbor serve --metrics-port`: /health, and a /metrics that promtool accepts and whose
counters agree with what the clients themselves counted."""
import shutil
import subprocess
import urllib.request

import pytest

from serving import PROMPTS, Replica, client, finish


@pytest.fixture(scope="module")
def replica():
    r = Replica("metrics-test")
    yield r
    r.stop()


def test_health_and_unknown_paths(replica):
    assert replica.health() == 200
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{replica.metrics_port}/nope", timeout=5)
    assert e.value.code == 404


def test_promtool_accepts_metrics(replica):
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is installed by scripts/test.sh"
    r = subprocess.run([promtool, "check", "metrics"], input=replica.metrics_text(), capture_output=True, text=True)
    # promtool exits 0 for valid text; lint remarks (if any) go to stderr with a non-zero code.
    assert r.returncode == 0, r.stdout + r.stderr


def test_counters_agree_with_the_clients(replica):
    before = replica.metrics()
    clients = [client(replica.port, PROMPTS[i], 40, drafter=d) for i, d in enumerate(["ngram", "none", "suffix", "ngram"])]
    results = [finish(c)[0] for c in clients]
    after = replica.metrics()
    remote = [r["stats"]["speculative"]["remote"] for r in results]

    def delta(key):
        return after.get(key, 0) - before.get(key, 0)

    # Rounds as the clients count them (a verify or a decode request each), exactly.
    assert delta("arbor_serve_rounds_total") == sum(x["rounds"] for x in remote)
    # One session per client (none had to resume), all closed again.
    assert delta("arbor_serve_sessions_opened_total") == len(clients) + sum(x["resumed_sessions"] for x in remote)
    assert after["arbor_serve_sessions"] == 0
    assert delta("arbor_serve_connections_accepted_total") == len(clients)
    # Bytes: the clients count every frame of their requests; the server also saw each
    # connection's handshake (hello, ping, capabilities, decode query and their answers), which
    # no request is charged for: a few hundred bytes per connection at most.
    received, sent = delta("arbor_serve_received_bytes_total"), delta("arbor_serve_sent_bytes_total")
    up, down = sum(x["bytes_sent"] for x in remote), sum(x["bytes_received"] for x in remote)
    assert up <= received <= up + 300 * len(clients), (up, received)
    assert down <= sent <= down + 300 * len(clients), (down, sent)
    # Server time: the clients were told of every millisecond the server counted as busy.
    busy = delta("arbor_serve_target_busy_seconds_total") * 1000
    told = sum(x["server_busy_ms"] for x in remote)
    assert abs(busy - told) <= 0.01 * told + 5, (busy, told)
    assert delta("arbor_serve_queue_wait_seconds_count") == len(clients)
    assert after["arbor_serve_connections{state=\"active\"}"] == 0
