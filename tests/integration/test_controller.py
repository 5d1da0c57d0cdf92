"""inferencecache-controller against the test Kubernetes API server (tests/kubeapi): CacheBackend
External mirror/clear/preserve, managed Redis workloads (Deployment/StatefulSet, Service, PVC,
template overrides, owner references), health transitions, idempotent status, conflict retries,
watch restarts after 410 Gone, metrics/health endpoints."""
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kubeapi"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import free_port  # noqa: E402
from kubetest import (CB, DEPLOY, PVC, STS, SVC, Controller, KubeAPI, cond,  # noqa: E402
                      wait_until, CONTROLLER_BIN)

NS = "llm"

pytestmark = pytest.mark.skipif(not os.path.exists(CONTROLLER_BIN),
                                reason="inferencecache-controller not built")


@pytest.fixture
def api():
    with KubeAPI() as a:
        yield a


@pytest.fixture
def ctl(api):
    with Controller(api, ["--cacheindex-refresh-interval=1h", "--cachepolicy-push-interval=1h"],
                    free_port=free_port) as c:
        yield c


def cb(name, spec, **meta):
    md = {"name": name}
    md.update(meta)
    return {"apiVersion": "inferencecache.io/v1alpha1", "kind": "CacheBackend", "metadata": md,
            "spec": spec}


def get_cb(api, name):
    return api.get(CB, NS, name)


def wait_cb(api, name, pred, what, timeout=30):
    return wait_until(lambda: (lambda o: o if o and pred(o) else None)(get_cb(api, name)),
                      timeout, what=what)


def ready(o):
    return cond(o, "Ready")


def test_external_mirrors_endpoint_then_clears_it(api, ctl):
    api.create(CB, NS, cb("ext", {"type": "External", "endpoint": "kv-store.infra.svc:8200"}))
    o = wait_cb(api, "ext", lambda o: (o.get("status") or {}).get("health") == "Ready",
                "External backend Ready")
    st = o["status"]
    assert st["endpoint"] == "kv-store.infra.svc:8200"
    assert st["observedGeneration"] == 1
    assert ready(o)["status"] == "True" and ready(o)["reason"] == "ExternalEndpointAccepted"
    prog = cond(o, "Progressing")
    assert prog["status"] == "False" and prog["reason"] == "Synced"
    assert cond(o, "Degraded") is None
    # The controller never writes spec.
    assert o["spec"] == {"type": "External", "endpoint": "kv-store.infra.svc:8200"}

    api.patch(CB, NS, "ext", {"spec": {"endpoint": None}})
    o = wait_cb(api, "ext", lambda o: o["status"].get("health") == "Failed", "endpoint cleared")
    assert "endpoint" not in o["status"]
    assert ready(o)["reason"] == "ExternalEndpointMissing"
    assert o["status"]["observedGeneration"] == 2


def test_external_status_is_idempotent(api, ctl):
    api.create(CB, NS, cb("idem", {"type": "External", "endpoint": "a.b:1"}))
    o = wait_cb(api, "idem", lambda o: (o.get("status") or {}).get("endpoint") == "a.b:1",
                "mirror")
    time.sleep(1.0)  # let the watch echo of our own status write be reconciled too
    rv = get_cb(api, "idem")["metadata"]["resourceVersion"]
    api.clear_requests()
    # A spec-neutral annotation change re-triggers a reconcile that must write nothing.
    api.patch(CB, NS, "idem", {"metadata": {"annotations": {"touch": "1"}}})
    wait_until(lambda: any(r["method"] == "GET" and r["path"].endswith("/cachebackends/idem")
                           for r in api.requests()), 20, what="reconcile after touch")
    time.sleep(1.0)
    writes = api.writes("/cachebackends/idem/status")
    assert writes == [], writes
    assert get_cb(api, "idem")["metadata"]["resourceVersion"] != rv  # only our annotation write
    tlt = ready(get_cb(api, "idem"))["lastTransitionTime"]
    assert tlt == ready(o)["lastTransitionTime"]


def test_unmanaged_backend_preserves_status_endpoint(api, ctl):
    api.create(CB, NS, cb("seed", {"type": "LMCache", "endpoint": "A:1"}))
    api.patch(CB, NS, "seed", {"status": {"endpoint": "B:2"}}, sub="status")
    o = wait_cb(api, "seed", lambda o: (o.get("status") or {}).get("observedGeneration") == 1,
                "unmanaged pass")
    assert o["status"]["endpoint"] == "B:2"  # never mirrored for non-External types
    assert ready(o) is None and "health" not in o["status"]
    assert api.get(DEPLOY, NS, "seed") is None and api.get(SVC, NS, "seed") is None


def managed_spec(**extra):
    spec = {"type": "LMCache", "remoteStorage": {"provider": "Redis", "ownership": "Managed"}}
    spec.update(extra)
    return spec


def set_deploy_status(api, name, gen, updated, available, res=DEPLOY):
    api.patch(res, NS, name, {"status": {"observedGeneration": gen, "replicas": updated,
                                         "updatedReplicas": updated,
                                         "availableReplicas": available}}, sub="status")


def test_managed_workload_lifecycle_and_health(api, ctl):
    spec = managed_spec(template={"nodeSelector": {"pool": "cache"},
                                  "tolerations": [{"key": "dedicated", "operator": "Equal",
                                                   "value": "kv", "effect": "NoSchedule"}]})
    spec["remoteStorage"]["workload"] = {"nodeSelector": {"pool": "redis"}}
    created = api.create(CB, NS, cb("kv", spec))
    uid = created["metadata"]["uid"]
    d = wait_until(lambda: api.get(DEPLOY, NS, "kv"), what="deployment")
    ref = d["metadata"]["ownerReferences"][0]
    assert ref["uid"] == uid and ref["controller"] and ref["blockOwnerDeletion"]
    assert ref["kind"] == "CacheBackend"
    labels = d["metadata"]["labels"]
    assert labels["app.kubernetes.io/instance"] == "kv"
    assert labels["app.kubernetes.io/managed-by"] == "inference-cache-controller"
    assert labels["inferencecache.io/backend-type"] == "LMCache"
    assert d["spec"]["replicas"] == 1
    pod = d["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["redis-l2"]
    ctr = pod["containers"][0]
    assert ctr["image"] == "docker.io/library/redis:7.4-alpine"
    assert ctr["args"][:5] == ["redis-server", "--save", "", "--appendonly", "no"]
    # maxmemory = L - L/5 with the default 8Gi limit
    assert ctr["args"][ctr["args"].index("--maxmemory") + 1] == str(8 * 2**30 - 8 * 2**30 // 5)
    assert pod["nodeSelector"] == {"pool": "redis"}  # workload overrides template
    assert pod["tolerations"][0]["key"] == "dedicated"
    assert pod["schedulerName"] == "default-scheduler"
    s = wait_until(lambda: api.get(SVC, NS, "kv"), what="service")
    assert s["spec"]["ports"][0]["port"] == 6379 and s["metadata"]["ownerReferences"][0]["uid"] == uid

    o = wait_cb(api, "kv", lambda o: ready(o) is not None, "managed status")
    assert o["status"]["endpoint"] == "kv.llm.svc.cluster.local:6379"
    assert o["status"]["remoteStorage"]["endpoint"] == "kv.llm.svc.cluster.local:6379"
    assert ready(o)["reason"] == "RolloutInProgress" and o["status"]["health"] == "Pending"
    assert cond(o, "Progressing")["status"] == "True"

    set_deploy_status(api, "kv", 1, 1, 1)
    o = wait_cb(api, "kv", lambda o: o["status"].get("health") == "Ready", "Ready")
    assert ready(o)["reason"] == "BackendReady"
    assert cond(o, "RemoteStorageReady")["status"] == "True"
    t_ready = ready(o)["lastTransitionTime"]

    set_deploy_status(api, "kv", 1, 1, 0)
    o = wait_cb(api, "kv", lambda o: o["status"].get("health") == "Degraded", "Degraded")
    assert ready(o)["reason"] == "ReplicasUnavailable"
    assert cond(o, "Degraded")["status"] == "True"

    set_deploy_status(api, "kv", 1, 1, 1)
    o = wait_cb(api, "kv", lambda o: o["status"].get("health") == "Ready", "recovered")
    assert ready(o)["lastTransitionTime"] >= t_ready

    # spec update: replicas and image land on the live Deployment in place
    api.patch(CB, NS, "kv", {"spec": {"replicas": 3, "remoteStorage": {"redis": {"image": "redis:8"}}}})
    d = wait_until(lambda: (lambda d: d if d and d["spec"]["replicas"] == 3 else None)(
        api.get(DEPLOY, NS, "kv")), what="replicas 3")
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "redis:8"
    o = wait_cb(api, "kv", lambda o: o["status"].get("observedGeneration") == 2, "gen 2")

    # Deployment -> StatefulSet deletes the other kind
    api.patch(CB, NS, "kv", {"spec": {"deploymentKind": "StatefulSet", "replicas": 1}})
    st = wait_until(lambda: api.get(STS, NS, "kv"), what="statefulset")
    assert st["spec"]["serviceName"] == "kv"
    wait_until(lambda: api.get(DEPLOY, NS, "kv") is None, what="deployment deleted")

    # Managed -> External deletes children and mirrors
    api.patch(CB, NS, "kv", {"spec": {"type": "External", "endpoint": "ext:1",
                                      "remoteStorage": None}})
    wait_until(lambda: api.get(STS, NS, "kv") is None and api.get(SVC, NS, "kv") is None,
               what="children deleted")
    o = wait_cb(api, "kv", lambda o: o["status"].get("endpoint") == "ext:1", "mirrored")
    assert "remoteStorage" not in o["status"]


def test_managed_scaled_to_zero_and_foreign_service(api, ctl):
    api.create(SVC, NS, {"metadata": {"name": "z"}, "spec": {"ports": [{"port": 1}]}})
    api.create(CB, NS, cb("z", managed_spec(replicas=0)))
    o = wait_cb(api, "z", lambda o: ready(o) is not None, "status")
    assert ready(o)["reason"] == "ScaledToZero" and o["status"]["health"] == "Pending"
    assert "endpoint" not in o["status"]  # foreign Service: nothing published
    svc = api.get(SVC, NS, "z")
    assert "ownerReferences" not in svc["metadata"]  # never adopted


def test_managed_pvc_and_invalid_storage(api, ctl):
    api.create(CB, NS, cb("p", managed_spec(storage={"pvc": {"size": "10Gi",
                                                             "storageClassName": "fast"}})))
    pvc = wait_until(lambda: api.get(PVC, NS, "p-data"), what="pvc")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert pvc["spec"]["storageClassName"] == "fast"
    d = wait_until(lambda: api.get(DEPLOY, NS, "p"), what="deployment")
    ctr = d["spec"]["template"]["spec"]["containers"][0]
    assert ctr["args"][1:5] == ["--dir", "/data", "--appendonly", "yes"]
    assert ctr["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]
    # raising the size raises the claim; replicas 2 on a Deployment is refused
    api.patch(CB, NS, "p", {"spec": {"storage": {"pvc": {"size": "20Gi"}}}})
    wait_until(lambda: api.get(PVC, NS, "p-data")["spec"]["resources"]["requests"]["storage"]
               == "20Gi", what="pvc grown")
    api.patch(CB, NS, "p", {"spec": {"replicas": 2}})
    o = wait_cb(api, "p", lambda o: o["status"].get("health") == "Failed", "invalid storage")
    assert ready(o)["reason"] == "InvalidStorageConfiguration"
    wait_until(lambda: api.get(DEPLOY, NS, "p") is None, what="workload removed")
    assert api.get(PVC, NS, "p-data") is not None  # PVCs are never deleted


def test_conflict_on_update_is_retried(api, ctl):
    api.create(CB, NS, cb("c", managed_spec()))
    wait_until(lambda: api.get(DEPLOY, NS, "c"), what="deployment")
    api.fault(method="PUT", path_contains="/deployments/c", status=409, reason="Conflict", count=2)
    api.patch(CB, NS, "c", {"spec": {"replicas": 2}})
    wait_until(lambda: api.get(DEPLOY, NS, "c")["spec"]["replicas"] == 2, what="converged")
    # a transient 500 on the status patch is retried too
    api.fault(method="PATCH", path_contains="/cachebackends/c/status", status=500, count=1)
    set_deploy_status(api, "c", 2, 2, 2)
    wait_cb(api, "c", lambda o: o["status"].get("health") == "Ready", "Ready after 500")


def test_watch_restarts_after_410_gone(api, ctl):
    api.create(CB, NS, cb("w1", {"type": "External", "endpoint": "x:1"}))
    wait_cb(api, "w1", lambda o: (o.get("status") or {}).get("endpoint") == "x:1", "first")
    api.compact()
    api.close_watches()
    wait_until(lambda: any(r.get("msg") == "kube_watch_expired_relist"
                           for r in ctl.log_records()), 30, what="relist after 410")
    api.create(CB, NS, cb("w2", {"type": "External", "endpoint": "y:2"}))
    wait_cb(api, "w2", lambda o: (o.get("status") or {}).get("endpoint") == "y:2",
            "reconciled after relist")


def test_health_and_metrics_endpoints(api, ctl):
    api.create(CB, NS, cb("m", {"type": "External", "endpoint": "m:1"}))
    wait_cb(api, "m", lambda o: (o.get("status") or {}).get("endpoint") == "m:1", "reconciled")
    text = wait_until(lambda: (lambda t: t if 'controller_runtime_reconcile_total{controller='
                               '"cachebackend",result="success"}' in t else None)(ctl.metrics()),
                      what="reconcile metric")
    assert "controller_runtime_reconcile_time_seconds_bucket" in text
    assert 'workqueue_depth{name="cachebackend"}' in text


def test_managed_redis_password_authentication(api, ctl):
    spec = managed_spec()
    spec["remoteStorage"]["redis"] = {
        "authentication": {"password": {"name": "redis-auth", "key": "password"}},
        "resources": {"limits": {"memory": "1Gi"}}}
    api.create(CB, NS, cb("auth", spec))
    d = wait_until(lambda: api.get(DEPLOY, NS, "auth"), what="deployment")
    ctr = d["spec"]["template"]["spec"]["containers"][0]
    assert ctr["args"][-2:] == ["--requirepass", "$(REDIS_PASSWORD)"]
    assert ctr["args"][ctr["args"].index("--maxmemory") + 1] == str(2**30 - 2**30 // 5)
    assert ctr["resources"] == {"limits": {"memory": "1Gi"}}
    ref = {"secretKeyRef": {"name": "redis-auth", "key": "password"}}
    assert ctr["env"] == [{"name": "REDIS_PASSWORD", "valueFrom": ref},
                          {"name": "REDISCLI_AUTH", "valueFrom": ref}]
    assert ctr["readinessProbe"]["exec"]["command"] == ["redis-cli", "ping"]
    assert ctr["readinessProbe"]["timeoutSeconds"] == 2


def test_foreign_children_are_never_adopted_and_errors_are_wrapped(api, ctl):
    # CM6/CM8: a foreign Deployment of the same name -> apply error, no status from it,
    # observedGeneration not advanced; the error names the operation and namespace/name.
    api.create(DEPLOY, NS, {"metadata": {"name": "f"}, "spec": {"replicas": 5}})
    api.patch(DEPLOY, NS, "f", {"status": {"observedGeneration": 1, "updatedReplicas": 5,
                                           "availableReplicas": 5}}, sub="status")
    api.create(CB, NS, cb("f", managed_spec()))
    wait_until(lambda: any(r.get("msg") == "reconcile_failed" and "apply deployment llm/f" in
                           r.get("error", "") for r in ctl.log_records()), 30,
               what="wrapped apply error")
    o = get_cb(api, "f")
    assert ready(o) is None or ready(o)["reason"] != "BackendReady"
    assert (o.get("status") or {}).get("observedGeneration") in (None, 0)
    d = api.get(DEPLOY, NS, "f")
    assert d["spec"]["replicas"] == 5 and "ownerReferences" not in d["metadata"]
    assert api.get(SVC, NS, "f") is None  # the Service waits for a successful workload apply
    # CS4: a foreign PVC <name>-data is never adopted either.
    api.create(PVC, NS, {"metadata": {"name": "g-data"}, "spec": {"resources": {"requests": {
        "storage": "1Gi"}}}})
    api.create(CB, NS, cb("g", managed_spec(storage={"pvc": {"size": "5Gi"}})))
    wait_until(lambda: any("apply pvc llm/g-data" in r.get("error", "")
                           for r in ctl.log_records()), 30, what="pvc error")
    assert api.get(PVC, NS, "g-data")["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert api.get(DEPLOY, NS, "g") is None
    m = ctl.metrics()
    assert 'controller_runtime_reconcile_errors_total{controller="cachebackend"}' in m


def test_status_patch_failure_is_reported_and_retried(api, ctl):
    api.fault(method="PATCH", path_contains="/cachebackends/sp/status", status=422,
              reason="Invalid", message="boom", count=1)
    api.create(CB, NS, cb("sp", {"type": "External", "endpoint": "sp:1"}))
    wait_until(lambda: any("patch CacheBackend status llm/sp: boom" in r.get("error", "")
                           for r in ctl.log_records()), 30, what="wrapped patch error")
    wait_cb(api, "sp", lambda o: (o.get("status") or {}).get("endpoint") == "sp:1",
            "converged after backoff")


def test_deleting_a_backend_garbage_collects_children(api, ctl):
    api.create(CB, NS, cb("gc", managed_spec()))
    wait_until(lambda: api.get(DEPLOY, NS, "gc") and api.get(SVC, NS, "gc"), what="children")
    assert api.delete(CB, NS, "gc") == 200
    wait_until(lambda: api.get(DEPLOY, NS, "gc") is None and api.get(SVC, NS, "gc") is None,
               what="children collected through their controller ownerReferences")


def test_managed_steady_state_survives_server_defaults(api, ctl):
    # CX1 with a real API server's defaulting simulated: defaulted fields must not cause updates.
    api.create(CB, NS, cb("sd", managed_spec()))
    d = wait_until(lambda: api.get(DEPLOY, NS, "sd"), what="deployment")
    ctr = d["spec"]["template"]["spec"]["containers"][0]
    ctr.update({"terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File"})
    pod = d["spec"]["template"]["spec"]
    pod.update({"securityContext": {}, "restartPolicy": "Always", "dnsPolicy": "ClusterFirst"})
    d["spec"]["strategy"] = {"type": "RollingUpdate"}
    code, _ = api.call("PUT", api.path(DEPLOY, NS, "sd"), d)
    assert code == 200
    wait_cb(api, "sd", lambda o: ready(o) is not None, "status")
    time.sleep(1.0)
    api.clear_requests()
    api.patch(CB, NS, "sd", {"metadata": {"annotations": {"touch": "1"}}})
    wait_until(lambda: any(r["method"] == "GET" and r["path"].endswith("/deployments/sd")
                           for r in api.requests()), 20, what="reconcile after touch")
    time.sleep(1.0)
    assert api.writes("/deployments/sd") == [] and api.writes("/services/sd") == []


def test_test_api_server_prunes_and_validates_against_shipped_crds(api):
    # The controller's writes in every test above pass the shipped structural schemas.
    code, out = api.call("POST", api.path(CB, NS), cb("bad", {"deploymentKind": "DaemonSet"}))
    assert code == 422 and "deploymentKind" in out["message"]
    o = api.create(CB, NS, cb("pr", {"type": "memory", "integration": {"failOpen": False}}))
    assert o["spec"] == {"type": "memory", "integration": {}}  # unknown fields pruned
