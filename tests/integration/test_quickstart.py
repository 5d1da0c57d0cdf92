"""docs/quickstart.md end to end on loopback: the engine simulator started with the arguments of
config/quickstart/engine-simulator.yaml (simulator mode: OpenAI endpoints, /metrics, KV events as
requests fill its cache), a kvevent-subscriber wired the way the Pod webhook wires it for
config/quickstart/cachebackend.yaml, the real server, a client's completion, and the gateway example
(docs/examples/gateway_lookup.py) getting PREFIX_MATCH for a simulated prompt in both forms
(token ids, and block hashes computed gateway-side), AFFINITY_HINT for an unseen prompt and no
hint for another tenant."""
import json
import os
import subprocess

import pytest
import yaml

from harness import BUILD_DIR, SOURCE_DIR, Server, free_port, http_get, wait_until

QS = os.path.join(SOURCE_DIR, "config", "quickstart")
EXAMPLE = os.path.join(SOURCE_DIR, "docs", "examples", "gateway_lookup.py")


def _sim_args():
    deps = list(yaml.safe_load_all(open(os.path.join(QS, "engine-simulator.yaml"))))
    assert [d["metadata"]["name"] for d in deps] == ["vllm-sim-a", "vllm-sim-b"]
    c = deps[0]["spec"]["template"]["spec"]["containers"][0]
    assert c["name"] == "vllm"
    return c["args"]


def _backend():
    return yaml.safe_load(open(os.path.join(QS, "cachebackend.yaml")))


def _lookup(srv, first, count, tenant="llm-serving"):
    p = subprocess.run(["/usr/bin/python3", EXAMPLE, srv.grpc_addr, "demo-model", tenant,
                        str(first), str(count), "--deadline-ms=5000"], cwd=SOURCE_DIR,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


def _answers(url, needle=None):
    """True when url answers 200 (and its body holds needle); False while it is not up."""
    try:
        st, _, body = http_get(url, timeout=2)
    except OSError:
        return False
    return st == 200 and (needle is None or needle in body)


def _warm(engine_url, first, count, lookup):
    """Sends the prompt first .. first+count-1 (token ids) to the simulated engine, as a client
    of vllm-sim-a would, until `lookup()` sees it indexed. A subscriber that joined the engine's
    PUB socket a moment too late misses those events (ZeroMQ drops them; the quickstart's engines
    have no replay socket): then the cache is reset and the prompt sent again."""
    body = json.dumps({"model": "demo-model", "prompt": list(range(first, first + count)),
                       "max_tokens": 1}).encode()
    for _ in range(5):
        st, _, out = http_get(engine_url + "/v1/completions", method="POST", data=body,
                              headers={"Content-Type": "application/json"}, timeout=30)
        assert st == 200, out
        try:
            return wait_until(lookup, 10, interval=0.3, what="prompt %d indexed" % first)
        except AssertionError:
            http_get(engine_url + "/reset_prefix_cache", method="POST", data=b"", timeout=10)
    raise AssertionError("prompt %d never indexed" % first)


def test_quickstart_prompt_routes_to_the_replica_holding_it():
    pytest.importorskip("xxhash")
    port, http_port, sub_port = free_port(), free_port(), free_port()
    args = [a.replace("tcp://0.0.0.0:5557", "tcp://127.0.0.1:%d" % port)
             .replace("=0.0.0.0:8000", "=127.0.0.1:%d" % http_port) for a in _sim_args()]
    for want in ("--http-bind-address=127.0.0.1:%d" % http_port, "--model=demo-model",
                 "--block-size=16", "--encoding=vllm-map"):
        assert want in args, args  # simulator mode, what the sidecar and the walkthrough expect
    engine_url = "http://127.0.0.1:%d" % http_port
    cb = _backend()
    assert cb["spec"]["integration"]["mode"] == "EventsOnly"
    with Server(["--insecure-disable-auth"]) as srv:
        eng = subprocess.Popen([os.path.join(BUILD_DIR, "src", "fake-engine", "fake-engine")] + args,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # What the webhook injects for this CacheBackend (lib/admission), on loopback.
        sub = subprocess.Popen([os.path.join(BUILD_DIR, "src", "subscriber", "kvevent-subscriber"),
                                "--engine-endpoint=tcp://127.0.0.1:%d" % port,
                                "--server=" + srv.grpc_addr, "--replica-id=vllm-sim-a-abc12",
                                "--tenant-id=llm-serving",
                                "--model-id=" + cb["spec"]["observation"]["modelID"],
                                "--hash-scheme=vllm",
                                "--engine-metrics-url=%s/metrics" % engine_url,
                                "--http-bind-address=127.0.0.1:%d" % sub_port],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: _answers(engine_url + "/health"), 30,
                       what="engine simulator /health")
            wait_until(lambda: _answers("http://127.0.0.1:%d/metrics" % sub_port,
                                        b"kvevent_subscriber_server_connected 1"), 30,
                       what="sidecar connected to the server")
            # A client's prompt: token ids 1256 .. 1383 (8 blocks of 16) sent to vllm-sim-a.
            _warm(engine_url, 1256, 128,
                  lambda: "tokens -> PREFIX_MATCH" in _lookup(srv, 1256, 128))
            out = _lookup(srv, 1256, 128)
            assert "tokens -> PREFIX_MATCH: route to vllm-sim-a-abc12 (matched_tokens=128" in out
            assert "chain  -> PREFIX_MATCH: route to vllm-sim-a-abc12 (matched_tokens=128" in out
            # Another prompt, looked up by its first 80 tokens: 5 full blocks (the trailing
            # partial one is not hashed).
            _warm(engine_url, 1000, 128,
                  lambda: "chain  -> PREFIX_MATCH" in _lookup(srv, 1000, 80))
            out = _lookup(srv, 1000, 80)
            assert "chain  -> PREFIX_MATCH: route to vllm-sim-a-abc12 (matched_tokens=80" in out
            # The sidecar scrapes the simulator's /metrics: the replica's load reaches the index.
            wait_until(lambda: b'"load"' in http_get(srv.snapshot_url + "/snapshot")[2], 30,
                       what="load sample from the engine's /metrics")
            # A prompt nobody holds: one replica by consistent hash, so repeats land together.
            out = _lookup(srv, 900000, 128)
            assert "tokens -> AFFINITY_HINT: route to vllm-sim-a-abc12 (matched_tokens=0" in out
            # Another tenant's view: nothing, route as usual.
            out = _lookup(srv, 1000, 128, tenant="someone-else")
            assert "tokens -> UNKNOWN_TENANT: no hint, use the default balancer" in out
        finally:
            for p in (sub, eng):
                p.terminate()
                p.wait(timeout=10)


def test_webhook_injects_the_sidecar_into_the_simulated_engine_pods(tmp_path):
    """The quickstart's pods, admitted by the real Pod webhook with the quickstart CacheBackend:
    a kvevent-subscriber sidecar wired to the simulator's endpoint, model and tenant."""
    import base64
    import json
    import jsonpatch
    from test_webhooks import SUBSCRIBER_IMAGE, Hook
    hook = Hook(str(tmp_path))
    try:
        cb = _backend()
        cb["metadata"].update({"uid": "5b0e4d3c-1111-4222-8333-944455556666", "generation": 1})
        hook.set_objects([cb])
        deps = list(yaml.safe_load_all(open(os.path.join(QS, "engine-simulator.yaml"))))
        tpl = deps[0]["spec"]["template"]
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": dict(tpl["metadata"], name="vllm-sim-a-abc12", namespace="llm-serving"),
               "spec": tpl["spec"]}
        resp = hook.review("/mutate--v1-pod", pod, ns="llm-serving")
        assert resp["allowed"] is True
        patched = jsonpatch.apply_patch(pod, json.loads(base64.b64decode(resp["patch"])))
        side = [c for c in patched["spec"]["containers"] if c["name"] == "kvevent-subscriber"]
        assert len(side) == 1, patched["spec"]["containers"]
        args = side[0]["args"]
        assert side[0]["image"] == SUBSCRIBER_IMAGE
        for want in ("--engine-endpoint=tcp://127.0.0.1:5557", "--model-id=demo-model",
                     "--hash-scheme=vllm", "--replica-id=$(POD_NAME)", "--tenant-id=$(POD_NAMESPACE)"):
            assert want in args, args
        assert side[0]["securityContext"]["runAsUser"] == 65532
    finally:
        hook.stop()
