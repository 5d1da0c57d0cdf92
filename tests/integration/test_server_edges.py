"""Integration tests for edge inputs of the server (issue 16 items 7, 9 and 10; docs/server.md
"Deliberate differences"): identities with an embedded NUL are refused rather than truncated,
RenderTemplate and LookupPDRoute reject invalid UTF-8 like the other RPCs, producer timestamps
outside what the index stores are clamped and /snapshot still answers 200, and the
minimumPrefixTokens gate sums counts in int32 like the reference."""
import json
import time

import grpc
import pytest

from harness import Server, http_get, protos

SVC = "/inferencecache.v1alpha1.InferenceCache/"


@pytest.fixture(scope="module")
def srv():
    with Server(["--insecure-disable-auth"]) as s:
        yield s


def be8(i):
    return i.to_bytes(8, "big")


def update(replica, tenant="t", model="m", hash_=1, ts=0, stats=False):
    pb, _ = protos()
    u = pb.CacheStateUpdate(replica_id=replica, model_id=model, tenant_id=tenant,
                            hash_scheme="vllm", timestamp_us=ts,
                            prefixes=[pb.PrefixEntry(prefix_hash=be8(hash_), token_count=128)])
    if stats:
        u.stats.CopyFrom(pb.ReplicaStats(cache_memory_bytes=1, hit_rate=0.5))
    return u


def lookup(srv, tenant="t", model="m", hash_=1):
    pb, _ = protos()
    return srv.stub().LookupRoute(pb.LookupRouteRequest(
        tenant_id=tenant, model_id=model, hash_scheme="vllm", prefix_hash=be8(hash_),
        prefix_token_count=128), timeout=10)


def test_nul_inside_identity_is_refused_never_aliased(srv):
    pb, _ = protos()
    stub = srv.stub()
    assert stub.ReportCacheState(iter([update("pod-a", tenant="nul", hash_=7)]), timeout=10).accepted
    r = lookup(srv, tenant="nul", hash_=7)
    assert r.reason_code == "PREFIX_MATCH" and [s.replica_id for s in r.replica_scores] == ["pod-a"]
    # ALL_CLEARED for "pod-a\0other" used to clear pod-a.
    with pytest.raises(grpc.RpcError) as e:
        stub.PublishEvent(pb.CacheEvent(type=pb.CacheEvent.ALL_CLEARED, replica_id="pod-a\x00other",
                                        model_id="m", tenant_id="nul"), timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "replica_id contains a NUL byte" in e.value.details()
    r = lookup(srv, tenant="nul", hash_=7)
    assert r.reason_code == "PREFIX_MATCH" and [s.replica_id for s in r.replica_scores] == ["pod-a"]
    # model "m\0zzz" used to land in "m".
    with pytest.raises(grpc.RpcError) as e:
        stub.ReportCacheState(iter([update("pod-b", tenant="nul", model="m\x00zzz", hash_=8)]),
                              timeout=10)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert lookup(srv, tenant="nul", hash_=8).reason_code != "PREFIX_MATCH"
    with pytest.raises(grpc.RpcError) as e:
        lookup(srv, tenant="nul\x00x", hash_=7)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("method", ["RenderTemplate", "LookupPDRoute"])
def test_invalid_utf8_is_rejected_by_every_rpc(srv, method):
    # Field 1 (a string in both requests) holding the bytes C3 28: not UTF-8. grpcio's
    # protobuf refuses to build such a message, so the bytes are sent raw.
    call = srv.channel().unary_unary(SVC + method, request_serializer=None,
                                     response_deserializer=None)
    with pytest.raises(grpc.RpcError) as e:
        call(b"\x0a\x02\xc3\x28", timeout=10)
    assert e.value.code() == grpc.StatusCode.INTERNAL
    assert "invalid UTF-8" in e.value.details()
    assert call(b"\x0a\x02ok", timeout=10) is not None  # valid: answered


def snapshot_replica(srv, tenant, replica):
    st, _, body = http_get(srv.snapshot_url + "/snapshot")
    assert st == 200, body
    for r in json.loads(body)["replicas"]:
        if r.get("tenant") == tenant and r["replicaId"] == replica:
            return r
    raise AssertionError("replica %s/%s not in the snapshot" % (tenant, replica))


def test_producer_timestamps_clamped_and_snapshot_stays_200(srv):
    # Year 10000 (past what Go's JSON encoder writes: the reference answers /snapshot with 500)
    # and year 1000 (before 1677): stored as the nearest time an int64 of nanoseconds holds.
    year10000_us = 253402300800 * 1000000
    year1000_us = -30610224000 * 1000000
    stub = srv.stub()
    assert stub.ReportCacheState(iter([update("future", tenant="ts", hash_=1, ts=year10000_us,
                                              stats=True),
                                       update("past", tenant="ts", hash_=2, ts=year1000_us,
                                              stats=True)]), timeout=10).accepted
    f = snapshot_replica(srv, "ts", "future")
    assert f["lastUpdate"] == "2262-04-11T23:47:16.854775807Z"
    assert f["lastEventAt"] == "2262-04-11T23:47:16.854775807Z"
    p = snapshot_replica(srv, "ts", "past")
    assert p["lastUpdate"] == "1677-09-21T00:12:43.145224193Z"


def test_minimum_prefix_tokens_gate_sums_in_int32(srv):
    pb, _ = protos()
    doc = {"version": 7, "policies": [{"namespace": "wrap", "minimumPrefixTokens": 100,
                                       "affinityRouting": False, "minimumMatchedTokens": 0}]}
    st, _, body = http_get(srv.snapshot_url + "/policy", method="POST",
                           data=json.dumps(doc).encode(), timeout=10)
    assert st == 204, body
    chain = [b"blk-A", b"blk-B", b"blk-C"]
    stub = srv.stub()
    assert stub.ReportCacheState(iter([pb.CacheStateUpdate(
        replica_id="r1", model_id="m", tenant_id="wrap", hash_scheme="vllm",
        prefixes=[pb.PrefixEntry(block_hashes=chain[:2], block_token_counts=[16, 16])])]),
        timeout=10).accepted

    def code(counts):
        return stub.LookupRoute(pb.LookupRouteRequest(
            tenant_id="wrap", model_id="m", hash_scheme="vllm", block_hashes=chain,
            block_token_counts=counts), timeout=10).reason_code

    assert code([100, 100, 16]) == "PREFIX_MATCH"
    # 100 + 100 + 2147483647 wraps to a negative int32: below the floor, as in the reference.
    assert code([100, 100, 2147483647]) == "NO_HINT"


def metric_lines(srv, family):
    st, _, body = http_get(srv.http_url + "/metrics")
    assert st == 200
    return [l for l in body.decode().splitlines() if l.startswith(family + "{")], len(body)


def test_metric_series_are_bounded_with_an_other_bucket():
    # 300 models: each used to leave its own series in four families for good.
    pb, _ = protos()
    with Server(["--insecure-disable-auth", "--metrics-max-label-values=5"]) as s:
        stub = s.stub()
        ups = [pb.CacheStateUpdate(replica_id="r", model_id="model-%d" % i, tenant_id="card",
                                   hash_scheme="vllm",
                                   prefixes=[pb.PrefixEntry(prefix_hash=be8(i), token_count=128)])
               for i in range(300)]
        assert stub.ReportCacheState(iter(ups), timeout=30).accepted
        for i in range(300):
            stub.LookupRoute(pb.LookupRouteRequest(tenant_id="card", model_id="model-%d" % i,
                                                   hash_scheme="vllm", prefix_hash=be8(i),
                                                   prefix_token_count=128), timeout=10)
        entries, size = metric_lines(s, "inferencecache_index_entries")
        models = {l.split('model="')[1].split('"')[0] for l in entries}
        assert len(models) == 6 and "other" in models, models
        total = sum(float(l.rsplit(" ", 1)[1]) for l in entries)
        assert total == 300, entries  # "other" is the sum of the models past the bound
        calls, _ = metric_lines(s, "inferencecache_lookup_route_calls_total")
        assert len({l.split('model="')[1].split('"')[0] for l in calls}) == 6
        assert sum(float(l.rsplit(" ", 1)[1]) for l in calls) == 300
        assert size < 20000, size


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_long_identities_are_refused_on_write_and_leave_no_memory(srv):
    # 100 distinct 1 MiB replica ids, each reported then cleared, used to leave ~44 MB behind
    # for good (interned ids are never freed). Ids past --max-identity-bytes (1024) are refused.
    pb, _ = protos()
    stub = srv.stub()
    assert stub.ReportCacheState(iter([update("r" * 1024, tenant="long", hash_=1)]),
                                 timeout=10).accepted  # at the bound: fine
    before = rss_kb(srv.proc.pid)
    for i in range(100):
        rid = ("%03d" % i) + "x" * (1 << 20)
        with pytest.raises(grpc.RpcError) as e:
            stub.ReportCacheState(iter([update(rid, tenant="long", hash_=2)]), timeout=30)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "replica_id is longer than --max-identity-bytes" in e.value.details()
        with pytest.raises(grpc.RpcError) as e:
            stub.PublishEvent(pb.CacheEvent(type=pb.CacheEvent.ALL_CLEARED, replica_id=rid,
                                            model_id="m", tenant_id="long"), timeout=30)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    grown_mb = (rss_kb(srv.proc.pid) - before) / 1024
    assert grown_mb < 20, grown_mb
    # A lookup for a long id is simply answered (nothing can match it): lookups fail open.
    r = lookup(srv, tenant="long", model="m" * 4096, hash_=1)
    assert r.reason_code != "PREFIX_MATCH"


def test_names_of_cleared_replicas_are_freed():
    # With the identity bound off, 100 distinct 1 MiB replica ids reported (with stats) and
    # cleared: the server used to keep all of them (~105 MB for good); the maintenance thread
    # now frees names nothing refers to any more within a second or two.
    pb, _ = protos()
    with Server(["--insecure-disable-auth", "--max-identity-bytes=0"]) as s:
        stub = s.stub()
        before = rss_kb(s.proc.pid)
        for i in range(100):
            rid = ("%03d" % i) + "x" * (1 << 20)
            assert stub.ReportCacheState(iter([update(rid, tenant="churn", hash_=i, stats=True)]),
                                         timeout=30).accepted
            stub.PublishEvent(pb.CacheEvent(type=pb.CacheEvent.ALL_CLEARED, replica_id=rid,
                                            model_id="m", tenant_id="churn"), timeout=30)
        deadline = time.monotonic() + 10
        while True:
            grown_mb = (rss_kb(s.proc.pid) - before) / 1024
            if grown_mb < 40 or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        assert grown_mb < 40, grown_mb
        # The index still works for a name that was freed and comes back.
        rid = "000" + "x" * (1 << 20)
        assert stub.ReportCacheState(iter([update(rid, tenant="churn", hash_=7)]), timeout=30).accepted
        r = lookup(s, tenant="churn", hash_=7)
        assert r.reason_code == "PREFIX_MATCH" and r.replica_scores[0].replica_id == rid
