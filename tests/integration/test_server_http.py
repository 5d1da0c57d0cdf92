"""Integration tests for the server's HTTP listeners without auth: health/readiness/metrics,
routing per listener, /snapshot wire shape, /policy handling and its effect on LookupRoute,
/probe validation and stages."""
import gzip
import json
import threading

import pytest

from harness import Server, http_get, protos, wait_until

PROBE_TENANT = "inferencecache.io/probe"


@pytest.fixture(scope="module")
def srv():
    with Server(["--insecure-disable-auth"]) as s:
        yield s


def post(url, body, method="POST", headers=None):
    data = body if isinstance(body, bytes) else body.encode()
    return http_get(url, method=method, data=data, headers=headers or {}, timeout=20)


def push_policy(srv, doc):
    st, _, body = post(srv.snapshot_url + "/policy", json.dumps(doc))
    assert st == 204, body
    assert body == b""


def report(srv, updates):
    pb, _ = protos()
    return srv.stub().ReportCacheState(iter(updates), timeout=20)


def be8(i):
    return i.to_bytes(8, "big")


# ---------------------------------------------------------------- public listener


def test_health_and_readiness_return_ok(srv):
    for path in ("/healthz", "/readyz"):
        st, hdrs, body = http_get(srv.http_url + path)
        assert st == 200 and body == b"ok\n"
        assert hdrs["Content-Type"] == "text/plain; charset=utf-8"
    st, _, body = http_get(srv.http_url + "/healthz", method="HEAD")
    assert st == 200 and body == b""
    st, _, _ = http_get(srv.http_url + "/healthz", method="POST", data=b"x")
    assert st == 200, "any method"


def test_unknown_paths_404(srv):
    for base in (srv.http_url, srv.snapshot_url):
        for path in ("/nope", "/healthz/", "/snapshot/x", "/"):
            st, hdrs, body = http_get(base + path)
            assert st == 404 and body == b"404 page not found\n", (base, path)


def test_metrics_exposes_server_up(srv):
    st, hdrs, body = http_get(srv.http_url + "/metrics")
    assert st == 200
    assert hdrs["Content-Type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    assert "\ninferencecache_server_up 1\n" in "\n" + text
    assert "# HELP inferencecache_server_up 1 if the cache policy server is serving requests, 0 otherwise." in text
    assert "# TYPE inferencecache_server_up gauge" in text
    # gzip when the scraper asks for it (Prometheus does by default), as promhttp does.
    st, hdrs, gz = http_get(srv.http_url + "/metrics", headers={"Accept-Encoding": "gzip"})
    assert st == 200 and hdrs.get("Content-Encoding") == "gzip"
    assert b"\ninferencecache_server_up 1\n" in gzip.decompress(gz)
    # Insecure mode: no auth counters ever appear.
    assert "inferencecache_snapshot_auth_total" not in text
    assert "inferencecache_policy_auth_total" not in text


def test_controller_paths_not_on_public_listener(srv):
    assert http_get(srv.http_url + "/snapshot")[0] == 404
    assert post(srv.http_url + "/policy", '{"version":7}')[0] == 404
    assert post(srv.http_url + "/probe", '{"backend":"b","model":"m","hashScheme":"s"}')[0] == 404
    for path in ("/healthz", "/readyz", "/metrics"):
        assert http_get(srv.snapshot_url + path)[0] == 404


# ---------------------------------------------------------------- /snapshot


def test_snapshot_rejects_non_get(srv):
    for m in ("POST", "PUT", "DELETE", "PATCH", "HEAD"):
        st, hdrs, body = http_get(srv.snapshot_url + "/snapshot", method=m,
                                  data=b"" if m in ("POST", "PUT", "PATCH") else None)
        assert st == 405, m
        assert hdrs["Allow"] == "GET"
        if m != "HEAD":
            assert body == b"method not allowed\n\n"
        assert hdrs["X-Content-Type-Options"] == "nosniff"


def test_snapshot_shape_after_ingest():
    pb, _ = protos()
    with Server(["--insecure-disable-auth"]) as s:
        st, hdrs, body = http_get(s.snapshot_url + "/snapshot")
        assert st == 200 and hdrs["Content-Type"] == "application/json"
        assert body == b'{"replicas":null,"tenants":null,"totalPrefixes":0,"hotPrefixes":0}\n'

        ack = report(s, [
            pb.CacheStateUpdate(
                replica_id="replica-a", model_id="m", tenant_id="tenant-a", hash_scheme="vllm",
                prefixes=[pb.PrefixEntry(prefix_hash=be8(1), token_count=64)],
                stats=pb.ReplicaStats(cache_memory_bytes=1234, hit_rate=0.75, pressure=0.5,
                                      t2_hit_tokens=600, t2_query_tokens=1000)),
            pb.CacheStateUpdate(
                replica_id="replica-b", model_id="m", tenant_id="", hash_scheme="vllm",
                prefixes=[pb.PrefixEntry(prefix_hash=be8(2), token_count=16)]),
            pb.CacheStateUpdate(
                replica_id="replica-c", model_id="m", tenant_id="tenant-a", hash_scheme="vllm",
                stats=pb.ReplicaStats(cache_memory_bytes=1, hit_rate=0.25)),
            # The reserved probe tenant is dropped by the gRPC handler and never shown.
            pb.CacheStateUpdate(
                replica_id="replica-p", model_id="m", tenant_id=PROBE_TENANT, hash_scheme="vllm",
                prefixes=[pb.PrefixEntry(prefix_hash=be8(3), token_count=16)]),
        ])
        assert ack.accepted
        st, _, body = http_get(s.snapshot_url + "/snapshot")
        assert st == 200 and body.endswith(b"}\n")
        snap = json.loads(body)
        assert list(snap.keys()) == ["replicas", "tenants", "totalPrefixes", "hotPrefixes"]
        assert snap["totalPrefixes"] == 2 and snap["hotPrefixes"] == 0
        reps = {(r.get("tenant", ""), r["replicaId"]): r for r in snap["replicas"]}
        assert set(reps) == {("", "replica-b"), ("tenant-a", "replica-a"), ("tenant-a", "replica-c")}
        # Sorted by tenant then replica id.
        assert [(r.get("tenant", ""), r["replicaId"]) for r in snap["replicas"]] == sorted(reps)
        a = reps[("tenant-a", "replica-a")]
        assert list(a.keys()) == ["replicaId", "tenant", "cacheMemoryBytes", "hitRate", "pressure",
                                  "lastUpdate", "prefixCount", "lastEventAt", "statsReported",
                                  "t2HitTokens", "t2QueryTokens"]
        assert a["cacheMemoryBytes"] == 1234 and a["hitRate"] == 0.75 and a["pressure"] == 0.5
        assert a["prefixCount"] == 1 and a["statsReported"] is True
        assert a["t2HitTokens"] == 600 and a["t2QueryTokens"] == 1000
        assert a["lastUpdate"].endswith("Z") and a["lastUpdate"] != "0001-01-01T00:00:00Z"
        b = reps[("", "replica-b")]
        assert "tenant" not in b, "empty tenant omitted"
        assert "statsReported" not in b and "t2HitTokens" not in b and "t2QueryTokens" not in b
        assert b["lastUpdate"] == "0001-01-01T00:00:00Z"
        assert b["prefixCount"] == 1
        c = reps[("tenant-a", "replica-c")]
        assert c["lastEventAt"] == "0001-01-01T00:00:00Z", "zero sentinel when no prefixes"
        assert c["prefixCount"] == 0
        tenants = snap["tenants"]
        assert [t["tenantId"] for t in tenants] == ["", "tenant-a"]
        ta = tenants[1]
        assert list(ta.keys()) == ["tenantId", "indexEntries", "hitRate", "hitRateReported",
                                   "memoryUsed"]
        assert ta["indexEntries"] == 1 and ta["hitRate"] == 0.5 and ta["memoryUsed"] == 0
        t0 = tenants[0]
        assert "hitRateReported" not in t0 and t0["memoryUsed"] == 0
        assert b"inferencecache.io/probe" not in body and b"replica-p" not in body


def test_snapshot_html_escaping():
    pb, _ = protos()
    with Server(["--insecure-disable-auth"]) as s:
        report(s, [pb.CacheStateUpdate(replica_id="r<&>", model_id="m", tenant_id="t",
                                       hash_scheme="vllm",
                                       prefixes=[pb.PrefixEntry(prefix_hash=be8(9), token_count=16)])])
        _, _, body = http_get(s.snapshot_url + "/snapshot")
        assert b'"replicaId":"r\\u003c\\u0026\\u003e"' in body


# ---------------------------------------------------------------- /policy


def test_policy_empty_v7_and_methods(srv):
    st, _, body = post(srv.snapshot_url + "/policy", '{"version":7,"policies":null}')
    assert st == 204 and body == b""
    st, _, _ = post(srv.snapshot_url + "/policy", '{"version":7}', method="PUT")
    assert st == 204
    st, hdrs, body = http_get(srv.snapshot_url + "/policy")
    assert st == 405 and hdrs["Allow"] == "POST, PUT" and body == b"method not allowed\n\n"


def test_policy_rejections(srv):
    u = srv.snapshot_url + "/policy"
    st, hdrs, body = post(u, '{"version":99}')
    assert st == 400 and body == b"unsupported policy snapshot version\n\n"
    assert hdrs["Content-Type"] == "text/plain; charset=utf-8"
    st, _, body = post(u, '{"version":2}')
    assert st == 400 and body == b"unsupported policy snapshot version\n\n"
    st, _, body = post(u, "not json")
    assert st == 400 and body.startswith(b"decode policy snapshot: ") and body.endswith(b"\n\n")
    st, _, body = post(u, '{"version":7,"policies":[{"namespace":"a","bogus":1}]}')
    assert st == 400 and body == b'decode policy snapshot: json: unknown field "bogus"\n\n'
    st, _, body = post(u, "")
    assert st == 400 and body == b"decode policy snapshot: EOF\n\n"
    big = '{"version":7,"policies":[' + ",".join(
        '{"namespace":"ns-%06d"}' % i for i in range(60000)) + "]}"
    assert len(big) > (1 << 20)
    st, _, body = post(u, big)
    assert st == 400, "bodies over 1 MiB are rejected, not stored"
    assert body == b"decode policy snapshot: http: request body too large\n\n"


def test_policy_push_changes_lookup_behaviour():
    pb, _ = protos()
    with Server(["--insecure-disable-auth"]) as s:
        stub = s.stub()
        req = pb.LookupRouteRequest(model_id="m", tenant_id="team-a", hash_scheme="vllm",
                                    prefix_hash=be8(7), prefix_token_count=128)
        assert stub.LookupRoute(req, timeout=20).reason_code != "POLICY_REQUIRES_CHAIN"
        push_policy(s, {"version": 7, "policies": [
            {"namespace": "team-a", "strategy": {"requireChain": True}}]})
        assert stub.LookupRoute(req, timeout=20).reason_code == "POLICY_REQUIRES_CHAIN"
        other = pb.LookupRouteRequest(model_id="m", tenant_id="team-b", hash_scheme="vllm",
                                      prefix_hash=be8(7), prefix_token_count=128)
        assert stub.LookupRoute(other, timeout=20).reason_code != "POLICY_REQUIRES_CHAIN"
        # Replace-on-write: a push without team-a reverts it to defaults.
        push_policy(s, {"version": 7, "policies": None})
        assert stub.LookupRoute(req, timeout=20).reason_code != "POLICY_REQUIRES_CHAIN"
        # v5 body: strategy defaults are filled in, requireChain explicit true kept.
        push_policy(s, {"version": 5, "policies": [
            {"namespace": "team-a", "strategy": {"requireChain": True}}]})
        assert stub.LookupRoute(req, timeout=20).reason_code == "POLICY_REQUIRES_CHAIN"


# ---------------------------------------------------------------- /probe

GOOD_PROBE = '{"backend":"ns/backend-a","model":"m","hashScheme":"vllm"}'


def test_probe_happy_path_leaves_no_state():
    with Server(["--insecure-disable-auth"]) as s:
        for _ in range(3):
            st, hdrs, body = post(s.snapshot_url + "/probe", GOOD_PROBE)
            assert st == 200, body
            assert hdrs["Content-Type"] == "application/json"
            assert body == b'{"backend":"ns/backend-a","ingest":"ok","routing":"ok","t2":"skipped"}\n'
        st, _, body = post(s.snapshot_url + "/probe",
                           '{"backend":"b","model":"m","hashScheme":"s","backendType":"Memory"}')
        assert st == 200 and json.loads(body)["t2"] == "skipped"
        _, _, snap = http_get(s.snapshot_url + "/snapshot")
        assert snap == b'{"replicas":null,"tenants":null,"totalPrefixes":0,"hotPrefixes":0}\n'
        _, _, metrics = http_get(s.http_url + "/metrics")
        assert b"__probe-" not in metrics


def test_probe_concurrent_same_backend_all_pass(srv):
    results = []

    def run():
        results.append(post(srv.snapshot_url + "/probe", GOOD_PROBE))

    threads = [threading.Thread(target=run) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 8
    for st, _, body in results:
        assert st == 200
        d = json.loads(body)
        assert (d["ingest"], d["routing"], d["t2"]) == ("ok", "ok", "skipped"), d


def test_probe_does_not_disturb_real_workload():
    pb, _ = protos()
    with Server(["--insecure-disable-auth"]) as s:
        push_policy(s, {"version": 7, "policies": None,
                        "tenants": [{"tenantID": "team", "maxIndexEntries": 1}]})
        report(s, [pb.CacheStateUpdate(replica_id="r1", model_id="m", tenant_id="team",
                                       hash_scheme="vllm",
                                       prefixes=[pb.PrefixEntry(prefix_hash=be8(5), token_count=64)])])
        st, _, body = post(s.snapshot_url + "/probe",
                           '{"backend":"b","model":"m","hashScheme":"vllm"}')
        assert st == 200 and json.loads(body)["routing"] == "ok"
        snap = json.loads(http_get(s.snapshot_url + "/snapshot")[2])
        assert snap["totalPrefixes"] == 1
        assert [r["replicaId"] for r in snap["replicas"]] == ["r1"]


def test_probe_rejects_non_post(srv):
    for m in ("GET", "PUT", "DELETE", "PATCH"):
        st, hdrs, body = http_get(srv.snapshot_url + "/probe", method=m,
                                  data=b"{}" if m in ("PUT", "PATCH") else None)
        assert st == 405 and hdrs["Allow"] == "POST" and body == b"method not allowed\n\n", m


@pytest.mark.parametrize("body,want", [
    ("", b"decode probe request: EOF\n\n"),
    ("{not json", None),
    ('{"backend":"b","model":"m","hashScheme":"s","tenant":"t"}',
     b'decode probe request: json: unknown field "tenant"\n\n'),
    (GOOD_PROBE + '{"x":1}',
     b"probe request body has trailing content after the first JSON value\n\n"),
    (GOOD_PROBE + "]", b"probe request body has trailing content after the first JSON value\n\n"),
    (GOOD_PROBE + "garbage",
     b"probe request body has trailing content after the first JSON value\n\n"),
    ('{"model":"m","hashScheme":"s"}',
     b"probe request missing required field (backend, model, hashScheme)\n\n"),
    ('{"backend":"b","hashScheme":"s"}',
     b"probe request missing required field (backend, model, hashScheme)\n\n"),
    ('{"backend":"b","model":"m"}',
     b"probe request missing required field (backend, model, hashScheme)\n\n"),
    ('{"backend":"' + "x" * 5000 + '","model":"m","hashScheme":"s"}',
     b"decode probe request: http: request body too large\n\n"),
])
def test_probe_rejects_malformed_body(srv, body, want):
    st, hdrs, got = post(srv.snapshot_url + "/probe", body)
    assert st == 400, got
    assert hdrs["Content-Type"] == "text/plain; charset=utf-8"
    if want is None:
        assert got.startswith(b"decode probe request: ") and got.endswith(b"\n\n")
    else:
        assert got == want


def test_readyz_flips_during_shutdown():
    """SIGTERM: /readyz answers 503 "not ready" while the listeners drain, then the process
    exits 0. The window is short, so this only checks the end state when it is missed."""
    with Server(["--insecure-disable-auth"]) as s:
        s.signal()
        seen = []

        def probe():
            try:
                st, _, body = http_get(s.http_url + "/readyz", timeout=2)
                seen.append((st, body))
            except Exception:
                return True
            return s.proc.poll() is not None

        wait_until(probe, timeout=30, interval=0.01, what="server exit")
        assert s.wait_exit(30) == 0
        for st, body in seen:
            assert (st, body) in ((200, b"ok\n"), (503, b"not ready\n\n"))


def test_snapshot_pinned_example_and_float_bytes():
    """Two models under one (tenant, replica) count once for the hit
    rate; float32 values are written in Go's shortest form (0.8, not 0.800000011920929)."""
    pb, _ = protos()
    with Server(["--insecure-disable-auth"]) as s:
        st = pb.ReplicaStats(cache_memory_bytes=100, hit_rate=0.8, pressure=0.5)
        report(s, [
            pb.CacheStateUpdate(replica_id="replica-a", model_id="m1", tenant_id="tenant-a",
                                hash_scheme="vllm", stats=st,
                                prefixes=[pb.PrefixEntry(prefix_hash=be8(11), token_count=16)]),
            pb.CacheStateUpdate(replica_id="replica-a", model_id="m2", tenant_id="tenant-a",
                                hash_scheme="vllm", stats=st,
                                prefixes=[pb.PrefixEntry(prefix_hash=be8(12), token_count=16)]),
            pb.CacheStateUpdate(replica_id="replica-b", model_id="m1", tenant_id="tenant-b",
                                hash_scheme="vllm",
                                stats=pb.ReplicaStats(cache_memory_bytes=1, hit_rate=0.6),
                                prefixes=[pb.PrefixEntry(prefix_hash=be8(13), token_count=16)]),
            pb.CacheStateUpdate(replica_id="replica-c", model_id="m1", tenant_id="tenant-c",
                                hash_scheme="vllm",
                                prefixes=[pb.PrefixEntry(prefix_hash=be8(14), token_count=16),
                                          pb.PrefixEntry(prefix_hash=be8(15), token_count=32)]),
        ])
        _, _, body = http_get(s.snapshot_url + "/snapshot")
        snap = json.loads(body)
        assert snap["totalPrefixes"] == 5 and snap["hotPrefixes"] == 0
        assert [(r["replicaId"], r["prefixCount"]) for r in snap["replicas"]] == [
            ("replica-a", 2), ("replica-b", 1), ("replica-c", 2)]
        t = {x["tenantId"]: x for x in snap["tenants"]}
        assert t["tenant-a"]["indexEntries"] == 2 and t["tenant-a"]["hitRateReported"] is True
        assert t["tenant-b"]["indexEntries"] == 1
        c = snap["replicas"][2]
        assert "statsReported" not in c and c["hitRate"] == 0 and c["cacheMemoryBytes"] == 0
        assert c["lastUpdate"] == "0001-01-01T00:00:00Z"
        assert "hitRateReported" not in t["tenant-c"] and t["tenant-c"]["hitRate"] == 0
        text = body.decode()
        assert '"tenantId":"tenant-a","indexEntries":2,"hitRate":0.8,' in text
        assert '"tenantId":"tenant-b","indexEntries":1,"hitRate":0.6,' in text
        assert '"hitRate":0.8,"pressure":0.5,' in text
        assert '"tenantId":"tenant-c","indexEntries":2,"hitRate":0,"memoryUsed":0}' in text


def test_controller_listener_under_concurrent_load():
    """Snapshots, policy pushes and probes from 12 clients while 4 gRPC streams ingest: every
    answer is well-formed and the probe stages all pass (no torn policy, no probe residue)."""
    pb, _ = protos()
    with Server(["--insecure-disable-auth"]) as s:
        errors = []
        stop = threading.Event()

        def ingest(k):
            stub = s.stub()
            i = 0
            while not stop.is_set():
                ups = [pb.CacheStateUpdate(
                    replica_id="r%d" % k, model_id="m", tenant_id="team-%d" % (k % 2),
                    hash_scheme="vllm",
                    prefixes=[pb.PrefixEntry(prefix_hash=be8(k * 1000000 + i + j), token_count=64)
                              for j in range(32)],
                    stats=pb.ReplicaStats(hit_rate=0.5)) for _ in range(2)]
                i += 64
                try:
                    assert stub.ReportCacheState(iter(ups), timeout=30).accepted
                except Exception as e:  # pragma: no cover - reported below
                    errors.append(("ingest", repr(e)))
                    return

        def http_client(k):
            for n in range(15):
                try:
                    if k % 3 == 0:
                        st, _, body = http_get(s.snapshot_url + "/snapshot", timeout=30)
                        snap = json.loads(body)
                        assert st == 200 and snap["hotPrefixes"] == 0
                        assert all(not r["replicaId"].startswith("__probe-")
                                   for r in (snap["replicas"] or []))
                    elif k % 3 == 1:
                        st, _, body = post(s.snapshot_url + "/policy", json.dumps(
                            {"version": 7, "policies": [{"namespace": "team-%d" % n,
                                                         "lookupTimeoutMs": n + 1}]}))
                        assert st == 204, body
                    else:
                        st, _, body = post(s.snapshot_url + "/probe", json.dumps(
                            {"backend": "b%d" % (k % 2), "model": "m", "hashScheme": "vllm"}))
                        d = json.loads(body)
                        assert st == 200 and (d["ingest"], d["routing"]) == ("ok", "ok"), d
                except Exception as e:
                    errors.append(("http", k, repr(e)))
                    return

        ingesters = [threading.Thread(target=ingest, args=(k,)) for k in range(4)]
        clients = [threading.Thread(target=http_client, args=(k,)) for k in range(12)]
        for t in ingesters + clients:
            t.start()
        for t in clients:
            t.join(120)
        stop.set()
        for t in ingesters:
            t.join(60)
        assert not errors, errors[:3]
        snap = json.loads(http_get(s.snapshot_url + "/snapshot")[2])
        assert sorted({r["replicaId"] for r in snap["replicas"]}) == ["r0", "r1", "r2", "r3"]


@pytest.mark.parametrize("which", ["http", "snapshot"])
def test_http_listen_failure_exits_1(which):
    import socket
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        s = Server(["--insecure-disable-auth", "--%s-bind-address=127.0.0.1:%d" % (which, port)],
                   wait=False)
        s.start()
        try:
            assert s.wait_exit(60) == 1
            errs = [r.get("err", "") for r in s.log_records() if r.get("msg") == "serve_error"]
            assert any(e.startswith("listen for %s: " % which) for e in errs), errs
        finally:
            s.stop()
    finally:
        busy.close()
