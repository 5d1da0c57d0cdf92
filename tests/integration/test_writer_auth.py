"""Writer authentication (issue 16 item 5, docs/server.md "Writer authentication"): with
--writer-auth the real server refuses ReportCacheState / PublishEvent from callers without an
allowed identity — service-account bearer tokens checked against a TokenReview endpoint served
here over HTTPS, or TLS client certificates verified against --grpc-client-ca-file — while
readers (LookupRoute) stay open; the real kvevent-subscriber sends its credentials (a rotating
token file, a client certificate) and indexes a fake engine's blocks end to end."""
import os
import re
import subprocess
import threading
import time

import grpc
import pytest

from harness import (BUILD_DIR, Server, Subscriber, TestPKI, TokenReviewer, free_port, http_get,
                     protos, run_server, wait_until)

CTRL_SA = "system:serviceaccount:inference-cache-system:inference-cache-controller-manager"
WRITER_AUD = "inferencecache.io/writer"
TOKENS = {
    "engine-token": ("system:serviceaccount:engines:vllm", WRITER_AUD),
    "engine-token-2": ("system:serviceaccount:engines:sglang", WRITER_AUD),
    "intruder-token": ("system:serviceaccount:default:intruder", WRITER_AUD),
    "wrong-audience": ("system:serviceaccount:engines:vllm", "inferencecache.io/controller"),
}
FAKE = os.path.join(BUILD_DIR, "src", "fake-engine", "fake-engine")
T = 10


def be8(x):
    return x.to_bytes(8, "big")


def update(model, replica="r0", h=1):
    pb, _ = protos()
    return pb.CacheStateUpdate(replica_id=replica, model_id=model, tenant_id="t", hash_scheme="vllm",
                               prefixes=[pb.PrefixEntry(prefix_hash=be8(h), token_count=16)])


def clear(model, replica="victim"):
    pb, _ = protos()
    return pb.CacheEvent(type=pb.CacheEvent.ALL_CLEARED, replica_id=replica, model_id=model,
                         tenant_id="t")


def md(token):
    return (("authorization", "Bearer " + token),) if token else None


def status_of(call, retry=True):
    """The call's status code. With retry, UNAVAILABLE (a token review still running past the
    server's short inline wait) is retried for a while, as the subscriber does."""
    deadline = time.monotonic() + 10
    while True:
        try:
            call()
            return grpc.StatusCode.OK
        except grpc.RpcError as e:
            if not (retry and e.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline):
                return e.code()
        time.sleep(0.1)


def write_both(stub, model, token=None, clear_model="m-victim", retry=True):
    """(ReportCacheState status, PublishEvent status): `model` gets hash 1 from replica r0, and
    replica "victim" of `clear_model` is cleared (ALL_CLEARED)."""
    return (status_of(lambda: stub.ReportCacheState(iter([update(model)]), timeout=T,
                                                    metadata=md(token)), retry),
            status_of(lambda: stub.PublishEvent(clear(clear_model), timeout=T, metadata=md(token)),
                      retry))


def holders(stub, model, h=1):
    pb, _ = protos()
    r = stub.LookupRoute(pb.LookupRouteRequest(tenant_id="t", model_id=model, hash_scheme="vllm",
                                               prefix_hash=be8(h)), timeout=T)
    return [s.replica_id for s in r.replica_scores]


def denied(srv, reason):
    return srv.metric('inferencecache_writer_auth_denied_total{reason="%s"}' % reason) or 0.0


def entries(srv, model):
    _, _, body = http_get(srv.http_url + "/metrics")
    m = re.search(r'inferencecache_index_entries\{model="%s"\} (\S+)' % re.escape(model), body.decode())
    return float(m.group(1)) if m else 0.0


@pytest.fixture(scope="module")
def reviewer():
    with TokenReviewer(TOKENS) as r:
        yield r


@pytest.fixture(scope="module")
def token_srv(reviewer):
    args = ["--allowed-controller-sa=" + CTRL_SA, "--writer-auth=token",
            "--writer-allowed-service-accounts=engines:*, other:single",
            "--writer-token-review-timeout-ms=700", "--grpc-threads=2"]
    with Server(args, env=reviewer.env()) as s:
        yield s


def test_token_writers_fail_closed_and_readers_stay_open(token_srv, reviewer):
    stub = token_srv.stub()
    U, P = grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED
    assert status_of(lambda: stub.ReportCacheState(iter([update("m-victim", replica="victim")]),
                                                   timeout=T, metadata=md("engine-token"))) == grpc.StatusCode.OK
    assert holders(stub, "m-victim") == ["victim"]
    assert write_both(stub, "m-none") == (U, U)
    assert write_both(stub, "m-bad", "not-a-token") == (U, U)
    assert write_both(stub, "m-aud", "wrong-audience") == (U, U)
    assert write_both(stub, "m-intruder", "intruder-token") == (P, P)
    for m in ("m-none", "m-bad", "m-aud", "m-intruder"):
        assert holders(stub, m) == [] and entries(token_srv, m) == 0
    assert holders(stub, "m-victim") == ["victim"]  # no refused ALL_CLEARED got through
    assert denied(token_srv, "no_credentials") == 2
    assert denied(token_srv, "invalid_token") == 4
    assert denied(token_srv, "identity_not_allowed") == 2
    # The allowed service accounts write; lookups never needed a credential.
    assert write_both(stub, "m-ok", "engine-token") == (grpc.StatusCode.OK, grpc.StatusCode.OK)
    assert holders(stub, "m-ok") == ["r0"] and holders(stub, "m-victim") == []
    # Verdicts are cached: 50 more writes with the same token cost no further review.
    before = reviewer.count()
    for i in range(50):
        stub.ReportCacheState(iter([update("m-ok", h=100 + i)]), timeout=T, metadata=md("engine-token"))
    assert reviewer.count() <= before + 1  # (+1: a background refresh past half the TTL)
    assert entries(token_srv, "m-ok") == 51
    st = token_srv.logs()
    assert "engine-token" not in st and "intruder-token" not in st  # tokens are never logged
    assert '"msg":"writer_auth_denied"' in st


def test_hanging_token_review_denies_within_a_bound_and_lookups_go_on(token_srv, reviewer):
    stub = token_srv.stub()
    reviewer.hang = True
    try:
        results = {}

        def write():
            t0 = time.monotonic()
            results["status"] = write_both(stub, "m-hang", "engine-token-2", retry=False)[1]
            results["s"] = time.monotonic() - t0

        th = threading.Thread(target=write)
        th.start()
        time.sleep(0.2)  # the review is in flight: lookups are still answered at once
        t0 = time.monotonic()
        holders(stub, "m-ok")
        assert time.monotonic() - t0 < 0.5
        th.join(10)
        assert results["status"] == grpc.StatusCode.UNAVAILABLE
        assert results["s"] < 2.0  # two calls, each waiting ~50 ms for the review, then denied
        assert holders(stub, "m-hang") == []
        assert denied(token_srv, "review_unavailable") >= 2
    finally:
        reviewer.hang = False
    # The API server is back: the same token is reviewed again (failures are not cached).
    time.sleep(1.0)  # the hung review times out (0.7 s)
    assert write_both(stub, "m-hang", "engine-token-2") == (grpc.StatusCode.OK, grpc.StatusCode.OK)


def test_flag_checks_and_the_open_writer_warning(tmp_path):
    for args, msg in (
            (["--writer-auth=bogus"], "invalid --writer-auth"),
            (["--writer-auth=mtls"], "--writer-auth=mtls needs --grpc-client-ca-file"),
            (["--grpc-client-ca-file=/nonexistent"], "--grpc-client-ca-file needs TLS"),
    ):
        rc, _, err = run_server(["--insecure-disable-auth"] + args)
        assert rc == 2 and msg in err, (args, rc, err)
    with TokenReviewer(TOKENS) as r:
        rc, _, err = run_server(["--insecure-disable-auth", "--writer-auth=token"])
        assert rc != 0
        # open writers while the HTTP endpoints need auth: a WARN at start
        with Server(["--allowed-controller-sa=" + CTRL_SA], env=r.env()) as s:
            warns = [x for x in s.log_records() if x.get("msg") == "writers_unauthenticated"]
            assert warns and warns[0]["level"] == "WARN"
    with Server(["--insecure-disable-auth"]) as s:
        assert not [x for x in s.log_records() if x.get("msg") == "writers_unauthenticated"]
        # off by default: anyone writes, as in the reference
        assert write_both(s.stub(), "m") == (grpc.StatusCode.OK, grpc.StatusCode.OK)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    p = TestPKI(tmp_path_factory.mktemp("pki"))
    ca = p.ca("writers-ca")
    other = p.ca("other-ca")
    return {
        "ca": ca,
        "server": p.leaf("server", ca, "localhost", ["DNS:localhost", "IP:127.0.0.1"], server=True),
        "good": p.leaf("good", ca, "vllm-0",
                       ["URI:spiffe://cluster.local/ns/engines/sa/vllm", "DNS:vllm-0.engines"]),
        "cn-only": p.leaf("cn-only", ca, "subscriber.engines"),
        "intruder": p.leaf("intruder", ca, "intruder", ["DNS:intruder.default"]),
        "foreign": p.leaf("foreign", other, "vllm-0",
                          ["URI:spiffe://cluster.local/ns/engines/sa/vllm"]),
    }


def _read(p):
    with open(p, "rb") as f:
        return f.read()


def tls_stub(srv, pki, client=None):
    _, pb_grpc = protos()
    kw = {"root_certificates": _read(pki["ca"][0])}
    if client:
        kw["certificate_chain"] = _read(pki[client][0])
        kw["private_key"] = _read(pki[client][1])
    ch = grpc.secure_channel("localhost:%d" % srv.grpc_port, grpc.ssl_channel_credentials(**kw))
    return ch, pb_grpc.InferenceCacheStub(ch)


@pytest.fixture(scope="module")
def mtls_srv(pki):
    args = ["--insecure-disable-auth", "--tls-cert-file=" + pki["server"][0],
            "--tls-key-file=" + pki["server"][1], "--grpc-client-ca-file=" + pki["ca"][0],
            "--writer-auth=mtls",
            "--writer-allowed-cert-names=spiffe://cluster.local/ns/engines/*,subscriber.engines"]
    with Server(args, tls_ca=pki["ca"][0]) as s:
        yield s


def test_mtls_writers(mtls_srv, pki):
    OK, U, P = grpc.StatusCode.OK, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED
    ch, stub = tls_stub(mtls_srv, pki, "good")
    try:
        stub.ReportCacheState(iter([update("m-victim", replica="victim")]), timeout=T)
    finally:
        ch.close()
    ch, stub = tls_stub(mtls_srv, pki)  # TLS without a client certificate: a reader
    try:
        assert write_both(stub, "m-nocert") == (U, U)
        assert holders(stub, "m-nocert") == [] and holders(stub, "m-victim") == ["victim"]
    finally:
        ch.close()
    ch, stub = tls_stub(mtls_srv, pki, "intruder")  # signed by the CA, name not allowed
    try:
        assert write_both(stub, "m-intruder") == (P, P)
    finally:
        ch.close()
    ch, stub = tls_stub(mtls_srv, pki, "foreign")  # another CA: the handshake fails
    try:
        st = write_both(stub, "m-foreign")
        assert st[0] == st[1] == grpc.StatusCode.UNAVAILABLE, st
    finally:
        ch.close()
    for client, model in (("good", "m-good"), ("cn-only", "m-cn")):
        ch, stub = tls_stub(mtls_srv, pki, client)
        try:
            assert write_both(stub, model) == (OK, OK), client
            assert holders(stub, model) == ["r0"]
        finally:
            ch.close()
    assert entries(mtls_srv, "m-foreign") == 0 and entries(mtls_srv, "m-intruder") == 0
    assert denied(mtls_srv, "no_credentials") == 2
    assert denied(mtls_srv, "certificate_not_allowed") == 2


def _engine():
    port = free_port()
    p = subprocess.Popen([FAKE, "--bind=tcp://127.0.0.1:%d" % port, "--block-size=16",
                          "--num-blocks=4", "--interval=100ms"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return p, "tcp://127.0.0.1:%d" % port


class _Eng:
    def __init__(self, endpoint):
        self.endpoint = endpoint


def test_subscriber_with_a_rotating_token_indexes_its_engine(token_srv, tmp_path):
    tok = tmp_path / "token"
    tok.write_text("not-yet-valid\n")
    eng, ep = _engine()
    before = denied(token_srv, "invalid_token")
    try:
        with Subscriber(token_srv, _Eng(ep), replica="r-tok", model="m-sub-token", replay=False,
                        extra=["--server-token-file=" + str(tok), "--server-token-refresh=200ms"]) as sub:
            # the first token is refused: nothing is indexed
            wait_until(lambda: denied(token_srv, "invalid_token") > before, 20,
                       what="the subscriber's bad token refused")
            assert entries(token_srv, "m-sub-token") == 0
            # the kubelet rotates the projected token: the subscriber picks it up
            tmp = tmp_path / "token.new"
            tmp.write_text("engine-token\n")
            os.replace(tmp, tok)
            wait_until(lambda: entries(token_srv, "m-sub-token") >= 4, 30,
                       what="blocks indexed with the rotated token")
            assert "engine-token" not in sub.logs()
    finally:
        eng.terminate()
        eng.wait(10)


def test_subscriber_with_a_client_certificate_indexes_its_engine(mtls_srv, pki):
    server = "localhost:%d" % mtls_srv.grpc_port
    eng, ep = _engine()
    try:
        flags = ["--server-ca-file=" + pki["ca"][0], "--client-cert-file=" + pki["good"][0],
                 "--client-key-file=" + pki["good"][1]]
        with Subscriber(server, _Eng(ep), replica="r-cert", model="m-sub-cert", replay=False,
                        extra=flags):
            wait_until(lambda: entries(mtls_srv, "m-sub-cert") >= 4, 30,
                       what="blocks indexed over mTLS")
        # without the certificate the same subscriber is refused
        with Subscriber(server, _Eng(ep), replica="r-nocert", model="m-sub-nocert", replay=False,
                        extra=["--server-ca-file=" + pki["ca"][0]]):
            before = denied(mtls_srv, "no_credentials")
            wait_until(lambda: denied(mtls_srv, "no_credentials") > before, 20,
                       what="a subscriber without a certificate refused")
            assert entries(mtls_srv, "m-sub-nocert") == 0
    finally:
        eng.terminate()
        eng.wait(10)
