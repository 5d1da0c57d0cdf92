"""Engine simulator end to end: the real fake-engine in simulator mode, the unchanged
kvevent-subscriber and the real inferencecache-server on loopback. The OpenAI-compatible surface
(JSON and SSE replies, usage with cached_tokens, sim_timing, errors), /metrics under vLLM's names,
the /sim/prefix_match oracle, and the KV events: LookupRoute answers PREFIX_MATCH for prompts the
simulator served, stops matching them once evicted or reset, and sees CPU-tier copies as T2."""
import http.client
import json
import os
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from harness import (FAKE_ENGINE_BIN, EngineSim, Server, Subscriber, free_port,  # noqa: E402
                     http_get, protos, wait_until)

pb, pb_grpc = protos()
BS = 16


def post(engine, path, body, timeout=30):
    data = json.dumps(body).encode() if not isinstance(body, bytes) else body
    st, hdr, out = http_get(engine.url + path, timeout=timeout, method="POST", data=data,
                            headers={"Content-Type": "application/json"})
    return st, hdr, out


def complete(engine, prompt, max_tokens=2, **kw):
    body = {"model": engine.model, "prompt": prompt, "max_tokens": max_tokens}
    body.update(kw)
    st, _, out = post(engine, "/v1/completions", body)
    assert st == 200, out
    return json.loads(out)


def stream(engine, body, path="/v1/completions"):
    """SSE request; returns [(wall time, parsed chunk or '[DONE]')]."""
    conn = http.client.HTTPConnection("127.0.0.1", engine.http_port, timeout=60)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.getheader("Content-Type") == "text/event-stream"
    out, buf = [], b""
    while True:
        line = resp.readline()
        if not line:
            break
        buf += line
        if line == b"\n":
            data = buf.strip()
            buf = b""
            assert data.startswith(b"data: "), data
            data = data[6:]
            out.append((time.monotonic(), "[DONE]" if data == b"[DONE]" else json.loads(data)))
    conn.close()
    return out


def prompt(start, n):
    return list(range(start, start + n))


def lookup(srv, tokens, model="sim-model", scheme="vllm"):
    # Tenant "t": an empty tenant id gets NO_HINT from the server; the default policy also needs
    # >= 64 matched tokens (minimumMatchedTokens) before it answers PREFIX_MATCH.
    req = pb.LookupRouteRequest(model_id=model, tenant_id="t", hash_scheme=scheme)
    req.token_ids.extend(tokens)
    return srv.stub().LookupRoute(req, timeout=10)


def top(resp):
    if not resp.replica_scores:
        return (resp.reason_code, None, 0)
    r = resp.replica_scores[0]
    return (resp.reason_code, r.replica_id, r.matched_tokens)


@pytest.fixture(scope="module")
def server():
    with Server(["--insecure-disable-auth"]) as srv:
        yield srv


@pytest.fixture
def engine():
    e = EngineSim(["--kv-capacity-tokens=4096", "--speedup=20"])
    yield e
    assert e.stop() == 0


# ---------------------------------------------------------------------------------------------

def test_completion_reply_shape_usage_and_sim_timing(engine):
    p = prompt(1000, 100)
    a = complete(engine, p, max_tokens=5)
    assert a["object"] == "text_completion"
    assert a["model"] == "sim-model"
    assert a["choices"][0]["finish_reason"] == "length"
    assert len(a["choices"][0]["text"].split()) == 5
    assert a["usage"]["prompt_tokens"] == 100
    assert a["usage"]["completion_tokens"] == 5
    assert a["usage"]["total_tokens"] == 105
    assert a["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    t = a["sim_timing"]
    assert t["cached_tokens"] == 0 and t["computed_prefill_tokens"] == 100
    assert t["arrival_ms"] <= t["first_token_ms"] <= t["finish_ms"]
    assert abs(t["ttft_ms"] - (t["first_token_ms"] - t["arrival_ms"])) < 1e-6
    assert abs(t["e2e_ms"] - (t["finish_ms"] - t["arrival_ms"])) < 1e-6
    # Default time model: 6.2 ms + 100 x 30 us + attention; 4 decode steps of ~6.3 ms.
    assert 9.0 < t["ttft_ms"] < 10.0, t
    assert 30.0 < t["e2e_ms"] < 40.0, t
    # The same prompt again: 6 full blocks cached ((100-1)//16), only the rest computed.
    b = complete(engine, p, max_tokens=1)
    assert b["usage"]["prompt_tokens_details"]["cached_tokens"] == 96
    assert b["sim_timing"]["computed_prefill_tokens"] == 4
    assert b["sim_timing"]["ttft_ms"] < t["ttft_ms"]
    # Text prompts go through the stand-in tokenizer: deterministic, prefix-stable.
    text = "the quick brown fox jumps over the lazy dog " * 8
    c1 = complete(engine, text, max_tokens=1)
    c2 = complete(engine, text + "and keeps running", max_tokens=1)
    assert c1["usage"]["prompt_tokens"] == complete(engine, text, max_tokens=1)["usage"][
        "prompt_tokens"]
    assert c2["usage"]["prompt_tokens_details"]["cached_tokens"] >= \
        (c1["usage"]["prompt_tokens"] // BS) * BS - BS


def test_streaming_first_chunk_usage_chunk_and_done(engine):
    chunks = stream(engine, {"prompt": prompt(5000, 40), "max_tokens": 4, "stream": True,
                             "stream_options": {"include_usage": True}})
    data = [c for _, c in chunks]
    assert data[-1] == "[DONE]"
    usage = data[-2]
    assert usage["choices"] == []
    assert usage["usage"]["completion_tokens"] == 4
    assert usage["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
    assert "sim_timing" in usage
    texts = [c["choices"][0]["text"] for c in data[:-2]]
    assert len([t for t in texts if t]) == 4  # one chunk per token (stream interval 1)
    assert data[-3]["choices"][0]["finish_reason"] == "length"
    assert data[-3]["sim_timing"] == usage["sim_timing"]
    # Without include_usage the finish chunk still carries sim_timing.
    chunks = stream(engine, {"prompt": prompt(6000, 20), "max_tokens": 2, "stream": True})
    data = [c for _, c in chunks]
    assert data[-1] == "[DONE]" and "usage" not in data[-2] and "sim_timing" in data[-2]
    # Chat: the first chunk carries the role.
    chunks = stream(engine, {"messages": [{"role": "user", "content": "hello there"}],
                             "max_tokens": 3, "stream": True}, path="/v1/chat/completions")
    first = chunks[0][1]
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"][0]["delta"]["role"] == "assistant"


def test_first_chunk_arrives_before_the_rest_in_wall_time():
    # speedup 1: 50 decode steps of ~6.3 ms take ~0.3 s after the first token.
    e = EngineSim(["--kv-capacity-tokens=4096", "--speedup=1"])
    try:
        t0 = time.monotonic()
        chunks = stream(e, {"prompt": prompt(1, 64), "max_tokens": 50, "stream": True})
        first, last = chunks[0][0], chunks[-1][0]
        assert last - first > 0.2, (first - t0, last - first)
        assert first - t0 < last - first
    finally:
        assert e.stop() == 0


def test_many_concurrent_streams_complete(engine):
    n = 200
    results, errors = [None] * n, []

    def one(i):
        try:
            results[i] = stream(engine, {"prompt": prompt(100000 + i * 64, 48), "max_tokens": 8,
                                         "stream": True,
                                         "stream_options": {"include_usage": True}})
        except Exception as ex:  # noqa: BLE001 - reported below
            errors.append(repr(ex))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    for r in results:
        assert r[-1][1] == "[DONE]"
        assert r[-2][1]["usage"]["completion_tokens"] == 8
    # They queued behind max_num_seqs / the 4096-token cache: some waited, in simulated time.
    queues = [r[-2][1]["sim_timing"]["queue_ms"] for r in results]
    assert max(queues) > 0


@pytest.mark.parametrize("body,status,needle", [
    (b"{not json", 400, "invalid JSON"),
    ({"prompt": []}, 400, "must not be empty"),
    ({"prompt": [1, -2]}, 400, "token ids"),
    ({"prompt": [[1, 2], [3]]}, 400, "batched"),
    ({"prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
    ({"prompt": "x", "stream_options": {"include_usage": True}}, 400, "stream=True"),
    ({"prompt": "x", "model": "other"}, 404, "does not exist"),
    ({"prompt": list(range(4000)), "max_tokens": 200}, 400, "KV cache"),
])
def test_bad_requests_get_clear_errors(engine, body, status, needle):
    st, _, out = post(engine, "/v1/completions", body)
    assert st == status, out
    err = json.loads(out)["error"]
    assert needle in err["message"] and err["code"] == status
    assert complete(engine, "still serving", max_tokens=1)["usage"]["completion_tokens"] == 1


def test_models_health_and_metrics_names(engine):
    st, _, body = http_get(engine.url + "/health")
    assert st == 200
    st, _, body = http_get(engine.url + "/v1/models")
    assert st == 200 and json.loads(body)["data"][0]["id"] == "sim-model"
    p = prompt(7000, 64)
    complete(engine, p, max_tokens=3)
    complete(engine, p, max_tokens=3)
    st, hdr, body = http_get(engine.url + "/metrics")
    assert st == 200 and hdr["Content-Type"].startswith("text/plain; version=0.0.4")
    vals = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, v = line.rsplit(" ", 1)
            vals[name] = float(v)
    lab = '{model_name="sim-model"}'
    for fam in ("vllm:num_requests_running", "vllm:num_requests_waiting",
                "vllm:gpu_cache_usage_perc", "vllm:kv_cache_usage_perc"):
        assert vals[fam + lab] == 0
    assert vals["vllm:prefix_cache_queries_total" + lab] == 128
    assert vals["vllm:prefix_cache_hits_total" + lab] == 48  # (64-1)//16 blocks
    assert vals["vllm:prompt_tokens_total" + lab] == 128
    assert vals["vllm:generation_tokens_total" + lab] == 6
    assert vals["vllm:time_to_first_token_seconds_count" + lab] == 2
    assert 'vllm:time_to_first_token_seconds_bucket{model_name="sim-model",le="0.01"}' in vals


def test_prefix_match_oracle_and_reset(engine):
    p = prompt(3000, 70)
    complete(engine, p, max_tokens=1)
    st, _, out = post(engine, "/sim/prefix_match", {"prompt": p})
    assert st == 200
    assert json.loads(out) == {"cached_tokens": 64, "cached_tokens_cpu": 0, "block_size": 16}
    st, _, out = post(engine, "/sim/prefix_match", {"prompt": p[:20] + [1] + p[21:]})
    assert json.loads(out)["cached_tokens"] == 16
    st, _, out = post(engine, "/sim/prefix_match", {"prompt": "nope"})
    assert st == 200 and json.loads(out)["cached_tokens"] == 0
    st, _, out = post(engine, "/sim/prefix_match", {"prompt": 5})
    assert st == 400
    st, _, _ = post(engine, "/reset_prefix_cache", b"")
    assert st == 200
    st, _, out = post(engine, "/sim/prefix_match", {"prompt": p})
    assert json.loads(out)["cached_tokens"] == 0


@pytest.mark.parametrize("encoding", ["vllm-map", "vllm-array", "sglang"])
def test_subscriber_indexes_served_prompts_and_drops_evicted(server, encoding):
    model = "sim-" + encoding
    scheme = "sglang" if encoding == "sglang" else "vllm"
    eng = EngineSim(["--kv-capacity-tokens=2048", "--speedup=20", "--encoding=" + encoding],
                    model=model)
    sub = Subscriber(server, eng, "sim-0", model=model, tenant="t",
                     extra=["--hash-scheme=" + scheme])
    try:
        def lk(tokens):
            return top(lookup(server, tokens, model=model, scheme=scheme))

        n = [0]

        def joined():
            n[0] += 1
            w = prompt(900000 + n[0] * 1000, 5 * BS + 1)
            complete(eng, w, max_tokens=1)
            time.sleep(0.2)
            return lk(w[:5 * BS])[0] == "PREFIX_MATCH"

        wait_until(joined, timeout=30, interval=0.01, what="subscriber joined")
        a = prompt(10000, 10 * BS + 5)
        r = complete(eng, a, max_tokens=1)
        assert r["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
        wait_until(lambda: lk(a) == ("PREFIX_MATCH", "sim-0", 10 * BS), timeout=30,
                   what="a indexed")
        # A prompt sharing a's first 4 blocks matches 64 tokens, like the engine's own cache.
        b = a[:4 * BS] + prompt(50000, 3 * BS)
        assert lk(b) == ("PREFIX_MATCH", "sim-0", 4 * BS)
        assert complete(eng, b, max_tokens=1)["usage"]["prompt_tokens_details"][
            "cached_tokens"] == 4 * BS
        # Fill the 128-block cache with other prompts: a's blocks are evicted (BlockRemoved).
        for i in range(6):
            complete(eng, prompt(200000 + i * 1000, 30 * BS), max_tokens=1)
        st, _, out = post(eng, "/sim/prefix_match", {"prompt": a})
        assert json.loads(out)["cached_tokens"] == 0
        wait_until(lambda: lk(a)[0] != "PREFIX_MATCH" or lk(a)[2] == 0, timeout=30,
                   what="a evicted from the index")
        # Reset: AllBlocksCleared empties this replica's entries.
        c = prompt(300000, 5 * BS + 1)
        complete(eng, c, max_tokens=1)
        wait_until(lambda: lk(c)[0] == "PREFIX_MATCH", timeout=30, what="c indexed")
        assert post(eng, "/reset_prefix_cache", b"")[0] == 200
        wait_until(lambda: lk(c)[0] != "PREFIX_MATCH", timeout=30, what="c cleared")
        assert "sequence gap not fully repaired" not in sub.logs()
    finally:
        sub.stop()
        assert eng.stop() == 0


def test_cpu_offload_blocks_stay_routable_as_t2(server):
    model = "sim-offload"
    eng = EngineSim(["--kv-capacity-tokens=1024", "--cpu-offload-tokens=16384", "--speedup=20"],
                    model=model)
    sub = Subscriber(server, eng, "sim-cpu", model=model, tenant="t")
    try:
        n = [0]

        def joined():
            n[0] += 1
            w = prompt(900000 + n[0] * 1000, 5 * BS + 1)
            complete(eng, w, max_tokens=1)
            time.sleep(0.2)
            return top(lookup(server, w[:5 * BS], model=model))[0] == "PREFIX_MATCH"

        wait_until(joined, timeout=30, interval=0.01, what="subscriber joined")
        a = prompt(10000, 8 * BS + 1)
        complete(eng, a, max_tokens=1)
        wait_until(lambda: top(lookup(server, a, model=model)) == ("PREFIX_MATCH", "sim-cpu",
                                                                    8 * BS), what="a indexed")
        for i in range(4):  # push a out of the 64-block GPU pool
            complete(eng, prompt(200000 + i * 1000, 40 * BS), max_tokens=1)
        st, _, out = post(eng, "/sim/prefix_match", {"prompt": a})
        assert json.loads(out) == {"cached_tokens": 0, "cached_tokens_cpu": 8 * BS,
                                   "block_size": 16}

        def t2():
            resp = lookup(server, a, model=model)
            return (top(resp) == ("PREFIX_MATCH", "sim-cpu", 8 * BS)
                    and resp.replica_scores[0].tier == pb.CACHE_TIER_T2)

        wait_until(t2, timeout=30, what="a downgraded to T2")
        # Served again: loaded from CPU, counted as cached, back on GPU.
        r = complete(eng, a, max_tokens=1)
        assert r["usage"]["prompt_tokens_details"]["cached_tokens"] == 8 * BS
        assert r["sim_timing"]["cached_tokens_cpu"] == 8 * BS
        assert r["sim_timing"]["computed_prefill_tokens"] == 1
    finally:
        sub.stop()
        assert eng.stop() == 0


def test_republish_mode_still_runs_without_http_flag():
    out = subprocess.run([FAKE_ENGINE_BIN, "--bind=tcp://127.0.0.1:%d" % free_port(), "--count=2",
                          "--interval=10ms", "--print-tokens", "--block-size=4",
                          "--num-blocks=1"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[0])["tokens"] == [0, 1, 2, 3]
