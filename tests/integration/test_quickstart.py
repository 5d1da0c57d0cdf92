"""docs/quickstart.md end to end on loopback: the engine simulator started with the arguments of
config/quickstart/engine-simulator.yaml, a kvevent-subscriber wired the way the Pod webhook wires
it for config/quickstart/cachebackend.yaml, the real server, and the gateway example
(docs/examples/gateway_lookup.py) getting PREFIX_MATCH for a simulated prompt in both forms
(token ids, and block hashes computed gateway-side), AFFINITY_HINT for an unseen prompt and no
hint for another tenant."""
import os
import subprocess

import pytest
import yaml

from harness import BUILD_DIR, SOURCE_DIR, Server, free_port, wait_until

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


def test_quickstart_prompt_routes_to_the_replica_holding_it():
    pytest.importorskip("xxhash")
    port = free_port()
    args = [a.replace("tcp://0.0.0.0:5557", "tcp://127.0.0.1:%d" % port) for a in _sim_args()]
    assert "--start-token=1000" in args and "--num-blocks=8" in args and "--block-size=16" in args
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
                                "--hash-scheme=vllm", "--http-bind-address=",
                                "--stats-interval=1h"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # Prompt 2 of the simulator: token ids 1256 .. 1383.
            wait_until(lambda: "tokens -> PREFIX_MATCH" in _lookup(srv, 1000 + 2 * 128, 128), 60,
                       interval=0.5, what="the simulated prompt indexed")
            out = _lookup(srv, 1000 + 2 * 128, 128)
            assert "tokens -> PREFIX_MATCH: route to vllm-sim-a-abc12 (matched_tokens=128" in out
            assert "chain  -> PREFIX_MATCH: route to vllm-sim-a-abc12 (matched_tokens=128" in out
            # The first 80 tokens of prompt 0: 5 full blocks (the trailing partial one is not hashed).
            # The simulator republishes each prompt every 8 s (4 prompts, 2 s apart), and a
            # subscriber joining late misses the first round: wait for prompt 0's turn.
            wait_until(lambda: "chain  -> PREFIX_MATCH" in _lookup(srv, 1000, 80), 60,
                       interval=0.5, what="prompt 0 indexed")
            out = _lookup(srv, 1000, 80)
            assert "chain  -> PREFIX_MATCH: route to vllm-sim-a-abc12 (matched_tokens=80" in out
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
