"""inferencecache-server over the wire (gRPC, python grpcio stubs generated from our proto):
every RPC, every LookupRoute reason code, policy pushes
changing lookup behaviour, token_ids fingerprinting, streams (filters, slow consumer) and 64
concurrent clients. One server per module; tests isolate themselves by tenant name."""
import base64
import json
import os
import threading
import time

import grpc
import pytest

import harness
from harness import Server, http_get, protos, wait_until

pb, pb_grpc = protos()

GOLDEN = json.load(open(os.path.join(harness.SOURCE_DIR, "tests", "data", "fingerprint_golden.json")))
VEC = {v["name"]: v for v in GOLDEN["vectors"]}
T = 20  # generous RPC timeout for a loaded 2-core machine


@pytest.fixture(scope="module")
def srv():
    with Server(["--insecure-disable-auth"]) as s:
        yield s


@pytest.fixture(scope="module")
def stub(srv):
    return srv.stub()


def report(stub, *updates):
    return stub.ReportCacheState(iter(updates), timeout=T)


def upd(tenant, replica="r1", model="m", scheme="vllm", prefixes=(), stats=None, adapter=""):
    u = pb.CacheStateUpdate(replica_id=replica, model_id=model, tenant_id=tenant, hash_scheme=scheme,
                            prefixes=list(prefixes), adapter_id=adapter)
    if stats is not None:
        u.stats.CopyFrom(stats)
    return u


def legacy(h, n, tier=0):
    return pb.PrefixEntry(prefix_hash=h, token_count=n, tier=tier)


def chain(hashes, counts, tier=0):
    return pb.PrefixEntry(block_hashes=list(hashes), block_token_counts=list(counts), tier=tier)


def lookup(stub, tenant, model="m", scheme="vllm", **kw):
    return stub.LookupRoute(pb.LookupRouteRequest(tenant_id=tenant, model_id=model, hash_scheme=scheme, **kw),
                            timeout=T)


def push_policy(srv, body):
    st, _, resp = http_get(srv.snapshot_url + "/policy", method="POST", data=json.dumps(body).encode(),
                           headers={"Content-Type": "application/json"})
    assert st == 204, (st, resp)


def metrics(srv):
    st, _, body = http_get(srv.http_url + "/metrics")
    assert st == 200
    return body.decode()


# ---------------------------------------------------------------- basics and stubs

def test_every_unary_rpc_answers(stub):
    # RenderTemplate is real here (docs/chattemplate.md): a template nobody pushed is not found,
    # where the reference's stub answers OK; both are fail-open answers with every field empty.
    r = stub.RenderTemplate(pb.RenderTemplateRequest(template_ref="ns/t", tenant_id="x"), timeout=T)
    assert r.reason_code == "TEMPLATE_NOT_FOUND" and r.stable_prefix_hash == b"" and r.rendered_prompt == b""
    r = stub.LookupPDRoute(pb.LookupPDRouteRequest(model_id="m"), timeout=T)
    assert r.reason_code == "NO_HINT" and r.prefill_replica_id == "" and r.decode_replica_id == ""
    r = stub.GetCacheState(pb.GetCacheStateRequest(model_id="none", tenant_id="none"), timeout=T)
    assert len(r.replicas) == 0 and r.HasField("summary") and r.summary.total_prefixes == 0
    a = stub.PublishEvent(pb.CacheEvent(type=pb.CacheEvent.TYPE_UNSPECIFIED), timeout=T)
    assert a.accepted and a.reason_code == ""
    a = report(stub, pb.CacheStateUpdate(replica_id="bare"), pb.CacheStateUpdate(replica_id="bare2"))
    assert a.accepted


def test_fails_open_on_unknown_model(stub):
    r = stub.LookupRoute(pb.LookupRouteRequest(model_id="m-only"), timeout=T)
    assert r.reason_code == "NO_HINT" and len(r.replica_scores) == 0


def test_report_then_lookup_prefix_match_and_get_cache_state(stub):
    t = "basic"
    report(stub, upd(t, prefixes=[legacy(b"P128", 128)],
                     stats=pb.ReplicaStats(cache_memory_bytes=2048, t2_hit_tokens=600, t2_query_tokens=1000,
                                           client_version="v9")))
    r = lookup(stub, t, prefix_hash=b"P128", prefix_token_count=128)
    assert r.reason_code == "PREFIX_MATCH"
    assert [s.replica_id for s in r.replica_scores] == ["r1"]
    assert r.replica_scores[0].matched_tokens == 128
    assert r.replica_scores[0].tier == pb.CACHE_TIER_T1
    assert r.lookup_latency_us >= 0 and len(r.token_ids) == 0
    # same bytes under another scheme
    r = lookup(stub, t, scheme="sglang", prefix_hash=b"P128", prefix_token_count=128)
    assert r.reason_code == "UNKNOWN_HASH_SCHEME" and len(r.replica_scores) == 0
    s = stub.GetCacheState(pb.GetCacheStateRequest(model_id="m", tenant_id=t), timeout=T)
    assert s.summary.total_prefixes == 1 and s.summary.hot_prefixes == 0
    assert len(s.replicas) == 1
    rep = s.replicas[0]
    assert (rep.replica_id, rep.cache_memory_bytes, rep.t2_hit_tokens, rep.t2_query_tokens) == ("r1", 2048, 600, 1000)
    assert rep.client_version == ""


def test_reason_codes_diagnostics(stub, srv):
    t = "diag"
    report(stub, upd(t, model="m1", prefixes=[legacy(b"D1", 128)]))
    assert lookup(stub, "diag-other", model="m1", prefix_hash=b"zz", prefix_token_count=64).reason_code == "UNKNOWN_TENANT"
    assert lookup(stub, t, model="m2", prefix_hash=b"zz", prefix_token_count=64).reason_code == "UNKNOWN_MODEL"
    assert lookup(stub, t, model="m1", scheme="v2", prefix_hash=b"zz", prefix_token_count=64).reason_code == "UNKNOWN_HASH_SCHEME"
    # empty scheme never gets a diagnostic or TENANT_HOT
    assert lookup(stub, t, model="m1", scheme="", prefix_hash=b"zz", prefix_token_count=64).reason_code == "NO_HINT"
    m = metrics(srv)
    for code in ("UNKNOWN_TENANT", "UNKNOWN_MODEL", "UNKNOWN_HASH_SCHEME"):
        assert 'reason_code="%s"' % code in m
    assert 'inferencecache_lookup_route_calls_total{hint_used="false",model="m2",reason_code="UNKNOWN_MODEL"} 1' in m


def test_tenant_hot_and_tier_reporting(stub):
    t = "hot"
    report(stub, upd(t, prefixes=[legacy(b"H1", 128, tier=2)], stats=pb.ReplicaStats(hit_rate=0.8)))
    r = lookup(stub, t, prefix_hash=b"H1", prefix_token_count=128)
    assert r.reason_code == "PREFIX_MATCH" and r.replica_scores[0].tier == pb.CACHE_TIER_T2
    r = lookup(stub, t, prefix_hash=b"novel", prefix_token_count=128)
    assert r.reason_code == "TENANT_HOT"
    assert r.replica_scores[0].matched_tokens == 0
    assert r.replica_scores[0].tier == pb.CACHE_TIER_UNSPECIFIED
    assert abs(r.replica_scores[0].estimated_cache_hit_prob - 0.8) < 1e-6
    # unknown wire tiers report back as UNSPECIFIED, never T1
    report(stub, upd(t, replica="r9", prefixes=[legacy(b"H99", 128, tier=99)]))
    r = lookup(stub, t, prefix_hash=b"H99", prefix_token_count=128)
    assert r.replica_scores[0].tier == pb.CACHE_TIER_UNSPECIFIED


def test_chain_partial_match_and_slo_bias(stub):
    t = "chain"
    hs = [b"c0", b"c1", b"c2"]
    report(stub, upd(t, prefixes=[chain(hs, [64, 64, 64])]))
    r = lookup(stub, t, block_hashes=hs + [b"c3", b"c4"], block_token_counts=[64] * 5)
    assert r.reason_code == "PREFIX_MATCH" and r.replica_scores[0].matched_tokens == 192
    fast = lookup(stub, t, block_hashes=hs, block_token_counts=[64] * 3, slo=pb.SLO(ttft_ms=50))
    slow = lookup(stub, t, block_hashes=hs, block_token_counts=[64] * 3)
    assert fast.replica_scores[0].score > slow.replica_scores[0].score
    # malformed chain never falls through to TENANT_HOT or a diagnostic
    r = lookup(stub, t, block_hashes=hs[:2], block_token_counts=[64])
    assert r.reason_code == "NO_HINT" and len(r.replica_scores) == 0


def test_affinity_hint_on_novel_chain_and_stable(stub):
    t = "aff"
    for rid in ("r-1", "r-2", "r-3"):
        report(stub, upd(t, replica=rid, prefixes=[legacy(rid.encode(), 128)]))
    picks = set()
    for _ in range(5):
        r = lookup(stub, t, block_hashes=[b"prompt-block-1", b"prompt-block-2"], block_token_counts=[16, 16])
        assert r.reason_code == "AFFINITY_HINT"
        assert len(r.replica_scores) == 1
        s = r.replica_scores[0]
        assert s.score == 0 and s.matched_tokens == 0 and s.estimated_cache_hit_prob == 0
        picks.add(s.replica_id)
    # the affinity hint's consistent hash (the reference's value): this chain over r-1..r-3
    # picks index 0 -> r-1
    assert picks == {"r-1"}
    # counts-only chain is not eligible
    r = lookup(stub, t, block_token_counts=[16])
    assert r.reason_code == "NO_HINT"
    # no seed at all
    assert lookup(stub, t).reason_code in ("NO_HINT", "TENANT_HOT")


def test_reserved_probe_tenant_is_invisible(stub, srv):
    p = "inferencecache.io/probe"
    report(stub, upd(p, prefixes=[legacy(b"PR", 128)]))
    r = lookup(stub, p, prefix_hash=b"PR", prefix_token_count=128)
    assert r.reason_code == "NO_HINT" and r.lookup_latency_us == 0
    s = stub.GetCacheState(pb.GetCacheStateRequest(model_id="m", tenant_id=p), timeout=T)
    assert s.summary.total_prefixes == 0 and len(s.replicas) == 0
    assert stub.PublishEvent(pb.CacheEvent(type=pb.CacheEvent.ALL_CLEARED, tenant_id=p, model_id="m",
                                           replica_id="r1"), timeout=T).accepted
    assert 'model="m",reason_code="NO_HINT"' in metrics(srv)


def test_publish_event_prefix_evicted_and_all_cleared(stub):
    t = "ev"
    report(stub, upd(t, replica="a", prefixes=[legacy(b"E1", 128)]), upd(t, replica="b", prefixes=[legacy(b"E1", 128)]))
    stub.PublishEvent(pb.CacheEvent(type=pb.CacheEvent.PREFIX_EVICTED, tenant_id=t, model_id="m", replica_id="a",
                                    prefix_hash=b"E1"), timeout=T)
    r = lookup(stub, t, prefix_hash=b"E1", prefix_token_count=128)
    assert [s.replica_id for s in r.replica_scores] == ["b"]
    stub.PublishEvent(pb.CacheEvent(type=pb.CacheEvent.ALL_CLEARED, tenant_id=t, model_id="m", replica_id="b"),
                      timeout=T)
    r = lookup(stub, t, prefix_hash=b"E1", prefix_token_count=128)
    assert r.reason_code != "PREFIX_MATCH" and all(s.replica_id != "b" or r.reason_code == "AFFINITY_HINT"
                                                   for s in r.replica_scores)


def test_token_ids_equal_explicit_chain_and_fail_open_cases(stub):
    t = "tok"
    v = VEC["multi_block_chain"]
    hashes = [base64.b64decode(h["b64be"]) for h in v["prefix_hashes"]]
    report(stub, upd(t, prefixes=[legacy(h, 16 * (i + 1)) for i, h in enumerate(hashes)]))
    r = lookup(stub, t, token_ids=v["tokens"])
    assert r.reason_code == "PREFIX_MATCH" and r.replica_scores[0].matched_tokens == 64
    assert len(r.token_ids) == 0  # echo only when the server tokenized prompt_text
    # sub-block token_ids fail open, never TENANT_HOT
    assert lookup(stub, t, token_ids=list(range(8))).reason_code == "NO_HINT"
    # explicit chain beats token_ids
    r = lookup(stub, t, block_hashes=hashes, block_token_counts=[16] * 4, token_ids=[9] * 64)
    assert r.reason_code == "PREFIX_MATCH"
    # prompt_text: no tokenizer in this build -> NO_HINT without echo
    r = lookup(stub, t, prompt_text="hello world")
    assert r.reason_code == "NO_HINT" and len(r.token_ids) == 0 and len(r.replica_scores) == 0


def test_oversized_token_ids_fail_open(stub):
    r = lookup(stub, "tok", token_ids=[1] * (1 << 20 | 1))
    assert r.reason_code == "NO_HINT"


def test_adapter_partition_echo(stub):
    t = "lora"
    report(stub, upd(t, prefixes=[legacy(b"A1", 128)], adapter="ad1"))
    r = lookup(stub, t, prefix_hash=b"A1", prefix_token_count=128, adapter_id="ad1")
    assert r.reason_code == "PREFIX_MATCH" and r.adapter_id == "ad1"
    r = lookup(stub, t, prefix_hash=b"A1", prefix_token_count=128, adapter_id="other")
    assert r.reason_code != "PREFIX_MATCH"


def test_undecodable_request_is_internal(srv):
    ch = srv.channel()
    raw = ch.unary_unary("/inferencecache.v1alpha1.InferenceCache/LookupRoute",
                         request_serializer=lambda b: b, response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as e:
        raw(b"\xff\xff\xff\xff", timeout=T)
    assert e.value.code() == grpc.StatusCode.INTERNAL
    # invalid UTF-8 in a string field (field 1, model_id)
    with pytest.raises(grpc.RpcError) as e:
        raw(b"\x0a\x02\xc3\x28", timeout=T)
    assert e.value.code() == grpc.StatusCode.INTERNAL
    unknown = ch.unary_unary("/inferencecache.v1alpha1.InferenceCache/Nope",
                             request_serializer=lambda b: b, response_deserializer=lambda b: b)
    with pytest.raises(grpc.RpcError) as e:
        unknown(b"", timeout=T)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_message_over_4mib_is_resource_exhausted(stub):
    with pytest.raises(grpc.RpcError) as e:
        stub.LookupRoute(pb.LookupRouteRequest(model_id="m", prompt_text="x" * (4 * 1024 * 1024 + 10)), timeout=T)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# ---------------------------------------------------------------- policy-driven behaviour

def test_policy_gates_change_lookup_behaviour(stub, srv):
    report(stub, upd("pol-chain", prefixes=[legacy(b"X", 128)]))
    report(stub, upd("pol-min", prefixes=[chain([b"m0", b"m1"], [64, 64])]))
    report(stub, upd("pol-floor", prefixes=[legacy(b"F16", 16)]))
    report(stub, upd("pol-hot", prefixes=[legacy(b"Z", 128)], stats=pb.ReplicaStats(hit_rate=0.9)))
    for rid in ("r0", "r1", "r2"):
        report(stub, upd("pol-score", replica=rid, prefixes=[legacy(b"S", 1500)]))
    push_policy(srv, {"version": 7, "policies": [
        {"namespace": "pol-chain", "strategy": {"requireChain": True}},
        {"namespace": "pol-min", "minimumPrefixTokens": 1000, "affinityRouting": False},
        {"namespace": "pol-floor", "minimumMatchedTokens": 0, "routingFloorScore": 0},
        {"namespace": "pol-hot", "strategy": {"enableTenantHot": False}, "affinityRouting": False},
        {"namespace": "pol-score", "affinityRouting": False},
    ]})
    r = lookup(stub, "pol-chain", prefix_hash=b"X", prefix_token_count=128)
    assert r.reason_code == "POLICY_REQUIRES_CHAIN" and len(r.replica_scores) == 0
    assert lookup(stub, "pol-chain", token_ids=list(range(64))).reason_code == "POLICY_REQUIRES_CHAIN"
    assert lookup(stub, "pol-min", block_hashes=[b"m0", b"m1"], block_token_counts=[64, 64]).reason_code == "NO_HINT"
    # floor 0 keeps a 16-token match that the default floor (64) drops
    r = lookup(stub, "pol-floor", prefix_hash=b"F16", prefix_token_count=16)
    assert r.reason_code == "PREFIX_MATCH" and r.replica_scores[0].matched_tokens == 16
    assert lookup(stub, "pol-hot", prefix_hash=b"novel", prefix_token_count=128).reason_code == "NO_HINT"
    # all 3 replicas hold the prefix: distinguishing power 0 -> routing floor downgrades
    assert lookup(stub, "pol-score", prefix_hash=b"S", prefix_token_count=1500).reason_code == "NO_HINT"
    # a tenant without policy keeps the defaults (64-token floor)
    report(stub, upd("pol-none", prefixes=[legacy(b"F16", 16)]))
    r = lookup(stub, "pol-none", prefix_hash=b"F16", prefix_token_count=16)
    assert r.reason_code in ("NO_HINT", "AFFINITY_HINT")


def test_policy_timeout_budget_gives_timeout(stub, srv):
    push_policy(srv, {"version": 7, "policies": [{"namespace": "pol-timeout", "lookupTimeoutMs": 1}]})
    report(stub, upd("pol-timeout", prefixes=[legacy(b"T", 128)]))
    # fingerprinting ~1M token ids takes longer than the 1 ms budget
    seen = set()
    for _ in range(3):
        r = lookup(stub, "pol-timeout", token_ids=list(range(1000000)))
        seen.add(r.reason_code)
        if r.reason_code == "TIMEOUT":
            assert len(r.replica_scores) == 0 and r.adapter_id == ""
            break
    assert "TIMEOUT" in seen, seen


def test_lfu_credit_does_not_break_lookups(stub, srv):
    push_policy(srv, {"version": 7, "policies": [{"namespace": "lfu", "eviction": "lfu", "minimumMatchedTokens": 0}]})
    report(stub, upd("lfu", prefixes=[legacy(b"L", 64)]))
    for _ in range(3):
        assert lookup(stub, "lfu", prefix_hash=b"L", prefix_token_count=64).reason_code == "PREFIX_MATCH"


# ---------------------------------------------------------------- streams

def _events(stub, req, out, stop_after, ready):
    try:
        it = stub.StreamCacheEvents(req, timeout=60)
        ready.set()
        for ev in it:
            out.append(ev)
            if len(out) >= stop_after:
                it.cancel()
                break
    except grpc.RpcError:
        pass


def test_stream_cache_events_filters(stub, srv):
    got_all, got_model, got_type = [], [], []
    rdy = [threading.Event() for _ in range(3)]
    ths = [
        threading.Thread(target=_events, args=(stub, pb.StreamEventsRequest(tenant_id="stream"), got_all, 3, rdy[0])),
        threading.Thread(target=_events, args=(stub, pb.StreamEventsRequest(tenant_id="stream", model_id="m-b"),
                                               got_model, 1, rdy[1])),
        threading.Thread(target=_events, args=(stub, pb.StreamEventsRequest(
            tenant_id="stream", types=[pb.CacheEvent.ALL_CLEARED]), got_type, 1, rdy[2])),
    ]
    for t in ths:
        t.start()
    for r in rdy:
        assert r.wait(T)
    wait_until(lambda: 'inferencecache_stream_subscribers{stream="events"} 3' in metrics(srv), T, what="3 subscribers")
    report(stub, upd("stream", model="m-a", prefixes=[legacy(b"s1", 16)]))
    report(stub, upd("stream", model="m-b", prefixes=[legacy(b"s2", 16)]))
    stub.PublishEvent(pb.CacheEvent(type=pb.CacheEvent.ALL_CLEARED, tenant_id="stream", model_id="m-a",
                                    replica_id="r1"), timeout=T)
    for t in ths:
        t.join(60)
    assert len(got_all) >= 3
    assert got_all[0].type == pb.CacheEvent.PREFIX_ADDED and got_all[0].prefix_hash == b"s1"
    assert got_all[0].tenant_id == "stream" and got_all[0].replica_id == "r1" and got_all[0].timestamp_us > 0
    assert [e.model_id for e in got_model] == ["m-b"]
    assert got_type[0].type == pb.CacheEvent.ALL_CLEARED and got_type[0].model_id == "m-a"
    wait_until(lambda: 'inferencecache_stream_subscribers{stream="events"} 0' in metrics(srv), T, what="unsubscribe")


def test_slow_stream_consumer_holds_one_batch_and_does_not_slow_ingest(stub, srv):
    """A subscriber that never reads: ingest keeps its pace and the server holds at most one
    batch for it (the rest waits in the shared change log; test_server_stream_limits.py covers
    the subscriber the log overtakes)."""
    it = stub.StreamCacheEvents(pb.StreamEventsRequest(tenant_id="slow"), timeout=120)
    wait_until(lambda: 'inferencecache_stream_subscribers{stream="events"} 1' in metrics(srv), T, what="subscriber")
    before = time.monotonic()
    batch = [legacy(b"k%06d" % i, 16) for i in range(2000)]
    for n in range(60):
        report(stub, upd("slow", replica="r%d" % n, prefixes=batch))
    took = time.monotonic() - before

    def sample(name):
        for l in metrics(srv).splitlines():
            if l.startswith(name + " "):
                return float(l.split()[-1])
        return None

    wait_until(lambda: (sample("inferencecache_stream_log_bytes") or 0) > 0, T, what="change log in use")
    assert sample("inferencecache_stream_queued_bytes") <= 64 * 1024
    assert took < 120
    it.cancel()


def test_stream_metrics_filtered_by_name(stub, srv):
    it = stub.StreamMetrics(pb.StreamMetricsRequest(names=["inferencecache_server_up"]), timeout=30)
    m = next(it)
    assert m.name == "inferencecache_server_up" and m.type == "gauge" and m.value == 1.0 and m.timestamp_us > 0
    m2 = next(it)  # the next tick
    assert m2.name == "inferencecache_server_up"
    it.cancel()
    it = stub.StreamMetrics(pb.StreamMetricsRequest(names=["inferencecache_lookup_route_latency_seconds"]), timeout=30)
    names = set()
    for _ in range(5):
        names.add(next(it).name)
    assert names <= {"inferencecache_lookup_route_latency_seconds_bucket", "inferencecache_lookup_route_latency_seconds_sum",
                     "inferencecache_lookup_route_latency_seconds_count"}
    it.cancel()


# ---------------------------------------------------------------- concurrency

def test_64_concurrent_clients_mixing_lookups_and_reports(srv):
    errors = []

    def worker(i):
        try:
            ch = grpc.insecure_channel(srv.grpc_addr)
            st = pb_grpc.InferenceCacheStub(ch)
            t = "conc-%d" % (i % 8)
            h = b"conc-%d" % i
            report(st, upd(t, replica="w%d" % i, prefixes=[legacy(h, 128)]))
            for _ in range(10):
                r = lookup(st, t, prefix_hash=h, prefix_token_count=128)
                if r.reason_code != "PREFIX_MATCH" or "w%d" % i not in [s.replica_id for s in r.replica_scores]:
                    errors.append((i, r.reason_code))
                    break
            ch.close()
        except Exception as e:  # noqa: BLE001
            errors.append((i, repr(e)))

    ths = [threading.Thread(target=worker, args=(i,)) for i in range(64)]
    for t in ths:
        t.start()
    for t in ths:
        t.join(300)
    assert not errors, errors[:5]


def test_report_cache_state_broken_stream_keeps_applied_updates(stub):
    """Partial application: what arrived before the client cancelled stays ingested, no Ack."""
    got_first = threading.Event()

    def gen():
        yield upd("broken", replica="rb", prefixes=[legacy(b"B1", 128)], stats=pb.ReplicaStats(cache_memory_bytes=7))
        got_first.wait(T)
        raise RuntimeError("client gives up mid-stream")

    fut = stub.ReportCacheState.future(gen(), timeout=T)

    def visible():
        s = stub.GetCacheState(pb.GetCacheStateRequest(model_id="m", tenant_id="broken"), timeout=T)
        return s.summary.total_prefixes == 1 and len(s.replicas) == 1

    wait_until(visible, T, what="first update ingested")
    got_first.set()
    with pytest.raises(grpc.RpcError) as e:
        fut.result(timeout=T)
    assert e.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN)
    assert visible()
