"""`inferencecache doctor` with several server replicas (docs/doctor.md, "Several replicas"): the
server name resolves to three addresses, as a headless Service's does, and doctor checks each
replica (health, /snapshot, routes, /readyz) and their agreement (policy, index size). Real
servers on 127.0.0.2/.3/.4 sharing their ports; doctor resolves the name from a hosts file of its
own (a private mount namespace: its getaddrinfo is the production code path)."""
import json

import grpc
import pytest

from harness import (CLI_BIN, Server, doctor, free_port, http_get, private_hosts_command,
                     private_hosts_supported, protos, wait_until)

NAME = "ic-doctor-replicas.invalid"
pytestmark = pytest.mark.skipif(not private_hosts_supported(),
                                reason="needs a private mount namespace (unshare -m)")

POLICY = {"version": 7, "policies": [{"namespace": "t", "minimumMatchedTokens": 0}]}
OTHER_POLICY = {"version": 7, "policies": [{"namespace": "t", "minimumMatchedTokens": 32}]}


def push(srv, path, body, method="POST"):
    st, _, out = http_get(srv.snapshot_url + path, method=method, data=json.dumps(body).encode(),
                          headers={"Content-Type": "application/json"})
    assert st == 204, (st, out)


def report(srv, n):
    pb, _ = protos()
    prefixes = [pb.PrefixEntry(prefix_hash=(1 + i).to_bytes(8, "big"), token_count=16)
                for i in range(n)]
    upd = pb.CacheStateUpdate(replica_id="engine-0", model_id="m", tenant_id="t",
                              hash_scheme="vllm", prefixes=prefixes)
    srv.stub().ReportCacheState(iter([upd]), timeout=10)


def listening(srv):
    """Both HTTP listeners answer (a warming replica's /readyz says 503)."""
    try:
        return (http_get(srv.http_url + "/readyz", timeout=2)[0] in (200, 503) and
                http_get(srv.snapshot_url + "/snapshot", timeout=2)[0] == 200)
    except Exception:
        return False


def by_code(rep, code):
    return [f for f in rep["findings"] if f["code"] == code]


def test_doctor_checks_every_replica_and_their_agreement(tmp_path):
    ports = {"grpc_port": free_port(), "http_port": free_port(), "snapshot_port": free_port()}
    hosts = tmp_path / "hosts"
    ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    hosts.write_text("".join("%s %s\n" % (ip, NAME) for ip in ips))
    a = Server(["--insecure-disable-auth"], host=ips[0], **ports).start()
    b = Server(["--insecure-disable-auth"], host=ips[1], **ports).start()
    # The third one is warming up: it waits for reporters for a minute.
    c = Server(["--insecure-disable-auth", "--warm-start-window-ms=60000",
                "--warm-start-timeout-ms=120000"], host=ips[2], wait=False, **ports).start()
    addr = {s: "%s:%d" % (s.host, s.grpc_port) for s in (a, b, c)}

    def run():
        rc, rep, err = doctor("--server-endpoint=%s:%d" % (NAME, ports["grpc_port"]),
                              "--snapshot-endpoint=%s:%d" % (NAME, ports["snapshot_port"]),
                              "--readyz-port=%d" % ports["http_port"],
                              binary=private_hosts_command(str(hosts), [CLI_BIN]),
                              env={"KUBECONFIG": str(tmp_path / "no-kubeconfig")})
        return rc, rep

    try:
        wait_until(lambda: listening(c), timeout=30, what="the warming replica's listeners")
        grpc.channel_ready_future(c.channel()).result(timeout=30)
        for s in (a, b):
            push(s, "/policy", POLICY)
            report(s, 300)
        push(c, "/policy", OTHER_POLICY)

        rc, rep = run()
        assert rc == 2  # SV002 for the warming replica (and API001: no cluster here)
        assert {f["resource"] for f in by_code(rep, "SV003")} == {addr[a], addr[b]}
        assert [f["resource"] for f in by_code(rep, "SV002")] == [addr[c]]
        assert len(by_code(rep, "SN004")) == 3 and len(by_code(rep, "PL002")) == 3
        assert {f["resource"] for f in by_code(rep, "RP002")} == {addr[a], addr[b]}
        warming = by_code(rep, "RP001")
        assert [f["resource"] for f in warming] == [addr[c]]
        assert "warming up" in warming[0]["message"], warming
        odd_policy = by_code(rep, "RP003")
        assert [f["resource"] for f in odd_policy] == [addr[c]]
        assert "2 of 3 replicas" in odd_policy[0]["message"], odd_policy
        short = by_code(rep, "RP004")
        assert [f["resource"] for f in short] == [addr[c]]
        assert "indexes 0 prefixes" in short[0]["message"], short
        assert not by_code(rep, "RP005")

        # The controller's list (none) ends its warm start; it gets the policy and the state.
        push(c, "/reporters", {"replicas": []}, method="PUT")
        c.wait_ready(timeout=30)
        push(c, "/policy", POLICY)
        report(c, 300)
        rc, rep = run()
        assert {f["resource"] for f in by_code(rep, "SV003")} == set(addr.values())
        assert {f["resource"] for f in by_code(rep, "RP002")} == set(addr.values())
        assert not (by_code(rep, "RP001") or by_code(rep, "RP003") or by_code(rep, "RP004"))
        agree = by_code(rep, "RP005")
        assert len(agree) == 1 and "3 replicas ready" in agree[0]["message"], agree
        assert "300 to 300 prefixes" in agree[0]["message"], agree
        # Only the missing cluster is left: the replicas themselves are healthy.
        assert {f["code"] for f in rep["findings"] if f["status"] != "OK"} <= {"API001", "SN003"}
    finally:
        for s in (a, b, c):
            s.stop()
