"""inferencecache-server process lifecycle on the gRPC side: flags and exit codes, startup log,
health and reflection, gRPC TLS with certificate reload, SIGTERM drain. Real binary, real
clients, loopback ports only."""
import json
import os
import queue
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import grpc
import pytest

from harness import Server, free_port, http_get, protos, run_server, wait_until

pb, pb_grpc = protos()
hpb, hpb_grpc = protos("grpc.health.v1.health")
ra, ra_grpc = protos("grpc.reflection.v1alpha.reflection")
r1, r1_grpc = protos("grpc.reflection.v1.reflection")
T = 20


# ---------------------------------------------------------------- flags and exit codes

def test_help_exits_zero():
    rc, out, _ = run_server(["--help"])
    assert rc == 0 and "-grpc-bind-address" in out and "-engine-block-size" in out


@pytest.mark.parametrize("args,code,needle", [
    (["--no-such-flag"], 2, "flag provided but not defined"),
    (["--engine-block-size=abc"], 2, "invalid value"),
    (["--insecure-disable-auth", "--log-format=yaml"], 2, 'unknown log format "yaml" (want json|text)'),
    (["--insecure-disable-auth", "--log-level=trace"], 2, 'unknown log level "trace"'),
    (["--allowed-controller-sa=x", "--insecure-disable-auth"], 2, "mutually exclusive"),
    ([], 2, "missing --allowed-controller-sa"),
    (["--allowed-controller-sa=x ", ], 2, "--allowed-controller-sa has leading/trailing whitespace"),
    (["--allowed-controller-sa=x", "--controller-audience= \t"], 2, "--controller-audience cannot be empty"),
    (["--allowed-controller-sa=x", "--policy-audience="], 2, "--policy-audience cannot be empty"),
    (["--allowed-controller-sa=x", "--policy-audience=p "], 2, "leading/trailing whitespace"),
    (["--insecure-disable-auth", "--tls-cert-file=/tmp/x.pem"], 2,
     "server: --tls-cert-file and --tls-key-file must both be set or both be empty"),
    (["--insecure-disable-auth", "--tls-key-file=/tmp/x.pem"], 2,
     "server: --tls-cert-file and --tls-key-file must both be set or both be empty"),
])
def test_configuration_errors_exit_2(args, code, needle):
    rc, _, err = run_server(args + ["--grpc-bind-address=127.0.0.1:%d" % free_port()])
    assert rc == code, err
    assert needle in err, err


def test_insecure_mode_ignores_audiences():
    with Server(["--insecure-disable-auth", "--controller-audience=", "--policy-audience= "]) as s:
        assert any(r.get("msg") == "controller_auth_disabled" for r in s.log_records())


def test_unloadable_tls_pair_exits_1():
    rc, _, err = run_server(["--insecure-disable-auth", "--tls-cert-file=/nonexistent/c.pem",
                             "--tls-key-file=/nonexistent/k.pem", "--grpc-bind-address=127.0.0.1:%d" % free_port()])
    assert rc == 1
    assert "grpc_tls_load" in err and "load gRPC TLS keypair" in err


def test_busy_grpc_port_exits_1():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        rc, _, err = run_server(["--insecure-disable-auth", "--grpc-bind-address=127.0.0.1:%d" % port,
                                 "--http-bind-address=127.0.0.1:%d" % free_port(),
                                 "--snapshot-bind-address=127.0.0.1:%d" % free_port()])
    finally:
        s.close()
    assert rc == 1
    recs = [json.loads(l) for l in err.splitlines() if l.startswith("{")]
    assert any(r["msg"] == "serve_error" and "listen for grpc" in r.get("err", "") for r in recs), err


def test_startup_log_json_and_text():
    with Server(["--insecure-disable-auth"]) as s:
        rec = [r for r in s.log_records() if r.get("msg") == "startup"]
        assert rec, s.logs()
        r = rec[0]
        assert r["level"] == "INFO" and r["grpc_addr"] == s.grpc_addr and r["grpc_tls"] is False
        for k in ("version", "commit", "http_addr", "snapshot_addr", "time"):
            assert k in r
    with Server(["--insecure-disable-auth", "--log-format= Text "]) as s:
        assert "msg=startup" in s.logs() and "grpc_addr=" + s.grpc_addr in s.logs()


# ---------------------------------------------------------------- health and reflection

def _reflect(stub_cls, mod, channel, **req):
    stub = stub_cls(channel)
    return list(stub.ServerReflectionInfo(iter([mod.ServerReflectionRequest(**req)]), timeout=T))


def test_health_and_reflection_enumerate_services():
    with Server(["--insecure-disable-auth"]) as s:
        h = hpb_grpc.HealthStub(s.channel())
        assert h.Check(hpb.HealthCheckRequest(), timeout=T).status == hpb.HealthCheckResponse.SERVING
        assert h.Check(hpb.HealthCheckRequest(service="inferencecache.v1alpha1.InferenceCache"),
                       timeout=T).status == hpb.HealthCheckResponse.SERVING
        with pytest.raises(grpc.RpcError) as e:
            h.Check(hpb.HealthCheckRequest(service="nope"), timeout=T)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        for stub_cls, mod in ((ra_grpc.ServerReflectionStub, ra), (r1_grpc.ServerReflectionStub, r1)):
            (resp,) = _reflect(stub_cls, mod, s.channel(), list_services="")
            names = {x.name for x in resp.list_services_response.service}
            assert {"grpc.health.v1.Health", "inferencecache.v1alpha1.InferenceCache"} <= names
            (resp,) = _reflect(stub_cls, mod, s.channel(), file_containing_symbol="inferencecache.v1alpha1.InferenceCache")
            from google.protobuf import descriptor_pb2
            fd = descriptor_pb2.FileDescriptorProto.FromString(resp.file_descriptor_response.file_descriptor_proto[0])
            assert fd.package == "inferencecache.v1alpha1"
            assert [m.name for m in fd.service[0].method][:2] == ["RenderTemplate", "LookupRoute"]
            (resp,) = _reflect(stub_cls, mod, s.channel(), file_containing_symbol="no.Such")
            assert resp.error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]


# ---------------------------------------------------------------- TLS

def _make_cert(d, serial):
    key, crt = os.path.join(d, "tls.key"), os.path.join(d, "tls.crt")
    tmpk, tmpc = key + ".new", crt + ".new"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", tmpk, "-out", tmpc,
                    "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-set_serial", str(serial)], check=True, capture_output=True)
    os.replace(tmpk, key)
    os.replace(tmpc, crt)
    return crt, key


def _served_serial(port):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial"], input=der,
                         capture_output=True, check=True).stdout.decode()
    return int(out.strip().split("=")[1], 16)


def test_grpc_tls_serves_and_reloads_rotated_certificate():
    with tempfile.TemporaryDirectory() as d:
        crt, key = _make_cert(d, 1)
        s = Server(["--insecure-disable-auth", "--tls-cert-file=" + crt, "--tls-key-file=" + key], tls_ca=crt)
        with s:
            h = hpb_grpc.HealthStub(s.channel())
            assert h.Check(hpb.HealthCheckRequest(), timeout=T).status == hpb.HealthCheckResponse.SERVING
            assert s.stub().LookupRoute(pb.LookupRouteRequest(model_id="m"), timeout=T).reason_code == "NO_HINT"
            st, _, body = http_get(s.http_url + "/metrics")
            assert "inferencecache_server_grpc_tls_enabled 1" in body.decode()
            assert [r for r in s.log_records() if r.get("msg") == "startup"][0]["grpc_tls"] is True
            # plaintext clients cannot call a TLS server
            plain = grpc.insecure_channel(s.grpc_addr)
            with pytest.raises(grpc.RpcError):
                pb_grpc.InferenceCacheStub(plain).LookupRoute(pb.LookupRouteRequest(model_id="m"), timeout=5)
            plain.close()
            assert _served_serial(s.grpc_port) == 1
            time.sleep(1.1)  # mtime granularity on some filesystems
            _make_cert(d, 2)
            wait_until(lambda: _served_serial(s.grpc_port) == 2, 30, 0.2, "rotated certificate")
            # a broken replacement keeps the last good pair and logs grpc_tls_reload
            time.sleep(1.1)
            with open(crt, "w") as f:
                f.write("not a certificate\n")
            assert _served_serial(s.grpc_port) == 2
            wait_until(lambda: any(r.get("msg") == "grpc_tls_reload" for r in s.log_records()), 10,
                       what="grpc_tls_reload log")


def test_plaintext_server_reports_tls_gauge_0():
    with Server(["--insecure-disable-auth"]) as s:
        st, _, body = http_get(s.http_url + "/metrics")
        assert "inferencecache_server_grpc_tls_enabled 0" in body.decode()
        assert "inferencecache_server_up 1" in body.decode()


# ---------------------------------------------------------------- SIGTERM drain

def test_sigterm_drains_in_flight_stream_and_exits_0():
    s = Server(["--insecure-disable-auth", "--drain-timeout-seconds=20"])
    s.start()
    try:
        stub = s.stub()
        h = hpb_grpc.HealthStub(s.channel())
        watch = h.Watch(hpb.HealthCheckRequest(), timeout=60)
        assert next(watch).status == hpb.HealthCheckResponse.SERVING
        q = queue.Queue()

        def gen():
            while True:
                item = q.get()
                if item is None:
                    return
                yield item

        result = {}

        def run():
            try:
                result["ack"] = stub.ReportCacheState(gen(), timeout=60)
            except grpc.RpcError as e:
                result["err"] = e.code()

        t = threading.Thread(target=run)
        t.start()
        q.put(pb.CacheStateUpdate(replica_id="r1", model_id="m", tenant_id="drain", hash_scheme="vllm",
                                  prefixes=[pb.PrefixEntry(prefix_hash=b"D", token_count=64)]))
        wait_until(lambda: "inferencecache_index_entries{model=\"m\"} 1" in http_get(s.http_url + "/metrics")[2].decode(),
                   T, what="first update ingested")
        s.signal(signal.SIGTERM)
        # health flips to NOT_SERVING, then the watch ends cleanly
        assert next(watch).status == hpb.HealthCheckResponse.NOT_SERVING
        wait_until(lambda: any(r.get("msg") == "graceful_shutdown_started" for r in s.log_records()), T,
                   what="shutdown start")
        time.sleep(0.3)
        assert s.proc.poll() is None  # still draining the open stream
        st, _, body = http_get(s.http_url + "/readyz")
        assert st == 503 and body == b"not ready\n\n"
        q.put(pb.CacheStateUpdate(replica_id="r1", model_id="m", tenant_id="drain", hash_scheme="vllm"))
        q.put(None)
        t.join(60)
        assert result.get("ack") is not None and result["ack"].accepted, result
        assert s.wait_exit(30) == 0
        msgs = [r.get("msg") for r in s.log_records()]
        assert msgs.index("graceful_shutdown_started") < msgs.index("graceful_shutdown_done")
        assert "prefix_hash" not in s.logs()
    finally:
        s.stop()


def test_sigterm_drain_is_bounded():
    s = Server(["--insecure-disable-auth", "--drain-timeout-seconds=1"])
    s.start()
    try:
        stub = s.stub()
        q = queue.Queue()

        def gen():
            while True:
                item = q.get()
                if item is None:
                    return
                yield item

        result = {}

        def run():
            try:
                result["ack"] = stub.ReportCacheState(gen(), timeout=60)
            except grpc.RpcError as e:
                result["err"] = e.code()

        t = threading.Thread(target=run)
        t.start()
        q.put(pb.CacheStateUpdate(replica_id="r1"))
        time.sleep(0.5)
        t0 = time.monotonic()
        s.signal(signal.SIGTERM)
        assert s.wait_exit(30) == 0
        assert time.monotonic() - t0 < 15
        q.put(None)
        t.join(30)
        assert "err" in result, result
    finally:
        s.stop()


def test_lookup_route_emits_no_logs_even_at_debug():
    with Server(["--insecure-disable-auth", "--log-level=debug"]) as s:
        stub = s.stub()
        stub.ReportCacheState(iter([pb.CacheStateUpdate(replica_id="r1", model_id="m", tenant_id="t",
                                                        hash_scheme="vllm",
                                                        prefixes=[pb.PrefixEntry(prefix_hash=b"P", token_count=128)])]),
                              timeout=T)
        time.sleep(0.2)
        before = len(s.logs().splitlines())
        for kw in ({"prefix_hash": b"P", "prefix_token_count": 128}, {"prefix_hash": b"Q"}, {},
                   {"block_hashes": [b"a"], "block_token_counts": [16]}, {"token_ids": list(range(64))}):
            stub.LookupRoute(pb.LookupRouteRequest(model_id="m", tenant_id="t", hash_scheme="vllm", **kw), timeout=T)
        time.sleep(0.2)
        after = s.logs().splitlines()
        assert len(after) == before, after[before:]
