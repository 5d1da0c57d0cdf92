"""inferencecache-controller with several real inferencecache-server replicas (docs/ha-fleet.md
"Controller"): replicas come from the EndpointSlices of the headless Service (served by the test
API server); the policy and the reporter list reach every replica that is not terminating, a
warming (not ready) one included, a replica that restarts (kill -9, same address: announced by a
serving flip or not announced at all) gets them again without waiting for the periodic re-push,
and the CacheIndex shows the fleet view plus per-replica figures. Servers listen on
127.0.0.1, 127.0.0.2 and 127.0.0.3 with the same ports, as Pods behind one headless Service do."""
import os
import signal
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kubeapi"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import SERVER_BIN, HostServer, Server, free_port, protos  # noqa: E402
from kubetest import (CI, CPOL, PODS, Controller, KubeAPI, wait_until,  # noqa: E402
                      CONTROLLER_BIN)

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CONTROLLER_BIN) and os.path.exists(SERVER_BIN)),
    reason="inferencecache-controller or inferencecache-server not built")

SLICES = ("discovery.k8s.io", "v1", "endpointslices")
NS = "inference-cache-system"
SVC = "inference-cache-server-headless"


def slice_obj(endpoints):
    """One EndpointSlice of the headless Service (publishNotReadyAddresses: ready is always true,
    serving is the Pod's readiness): endpoints = [(pod, ip, uid, serving)] or with a fifth item,
    terminating."""
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": SVC + "-abcde", "labels": {"kubernetes.io/service-name": SVC}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8081, "protocol": "TCP"}],
            "endpoints": [{"addresses": [e[1]],
                           "conditions": {"ready": True, "serving": e[3],
                                          "terminating": len(e) > 4 and e[4]},
                           "targetRef": {"kind": "Pod", "name": e[0], "namespace": NS,
                                         "uid": e[2]}}
                          for e in endpoints]}


def lookup(srv, tenant="team-a"):
    pb, _ = protos()
    req = pb.LookupRouteRequest(model_id="m", tenant_id=tenant, hash_scheme="vllm",
                                token_ids=list(range(1, 65)))
    try:
        return srv.stub().LookupRoute(req, timeout=5).reason_code
    except Exception:  # noqa: BLE001 - a restarting server: not yet
        return None


def has_policy(srv):
    return lookup(srv) == "POLICY_REQUIRES_CHAIN"


def report(srv, replica, tenant, n, first=1):
    pb, _ = protos()
    prefixes = [pb.PrefixEntry(prefix_hash=(first + i).to_bytes(8, "big"), token_count=16)
                for i in range(n)]
    upd = pb.CacheStateUpdate(replica_id=replica, model_id="m", tenant_id=tenant,
                              hash_scheme="vllm", prefixes=prefixes,
                              stats=pb.ReplicaStats(cache_memory_bytes=1024, hit_rate=0.5))
    srv.stub().ReportCacheState(iter([upd]), timeout=10)


def expected_reporters(srv):
    return srv.metric('inferencecache_warm_start_reporters{state="expected"}')


@pytest.fixture
def fleet():
    ports = (free_port(), free_port(), free_port())
    servers = [HostServer("127.0.0.%d" % (i + 1), ports, ["--insecure-disable-auth"])
               for i in range(3)]
    with KubeAPI() as api:
        try:
            for s in servers:
                s.start()
            snap = ports[2]
            # The URLs name the ClusterIP Service; with --server-service only their scheme, port
            # and path are used, the host comes from each ready endpoint.
            ctl = Controller(api, [
                "--server-service=%s/%s" % (NS, SVC),
                "--server-snapshot-url=http://inference-cache-server:%d/snapshot" % snap,
                "--server-policy-url=http://inference-cache-server:%d/policy" % snap,
                "--server-probe-url=",
                "--cacheindex-refresh-interval=1s",
                # Long on purpose: every push below must come from a change or a detected
                # restart, never from the periodic re-push.
                "--cachepolicy-push-interval=1h"], free_port=free_port)
            with ctl:
                yield api, servers, ctl
        finally:
            for s in servers:
                s.stop()


def test_policy_reporters_and_index_reach_every_ready_replica(fleet):
    api, (s1, s2, s3), ctl = fleet
    api.create(SLICES, NS, slice_obj([("server-a", "127.0.0.1", "uid-a", True),
                                      ("server-b", "127.0.0.2", "uid-b", True),
                                      ("server-c", "127.0.0.3", "uid-c", True, True)]))
    api.create(CPOL, "team-a", {
        "apiVersion": "inferencecache.io/v1alpha1", "kind": "CachePolicy",
        "metadata": {"name": "p"},
        "spec": {"strategy": {"enableChainMatching": True, "requireChain": True}}})
    wait_until(lambda: has_policy(s1) and has_policy(s2), 30, what="policy on both replicas")
    assert not has_policy(s3)  # terminating: not a push target

    # The reporter list: running engine Pods with the subscriber sidecar, nothing else.
    def pod(name, containers, phase):
        api.create(PODS, "llm", {"metadata": {"name": name},
                                 "spec": {"containers": [{"name": c, "image": "x"}
                                                         for c in containers]}})
        api.patch(PODS, "llm", name, {"status": {"phase": phase}}, sub="status")
    pod("engine-0", ["vllm", "kvevent-subscriber"], "Running")
    pod("engine-1", ["vllm", "kvevent-subscriber"], "Running")
    pod("engine-2", ["vllm", "kvevent-subscriber"], "Pending")
    pod("plain", ["vllm"], "Running")
    wait_until(lambda: expected_reporters(s1) == 2 and expected_reporters(s2) == 2, 30,
               what="reporter list on both replicas")

    # A new replica in its warm start (not serving yet) needs the policy and the reporter list
    # to become ready: it gets them at once.
    api.patch(SLICES, NS, SVC + "-abcde", slice_obj([("server-a", "127.0.0.1", "uid-a", True),
                                                     ("server-b", "127.0.0.2", "uid-b", True),
                                                     ("server-c", "127.0.0.3", "uid-c2", False)]))
    wait_until(lambda: has_policy(s3) and expected_reporters(s3) == 2, 30,
               what="policy and reporters on the warming replica")

    # A crash the kubelet reports (serving false), then the container back on the same Pod and
    # address: everything is pushed again.
    api.patch(SLICES, NS, SVC + "-abcde", slice_obj([("server-a", "127.0.0.1", "uid-a", False),
                                                     ("server-b", "127.0.0.2", "uid-b", True),
                                                     ("server-c", "127.0.0.3", "uid-c2", True)]))
    s1.proc.send_signal(signal.SIGKILL)
    s1.proc.wait(10)
    s1.stop()
    s1.start()
    wait_until(lambda: has_policy(s1) and expected_reporters(s1) == 2, 45,
               what="policy and reporters back on the crashed replica")
    api.patch(SLICES, NS, SVC + "-abcde", slice_obj([("server-a", "127.0.0.1", "uid-a", True),
                                                     ("server-b", "127.0.0.2", "uid-b", True),
                                                     ("server-c", "127.0.0.3", "uid-c2", True)]))

    # A restart nobody announced (kill -9, same address, same Pod): the poller sees a new
    # X-Inferencecache-Started-At and the replica gets everything again.
    s2.proc.send_signal(signal.SIGKILL)
    s2.proc.wait(10)
    s2.stop()
    s2.start()
    assert not has_policy(s2)
    wait_until(lambda: has_policy(s2), 30, what="policy re-pushed to the restarted replica")
    wait_until(lambda: expected_reporters(s2) == 2, 30, what="reporters re-pushed after restart")
    assert any(r.get("msg") == "server_replica_restarted" and r.get("replica") == "server-b"
               for r in ctl.log_records())

    # CacheIndex: the fleet view is never a sum; per-replica figures sit next to it.
    report(s1, "engine-0", "llm", 5)
    report(s2, "engine-0", "llm", 5)
    report(s3, "engine-0", "llm", 5)
    report(s3, "engine-1", "llm", 3, first=100)  # only s3 heard engine-1 so far (s1, s2 lag)

    def index():
        ci = api.get(CI, None, "cluster-default")
        st = (ci or {}).get("status") or {}
        rows = {s["name"]: s for s in st.get("servers", [])}
        if len(rows) == 3 and rows["server-c"].get("totalPrefixes") == 8 and \
                rows["server-a"].get("totalPrefixes") == 5:
            return st
        return None
    st = wait_until(index, 30, what="CacheIndex fleet view")
    assert st["prefixes"]["summary"]["total"] == 8  # the most complete replica, not 5+5+8
    assert sorted(r["id"] for r in st["replicas"]) == ["engine-0", "engine-1"]
    rows = {s["name"]: s for s in st["servers"]}
    assert rows["server-a"] == {"name": "server-a", "address": "127.0.0.1", "state": "Observed",
                                "totalPrefixes": 5, "engineReplicas": 1}
    assert rows["server-c"]["engineReplicas"] == 2
    assert st["observedServer"].endswith("/snapshot")

    # A replica that stops answering is shown Unreachable; the fleet view stays.
    s1.signal(signal.SIGSTOP)
    try:
        st = wait_until(lambda: (lambda s: s if {x["name"]: x for x in s.get("servers", [])}
                                 .get("server-a", {}).get("state") == "Unreachable" else None)(
            (api.get(CI, None, "cluster-default") or {}).get("status") or {}), 45,
            what="server-a Unreachable")
        assert st["prefixes"]["summary"]["total"] == 8
    finally:
        s1.signal(signal.SIGCONT)
    m = ctl.metrics()
    assert 'inferencecache_controller_server_replicas{state="known"} 3' in m
    assert 'inferencecache_controller_server_replicas{state="serving"} 3' in m


def test_single_url_mode_repushes_after_restart():
    """Without --server-service the one URL is the fleet: a restart is still detected."""
    with KubeAPI() as api, Server(["--insecure-disable-auth"]) as srv:
        ctl = Controller(api, ["--server-snapshot-url=%s/snapshot" % srv.snapshot_url,
                               "--server-policy-url=%s/policy" % srv.snapshot_url,
                               "--server-probe-url=",
                               "--cacheindex-refresh-interval=1s",
                               "--cachepolicy-push-interval=1h", "--log-level=debug"],
                         free_port=free_port)
        with ctl:
            api.create(CPOL, "team-a", {
                "apiVersion": "inferencecache.io/v1alpha1", "kind": "CachePolicy",
                "metadata": {"name": "p"},
                "spec": {"strategy": {"enableChainMatching": True, "requireChain": True}}})
            wait_until(lambda: has_policy(srv), 30, what="policy pushed")
            srv.proc.send_signal(signal.SIGKILL)
            srv.proc.wait(10)
            srv.stop()
            srv.start()
            wait_until(lambda: has_policy(srv), 30, what="policy re-pushed after the restart")
            st = (api.get(CI, None, "cluster-default") or {}).get("status") or {}
            assert "servers" not in st  # single-URL mode keeps the reference's status shape
