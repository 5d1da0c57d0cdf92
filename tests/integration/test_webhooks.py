"""Admission webhooks over HTTPS: AdmissionReview round trips with curl against ic-webhook-server
(the controller's webhook server without reconcilers), JSON Patch applied with python3-jsonpatch,
zero operations on re-admission, namespace-wide checks fed from a listing file, certificate reload."""
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time

import jsonpatch
import pytest
import yaml

SRC = os.environ.get("IC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("IC_BUILD_DIR", os.path.join(SRC, "build"))
SERVER = os.path.join(BUILD, "src", "webhook-server", "ic-webhook-server")
SUBSCRIBER_IMAGE = "registry.example/kvevent-subscriber:v1"
DIGEST = "registry.example/lmcache@sha256:" + "ab" * 32


def make_cert(d, name):
    crt, key = os.path.join(d, name + ".crt"), os.path.join(d, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt,
                    "-days", "2", "-subj", "/CN=webhook-service.inference-cache-system.svc",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=120)
    return crt, key


class Hook:
    def __init__(self, d):
        self.dir = d
        self.ca, _ = make_cert(d, "first")
        self.crt, self.key = os.path.join(d, "tls.crt"), os.path.join(d, "tls.key")
        shutil.copy(os.path.join(d, "first.crt"), self.crt)
        shutil.copy(os.path.join(d, "first.key"), self.key)
        self.objects = os.path.join(d, "objects.json")
        self.set_objects([])
        self.proc = subprocess.Popen([SERVER, "--bind=127.0.0.1:0", f"--cert={self.crt}", f"--key={self.key}",
                                      f"--objects={self.objects}", f"--kvevent-subscriber-image={SUBSCRIBER_IMAGE}",
                                      "--policy-server-grpc-address=inference-cache-server.test.svc:9090"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # "listening <port>" once serving (blocks until ready)
        assert line.startswith("listening "), (line, self.proc.stderr.read() if self.proc.poll() is not None else "")
        self.port = int(line.split()[1])

    def set_objects(self, objs):
        tmp = self.objects + ".tmp"
        with open(tmp, "w") as f:
            json.dump(objs, f)
        os.replace(tmp, self.objects)

    def post(self, path, body, cacert=None, raw=False):
        data = body if isinstance(body, str) else json.dumps(body)
        p = subprocess.run(["curl", "-sS", "--max-time", "60", "--cacert", cacert or self.ca, "-H",
                            "Content-Type: application/json", "-w", "\n%{http_code}", "--data-binary", "@-",
                            f"https://127.0.0.1:{self.port}{path}"],
                           input=data, capture_output=True, text=True, timeout=90)
        assert p.returncode == 0, p.stderr
        text, code = p.stdout.rsplit("\n", 1)
        if raw:
            return int(code), text
        assert code == "200", (code, text)
        return json.loads(text)

    def review(self, path, obj, op="CREATE", old=None, ns="llm"):
        req = {"uid": "3f1b7c9e", "operation": op, "namespace": ns, "object": obj, "oldObject": old,
               "kind": {"group": "", "version": "v1", "kind": obj.get("kind", "") if obj else ""}}
        out = self.post(path, {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
        assert out["apiVersion"] == "admission.k8s.io/v1" and out["kind"] == "AdmissionReview"
        assert out["response"]["uid"] == "3f1b7c9e"
        return out["response"]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def hook():
    d = tempfile.mkdtemp(prefix="ic-webhook-")
    h = Hook(d)
    yield h
    h.stop()
    shutil.rmtree(d, ignore_errors=True)


CB_PATH = "/validate-inferencecache-io-v1alpha1-cachebackend"
POD_PATH = "/mutate--v1-pod"


def cb(name="cb", spec=None, ns="llm", **meta):
    o = {"apiVersion": "inferencecache.io/v1alpha1", "kind": "CacheBackend",
         "metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}", "generation": 2, **meta}}
    if spec is not None:
        o["spec"] = spec
    return o


def vllm_cb(name="chat-vllm", domain="chat"):
    return cb(name, {
        "runtime": "VLLM", "type": "LMCache",
        "engineSelector": {"matchLabels": {"inferencecache.io/cache-domain": domain}},
        "lmCache": {"topology": "PodLocal", "podLocal": {"server": {
            "image": DIGEST, "port": 5555, "l1Capacity": "4Gi", "maxWorkers": 2,
            "resources": {"requests": {"cpu": "1", "memory": "6Gi"}, "limits": {"memory": "6Gi"}}}}},
        "observation": {"modelID": "org/model-7b"}})


def pod(labels, containers, annotations=None):
    md = {"name": "engine-0", "namespace": "llm", "labels": labels}
    if annotations:
        md["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md,
            "spec": {"containers": containers, "restartPolicy": "Always", "futureField": {"kept": True}}}


def apply(obj, resp):
    if "patch" not in resp:
        return obj, []
    assert resp["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(resp["patch"]))
    return jsonpatch.apply_patch(obj, ops), ops


def causes(resp):
    return {(c["field"], c["reason"]) for c in resp["status"]["details"]["causes"]}


def load_sample(name):
    with open(os.path.join(SRC, "config", "samples", name)) as f:
        return yaml.safe_load(f)


def test_cachebackend_seed_and_external_samples_admitted(hook):
    for name in ("cachebackend_seed.yaml", "cachebackend_external.yaml", "cachebackend_managed_redis.yaml"):
        obj = load_sample(name)
        assert hook.review(CB_PATH, obj)["allowed"], name
        assert hook.review(CB_PATH, obj, op="UPDATE", old=obj)["allowed"], name


def test_cachebackend_defaulting_adds_nothing(hook):
    for obj in (cb(), cb(spec={}), cb(spec={"type": "memory"})):
        r = hook.review("/mutate-inferencecache-io-v1alpha1-cachebackend", obj)
        assert r["allowed"] and "patch" not in r


def test_cachebackend_invalid_typed_backend_denied_with_field_causes(hook):
    bad = cb(spec={"runtime": "VLLM", "integration": {"role": "ReadOnly"},
                   "engineSelector": {"matchLabels": {"inferencecache.io/cache-domain": "x", "app": "y"}}})
    r = hook.review(CB_PATH, bad)
    assert not r["allowed"]
    assert r["status"]["code"] == 422 and r["status"]["reason"] == "Invalid"
    assert ("spec.lmCache", "FieldValueRequired") in causes(r)
    assert ("spec.integration.role", "FieldValueNotSupported") in causes(r)
    assert ("spec.engineSelector.matchLabels", "FieldValueForbidden") in causes(r)
    assert r["status"]["message"].startswith('CacheBackend.inferencecache.io "cb" is invalid: [')


def test_cachebackend_update_rejects_only_new_errors(hook):
    old = cb(spec={"type": "External", "remoteStorage": {"provider": "Redis", "ownership": "Managed"}})
    assert not hook.review(CB_PATH, old)["allowed"]
    new = json.loads(json.dumps(old))
    new["spec"]["backendConfig"] = {"k": "v"}
    assert hook.review(CB_PATH, new, op="UPDATE", old=old)["allowed"]
    assert hook.review(CB_PATH, new, op="DELETE", old=old)["allowed"]


def test_cachebackend_duplicate_cache_domain_denied_even_on_update(hook):
    hook.set_objects([vllm_cb("aaa-owner")])
    try:
        mine = vllm_cb("chat-vllm")
        r = hook.review(CB_PATH, mine)
        assert not r["allowed"]
        assert ("spec.engineSelector.matchLabels[inferencecache.io/cache-domain]", "FieldValueForbidden") in causes(r)
        assert 'already owned by CacheBackend "aaa-owner"' in r["status"]["message"]
        assert not hook.review(CB_PATH, mine, op="UPDATE", old=mine)["allowed"]
        other_ns = vllm_cb("chat-vllm")
        other_ns["metadata"]["namespace"] = "elsewhere"
        assert hook.review(CB_PATH, other_ns, ns="elsewhere")["allowed"]
    finally:
        hook.set_objects([])


def test_cachepolicy_one_per_namespace(hook):
    pol = {"apiVersion": "inferencecache.io/v1alpha1", "kind": "CachePolicy",
           "metadata": {"name": "second", "namespace": "llm"}, "spec": {"eviction": "LRU"}}
    first = dict(pol, metadata={"name": "first", "namespace": "llm"})
    hook.set_objects([first])
    try:
        r = hook.review("/validate-inferencecache-io-v1alpha1-cachepolicy", pol)
        assert not r["allowed"] and ("metadata.name", "FieldValueForbidden") in causes(r)
        assert hook.review("/validate-inferencecache-io-v1alpha1-cachepolicy", pol, op="UPDATE", old=pol)["allowed"]
        r = hook.review("/mutate-inferencecache-io-v1alpha1-cachepolicy", pol)
        assert r["allowed"] and "patch" not in r
    finally:
        hook.set_objects([])


def test_cachetenant_reserved_probe_and_duplicate_tenant(hook):
    def ct(name, tid):
        return {"apiVersion": "inferencecache.io/v1alpha1", "kind": "CacheTenant",
                "metadata": {"name": name, "namespace": "llm"}, "spec": {"tenantID": tid}}
    path = "/validate-inferencecache-io-v1alpha1-cachetenant"
    r = hook.review(path, ct("probe", "inferencecache.io/probe"))
    assert not r["allowed"] and ("spec.tenantID", "FieldValueInvalid") in causes(r)
    hook.set_objects([ct("a", "acme")])
    try:
        r = hook.review(path, ct("b", "acme"))
        assert not r["allowed"] and 'claimed by CacheTenant "a"' in r["status"]["message"]
        assert hook.review(path, ct("c", "fresh"))["allowed"]
        r = hook.review("/mutate-inferencecache-io-v1alpha1-cachetenant", ct("d", "acme"))
        assert r["allowed"] and "patch" not in r  # the tenant defaulter is a no-op
    finally:
        hook.set_objects([])


VLLM_ENGINE = {"name": "vllm", "image": "vllm/vllm-openai:v0.9.2",
               "args": ["--model", "org/model-7b", "--port", "8001", "--tensor-parallel-size", "2"],
               "env": [{"name": "HF_HOME", "value": "/models"}],
               "resources": {"limits": {"nvidia.com/gpu": "2"}}}


def test_pod_injection_patch_applies_and_readmission_is_zero_ops(hook):
    hook.set_objects([vllm_cb()])
    try:
        p = pod({"inferencecache.io/cache-domain": "chat", "app": "chat"}, [VLLM_ENGINE])
        r = hook.review(POD_PATH, p)
        assert r["allowed"]
        injected, ops = apply(p, r)
        assert ops, "expected a JSON Patch"
        ann = injected["metadata"]["annotations"]
        assert ann["inferencecache.io/injected-by"] == "llm/chat-vllm"
        assert ann["inferencecache.io/injected-by-uid"] == "uid-chat-vllm"
        assert ann["inferencecache.io/injected-generation"] == "2"
        assert injected["metadata"]["labels"]["inferencecache.io/lmcache-mp-metrics"] == "true"
        assert injected["spec"]["futureField"] == {"kept": True}
        eng = injected["spec"]["containers"][0]
        i = eng["args"].index("--kv-transfer-config")
        kv = json.loads(eng["args"][i + 1])
        assert kv["kv_connector"] == "LMCacheMPConnector" and kv["kv_role"] == "kv_both"
        assert kv["kv_connector_extra_config"] == {"lmcache.mp.host": "tcp://127.0.0.1", "lmcache.mp.port": "5555"}
        assert "--disable-hybrid-kv-cache-manager" in eng["args"]
        env = {e["name"]: e.get("value") for e in eng["env"]}
        assert env["PYTHONHASHSEED"] == "0" and env["INFERENCECACHE_FAIL_OPEN"] == "true" and env["HF_HOME"] == "/models"
        assert eng["image"] == VLLM_ENGINE["image"] and eng["resources"] == VLLM_ENGINE["resources"]
        srv = {c["name"]: c for c in injected["spec"]["initContainers"]}["lmcache-mp-server"]
        assert srv["image"] == DIGEST and srv["restartPolicy"] == "Always"
        assert srv["args"][:5] == ["server", "--host", "127.0.0.1", "--port", "5555"]
        assert "--l1-size-gb" in srv["args"] and srv["args"][srv["args"].index("--l1-size-gb") + 1] == "4"
        vols = {v["name"]: v for v in injected["spec"]["volumes"]}
        assert vols["lmcache-mp-shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "5Gi"}
        side = {c["name"]: c for c in injected["spec"]["containers"]}["kvevent-subscriber"]
        assert side["image"] == SUBSCRIBER_IMAGE
        assert "--server=inference-cache-server.test.svc:9090" in side["args"]
        assert "--engine-metrics-url=http://127.0.0.1:8001/metrics" in side["args"]
        assert "--model-id=org/model-7b" in side["args"] and "--hash-scheme=vllm" in side["args"]
        # re-admitting the injected Pod yields zero operations
        again = hook.review(POD_PATH, injected)
        assert again["allowed"] and "patch" not in again, again
    finally:
        hook.set_objects([])


def test_pod_without_match_passes_and_forged_stamps_are_removed(hook):
    hook.set_objects([vllm_cb()])
    try:
        plain = pod({"app": "other"}, [VLLM_ENGINE])
        r = hook.review(POD_PATH, plain)
        assert r["allowed"] and "patch" not in r
        forged = pod({"app": "other"}, [VLLM_ENGINE], {"inferencecache.io/injected-by": "llm/forged"})
        out, ops = apply(forged, hook.review(POD_PATH, forged))
        assert "annotations" not in out["metadata"] and ops
    finally:
        hook.set_objects([])


def test_pod_matching_two_backends_is_denied(hook):
    hook.set_objects([vllm_cb("a"), vllm_cb("b")])
    try:
        r = hook.review(POD_PATH, pod({"inferencecache.io/cache-domain": "chat"}, [VLLM_ENGINE]))
        assert not r["allowed"] and "(a, b)" in r["status"]["message"]
    finally:
        hook.set_objects([])


def test_pod_fails_open_when_listing_fails(hook):
    with open(hook.objects, "w") as f:
        f.write("not json")
    try:
        r = hook.review(POD_PATH, pod({"inferencecache.io/cache-domain": "chat"}, [VLLM_ENGINE]))
        assert r["allowed"] and "patch" not in r
    finally:
        hook.set_objects([])


def test_bad_bodies_get_400_and_delete_is_allowed(hook):
    code, text = hook.post(CB_PATH, "{not json", raw=True)
    assert code == 400
    code, _ = hook.post("/no-such-webhook", "{}", raw=True)
    assert code == 404
    assert hook.review(CB_PATH, cb(spec={"runtime": "VLLM"}), op="DELETE")["allowed"]
    # the API server appends ?timeout=10s to the configured path
    out = hook.post(CB_PATH + "?timeout=10s", {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                               "request": {"uid": "q", "operation": "CREATE", "object": cb()}})
    assert out["response"]["allowed"] and out["response"]["uid"] == "q"


def test_certificate_rotation_is_picked_up(hook):
    new_crt, new_key = make_cert(hook.dir, "second")
    shutil.copy(new_key, hook.key + ".new")
    shutil.copy(new_crt, hook.crt + ".new")
    os.replace(hook.key + ".new", hook.key)
    os.replace(hook.crt + ".new", hook.crt)
    future = time.time() + 5
    os.utime(hook.crt, (future, future))
    os.utime(hook.key, (future, future))
    deadline = time.time() + 60
    while True:
        p = subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", new_crt, "-o", "/dev/null", "-w",
                            "%{http_code}", "-H", "Content-Type: application/json", "--data-binary", "{}",
                            f"https://127.0.0.1:{hook.port}{CB_PATH}"], capture_output=True, text=True, timeout=40)
        if p.returncode == 0:
            break
        assert time.time() < deadline, p.stderr
        time.sleep(0.5)
    hook.ca = new_crt
    assert hook.review(CB_PATH, cb(spec={}))["allowed"]


# ---- the real controller serving the webhooks, listing through the Kubernetes API ---------------

def test_controller_binary_serves_webhooks_with_live_listing():
    import sys
    sys.path.insert(0, os.path.join(SRC, "tests", "kubeapi"))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from harness import free_port
    from kubetest import CB as CB_RES, Controller, KubeAPI, CONTROLLER_BIN, wait_until
    if not os.path.exists(CONTROLLER_BIN):
        pytest.skip("inferencecache-controller not built")
    d = tempfile.mkdtemp(prefix="ic-ctl-webhook-")
    try:
        crt, key = make_cert(d, "serving")
        shutil.copy(crt, os.path.join(d, "tls.crt"))
        shutil.copy(key, os.path.join(d, "tls.key"))
        port = free_port()
        with KubeAPI() as api:
            owner = vllm_cb("aaa-owner")
            owner["metadata"].pop("uid")
            api.create(CB_RES, "llm", owner)
            args = ["--cacheindex-refresh-interval=1h", "--cachepolicy-push-interval=1h",
                    f"--webhook-bind-address=127.0.0.1:{port}", f"--webhook-cert-dir={d}",
                    f"--kvevent-subscriber-image={SUBSCRIBER_IMAGE}"]
            with Controller(api, args, free_port=free_port):
                def post(path, obj):
                    body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                       "request": {"uid": "c1", "operation": "CREATE", "namespace": "llm",
                                                   "object": obj}})
                    p = subprocess.run(["curl", "-sS", "--max-time", "30", "--cacert", crt, "-H",
                                        "Content-Type: application/json", "--data-binary", "@-",
                                        f"https://127.0.0.1:{port}{path}"],
                                       input=body, capture_output=True, text=True, timeout=60)
                    return json.loads(p.stdout)["response"] if p.returncode == 0 and p.stdout else None

                first = wait_until(lambda: post(CB_PATH, vllm_cb("chat-vllm")), 60, what="controller webhook")
                assert not first["allowed"]
                assert 'already owned by CacheBackend "aaa-owner"' in first["status"]["message"]
                r = post(POD_PATH, pod({"inferencecache.io/cache-domain": "chat"}, [VLLM_ENGINE]))
                injected, ops = apply(pod({"inferencecache.io/cache-domain": "chat"}, [VLLM_ENGINE]), r)
                assert ops and injected["metadata"]["annotations"]["inferencecache.io/injected-by"] == "llm/aaa-owner"
                assert post(POD_PATH, injected).get("patch") is None
    finally:
        shutil.rmtree(d, ignore_errors=True)
