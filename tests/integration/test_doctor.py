"""`inferencecache doctor` against a local install: the test API server with the quickstart's
CacheBackend, CachePolicy and CacheTenant, the real controller and server, an engine simulator
with its kvevent-subscriber standing in for an injected engine pod. Healthy: exit 0 and the OK
codes of every check. Then seeded faults, each in its own namespace (-n) or with the server
address bent, and the codes doctor must name for them; `kubectl inferencecache doctor` through the
plugin entry `cmake --install` writes."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kubeapi"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (BUILD_DIR, CLI_BIN, SERVER_BIN, SOURCE_DIR, EngineSim, Server,  # noqa: E402
                     Subscriber, doctor, free_port, http_get)
from kubetest import (CB, CPOL, CT, EVENTS, PODS, SVC, CONTROLLER_BIN, Controller, KubeAPI,  # noqa: E402
                      cond, wait_until)

pytestmark = pytest.mark.skipif(
    not all(os.path.exists(b) for b in (CLI_BIN, SERVER_BIN, CONTROLLER_BIN)),
    reason="inferencecache, inferencecache-server or inferencecache-controller not built")

QS = os.path.join(SOURCE_DIR, "config", "quickstart")
NS = "llm-serving"
DOMAIN = "inferencecache.io/cache-domain"


def _quickstart(name):
    return yaml.safe_load(open(os.path.join(QS, name)))


def _create(api, res, obj, ns=None):
    obj = json.loads(json.dumps(obj))
    ns = ns or obj["metadata"].get("namespace") or NS
    obj["metadata"]["namespace"] = ns
    return api.create(res, ns, obj)


def _backend(api, ns, name="sim", domain="sim"):
    cb = _quickstart("cachebackend.yaml")
    cb["metadata"]["name"] = name
    cb["spec"]["engineSelector"]["matchLabels"] = {DOMAIN: domain}
    return _create(api, CB, cb, ns)


def _engine_pod(api, ns, name, cb=None, domain="sim"):
    """An engine pod as the Pod webhook leaves it (cb given: stamped injected-by), Running."""
    md = {"name": name, "labels": {DOMAIN: domain}}
    if cb is not None:
        md["annotations"] = {"inferencecache.io/injected-by": "%s/%s" % (ns, cb["metadata"]["name"]),
                             "inferencecache.io/injected-by-uid": cb["metadata"]["uid"],
                             "inferencecache.io/injected-generation": "1"}
    api.create(PODS, ns, {"metadata": md, "spec": {"nodeName": "n1", "containers": [
        {"name": "vllm", "image": "localhost/inference-cache/fake-engine:0.1.0"}]}})
    api.patch(PODS, ns, name, {"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True"}]}}, sub="status")


@pytest.fixture(scope="module")
def install():
    """The healthy install: quickstart objects, controller, server, one reporting engine."""
    with KubeAPI() as api, Server(["--insecure-disable-auth"]) as srv:
        ctl = Controller(api, ["--server-snapshot-url=%s/snapshot" % srv.snapshot_url,
                               "--server-policy-url=%s/policy" % srv.snapshot_url,
                               "--server-probe-url=%s/probe" % srv.snapshot_url,
                               "--cacheindex-refresh-interval=1s",
                               "--cachepolicy-push-interval=1s"], free_port=free_port)
        with ctl:
            cb = _create(api, CB, _quickstart("cachebackend.yaml"))
            _create(api, CPOL, _quickstart("cachepolicy.yaml"))
            _create(api, CT, _quickstart("cachetenant.yaml"))
            _engine_pod(api, NS, "vllm-sim-a-0", cb)
            model = cb["spec"]["observation"]["modelID"]
            with EngineSim(["--block-size=16"], model=model) as eng, \
                    Subscriber(srv, [eng], replica="vllm-sim-a-0", model=model, tenant=NS):
                body = json.dumps({"model": model, "prompt": list(range(1000, 1128)),
                                   "max_tokens": 1}).encode()
                st, _, out = http_get(eng.url + "/v1/completions", method="POST", data=body,
                                      headers={"Content-Type": "application/json"}, timeout=30)
                assert st == 200, out
                wait_until(lambda: cond(api.get(CB, NS, "sim"), "Ready")["status"] == "True"
                           if cond(api.get(CB, NS, "sim"), "Ready") else False, 60,
                           what="quickstart CacheBackend Ready (KV events observed)")
                yield api, srv
            ctl_logs = ctl.logs()
        assert "Sanitizer" not in ctl_logs


def test_healthy_install_is_all_ok(install):
    api, srv = install
    rc, rep, err = doctor("-n", NS, server=srv, kubeconfig=api.kubeconfig)
    assert rc == 0, json.dumps(rep, indent=1)
    assert rep["summary"]["exitCode"] == 0 and rep["summary"]["warn"] == 0
    for code in ("SV003", "SN004", "PL002", "PB002", "CB006", "EP002", "IX002", "CT002", "CP002"):
        assert code in rep["codes"], (code, rep["codes"])
    assert rep["codes"][:5] == ["SV003", "SN004", "SN003", "PL002", "PB002"]  # fixed order
    ix = [f for f in rep["findings"] if f["code"] == "IX002"][0]
    assert ix["resource"] == "pod/%s/vllm-sim-a-0" % NS and ix["check"] == "IndexParticipation"
    # The human form says the same, ending in the summary line with the exit code.
    p = subprocess.run([CLI_BIN, "doctor", "-n", NS, "--kubeconfig=" + api.kubeconfig,
                        "--server-endpoint=" + srv.grpc_addr,
                        "--snapshot-endpoint=127.0.0.1:%d" % srv.snapshot_port,
                        "--snapshot-token-file=/nonexistent"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.startswith("inferencecache doctor\n\n")
    assert "  OK   CB006  cachebackend/llm-serving/sim\n" in p.stdout
    assert p.stdout.rstrip().endswith("0 WARN, 0 FAIL  (exit 0)")


def test_server_down_fails_sv001(install):
    api, _ = install
    dead = free_port()
    rc, rep, _ = doctor("-n", NS, "--server-endpoint=127.0.0.1:%d" % dead,
                        "--snapshot-endpoint=127.0.0.1:%d" % dead, kubeconfig=api.kubeconfig)
    assert rc == 2
    assert [c for c in rep["codes"] if c[:2] in ("SV", "SN", "PL", "PB")] == \
        ["SV001", "SN001", "PL001", "PB001"]
    assert "IX002" not in rep["codes"]  # no snapshot, no index verdict
    # --config-only leaves the server alone: the cluster checks alone pass.
    rc, rep, _ = doctor("-n", NS, "--config-only", "--server-endpoint=127.0.0.1:%d" % dead,
                        kubeconfig=api.kubeconfig)
    assert rc == 0, rep["codes"]
    assert not [c for c in rep["codes"] if c[:2] in ("SV", "SN", "PL", "PB", "IX")]


def test_wrong_listener_fails_snapshot_policy_and_probe(install):
    api, srv = install
    # The public listener (/healthz, /metrics) instead of the controller-facing one.
    rc, rep, _ = doctor("-n", NS, "--server-endpoint=" + srv.grpc_addr,
                        "--snapshot-endpoint=127.0.0.1:%d" % srv.http_port,
                        kubeconfig=api.kubeconfig)
    assert rc == 2
    by = {f["code"]: f for f in rep["findings"]}
    assert "SV003" in by and "SN001" in by and "PL001" in by and "PB001" in by
    assert "HTTP 404" in by["PB001"]["message"]


def test_unserved_server_discovery_without_endpoint(install):
    api, _ = install
    rc, rep, _ = doctor("-n", NS, kubeconfig=api.kubeconfig)  # no Service in the test cluster
    assert rc == 2
    f = [f for f in rep["findings"] if f["code"] == "SV001"]
    assert len(f) == 1 and "inference-cache-server" in f[0]["message"]
    # Found in another namespace: its cluster DNS name, which does not resolve here.
    api.create(SVC, "elsewhere", {"metadata": {"name": "inference-cache-server"},
                                  "spec": {"ports": [{"name": "grpc", "port": 9090}]}})
    rc, rep, _ = doctor("-n", NS, "--timeout=3s", kubeconfig=api.kubeconfig)
    assert rc == 2
    f = [f for f in rep["findings"] if f["code"] == "SV001"]
    assert len(f) == 1 and f[0]["resource"] == "inference-cache-server.elsewhere.svc:9090", f
    sn = [f for f in rep["findings"] if f["code"] == "SN001"]
    assert sn and sn[0]["resource"] == "http://inference-cache-server.elsewhere.svc:8081/snapshot"


def test_backend_not_ready_and_selector_mismatch(install):
    api, srv = install
    ns = "f-notready"
    _backend(api, ns, domain="nobody")
    wait_until(lambda: "matchedEnginePods" in (api.get(CB, ns, "sim").get("status") or {}), 30,
               what="controller status for the new backend")
    rc, rep, _ = doctor("-n", ns, "--config-only", kubeconfig=api.kubeconfig)
    assert rc == 1, rep["codes"]
    assert rep["codes"][:3] == ["CB001", "CB002", "CB003"]
    assert all(f["resource"] == "cachebackend/%s/sim" % ns for f in rep["findings"][:3])
    assert "CP001" in rep["codes"]  # no CachePolicy there: INFO


def test_engine_pod_without_sidecar(install):
    api, srv = install
    ns = "f-nosidecar"
    _backend(api, ns)
    _engine_pod(api, ns, "engine-0")  # admitted while the webhook was down: no stamp, no sidecar
    rc, rep, _ = doctor("-n", ns, server=srv, kubeconfig=api.kubeconfig)
    assert rc == 1, rep["codes"]
    ep = [f for f in rep["findings"] if f["check"] == "EnginePodInjectionAudit"]
    assert [f["code"] for f in ep] == ["EP001"] and ep[0]["resource"] == "pod/%s/engine-0" % ns
    assert "IX001" not in rep["codes"] and "IX002" not in rep["codes"]


def test_index_missing_a_replica(install):
    api, srv = install
    ns = "f-noindex"
    cb = _backend(api, ns)
    _engine_pod(api, ns, "engine-0", cb)  # injected and running, but its sidecar never reports
    rc, rep, _ = doctor("-n", ns, server=srv, kubeconfig=api.kubeconfig)
    assert rc == 1, rep["codes"]
    ix = [f for f in rep["findings"] if f["check"] == "IndexParticipation"]
    assert [f["code"] for f in ix] == ["IX001"]
    assert ix[0]["resource"] == "pod/%s/engine-0" % ns
    assert "EP002" in rep["codes"]


def test_policy_for_tenant_without_cachetenant(install):
    api, srv = install
    ns = "f-notenant"
    pol = _quickstart("cachepolicy.yaml")
    _create(api, CPOL, pol, ns)
    rc, rep, _ = doctor("-n", ns, "--config-only", kubeconfig=api.kubeconfig)
    assert rc == 1 and rep["codes"] == ["CP004"], rep["codes"]
    assert rep["findings"][0]["resource"] == "cachepolicy/%s/routing" % ns
    # A CacheTenant for that tenant clears it.
    _create(api, CT, {"apiVersion": "inferencecache.io/v1alpha1", "kind": "CacheTenant",
                      "metadata": {"name": "t"}, "spec": {"tenantID": ns}}, ns)
    wait_until(lambda: cond(api.get(CT, ns, "t"), "QuotaExceeded") is not None, 30,
               what="tenant status")
    rc, rep, _ = doctor("-n", ns, "--config-only", kubeconfig=api.kubeconfig)
    assert rc == 0 and rep["codes"] == ["CT002"], rep["codes"]


def test_duplicate_policies_orphan_events_and_unreadable_api(install):
    api, srv = install
    ns = "f-config"
    _backend(api, ns, domain="nobody")
    for name in ("b-policy", "a-policy"):
        pol = _quickstart("cachepolicy.yaml")
        pol["metadata"]["name"] = name
        _create(api, CPOL, pol, ns)
    api.create(EVENTS, ns, {"metadata": {"name": "orphan.1"}, "reason": "NoMatchingCacheBackend",
                            "type": "Warning", "note": "no CacheBackend selects this engine pod",
                            "eventTime": "%sZ" % __import__("datetime").datetime.utcnow()
                            .strftime("%Y-%m-%dT%H:%M:%S.%f"),
                            "regarding": {"kind": "Pod", "namespace": ns, "name": "lonely"}})
    rc, rep, _ = doctor("-n", ns, "--config-only", kubeconfig=api.kubeconfig)
    assert rc == 1
    by = {f["code"]: f for f in rep["findings"]}
    assert "a-policy" in by["CP003"]["message"] and by["OP001"]["resource"] == "pod/%s/lonely" % ns
    # The API server refusing reads: API001 FAIL naming the kind, the rest still runs.
    api.fault(method="GET", path_contains="/namespaces/%s/cachetenants" % ns, status=403,
              reason="Forbidden", count=100)
    try:
        rc, rep, _ = doctor("-n", ns, "--config-only", kubeconfig=api.kubeconfig)
    finally:
        api.call("DELETE", "/_test/faults")
    assert rc == 2
    f = [f for f in rep["findings"] if f["code"] == "API001"]
    assert len(f) == 1 and f[0]["resource"] == "CacheTenant" and f[0]["status"] == "FAIL"
    assert "CP003" in rep["codes"]


def test_kubectl_plugin_runs_doctor(install):
    api, srv = install
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl not installed")
    with tempfile.TemporaryDirectory() as prefix:
        p = subprocess.run(["cmake", "--install", BUILD_DIR, "--prefix", prefix],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stdout + p.stderr
        plugin = os.path.join(prefix, "bin", "kubectl-inferencecache")
        assert os.path.islink(plugin) and os.readlink(plugin) == "inferencecache"
        env = {"PATH": os.path.join(prefix, "bin") + os.pathsep + os.environ.get("PATH", ""),
               "KUBECONFIG": api.kubeconfig, "HOME": prefix}
        rc, rep, err = doctor("-n", NS, server=srv, binary=[kubectl, "inferencecache"], env=env)
        assert rc == 0, (rep["codes"], err)
        assert "IX002" in rep["codes"] and "CB006" in rep["codes"]


def test_tls_grpc_port_needs_the_ca(tmp_path):
    """config/tls: the health call verifies the server with --tls-ca-file; plaintext fails."""
    key, crt = str(tmp_path / "s.key"), str(tmp_path / "s.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", crt, "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    with Server(["--insecure-disable-auth", "--tls-cert-file=" + crt, "--tls-key-file=" + key],
                tls_ca=crt) as srv:
        rc, rep, _ = doctor("--tls-ca-file=" + crt, "--kubeconfig=/nonexistent", server=srv)
        assert rep["codes"][:5] == ["API001", "SV003", "SN004", "SN003", "PL002"], rep["codes"]
        assert rc == 2  # no Kubernetes configuration: said, and the server probes still ran
        rc, rep, _ = doctor("--config-only", "--kubeconfig=/nonexistent", server=srv)
        assert rep["codes"] == ["API001"]
        rc, rep, _ = doctor("--kubeconfig=/nonexistent", server=srv)  # plaintext to a TLS port
        assert "SV001" in rep["codes"]
