"""kvevent-subscriber to a TLS gRPC port (config/tls): with --server-ca-file it verifies the
server against that CA and delivers the engine's blocks; without it, or with another CA, it
never connects and the index stays empty."""
import os
import re
import subprocess

from harness import BUILD_DIR, Server, free_port, http_get, wait_until

SUB = os.path.join(BUILD_DIR, "src", "subscriber", "kvevent-subscriber")
ENGINE = os.path.join(BUILD_DIR, "src", "fake-engine", "fake-engine")


def _cert(d, name):
    key, crt = os.path.join(d, name + ".key"), os.path.join(d, name + ".crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", crt, "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return crt, key


def _metric(url, name):
    try:
        st, _, body = http_get(url)
    except OSError:
        return None
    for line in body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.split()[-1])
    return None


def _run(srv, ca, model):
    port, mport = free_port(), free_port()
    eng = subprocess.Popen([ENGINE, "--bind=tcp://127.0.0.1:%d" % port, "--block-size=16",
                            "--num-blocks=4", "--interval=100ms"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    args = [SUB, "--engine-endpoint=tcp://127.0.0.1:%d" % port, "--server=localhost:%s" %
            srv.grpc_addr.rsplit(":", 1)[1], "--replica-id=r0", "--model-id=" + model,
            "--window=20ms", "--stats-interval=1h", "--http-bind-address=127.0.0.1:%d" % mport]
    if ca:
        args.append("--server-ca-file=" + ca)
    sub = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return eng, sub, "http://127.0.0.1:%d/metrics" % mport


def _stop(*procs):
    for p in procs:
        p.terminate()
        p.wait(timeout=10)


def _entries(srv, model):
    st, _, body = http_get(srv.http_url + "/metrics")
    m = re.search(r'inferencecache_index_entries\{model="%s"\} (\S+)' % model, body.decode())
    return float(m.group(1)) if m else 0


def test_subscriber_reports_over_tls_with_the_server_ca(tmp_path):
    crt, key = _cert(str(tmp_path), "server")
    other, _ = _cert(str(tmp_path), "other")
    with Server(["--insecure-disable-auth", "--tls-cert-file=" + crt, "--tls-key-file=" + key],
                tls_ca=crt) as srv:
        eng, sub, murl = _run(srv, crt, "m-tls")
        try:
            wait_until(lambda: _entries(srv, "m-tls") >= 4, 30, what="blocks indexed over TLS")
            assert _metric(murl, "kvevent_subscriber_server_connected") == 1
        finally:
            _stop(sub, eng)
        # Plaintext to a TLS port, or a CA that did not sign the server's certificate: no ingest.
        for ca, model in ((None, "m-plain"), (other, "m-wrong-ca")):
            eng, sub, murl = _run(srv, ca, model)
            try:
                wait_until(lambda: _metric(murl, "kvevent_subscriber_server_connected") is not None,
                           20, what="subscriber metrics")
                subprocess.run(["sleep", "2"])
                assert _metric(murl, "kvevent_subscriber_server_connected") == 0
                assert _entries(srv, model) == 0
            finally:
                _stop(sub, eng)


def test_unreadable_ca_file_fails_at_startup(tmp_path):
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate\n")
    p = subprocess.run([SUB, "--replica-id=r", "--model-id=m", "--http-bind-address=",
                        "--server-ca-file=" + str(bad)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 1
    assert "server_ca_file_unreadable" in p.stderr
