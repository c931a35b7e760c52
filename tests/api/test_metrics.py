"""/metrics: Prometheus text that promtool accepts, whose counters are the sums of what the
responses reported."""
import re
import shutil
import subprocess

import pytest

from test_openai_api import CHAT, PROMPT, chat, complete


def scrape(server):
    import urllib.request
    req = urllib.request.Request(server.base + "/metrics")
    req.add_header("Authorization", "Bearer " + server.client().api_key)
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain")
        return r.read().decode()


def value(text, name, labels=""):
    """The sample `name{labels}` (0 if absent)."""
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else r"(\{\})?") + r" (\S+)"
    m = re.search("^" + pattern + "$", text, re.M)
    return float(m.group(m.lastindex)) if m else 0.0


def test_promtool_accepts_the_metrics(server):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian's prometheus package) is not installed")
    chat(server.client(), max_tokens=4, temperature=0)
    r = subprocess.run([promtool, "check", "metrics"], input=scrape(server), capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_metrics_need_the_key(server):
    import urllib.error
    import urllib.request
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(server.base + "/metrics", timeout=10)
    assert e.value.code == 401


def test_counters_equal_the_summed_responses(server):
    client = server.client()
    before = scrape(server)
    sums = {"prompt": 0, "generated": 0, "drafts": 0, "draft_n": 0, "accepted": 0, "by_pos": {}}
    runs = [
        (chat, dict(max_tokens=20, temperature=0, extra_body={"drafter": "ngram"})),
        (chat, dict(stream=True, max_tokens=20, temperature=0, extra_body={"drafter": "model", "speculative": {"n_max": 4, "adaptive": False}})),
        (complete, dict(max_tokens=20, temperature=0, extra_body={"drafter": "suffix"})),
        (complete, dict(stream=True, max_tokens=12, temperature=0.7, seed=3, extra_body={"drafter": "none"})),
    ]
    for run, kw in runs:
        _, _, usage, info = run(client, **kw)
        sums["prompt"] += usage.prompt_tokens
        sums["generated"] += usage.completion_tokens
        sums["draft_n"] += info["timings"]["draft_n"]
        sums["accepted"] += info["timings"]["draft_n_accepted"]
        sums["drafts"] += info["arbor"]["drafts"]
        for pos, n in enumerate(info["arbor"]["accepted_by_depth"]):
            sums["by_pos"][pos] = sums["by_pos"].get(pos, 0) + n
    after = scrape(server)

    def delta(name, labels=""):
        return value(after, name, labels) - value(before, name, labels)

    assert delta("arbor_prompt_tokens_total") == sums["prompt"]
    assert delta("arbor_generated_tokens_total") == sums["generated"]
    assert delta("arbor_spec_decode_num_drafts_total") == sums["drafts"]
    assert delta("arbor_spec_decode_num_draft_tokens_total") == sums["draft_n"]
    assert delta("arbor_spec_decode_num_accepted_tokens_total") == sums["accepted"]
    assert sums["draft_n"] > 0 and sums["accepted"] > 0
    for pos, n in sums["by_pos"].items():
        assert delta("arbor_spec_decode_num_accepted_tokens_per_pos_total", f'position="{pos}"') == n
    assert delta("arbor_requests_total", 'endpoint="chat",status="200"') == 2
    assert delta("arbor_requests_total", 'endpoint="completion",status="200"') == 2
    assert value(after, "arbor_requests_running") == 0
