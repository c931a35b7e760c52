"""`arbor serve --decode-drafter`: the server speculates by itself inside run-ahead rounds. A
client that drafts nothing gets the target's own tokens (equal to plain local decoding), the
server's /metrics count its drafted and accepted tokens, and a bad drafter is refused at start."""
import subprocess

import pytest

from serving import ARBOR, MODEL, Replica, client, finish, local

# Code repeats itself: prompt lookup (ngram, no second model) finds drafts the target accepts.
PROMPT = "def add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n\n\ndef mul(a, b):\n"


@pytest.fixture(scope="module")
def replica():
    r = Replica("decode-drafter-test", extra=("--decode-drafter", "ngram"))
    yield r
    r.stop()


def test_run_ahead_with_server_side_speculation_is_the_targets_output(replica):
    before = replica.metrics()
    # No drafter on the client, and a loopback link: the client's policy still runs ahead once
    # it has measured an exchange's overhead (forced here with a large --max-run-ahead).
    out, _ = finish(client(replica.port, PROMPT, 64, drafter="none", extra=("--max-run-ahead", "64")))
    after = replica.metrics()
    assert out["text"] == local(PROMPT, 64)["text"]
    spec = out["stats"]["speculative"]
    assert spec["run_ahead_rounds"] >= 1 and spec["run_ahead_tokens"] >= 32, spec

    def delta(key):
        return after.get(key, 0) - before.get(key, 0)

    rounds = delta("arbor_serve_decode_speculative_rounds_total")
    drafted, accepted = delta("arbor_serve_decode_draft_tokens_total"), delta("arbor_serve_decode_accepted_tokens_total")
    assert rounds >= 1 and drafted >= 1 and 0 <= accepted <= drafted, (rounds, drafted, accepted)
    # Every run-ahead token came from one of those rounds: its target's own token or an accepted
    # draft. (How many drafts are accepted depends on which stretch of the text the client's
    # policy runs ahead over, which depends on timing; tests/ArborServerTests/RunAheadTests shows
    # the passes saved.)
    assert rounds + accepted == spec["run_ahead_tokens"], (rounds, accepted, spec["run_ahead_tokens"])


@pytest.mark.parametrize("drafter, message", [("auto", "needs a drafter"), ("model:no-such-model", "no-such-model"), ("bogus", "decode-drafter")])
def test_a_bad_decode_drafter_is_refused_at_start(drafter, message):
    r = subprocess.run([ARBOR, "serve", "--model", MODEL, "--port", "0", "--decode-drafter", drafter],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert message in r.stderr + r.stdout, r.stderr + r.stdout
