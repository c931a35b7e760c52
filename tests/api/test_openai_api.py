"""The OpenAI-compatible API against the official `openai` client (in the spirit of llama.cpp's
tools/server/tests): greedy output is the same whatever the drafter, streamed or not; sampling
follows the seed; stop strings, usage, timings, auth, errors, parallel streams, disconnects."""
import json
import socket
import threading
import time

import openai
import pytest

CHAT = [{"role": "user", "content": "Write a Python function that checks whether a number is prime."}]
PROMPT = "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"
MAX = 24


def chat(client, stream=False, **kw):
    """(text, finish_reason, usage, extra) of a chat completion, streamed or not."""
    if not stream:
        r = client.chat.completions.create(model="qwen2.5-coder-1.5b", messages=kw.pop("messages", CHAT), **kw)
        extra = r.model_extra or {}
        return r.choices[0].message.content, r.choices[0].finish_reason, r.usage, extra
    text, finish, usage, extra, drafted = "", None, None, {}, []
    for chunk in client.chat.completions.create(model="qwen2.5-coder-1.5b", messages=kw.pop("messages", CHAT), stream=True,
                                                stream_options={"include_usage": True}, **kw):
        if chunk.usage:
            usage, extra = chunk.usage, chunk.model_extra or {}
        for c in chunk.choices:
            if c.delta.content:
                text += c.delta.content
                drafted.append((chunk.model_extra or {}).get("arbor", {}).get("drafted"))
            finish = c.finish_reason or finish
    extra["drafted_flags"] = drafted
    return text, finish, usage, extra


def complete(client, stream=False, **kw):
    if not stream:
        r = client.completions.create(model="qwen2.5-coder-1.5b", prompt=kw.pop("prompt", PROMPT), **kw)
        return r.choices[0].text, r.choices[0].finish_reason, r.usage, r.model_extra or {}
    text, finish, usage, extra = "", None, None, {}
    for chunk in client.completions.create(model="qwen2.5-coder-1.5b", prompt=kw.pop("prompt", PROMPT), stream=True,
                                           stream_options={"include_usage": True}, **kw):
        if chunk.usage:
            usage, extra = chunk.usage, chunk.model_extra or {}
        for c in chunk.choices:
            text += c.text
            finish = c.finish_reason or finish
    return text, finish, usage, extra


@pytest.fixture(scope="module")
def client(server):
    return server.client()


@pytest.fixture(scope="module")
def plain(client):
    """Greedy references: the target alone, not streamed."""
    return {
        "chat": chat(client, max_tokens=MAX, temperature=0, extra_body={"drafter": "none"}),
        "completion": complete(client, max_tokens=MAX, temperature=0, extra_body={"drafter": "none"}),
    }


@pytest.mark.parametrize("kind", ["chat", "completion"])
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("drafter,n_max", [("none", None), ("ngram", 4), ("ngram", 16), ("suffix", 8), ("model", 2), ("model", 6)])
def test_greedy_output_is_the_targets_whatever_the_drafter(client, plain, kind, stream, drafter, n_max):
    extra = {"drafter": drafter}
    if n_max:
        # A fixed budget: every round drafts (the adaptive policy may find that a local draft
        # model does not pay, and draft nothing).
        extra["speculative"] = {"n_max": n_max, "adaptive": False}
    run = chat if kind == "chat" else complete
    text, finish, usage, info = run(client, stream=stream, max_tokens=MAX, temperature=0, extra_body=extra)
    ref_text, ref_finish, ref_usage, _ = plain[kind]
    assert text == ref_text
    assert finish == ref_finish
    assert usage.completion_tokens == ref_usage.completion_tokens
    assert usage.prompt_tokens == ref_usage.prompt_tokens
    timings = info["timings"]
    assert 0 <= timings["draft_n_accepted"] <= timings["draft_n"]
    assert info["arbor"]["drafter"].startswith(drafter)
    if drafter == "model":
        assert timings["draft_n"] > 0, "the draft model proposed nothing"


def test_a_second_draft_model_is_chosen_by_name(client, plain):
    # The target drafting for itself (an extra draft model of the same vocabulary): the output is
    # the target's, and every drafted token is accepted.
    extra = {"drafter": "model:qwen2.5-coder-1.5b", "speculative": {"n_max": 3, "adaptive": False}}
    text, _, _, info = chat(client, max_tokens=12, temperature=0, extra_body=extra)
    assert plain["chat"][0].startswith(text)
    assert info["arbor"]["drafter"] == "model:qwen2.5-coder-1.5b"
    assert info["timings"]["draft_n"] > 0 and info["timings"]["draft_n_accepted"] == info["timings"]["draft_n"]
    drafts = [m.id for m in client.models.list().data if m.model_extra["meta"].get("draft")]
    assert sorted(drafts) == ["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    with pytest.raises(openai.BadRequestError) as e:
        chat(client, max_tokens=2, extra_body={"drafter": "model:smollm2-135m"})
    assert "not available" in e.value.message


def test_usage_counts_are_exact(client, plain):
    text, finish, usage, info = plain["chat"]
    assert finish == "length"
    assert usage.completion_tokens == MAX
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert info["timings"]["predicted_n"] == usage.completion_tokens
    assert info["timings"]["prompt_n"] == usage.prompt_tokens


def test_drafted_tokens_are_marked_in_the_stream(client):
    # Prompt lookup on a prompt that repeats itself: some pieces must come from accepted drafts.
    messages = [{"role": "user", "content": "Repeat exactly, twice: the quick brown fox jumps over the lazy dog. the quick brown fox jumps over the lazy dog."}]
    text, _, usage, info = chat(client, stream=True, messages=messages, max_tokens=40, temperature=0, extra_body={"drafter": "ngram"})
    flags = info["drafted_flags"]
    assert all(f in (True, False) for f in flags)
    assert (True in flags) == (info["timings"]["draft_n_accepted"] > 0)
    assert info["timings"]["draft_n_accepted"] > 0


@pytest.mark.parametrize("drafter", ["none", "ngram", "model"])
def test_same_seed_same_text_different_seeds_differ(client, drafter):
    kw = dict(max_tokens=MAX, temperature=1.0, top_p=1.0, extra_body={"drafter": drafter, "top_k": 0, "min_p": 0})
    a = chat(client, seed=11, **kw)[0]
    b = chat(client, seed=11, stream=True, **kw)[0]
    # After other requests taught the policy more, the same seed still gives the same text.
    chat(client, max_tokens=8, temperature=0, extra_body={"drafter": drafter})
    c = chat(client, seed=11, **kw)[0]
    assert a == b == c
    others = {chat(client, seed=s, **kw)[0] for s in (12, 13, 14)}
    assert len(others | {a}) > 1, "four seeds gave one text"


@pytest.mark.parametrize("stream", [False, True])
def test_stop_is_honoured(client, plain, stream):
    ref = plain["completion"][0]
    assert "\n" in ref
    stop = ref[ref.index("\n"):ref.index("\n") + 3]
    text, finish, usage, _ = complete(client, stream=stream, max_tokens=MAX, temperature=0, stop=[stop], extra_body={"drafter": "suffix"})
    assert text == ref[:ref.index(stop)]
    assert finish == "stop"


def test_unauthorized_without_the_key(server):
    with pytest.raises(openai.AuthenticationError):
        server.client(key="wrong").chat.completions.create(model="qwen2.5-coder-1.5b", messages=CHAT, max_tokens=2)
    status, body = server.raw("/v1/chat/completions", {"messages": CHAT}, key=None)
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
    assert server.health()[0] == 200  # /health stays public


@pytest.mark.parametrize("body,param", [
    ({"messages": CHAT, "max_tokens": 0}, "max_tokens"),
    ({"messages": CHAT, "max_tokens": -3}, "max_tokens"),
    ({"messages": CHAT, "model": "gpt-4o"}, "model"),
    ({"messages": CHAT, "cs": "fast"}, "cs"),
    ({"messages": CHAT, "objective": "cheap"}, "objective"),
    ({"messages": CHAT, "drafter": "magic"}, "drafter"),
    ({"messages": CHAT, "n": 2}, "n"),
    ({"messages": CHAT, "max_tokens": 10 ** 6}, "max_tokens"),
    ({"messages": CHAT, "temperature": -1}, "temperature"),
    ({"messages": []}, "messages"),
    ({"messages": "hello"}, None),
    ({"prompt": "x"}, "messages"),
])
def test_bad_requests_get_a_400_with_an_openai_error(server, body, param):
    status, reply = server.raw("/v1/chat/completions", body)
    assert status == 400, reply
    assert reply["error"]["type"] == "invalid_request_error"
    assert reply["error"]["message"]
    if param:
        assert reply["error"]["param"] == param


def test_malformed_json_and_the_client_library_errors(server, client):
    status, reply = server.raw("/v1/chat/completions", b'{"messages": [')
    assert status == 400 and "JSON" in reply["error"]["message"]
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="no-such-model", messages=CHAT)
    assert e.value.code == "model_not_found"


def test_models_lists_the_target_and_the_draft(client):
    listed = client.models.list().data
    assert len({m.id for m in listed}) == len(listed), "model ids are unique"
    models = {m.id: m for m in listed}
    assert "qwen2.5-coder-1.5b" in models and "qwen2.5-coder-0.5b" in models
    assert models["qwen2.5-coder-0.5b"].model_extra["meta"]["role"] == "draft"
    meta = models["qwen2.5-coder-1.5b"].model_extra["meta"]
    assert meta["role"] == "target" and meta["n_vocab"] == 151936 and meta["n_ctx_train"] > 0 and meta["size"] > 0


def test_four_parallel_streams_complete_and_equal_their_single_stream_outputs(server, client):
    from test_metrics import scrape, value
    prompts = [[{"role": "user", "content": c}] for c in
               ("Write a haiku about trees.", "What is 12 times 13?", "Name three sorting algorithms.", "Write hello world in C.")]
    kw = dict(max_tokens=16, temperature=0, extra_body={"drafter": "ngram"})
    single = [chat(client, stream=True, messages=m, **kw)[0] for m in prompts]
    results = [None] * 4

    def run(i):
        results[i] = chat(client, stream=True, messages=prompts[i], **kw)[0]

    before = value(scrape(server), "arbor_target_merged_passes_total")
    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert results == single
    # They ran at once: the target scored several requests' rounds in shared passes.
    assert value(scrape(server), "arbor_target_merged_passes_total") > before


def test_a_client_that_disconnects_mid_stream_frees_its_generation(server):
    # A long generation, abandoned after its first pieces: the server must stop it (a generation
    # left running would hold the target for ~2,000 tokens, over a minute on this CPU).
    body = json.dumps({"messages": CHAT, "max_tokens": 2000, "temperature": 0, "ignore_eos": True, "stream": True}).encode()
    s = socket.create_connection(("127.0.0.1", server.port))
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              + f"Authorization: Bearer {server.client().api_key}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
    received = b""
    while received.count(b"data: ") < 4:
        received += s.recv(4096)
    assert server.health()[1]["requests_running"] == 1
    s.close()
    deadline = time.time() + 20
    while server.health()[1]["requests_running"] != 0:
        assert time.time() < deadline, "the abandoned generation is still running"
        time.sleep(0.1)
    # And the server still serves.
    text = chat(server.client(), max_tokens=4, temperature=0)[0]
    assert text
