"""inferencecache-controller with the real inferencecache-server: a CachePolicy pushed as the v7
/policy body changes a LookupRoute answer; the /snapshot poll projects index entries into the
CacheBackend status, the cluster-default CacheIndex and CacheTenant status."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kubeapi"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import SERVER_BIN, Server, free_port, protos  # noqa: E402
from kubetest import (CB, CI, CPOL, CT, PODS, Controller, KubeAPI, cond,  # noqa: E402
                      wait_until, CONTROLLER_BIN)

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CONTROLLER_BIN) and os.path.exists(SERVER_BIN)),
    reason="inferencecache-controller or inferencecache-server not built")


@pytest.fixture
def env():
    with KubeAPI() as api, Server(["--insecure-disable-auth"]) as srv:
        ctl = Controller(api, ["--server-snapshot-url=%s/snapshot" % srv.snapshot_url,
                               "--server-policy-url=%s/policy" % srv.snapshot_url,
                               "--cacheindex-refresh-interval=1s",
                               "--cachepolicy-push-interval=1s"], free_port=free_port)
        with ctl:
            yield api, srv, ctl


def lookup(srv, tenant):
    pb, _ = protos()
    req = pb.LookupRouteRequest(model_id="m", tenant_id=tenant, hash_scheme="vllm",
                                token_ids=list(range(1, 65)))
    return srv.stub().LookupRoute(req, timeout=10).reason_code


def test_policy_push_changes_lookup_route_answer(env):
    api, srv, ctl = env
    before = lookup(srv, "team-a")
    assert before != "POLICY_REQUIRES_CHAIN"
    api.create(CPOL, "team-a", {
        "apiVersion": "inferencecache.io/v1alpha1", "kind": "CachePolicy",
        "metadata": {"name": "p"},
        "spec": {"eviction": "LFU", "evictionTTL": "10m", "routingFloorScore": "0.5",
                 "strategy": {"enableChainMatching": True, "requireChain": True}}})
    wait_until(lambda: lookup(srv, "team-a") == "POLICY_REQUIRES_CHAIN", 30,
               what="policy reaches the server")
    assert lookup(srv, "team-b") != "POLICY_REQUIRES_CHAIN"  # other namespaces untouched
    # Deleting the policy is pushed too (the body reflects deletions).
    api.delete(CPOL, "team-a", "p")
    wait_until(lambda: lookup(srv, "team-a") != "POLICY_REQUIRES_CHAIN", 30,
               what="policy removal reaches the server")


def report(srv, replica, tenant, n):
    pb, _ = protos()
    prefixes = [pb.PrefixEntry(prefix_hash=(i + 1).to_bytes(8, "big"), token_count=16)
                for i in range(n)]
    upd = pb.CacheStateUpdate(replica_id=replica, model_id="m", tenant_id=tenant,
                              hash_scheme="vllm", prefixes=prefixes,
                              stats=pb.ReplicaStats(cache_memory_bytes=1024, hit_rate=0.75))
    srv.stub().ReportCacheState(iter([upd]), timeout=10)


def test_snapshot_poll_projects_index_entries(env):
    api, srv, ctl = env
    ns = "llm"
    api.create(PODS, ns, {"metadata": {"name": "engine-0", "labels": {"pool": "a"}},
                          "spec": {"containers": [{"name": "vllm", "image": "x"}]}})
    api.create(CB, ns, {"apiVersion": "inferencecache.io/v1alpha1", "kind": "CacheBackend",
                        "metadata": {"name": "kv"},
                        "spec": {"type": "External", "endpoint": "e:1",
                                 "engineSelector": {"matchLabels": {"pool": "a"}}}})
    api.create(CB, ns, {"apiVersion": "inferencecache.io/v1alpha1", "kind": "CacheBackend",
                        "metadata": {"name": "idle"},
                        "spec": {"type": "External", "endpoint": "e:2",
                                 "engineSelector": {"matchLabels": {"pool": "none"}}}})
    api.create(CT, ns, {"apiVersion": "inferencecache.io/v1alpha1", "kind": "CacheTenant",
                        "metadata": {"name": "t"},
                        "spec": {"tenantID": ns, "quota": {"maxIndexEntries": 3}}})
    report(srv, "engine-0", ns, 5)
    o = wait_until(lambda: (lambda o: o if (o.get("status") or {}).get("indexEntries") == 5
                            else None)(api.get(CB, ns, "kv")), 30, what="indexEntries 5")
    assert o["status"]["indexParticipation"]["prefixCount"] == 5
    assert o["status"]["matchedEnginePods"] == 1
    idle = wait_until(lambda: (lambda o: o if "indexEntries" in (o.get("status") or {})
                               else None)(api.get(CB, ns, "idle")), 30, what="idle written")
    assert idle["status"]["indexEntries"] == 0  # selector-bearing: explicit zero
    ci = wait_until(lambda: (lambda o: o if o and (o.get("status") or {}).get("prefixes")
                             else None)(api.get(CI, None, "cluster-default")), 30,
                    what="CacheIndex status")
    st = ci["status"]
    assert st["prefixes"]["summary"]["total"] == 5
    assert st["observedServer"].endswith("/snapshot")
    assert [r["id"] for r in st["replicas"]] == ["engine-0"]
    assert st["replicas"][0]["hitRate"] == "0.75"
    t = wait_until(lambda: cond(api.get(CT, ns, "t"), "QuotaExceeded"), 30, what="tenant status")
    assert t["status"] == "True" and t["reason"] == "OverEntryBudget"
    # An identical snapshot causes no further writes.
    rv = api.get(CB, ns, "kv")["metadata"]["resourceVersion"]
    rv_ci = api.get(CI, None, "cluster-default")["metadata"]["resourceVersion"]
    api.clear_requests()
    wait_until(lambda: sum(1 for r in api.requests() if r["path"].endswith("/pods/engine-0")) >= 2,
               30, what="two more polls")
    assert api.get(CB, ns, "kv")["metadata"]["resourceVersion"] == rv
    assert api.get(CI, None, "cluster-default")["metadata"]["resourceVersion"] == rv_ci
    assert api.writes("/cacheindices") == [] and api.writes("/cachetenants") == []
