"""CRD manifests vs samples vs lib/api: every sample validates against its CRD's openAPIV3Schema
(python3-jsonschema) and through lib/api (ic-api-check); a table of invalid objects is rejected by
both with the same field path; the CacheBackend contract's schema statements S1-S13 (listed at the
tests below) run against the shipped manifest."""
import copy
import glob
import json
import os
import re
import shutil
import subprocess

import jsonschema
import pytest
import yaml

SRC = os.environ.get("IC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("IC_BUILD_DIR", os.path.join(SRC, "build"))
CHECK = os.path.join(BUILD, "src", "api-check", "ic-api-check")
CRD_DIR = os.path.join(SRC, "config", "crd", "bases")
SAMPLES = os.path.join(SRC, "config", "samples")


def load_crds():
    crds = {}
    for path in glob.glob(os.path.join(CRD_DIR, "*.yaml")):
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    crds[doc["spec"]["names"]["kind"]] = doc
    return crds


CRDS = load_crds()


def schema_of(kind):
    return CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def k8s_path(err):
    """jsonschema error -> Kubernetes-style field path (spec.a.b[0].c)."""
    out = ""
    for p in err.absolute_path:
        out += f"[{p}]" if isinstance(p, int) else (("." if out else "") + str(p))
    if err.validator == "required":
        m = re.match(r"'([^']+)' is a required property", err.message)
        if m:
            out += ("." if out else "") + m.group(1)
    return out


def schema_errors(obj):
    v = jsonschema.Draft7Validator(schema_of(obj["kind"]))
    return sorted({k8s_path(e) for e in v.iter_errors(obj)})


def api_check(obj, *flags):
    p = subprocess.run([CHECK] + list(flags), input=json.dumps(obj), capture_output=True, text=True,
                       timeout=60)
    assert p.returncode in (0, 1), p.stderr
    res = json.loads(p.stdout)[0]
    return res, p.returncode


def samples():
    out = []
    for path in sorted(glob.glob(os.path.join(SAMPLES, "*.yaml"))):
        if path.endswith("kustomization.yaml"):
            continue
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    out.append(pytest.param(doc, id=f"{os.path.basename(path)}:{doc['kind']}"))
    return out


def test_six_crds_present():
    assert sorted(CRDS) == sorted(["CacheBackend", "CachePolicy", "CacheTenant", "CacheIndex", "PromptTemplate",
                                   "PDTopology"])


@pytest.mark.parametrize("obj", samples())
def test_sample_valid_against_crd_schema_and_lib_api(obj):
    assert schema_errors(obj) == []
    res, rc = api_check(obj)
    assert rc == 0 and res["valid"], res


def test_every_kind_has_a_sample():
    kinds = {p.values[0]["kind"] for p in samples()}
    assert kinds == set(CRDS)


def cb(spec=None, status=None):
    o = {"apiVersion": "inferencecache.io/v1alpha1", "kind": "CacheBackend",
         "metadata": {"name": "x", "namespace": "llm-serving"}}
    if spec is not None:
        o["spec"] = spec
    if status is not None:
        o["status"] = status
    return o


def other(kind, spec):
    o = {"apiVersion": "inferencecache.io/v1alpha1", "kind": kind, "metadata": {"name": "x", "namespace": "n"}}
    if spec is not None:
        o["spec"] = spec
    return o


INVALID = [
    (cb({"deploymentKind": "DaemonSet"}), "spec.deploymentKind"),
    (cb({"replicas": -1}), "spec.replicas"),
    (cb({"integration": {"lookupTimeoutMs": -1}}), "spec.integration.lookupTimeoutMs"),
    (cb({"integration": {"minimumPrefixTokens": -1}}), "spec.integration.minimumPrefixTokens"),
    (cb({"integration": {"role": "Admin"}}), "spec.integration.role"),
    (cb({"template": {"terminationGracePeriodSeconds": -1}}), "spec.template.terminationGracePeriodSeconds"),
    (cb({"storage": {"pvc": {}}}), "spec.storage.pvc.size"),
    (cb({"storage": {"pvc": {"size": "ten"}}}), "spec.storage.pvc.size"),
    (cb({"runtime": "TGI"}), "spec.runtime"),
    (cb({"remoteStorage": {"provider": "Redis"}}), "spec.remoteStorage.ownership"),
    (cb({"lmCache": {"topology": "Everywhere"}}), "spec.lmCache.topology"),
    (cb({"hiCache": {"sizeGB": 0}}), "spec.hiCache.sizeGB"),
    (cb(status={"indexEntries": -1}), "status.indexEntries"),
    (cb(status={"health": "Unknown"}), "status.health"),
    (cb(status={"indexParticipation": {}}), "status.indexParticipation.prefixCount"),
    (other("CachePolicy", None), "spec"),
    (other("CachePolicy", {"eviction": "FIFO"}), "spec.eviction"),
    (other("CachePolicy", {"routingFloorScore": "1.1234567"}), "spec.routingFloorScore"),
    (other("CacheTenant", {}), "spec.tenantID"),
    (other("CacheTenant", {"tenantID": ""}), "spec.tenantID"),
    (other("CacheTenant", {"tenantID": "t", "crypto": {"keyRef": "k"}}), "spec.crypto"),
    (other("CacheTenant", {"tenantID": "t", "quota": {"maxIndexEntries": -1}}), "spec.quota.maxIndexEntries"),
    (other("PromptTemplate", {}), "spec.body"),
    (other("PromptTemplate", {"body": "b", "slots": [{"name": "s", "type": "Sometimes"}]}), "spec.slots[0].type"),
    (other("PDTopology", {"prefillPools": [{"name": "p", "replicas": -2}]}), "spec.prefillPools[0].replicas"),
    (other("PDTopology", {"decodePools": [{"replicas": 1}]}), "spec.decodePools[0].name"),
]


@pytest.mark.parametrize("obj,field", INVALID, ids=[f"{o['kind']}:{f}" for o, f in INVALID])
def test_invalid_object_rejected_by_schema_and_lib_api_at_same_path(obj, field):
    assert field in schema_errors(obj), schema_errors(obj)
    res, rc = api_check(obj)
    assert rc == 1
    assert field in [e["field"] for e in res["schema"]], res


@pytest.mark.parametrize("obj", [
    cb(), cb({}), cb({"type": "memory"}), cb({"type": "External"}), cb({"endpoint": "cache.example.svc:9000"}),
    cb({"type": "LMCache", "endpoint": "a:1"}), cb({"storage": {}}), cb({"storage": {"pvc": {"size": "10Gi"}}}),
    cb({"template": {"nodeSelector": {"pool": "cache"}}}),
    cb({"integration": {"failOpen": False}}),          # pruned by the API server, not rejected
    cb({"template": {"containers": [{"name": "c"}]}}),  # pruned as well
    other("CacheIndex", {"junk": 1}), other("CacheTenant", {"tenantID": "t", "crypto": {}}),
], ids=["no-spec", "empty-spec", "memory", "external-no-endpoint", "endpoint-only", "lmcache-endpoint",
        "empty-storage", "pvc-size", "partial-template", "failOpen-pruned", "containers-pruned", "cacheindex-junk",
        "crypto-empty"])
def test_contract_regressions_accepted(obj):
    assert schema_errors(obj) == []
    # The API server prunes unknown fields; strict `kubectl apply` (ic-api-check's default) rejects
    # them (tests/integration/test_manifests.py), so this contract is the --validate=ignore one.
    res, rc = api_check(obj, "--validate=ignore")
    assert rc == 0, res


# ---- S1-S13 against the shipped CacheBackend manifest ----------------------------------------

CB = CRDS["CacheBackend"]
ROOT = schema_of("CacheBackend")
SPEC = ROOT["properties"]["spec"]
STATUS = ROOT["properties"]["status"]


def test_s1_names_scope_version_subresources():
    n = CB["spec"]["names"]
    assert CB["metadata"]["name"] == "cachebackends.inferencecache.io"
    assert (CB["spec"]["group"], n["kind"], n["listKind"], n["plural"], n["singular"], n["shortNames"]) == (
        "inferencecache.io", "CacheBackend", "CacheBackendList", "cachebackends", "cachebackend", ["cb"])
    assert CB["spec"]["scope"] == "Namespaced"
    vs = CB["spec"]["versions"]
    assert len(vs) == 1 and vs[0]["name"] == "v1alpha1" and vs[0]["served"] and vs[0]["storage"]
    assert vs[0]["subresources"] == {"status": {}}


def test_s2_no_required_at_root_or_spec():
    assert "required" not in ROOT
    assert "required" not in SPEC


def test_s3_type_is_open_string():
    t = SPEC["properties"]["type"]
    assert t["type"] == "string" and "enum" not in t and "default" not in t


def test_s4_enums():
    p = SPEC["properties"]
    assert p["deploymentKind"]["enum"] == ["Deployment", "StatefulSet"]
    assert p["integration"]["properties"]["role"]["enum"] == ["ReadOnly", "WriteOnly", "ReadWrite"]
    assert STATUS["properties"]["health"]["enum"] == ["Pending", "Ready", "Degraded", "Failed"]


def test_s5_minimums():
    p = SPEC["properties"]
    for s in (p["replicas"], p["integration"]["properties"]["lookupTimeoutMs"],
              p["integration"]["properties"]["minimumPrefixTokens"],
              p["template"]["properties"]["terminationGracePeriodSeconds"], STATUS["properties"]["indexEntries"]):
        assert s["minimum"] == 0


def test_s6_pvc():
    pvc = SPEC["properties"]["storage"]["properties"]["pvc"]
    assert pvc["required"] == ["size"]
    size = pvc["properties"]["size"]
    assert size["x-kubernetes-int-or-string"] is True
    assert {"type": "integer"} in size["anyOf"] and {"type": "string"} in size["anyOf"]
    assert "storageClassName" in pvc["properties"]


def test_s7_no_fail_open():
    assert "failOpen" not in SPEC["properties"]["integration"]["properties"]
    assert "failOpen" not in STATUS["properties"]


def test_s8_template_is_narrow():
    t = SPEC["properties"]["template"]
    assert sorted(t["properties"]) == sorted([
        "nodeSelector", "affinity", "tolerations", "topologySpreadConstraints", "imagePullSecrets",
        "serviceAccountName", "securityContext", "priorityClassName", "schedulerName", "runtimeClassName",
        "terminationGracePeriodSeconds"])
    assert "x-kubernetes-preserve-unknown-fields" not in t
    tsc = t["properties"]["topologySpreadConstraints"]["items"]
    assert sorted(tsc["required"]) == ["maxSkew", "topologyKey", "whenUnsatisfiable"]


def test_s9_seed_fields_present():
    for f in ("type", "deploymentKind", "replicas", "storage", "integration", "engineSelector", "backendConfig",
              "template", "endpoint"):
        assert f in SPEC["properties"], f
    for f in ("engine", "role", "lookupTimeoutMs", "minimumPrefixTokens"):
        assert f in SPEC["properties"]["integration"]["properties"], f
    for f in ("endpoint", "health", "indexEntries", "conditions"):
        assert f in STATUS["properties"], f


def test_s10_runtime_optional_enum():
    assert SPEC["properties"]["runtime"]["enum"] == ["VLLM", "SGLang"]


def test_s11_printer_columns():
    cols = CB["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in cols] == ["Type", "Health", "Endpoint", "Ready", "Matched", "Remote", "Prefixes", "Age"]
    by = {c["name"]: c["jsonPath"] for c in cols}
    assert by["Endpoint"] == ".status.endpoint"
    assert by["Ready"] == '.status.conditions[?(@.type=="Ready")].status'


def test_s12_conditions_map_list():
    c = STATUS["properties"]["conditions"]
    assert c["x-kubernetes-list-type"] == "map" and c["x-kubernetes-list-map-keys"] == ["type"]


def test_s13_no_vendor_token_anywhere():
    bad = re.compile(r"(^|[./\-_:])oci([./\-_:]|$)|oracle", re.IGNORECASE)
    files = glob.glob(os.path.join(SRC, "config", "**", "*.yaml"), recursive=True)
    assert files
    for path in files:
        with open(path) as f:
            for i, line in enumerate(f, 1):
                for tok in re.split(r"\s+", line):
                    assert not bad.search(tok), f"{path}:{i}: {line.strip()}"


def test_descriptions_on_every_field():
    def walk(s, path):
        for name, sub in (s.get("properties") or {}).items():
            if path in CRDS and name == "metadata":
                continue  # root metadata must stay bare {type: object} in a structural schema
            assert sub.get("description"), f"{path}.{name} has no description"
            walk(sub, f"{path}.{name}")
        if "items" in s:
            walk(s["items"], path + "[]")
    for kind in CRDS:
        walk(schema_of(kind), kind)


def test_other_crd_identity():
    want = {"CachePolicy": ("cpol", "Namespaced", True), "CacheTenant": ("ct", "Namespaced", True),
            "CacheIndex": ("ci", "Cluster", False), "PromptTemplate": ("pt", "Namespaced", True),
            "PDTopology": ("pdt", "Namespaced", False)}
    for kind, (short, scope, spec_req) in want.items():
        c = CRDS[kind]
        assert c["spec"]["names"]["shortNames"] == [short]
        assert c["spec"]["scope"] == scope
        assert ("spec" in schema_of(kind).get("required", [])) == spec_req
        assert c["spec"]["versions"][0]["subresources"] == {"status": {}}
    ci = schema_of("CacheIndex")["properties"]["spec"]
    assert ci["type"] == "object" and "properties" not in ci and "maxProperties" not in ci
    crypto = schema_of("CacheTenant")["properties"]["spec"]["properties"]["crypto"]
    assert crypto["maxProperties"] == 0 and crypto["x-kubernetes-preserve-unknown-fields"] is True
    pol = schema_of("CachePolicy")["properties"]["spec"]
    assert pol["x-kubernetes-validations"][0]["message"] == "strategy.requireChain requires strategy.enableChainMatching"
    assert pol["properties"]["strategy"]["properties"]["enableChainMatching"]["default"] is True
    l1 = SPEC["properties"]["lmCache"]["properties"]["podLocal"]["properties"]["server"]["properties"]["l1Capacity"]
    assert l1["x-kubernetes-validations"][0]["message"] == "l1Capacity must be greater than zero"


def test_schema_defaults_only_inside_later_objects():
    """Only observation.firstEventTimeout and nodeLocal.idleRetentionSeconds carry schema defaults."""
    found = []

    def walk(s, path):
        if "default" in s:
            found.append(path)
        for name, sub in (s.get("properties") or {}).items():
            walk(sub, f"{path}.{name}")
        if "items" in s:
            walk(s["items"], path + "[]")
    walk(SPEC, "spec")
    found = [f for f in found if not f.endswith(".name")]  # core/v1 LocalObjectReference name default ""
    assert sorted(found) == ["spec.lmCache.nodeLocal.idleRetentionSeconds", "spec.observation.firstEventTimeout"]


# ---- the kustomize install ---------------------------------------------------------------------

def render(path):
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl not installed")
    p = subprocess.run([kubectl, "kustomize", path], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return [d for d in yaml.safe_load_all(p.stdout) if d]


def test_default_install_renders_with_the_required_pieces():
    docs = render(os.path.join(SRC, "config", "default"))
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    for d in docs:
        if d["kind"] not in ("Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
                             "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            assert d["metadata"]["namespace"] == "inference-cache-system", d["metadata"]
    assert sum(1 for d in docs if d["kind"] == "CustomResourceDefinition") == 6
    svc = by[("Service", "inference-cache-server")]
    assert {(p["name"], p["port"]) for p in svc["spec"]["ports"]} == {("grpc", 9090), ("http", 8080), ("snapshot", 8081)}
    assert ("Deployment", "inference-cache-server") in by and ("Deployment", "inference-cache-controller-manager") in by
    np = by[("NetworkPolicy", "inference-cache-server-snapshot")]
    rule = [r for r in np["spec"]["ingress"] if any(p["port"] == 8081 for p in r["ports"])][0]
    assert rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "controller"
    assert ("Issuer", "selfsigned-issuer") in by and ("Certificate", "serving-cert") in by
    wh = by[("Service", "webhook-service")]
    assert wh["spec"]["ports"][0]["port"] == 443 and wh["spec"]["ports"][0]["targetPort"] == 9443
    mut = by[("MutatingWebhookConfiguration", "inference-cache-mutating-webhook-configuration")]
    val = by[("ValidatingWebhookConfiguration", "inference-cache-validating-webhook-configuration")]
    paths = {w["name"]: w["clientConfig"]["service"]["path"] for w in mut["webhooks"] + val["webhooks"]}
    assert paths["mpod.inferencecache.io"] == "/mutate--v1-pod"
    assert paths["vcachebackend.inferencecache.io"] == "/validate-inferencecache-io-v1alpha1-cachebackend"
    assert "mcachebackend.inferencecache.io" not in paths  # CacheBackend defaults apply at read time, never written
    pod_hook = [w for w in mut["webhooks"] if w["name"] == "mpod.inferencecache.io"][0]
    assert pod_hook["failurePolicy"] == "Ignore"
    assert all(w["failurePolicy"] == "Fail" for w in val["webhooks"])
    for cfg in (mut, val):
        assert cfg["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "inference-cache-system/serving-cert"


def test_samples_kustomization_lists_every_sample():
    docs = render(os.path.join(SRC, "config", "samples"))
    assert len(docs) == len(samples())


def test_api_check_reads_yaml_files_directly(tmp_path):
    files = sorted(p for p in glob.glob(os.path.join(SAMPLES, "*.yaml")) if not p.endswith("kustomization.yaml"))
    p = subprocess.run([CHECK] + files, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    res = json.loads(p.stdout)
    assert len(res) == len(samples()) and all(r["valid"] for r in res)
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: inferencecache.io/v1alpha1\nkind: CacheBackend\nmetadata: {name: q}\n"
                   "spec:\n  replicas: \"1\"\n  deploymentKind: &k StatefulSet\n  type: *k\n---\n"
                   "apiVersion: inferencecache.io/v1alpha1\nkind: CacheTenant\nmetadata: {name: t}\nspec: {tenantID: ~}\n")
    p = subprocess.run([CHECK, str(bad)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    res = json.loads(p.stdout)
    assert [e["field"] for e in res[0]["schema"]] == ["spec.replicas"]  # a quoted number is a string
    assert [e["field"] for e in res[1]["schema"]] == ["spec.tenantID"]  # ~ is null: required
    p = subprocess.run([CHECK, str(tmp_path / "missing.yaml")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
