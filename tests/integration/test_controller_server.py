"""inferencecache-controller with the real inferencecache-server: a CachePolicy pushed as the v7
/policy body changes a LookupRoute answer; the /snapshot poll projects index entries into the
CacheBackend status, the cluster-default CacheIndex and CacheTenant status."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kubeapi"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import SERVER_BIN, Server, free_port, protos  # noqa: E402
from kubetest import (CB, CI, CPOL, CT, DEPLOY, PODS, Controller, KubeAPI, cond,  # noqa: E402
                      wait_until, CONTROLLER_BIN)

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CONTROLLER_BIN) and os.path.exists(SERVER_BIN)),
    reason="inferencecache-controller or inferencecache-server not built")


@pytest.fixture
def env():
    with KubeAPI() as api, Server(["--insecure-disable-auth"]) as srv:
        ctl = Controller(api, ["--server-snapshot-url=%s/snapshot" % srv.snapshot_url,
                               "--server-policy-url=%s/policy" % srv.snapshot_url,
                               "--server-probe-url=%s/probe" % srv.snapshot_url,
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
                        "spec": {"tenantID": ns, "quota": {"maxIndexEntries": 10}}})
    report(srv, "engine-0", ns, 5)
    # indexEntries comes from the snapshot poller and matchedEnginePods from the CacheBackend
    # reconciler: two loops with their own status patches, so wait for both
    o = wait_until(lambda: (lambda o: o if (o.get("status") or {}).get("indexEntries") == 5
                            and "matchedEnginePods" in o["status"] else None)(api.get(CB, ns, "kv")),
                   30, what="indexEntries 5 and matchedEnginePods")
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
    # (The quota is also pushed to the server, which enforces it at ingest: keep it above 5.)
    t = wait_until(lambda: cond(api.get(CT, ns, "t"), "QuotaExceeded"), 30, what="tenant status")
    assert t["status"] == "False" and t["reason"] == "WithinBudget"
    tobj = api.get(CT, ns, "t")
    assert tobj["status"]["indexEntries"] == 5
    assert cond(tobj, "Ready")["reason"] == "Observed"
    # An identical snapshot causes no further writes.
    rv = api.get(CB, ns, "kv")["metadata"]["resourceVersion"]
    rv_ci = api.get(CI, None, "cluster-default")["metadata"]["resourceVersion"]
    api.clear_requests()
    wait_until(lambda: sum(1 for r in api.requests() if r["path"].endswith("/pods/engine-0")) >= 2,
               30, what="two more polls")
    assert api.get(CB, ns, "kv")["metadata"]["resourceVersion"] == rv
    assert api.get(CI, None, "cluster-default")["metadata"]["resourceVersion"] == rv_ci
    assert api.writes("/cacheindices") == [] and api.writes("/cachetenants") == []


DOMAIN = "inferencecache.io/cache-domain"


def typed_managed(api, ns, name, domain, annotations=None):
    md = {"name": name}
    if annotations:
        md["annotations"] = annotations
    return api.create(CB, ns, {
        "apiVersion": "inferencecache.io/v1alpha1", "kind": "CacheBackend", "metadata": md,
        "spec": {"runtime": "VLLM", "type": "LMCache",
                 "lmCache": {"topology": "PodLocal", "podLocal": {"server": {
                     "image": "lmcache/server@sha256:" + "b" * 64, "port": 6555,
                     "l1Capacity": "1Gi", "maxWorkers": 1, "resources": {}}}},
                 "remoteStorage": {"provider": "Redis", "ownership": "Managed"},
                 "engineSelector": {"matchLabels": {DOMAIN: domain}},
                 "observation": {"modelID": "m", "firstEventTimeout": "1h"}}})


def ready_engine(api, ns, pod, cb, domain):
    api.create(PODS, ns, {"metadata": {
        "name": pod, "labels": {DOMAIN: domain},
        "annotations": {"inferencecache.io/injected-by": "%s/%s" % (ns, cb["metadata"]["name"]),
                        "inferencecache.io/injected-by-uid": cb["metadata"]["uid"],
                        "inferencecache.io/injected-generation": "1"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "vllm", "image": "v"}]}})
    api.patch(PODS, ns, pod, {"status": {
        "phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
        "initContainerStatuses": [{"name": "lmcache-mp-server", "ready": True,
                                   "state": {"running": {}}}]}}, sub="status")


def test_functional_probe_gate_and_bypass(env):
    api, srv, ctl = env
    ns = "prb"
    cb = typed_managed(api, ns, "kv", "d1")
    wait_until(lambda: api.get(DEPLOY, ns, "kv"), 30, what="managed workload")
    api.patch(DEPLOY, ns, "kv", {"status": {"observedGeneration": 1, "replicas": 1,
                                             "updatedReplicas": 1, "availableReplicas": 1}},
              sub="status")
    ready_engine(api, ns, "engine-p", cb, "d1")
    report(srv, "engine-p", ns, 3)  # the poller attributes it through injected-by
    o = wait_until(lambda: (lambda o: o if (cond(o, "FunctionalProbeOK") or {}).get("reason")
                            == "ProbeOK" else None)(api.get(CB, ns, "kv")), 60,
                   what="FunctionalProbeOK ProbeOK")
    assert cond(o, "Ready")["status"] == "True"
    assert cond(o, "Ready")["reason"] == "KVEventsObserved"  # the probe keeps the upstream reason
    assert o["status"]["firstKVEventObservedAt"]
    assert o["status"]["indexEntries"] == 3
    assert 'inferencecache_backend_probe_result_total{backend="prb/kv",result="ok",stage="ingest"}' \
        in ctl.metrics()

    cb2 = typed_managed(api, ns, "kv2", "d2",
                        annotations={"inferencecache.io/skip-functional-probe": "true"})
    wait_until(lambda: api.get(DEPLOY, ns, "kv2"), 30, what="managed workload 2")
    api.patch(DEPLOY, ns, "kv2", {"status": {"observedGeneration": 1, "replicas": 1,
                                              "updatedReplicas": 1, "availableReplicas": 1}},
              sub="status")
    ready_engine(api, ns, "engine-q", cb2, "d2")
    report(srv, "engine-q", ns, 2)
    o = wait_until(lambda: (lambda o: o if (cond(o, "FunctionalProbeOK") or {}).get("reason")
                            == "ProbeBypassed" else None)(api.get(CB, ns, "kv2")), 60,
                   what="ProbeBypassed")
    assert cond(o, "FunctionalProbeOK")["status"] == "True"


PT = ("inferencecache.io", "v1alpha1", "prompttemplates")


def render(srv, ref, **variables):
    pb, _ = protos()
    return srv.stub().RenderTemplate(pb.RenderTemplateRequest(template_ref=ref, variables=variables), timeout=10)


def test_prompttemplate_push_render_and_status(env):
    """A PromptTemplate reaches RenderTemplate through the controller's /prompttemplates push; its
    status gets the revision RenderTemplate reports and a Ready condition; edits and deletions
    follow; a body that does not compile is Ready=False and answers RENDER_ERROR."""
    api, srv, ctl = env
    api.create(PT, "team-a", {
        "apiVersion": "inferencecache.io/v1alpha1", "kind": "PromptTemplate",
        "metadata": {"name": "support"},
        "spec": {"body": "{{ system }}\n\nUser: {{ question }}", "modelID": "some/model",
                 "slots": [{"name": "system", "type": "Stable", "required": True},
                           {"name": "question", "type": "Mutable"}]}})
    wait_until(lambda: render(srv, "team-a/support", system="S", question="Q").reason_code == "OK", 30,
               what="template reaches the server")
    r = render(srv, "team-a/support", system="S", question="Q")
    assert r.rendered_prompt == b"S\n\nUser: Q"
    assert r.stable_prefix_hash == b""  # the server has no tokenizer for some/model
    wait_until(lambda: (api.get(PT, "team-a", "support").get("status") or {}).get("templateRevision"), 30,
               what="status.templateRevision")
    obj = api.get(PT, "team-a", "support")
    assert obj["status"]["templateRevision"] == r.template_revision
    assert r.template_revision.startswith("%d-" % obj["metadata"]["generation"])
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert cond(obj, "Ready")["status"] == "True"
    # an edit bumps the revision everywhere
    api.patch(PT, "team-a", "support", {"spec": {"body": "{{ system }} / {{ question }}"}})
    wait_until(lambda: render(srv, "team-a/support", system="S", question="Q").rendered_prompt == b"S / Q", 30,
               what="edit reaches the server")
    rev2 = render(srv, "team-a/support", system="S").template_revision
    assert rev2 != r.template_revision
    wait_until(lambda: api.get(PT, "team-a", "support")["status"]["templateRevision"] == rev2, 30,
               what="status follows the edit")
    # a body that does not compile
    api.create(PT, "team-a", {
        "apiVersion": "inferencecache.io/v1alpha1", "kind": "PromptTemplate",
        "metadata": {"name": "bad"}, "spec": {"body": "{% if %}oops"}})
    wait_until(lambda: render(srv, "team-a/bad").reason_code == "RENDER_ERROR", 30, what="invalid template pushed")
    wait_until(lambda: (cond(api.get(PT, "team-a", "bad"), "Ready") or {}).get("status") == "False", 30,
               what="Ready=False on the invalid template")
    c = cond(api.get(PT, "team-a", "bad"), "Ready")
    assert c["reason"] == "TemplateError" and "line 1" in c["message"]
    # deletion is pushed too
    api.delete(PT, "team-a", "support")
    wait_until(lambda: render(srv, "team-a/support", system="S").reason_code == "TEMPLATE_NOT_FOUND", 30,
               what="deletion reaches the server")
