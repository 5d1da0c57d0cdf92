"""Warm start of a server replica (docs/ha.md), real processes: /readyz and gRPC health stay
not-ready until every reporter it knows of (heard in the discovery window, or listed by the
controller in PUT /reporters) sent its full-state marker, or the timeout passed; lookups work
meanwhile; /reporters validates its body."""
import json
import time

import pytest
from harness import FakeEngine, Server, Subscriber, http_get, protos, wait_until

pb, pb_grpc = protos()
health_pb2, health_pb2_grpc = protos("grpc.health.v1.health")


def ready(srv):
    return http_get(srv.http_url + "/readyz", timeout=5)


def put_reporters(srv, body):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http_get(srv.snapshot_url + "/reporters", method="PUT", data=data, timeout=5)


def health(srv):
    stub = health_pb2_grpc.HealthStub(srv.channel())
    return stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status


def done_record(srv):
    recs = [r for r in srv.log_records() if r.get("msg") == "warm_start_done"]
    return recs[-1] if recs else None


def test_controller_list_and_markers_make_it_ready_before_the_window_ends():
    srv = Server(["--insecure-disable-auth", "--warm-start-window-ms=20000",
                  "--warm-start-timeout-ms=40000"], wait=False).start()
    eng = FakeEngine(["--block-size=16", "--num-blocks=4", "--prompts=20", "--count=20",
                      "--rate=200", "--hold", "--print-tokens"]).start()
    try:
        wait_until(lambda: _up(srv), timeout=30, what="server listening")
        st, _, body = ready(srv)
        assert st == 503 and body.decode().startswith("warming up: 0/0"), body
        assert health(srv) == health_pb2.HealthCheckResponse.NOT_SERVING
        assert put_reporters(srv, {"replicas": ["pod-a"]})[0] == 204
        st, _, body = ready(srv)
        assert st == 503 and "waiting for: pod-a" in body.decode(), body
        t0 = time.monotonic()
        # the subscriber reports as pod-a-dp0 (a --dp-rank-suffix rank of pod pod-a)
        sub = Subscriber(srv, [eng], replica="pod-a", extra=["--dp-rank-suffix"])
        try:
            wait_until(lambda: ready(srv)[0] == 200, timeout=15, what="ready")
            assert time.monotonic() - t0 < 15  # long before the 20 s window
            rec = done_record(srv)
            assert rec["reason"] == "complete" and rec["synced"] >= 1, rec
            assert health(srv) == health_pb2.HealthCheckResponse.SERVING
            assert srv.metric("inferencecache_warm_start_ready") == 1
            assert sub.metric(
                'kvevent_subscriber_target_full_state_sent_total{target="%s"}' % srv.grpc_addr) >= 1
            # the replica answers from what it learned
            toks = eng.prompts()[0]["tokens"][:64]
            req = pb.LookupRouteRequest(model_id="m", tenant_id="t", hash_scheme="vllm")
            req.token_ids.extend(toks)
            resp = srv.stub().LookupRoute(req, timeout=5)
            assert [r.replica_id for r in resp.replica_scores] == ["pod-a-dp0"], resp
        finally:
            sub.stop()
    finally:
        eng.cleanup()
        srv.stop()


def _up(srv):
    try:
        return ready(srv)[0] in (200, 503)
    except Exception:
        return False


def test_a_reporter_that_never_syncs_holds_readiness_until_the_timeout():
    srv = Server(["--insecure-disable-auth", "--warm-start-window-ms=500",
                  "--warm-start-timeout-ms=2500"], wait=False).start()
    try:
        wait_until(lambda: _up(srv), timeout=30, what="server listening")
        assert put_reporters(srv, {"replicas": ["ghost"]})[0] == 204
        # lookups answer (fail-open) while it warms up
        req = pb.LookupRouteRequest(model_id="m", tenant_id="t", hash_scheme="vllm")
        req.token_ids.extend(range(64))
        assert srv.stub().LookupRoute(req, timeout=5).reason_code
        time.sleep(1)
        assert ready(srv)[0] == 503
        wait_until(lambda: ready(srv)[0] == 200, timeout=15, what="ready by timeout")
        rec = done_record(srv)
        assert rec["reason"] == "timeout" and rec["expected"] == 1 and rec["synced"] == 0, rec
        assert srv.metric('inferencecache_warm_start_reporters{state="expected"}') == 1
    finally:
        srv.stop()


@pytest.mark.parametrize("body,needle", [
    (b"", "invalid JSON"),
    (b"[]", "must be a JSON object"),
    (b'{"replicas":"a"}', "array of strings"),
    (b'{"replicas":[1]}', "non-empty string"),
    (b'{"replicas":[""]}', "non-empty string"),
    (b'{"replicas":["a"]} x', "invalid JSON"),
])
def test_reporters_rejects_bad_bodies(body, needle):
    with Server(["--insecure-disable-auth"]) as srv:
        st, _, out = put_reporters(srv, body)
        assert st == 400 and needle in out.decode(), out
        assert out.decode().startswith("decode reporters: ")
        assert http_get(srv.snapshot_url + "/reporters", timeout=5)[0] == 405
        # warm start off (the harness default): a list changes nothing, the replica stays ready
        assert put_reporters(srv, {"replicas": ["x"]})[0] == 204
        assert ready(srv)[0] == 200
