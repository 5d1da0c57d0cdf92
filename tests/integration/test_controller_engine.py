"""inferencecache-controller, engine-wired CacheBackends against the test API server: PodLocal
connector status, host-only and events-only paths, the KV-event readiness gate
(AwaitingFirstKVEvent -> NoKVEventsObserved -> KVEventsObserved), the engine-selector count and
the Events emitted on transitions, and the External remote tier."""
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kubeapi"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import free_port  # noqa: E402
from kubetest import (CB, DEPLOY, EVENTS, PODS, SVC, Controller, KubeAPI, cond,  # noqa: E402
                      wait_until, CONTROLLER_BIN)

NS = "eng"
DOMAIN = "inferencecache.io/cache-domain"
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


def podlocal_spec(timeout="3s", **extra):
    spec = {"runtime": "VLLM", "type": "LMCache",
            "lmCache": {"topology": "PodLocal", "podLocal": {"server": {
                "image": "lmcache/server@sha256:" + "a" * 64, "port": 6555, "l1Capacity": "1Gi",
                "maxWorkers": 1, "resources": {}}}},
            "engineSelector": {"matchLabels": {DOMAIN: "d1"}},
            "observation": {"modelID": "m", "firstEventTimeout": timeout}}
    spec.update(extra)
    return spec


def make_cb(api, name, spec):
    return api.create(CB, NS, {"apiVersion": "inferencecache.io/v1alpha1", "kind": "CacheBackend",
                               "metadata": {"name": name}, "spec": spec})


def engine_pod(api, name, cb, ready=True):
    api.create(PODS, NS, {"metadata": {
        "name": name, "labels": {DOMAIN: "d1"},
        "annotations": {"inferencecache.io/injected-by": "%s/%s" % (NS, cb["metadata"]["name"]),
                        "inferencecache.io/injected-by-uid": cb["metadata"]["uid"],
                        "inferencecache.io/injected-generation": str(cb["metadata"]["generation"])}},
        "spec": {"nodeName": "n1", "containers": [{"name": "vllm", "image": "v"}]}})
    api.patch(PODS, NS, name, {"status": {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "initContainerStatuses": [{"name": "lmcache-mp-server", "ready": ready,
                                   "state": {"running": {}} if ready else {"waiting": {}}}]}},
        sub="status")


def get(api, name):
    return api.get(CB, NS, name)


def wait_reason(api, name, reason, timeout=30):
    return wait_until(lambda: (lambda o: o if (cond(o, "Ready") or {}).get("reason") == reason
                               else None)(get(api, name)), timeout, what="Ready " + reason)


def events(api, reason):
    return [e for e in api.list(EVENTS, NS) if e.get("reason") == reason]


def test_host_only_connector_and_kv_gate_transitions(api, ctl):
    cb = make_cb(api, "h", podlocal_spec())
    o = wait_reason(api, "h", "NoEnginePods")
    assert cond(o, "ConnectorReady")["status"] == "False"
    assert o["status"]["matchedEnginePods"] == 0 and o["status"]["engineSelectorMessage"]
    assert o["status"]["health"] == "Pending"
    assert o["status"]["connector"]["topology"] == "PodLocal"
    wait_until(lambda: events(api, "EngineSelectorUnmatched"), 20, what="unmatched event")
    assert api.get(DEPLOY, NS, "h") is None and api.get(SVC, NS, "h") is None  # no children

    engine_pod(api, "engine-1", cb)
    # The 3s window may already be over when we look on a loaded machine: accept both states,
    # the persisted transition is proven by the AwaitingFirstKVEvent Event.
    o = wait_until(lambda: (lambda o: o if (cond(o, "Ready") or {}).get("reason") in (
        "AwaitingFirstKVEvent", "NoKVEventsObserved") else None)(get(api, "h")), 30,
        what="KV gate engaged")
    if cond(o, "Ready")["reason"] == "AwaitingFirstKVEvent":
        assert cond(o, "Progressing")["status"] == "True"
    assert cond(o, "ConnectorReady")["status"] == "True"
    assert o["status"]["connector"]["coveredEnginePods"] == 1
    assert o["status"]["connector"]["enginePodCoverage"][0]["name"] == "engine-1"
    assert "engineSelectorMessage" not in o["status"] and o["status"]["matchedEnginePods"] == 1
    assert o["status"]["firstAvailableAt"]
    wait_until(lambda: events(api, "AwaitingFirstKVEvent"), 20, what="AwaitingFirstKVEvent event")

    # No KV event inside firstEventTimeout (3s): degraded, sticky.
    o = wait_reason(api, "h", "NoKVEventsObserved", timeout=30)
    assert cond(o, "Degraded")["status"] == "True" and o["status"]["health"] == "Degraded"
    assert events(api, "NoKVEventsObserved")

    # The CacheIndex poller publishing a lastEventAt lifts the gate and latches the first event.
    api.patch(CB, NS, "h", {"status": {"indexParticipation": {
        "prefixCount": 3, "lastEventAt": "2026-01-01T00:00:00Z"}}}, sub="status")
    o = wait_reason(api, "h", "KVEventsObserved")
    assert o["status"]["health"] == "Ready"
    assert o["status"]["firstKVEventObservedAt"] == "2026-01-01T00:00:00Z"
    assert cond(o, "Degraded")["status"] == "False"
    wait_until(lambda: events(api, "KVEventsObserved"), 20, what="KVEventsObserved event")
    assert not events(api, "BackendRecovered")  # recovery from NoKVEventsObserved is not announced


def test_connector_unverified_for_stale_generation(api, ctl):
    cb = make_cb(api, "g", podlocal_spec(timeout="1h"))
    engine_pod(api, "engine-g", cb)
    wait_reason(api, "g", "AwaitingFirstKVEvent")
    api.patch(CB, NS, "g", {"spec": {"observation": {"modelID": "m2"}}})  # generation 2
    o = wait_reason(api, "g", "ConnectorInjectionUnverified")
    assert cond(o, "ConnectorReady")["status"] == "Unknown"
    assert o["status"]["observedGeneration"] == 2


def test_events_only_gate_and_mode_flip_sheds_workload(api, ctl):
    spec = podlocal_spec(timeout="1h")
    spec["remoteStorage"] = {"provider": "Redis", "ownership": "Managed"}
    make_cb(api, "e", spec)
    wait_until(lambda: api.get(DEPLOY, NS, "e"), what="managed workload")
    o = wait_until(lambda: (lambda o: o if (o.get("status") or {}).get("remoteStorage") else None)(
        get(api, "e")), what="remote status")
    flip = {"spec": {"integration": {"mode": "EventsOnly"}, "lmCache": None,
                     "remoteStorage": None}}
    api.patch(CB, NS, "e", flip)
    o = wait_reason(api, "e", "AwaitingFirstKVEvent")
    assert "remoteStorage" not in o["status"] and cond(o, "RemoteStorageReady") is None
    assert "endpoint" not in o["status"]  # retracted with the deleted Service
    assert "connector" not in o["status"]
    wait_until(lambda: api.get(DEPLOY, NS, "e") is None and api.get(SVC, NS, "e") is None,
               what="children deleted")


def test_external_remote_tier_mirrors_trimmed_endpoint(api, ctl):
    make_cb(api, "r", {"type": "LMCache", "remoteStorage": {
        "provider": "Redis", "ownership": "External", "endpoint": "  redis.cache:6379 "}})
    o = wait_reason(api, "r", "ExternalEndpointAccepted")
    assert o["status"]["remoteStorage"] == {"provider": "Redis", "endpoint": "redis.cache:6379",
                                            "ready": "True"}
    assert cond(o, "RemoteStorageReady")["status"] == "True"
    assert "endpoint" not in o["status"]  # status.endpoint is not written from remoteStorage
    assert cond(o, "Degraded") is None
    api.patch(CB, NS, "r", {"spec": {"remoteStorage": {"endpoint": "redis://x:1"}}})
    o = wait_reason(api, "r", "ExternalEndpointInvalid")
    assert o["status"]["health"] == "Failed"
    assert cond(o, "RemoteStorageReady")["reason"] == "ExternalEndpointInvalid"
    api.patch(CB, NS, "r", {"spec": {"remoteStorage": {"endpoint": " "}}})
    o = wait_reason(api, "r", "ExternalEndpointMissing")
    assert o["status"]["remoteStorage"]["endpoint"] == ""
    assert o["status"]["remoteStorage"]["ready"] == "False"


def test_sglang_hicache_is_unmanaged_and_clears_conditions(api, ctl):
    make_cb(api, "s", {"type": "External", "endpoint": "x:1"})
    wait_reason(api, "s", "ExternalEndpointAccepted")
    api.patch(CB, NS, "s", {"spec": {"type": "SGLangHiCache", "runtime": "SGLang"}})
    o = wait_until(lambda: (lambda o: o if cond(o, "Ready") is None else None)(get(api, "s")),
                   what="conditions removed")
    assert "health" not in o["status"]
    assert o["status"]["endpoint"] == "x:1"  # a non-managed type keeps the last mirror
    time.sleep(0.5)


def test_engine_pod_events(api, ctl):
    cb = make_cb(api, "pe", podlocal_spec(timeout="1h"))
    engine_pod(api, "inj", cb)
    forged = dict(cb)
    forged["metadata"] = dict(cb["metadata"], uid="not-the-uid")
    engine_pod(api, "forged", forged)
    api.create(PODS, NS, {"metadata": {"name": "skipped", "annotations": {
        "inferencecache.io/skip-inject": "true",
        "inferencecache.io/inject-skipped": "skip-inject-annotation"}},
        "spec": {"containers": [{"name": "c", "image": "i"}]}})
    api.create(PODS, NS, {"metadata": {"name": "not-skipped", "annotations": {
        "inferencecache.io/skip-inject": "no",
        "inferencecache.io/inject-skipped": "skip-inject-annotation"}},
        "spec": {"containers": [{"name": "c", "image": "i"}]}})
    ev = wait_until(lambda: events(api, "InjectedByCacheBackend"), 20, what="injected event")
    assert len(ev) == 1
    assert ev[0]["regarding"]["name"] == "inj" and ev[0]["related"]["name"] == "pe"
    assert ev[0]["note"] == 'Injected engine config from CacheBackend "eng/pe"'
    assert ev[0]["reportingController"] == "engine-pod-events"
    sk = wait_until(lambda: events(api, "SkippedByOperator"), 20, what="skipped event")
    assert [e["regarding"]["name"] for e in sk] == ["skipped"]
    # Updates of the same Pod are not creations: no second event.
    api.patch(PODS, NS, "inj", {"metadata": {"labels": {"x": "y"}}})
    time.sleep(1.0)
    assert len(events(api, "InjectedByCacheBackend")) == 1


def nodelocal_spec(retention=0):
    return {"runtime": "VLLM", "type": "LMCache",
            "lmCache": {"topology": "NodeLocal", "nodeLocal": {
                "idleRetentionSeconds": retention,
                "server": {"image": "lmcache/server@sha256:" + "c" * 64, "port": 6555,
                           "httpPort": 6556, "l1Capacity": "1536Mi", "maxGPUWorkers": 1,
                           "maxCPUWorkers": 2, "resources": {}},
                "scheduling": {"tolerations": [{"key": "gpu", "operator": "Exists"}]}}},
            "remoteStorage": {"provider": "Redis", "ownership": "External",
                              "endpoint": "redis.cache:6379"},
            "engineSelector": {"matchLabels": {DOMAIN: "d1"}},
            "observation": {"modelID": "m", "firstEventTimeout": "1h"}}


def server_pods(api, uid):
    return [p for p in api.list(PODS, NS)
            if (p["metadata"].get("labels") or {}).get("inferencecache.io/cache-backend-uid") == uid]


def test_nodelocal_server_pods_lifecycle_and_connector(api, ctl):
    cb = make_cb(api, "nl", nodelocal_spec())
    uid = cb["metadata"]["uid"]
    engine_pod(api, "engine-a", cb)  # on node n1
    srv = wait_until(lambda: server_pods(api, uid), 30, what="server pod for n1")
    assert len(srv) == 1
    s = srv[0]
    md, spec = s["metadata"], s["spec"]
    assert md["annotations"]["inferencecache.io/node-local-target-node"] == "n1"
    assert md["annotations"]["inferencecache.io/node-local-owner"] == "eng/nl"
    assert md["ownerReferences"][0]["uid"] == uid and md["ownerReferences"][0]["controller"]
    assert md["name"].startswith("nl-") and len(md["name"]) == len("nl-") + 12
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    term = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["nodeSelectorTerms"][0]["matchFields"][0]["values"] == ["n1"]
    assert spec["tolerations"] == [{"key": "gpu", "operator": "Exists"}]
    ctr = spec["containers"][0]
    args = ctr["args"]
    assert args[args.index("--shm-name") + 1] == "lmcache_l1_pool_inferencecache_" + uid
    assert args[args.index("--l1-size-gb") + 1] == "1.5"
    assert args[args.index("--l2-adapter") + 1] == '{"host":"redis.cache","port":6379,"type":"resp"}'
    assert [p["hostPort"] for p in ctr["ports"]] == [6555, 6556]
    assert spec["volumes"][0]["hostPath"] == {"path": "/dev/shm/inference-cache/" + uid,
                                              "type": "DirectoryOrCreate"}
    # Server not ready yet -> pool pending; once it runs on n1 and is Ready -> ConnectorReady.
    o = wait_until(lambda: (lambda o: o if (cond(o, "ConnectorReady") or {}).get("reason")
                            == "NodeLocalServerPoolPending" else None)(get(api, "nl")), 30,
                   what="pool pending")
    api.patch(PODS, NS, md["name"], {"spec": {"nodeName": "n1"}})
    api.patch(PODS, NS, md["name"], {"status": {
        "phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "lmcache-mp-server", "ready": True,
                               "state": {"running": {}}}]}}, sub="status")
    o = wait_until(lambda: (lambda o: o if (cond(o, "ConnectorReady") or {}).get("status")
                            == "True" else None)(get(api, "nl")), 30, what="ConnectorReady")
    conn = o["status"]["connector"]
    assert conn["topology"] == "NodeLocal" and conn["desiredServers"] == 1
    assert conn["readyServers"] == 1 and conn["coveredEnginePods"] == 1
    assert cond(o, "Ready")["reason"] == "ConnectorReady"  # external remote tier: no KV gate

    # Engine gone with idleRetentionSeconds 0 -> the server Pod is deleted.
    api.delete(PODS, NS, "engine-a")
    wait_until(lambda: not server_pods(api, uid), 30, what="idle server deleted")

    # Leaving NodeLocal (to PodLocal) removes any remaining server Pods.
    engine_pod(api, "engine-b", cb)
    wait_until(lambda: server_pods(api, uid), 30, what="server pod again")
    api.patch(CB, NS, "nl", {"spec": {"lmCache": {"topology": "PodLocal", "nodeLocal": None,
                                                  "podLocal": {"server": {
                                                      "image": "x@sha256:" + "d" * 64,
                                                      "port": 6555, "l1Capacity": "1Gi",
                                                      "maxWorkers": 1, "resources": {}}}}}})
    wait_until(lambda: not server_pods(api, uid), 30, what="server pods cleaned up")


def test_kernel_check_and_crash_loop_advisories(api, ctl):
    cb = make_cb(api, "k", podlocal_spec(timeout="1h"))
    api.create(PODS, NS, {"metadata": {
        "name": "engine-k", "labels": {DOMAIN: "d1"},
        "annotations": {"inferencecache.io/injected-by": "%s/k" % NS,
                        "inferencecache.io/injected-by-uid": cb["metadata"]["uid"],
                        "inferencecache.io/injected-generation": "1"}},
        "spec": {"nodeName": "n1",
                 "initContainers": [{"name": "lmcache-kernel-check", "image": "k",
                                     "env": [{"name": "KERNEL_CHECK_STRICT", "value": "1"}]}],
                 "containers": [{"name": "vllm", "image": "v"}]}})

    def status(kernel_msg, engine_waiting=None):
        st = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
              "initContainerStatuses": [
                  {"name": "lmcache-mp-server", "ready": True, "state": {"running": {}}},
                  {"name": "lmcache-kernel-check", "ready": False,
                   "state": {"terminated": {"exitCode": 0 if kernel_msg == "OK" else 1,
                                            "message": kernel_msg}}}],
              "containerStatuses": [{"name": "vllm", "ready": engine_waiting is None,
                                     "state": {"waiting": {"reason": engine_waiting}}
                                     if engine_waiting else {"running": {}}}]}
        api.patch(PODS, NS, "engine-k", {"status": st}, sub="status")

    status("FAIL: no compatible kernels\n")
    o = wait_reason(api, "k", "EngineKernelDegraded")
    k = cond(o, "EngineKernelsHealthy")
    assert k["status"] == "False" and k["reason"] == "KernelLoadFailed"
    assert o["status"]["health"] == "Failed"

    status("OK", engine_waiting="CrashLoopBackOff")
    o = wait_until(lambda: (lambda o: o if cond(o, "EngineCompatibility") and (cond(
        o, "EngineKernelsHealthy") or {}).get("reason") == "KernelsHealthy" else None)(
        get(api, "k")), 30, what="EngineCompatibility with healthy kernels")
    assert cond(o, "EngineCompatibility")["reason"] == "InjectedEngineCrashLooping"
    assert cond(o, "EngineKernelsHealthy")["reason"] == "KernelsHealthy"
    assert cond(o, "Ready")["reason"] != "EngineKernelDegraded"  # advisory never gates Ready
    wait_until(lambda: events(api, "InjectedEngineCrashLooping"), 20, what="crash-loop event")

    status("OK")
    wait_until(lambda: (lambda o: o if cond(o, "EngineCompatibility") is None else None)(
        get(api, "k")), 30, what="EngineCompatibility cleared")
