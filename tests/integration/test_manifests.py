"""Every kustomization under config/ renders with `kubectl kustomize`, and every object it
renders decodes with ic-api-check the way a strict `kubectl apply` would take it: our kinds
against their CRD schemas (and lib/api's checks), built-in kinds by apiVersion/kind, metadata and
top-level fields. Seeded typos at each level are rejected with the field's path."""
import json
import os
import shutil
import subprocess

import pytest
import yaml

from harness import BUILD_DIR, SOURCE_DIR

CHECK = os.path.join(BUILD_DIR, "src", "api-check", "ic-api-check")
KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl (with kustomize) not installed")


def _kustomizations():
    out = []
    for root, _, names in os.walk(os.path.join(SOURCE_DIR, "config")):
        if "kustomization.yaml" in names:
            out.append(os.path.relpath(root, SOURCE_DIR))
    return sorted(out)


def _render(rel):
    p = subprocess.run([KUBECTL, "kustomize", os.path.join(SOURCE_DIR, rel)], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, "%s: %s" % (rel, p.stderr)
    return p.stdout


def _check(text):
    p = subprocess.run([CHECK], input=text, capture_output=True, text=True, timeout=60)
    return p.returncode, (json.loads(p.stdout) if p.stdout.strip() else None), p.stderr


def test_every_overlay_is_covered():
    have = set(_kustomizations())
    for must in ("config/default", "config/tls", "config/monitoring", "config/samples"):
        assert must in have


@pytest.mark.parametrize("rel", _kustomizations())
def test_overlay_renders_and_every_object_decodes_strictly(rel):
    text = _render(rel)
    docs = [d for d in yaml.safe_load_all(text) if d]
    assert docs
    rc, res, err = _check(text)
    assert rc == 0, json.dumps([r for r in res or [] if not r["valid"]], indent=1) + err
    assert len(res) == len(docs) and all(r["valid"] for r in res)


def _default_docs():
    return [d for d in yaml.safe_load_all(_render("config/default")) if d]


def _mutated(mutate):
    docs = _default_docs()
    mutate(docs)
    return yaml.safe_dump_all(docs)


def _find(docs, kind, name=None):
    return next(d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name))


@pytest.mark.parametrize("what,mutate,kind,field", [
    ("top-level typo in a Deployment",
     lambda ds: _find(ds, "Deployment", "inference-cache-server").__setitem__(
         "spce", _find(ds, "Deployment", "inference-cache-server")["spec"]),
     "Deployment", "spce"),
    ("metadata typo",
     lambda ds: _find(ds, "Service", "inference-cache-server")["metadata"].__setitem__("lables", {"a": "b"}),
     "Service", "metadata.lables"),
    ("apiVersion typo",
     lambda ds: _find(ds, "Deployment", "inference-cache-server").__setitem__("apiVersion", "app/v1"),
     "Deployment", "kind"),
    ("top-level typo in a ClusterRoleBinding",
     lambda ds: _find(ds, "ClusterRoleBinding").__setitem__("subject", []),
     "ClusterRoleBinding", "subject"),
])
def test_seeded_typos_in_the_install_are_rejected(what, mutate, kind, field):
    rc, res, _ = _check(_mutated(mutate))
    assert rc == 1, what
    bad = [r for r in res if not r["valid"]]
    assert len(bad) == 1 and bad[0]["kind"] == kind
    assert [f["field"] for f in bad[0]["fields"]] == [field], bad


def test_validate_modes():
    obj = ("apiVersion: inferencecache.io/v1alpha1\nkind: CacheBackend\nmetadata: {name: x}\n"
           "spec: {integration: {failOpen: false}}\n")
    for mode, rc_want, listed in (("strict", 1, True), ("warn", 0, True), ("ignore", 0, False)):
        p = subprocess.run([CHECK, "--validate=" + mode], input=obj, capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == rc_want, (mode, p.stdout)
        fields = [f["field"] for f in json.loads(p.stdout)[0]["fields"]]
        assert (fields == ["spec.integration.failOpen"]) == listed, (mode, fields)


SAMPLE_TYPOS = [
    ("cachebackend_vllm_podlocal.yaml", ["spec", "observation"], "modelID", "modelId",
     "spec.observation.modelId"),
    ("cachepolicy.yaml", ["spec"], None, "minimumMatchedToken", "spec.minimumMatchedToken"),
    ("cachetenant.yaml", ["spec", "quota"], None, "maxIndexEntry", "spec.quota.maxIndexEntry"),
    ("cacheindex.yaml", [], None, "sepc", "sepc"),
]


@pytest.mark.parametrize("sample,path,rename,add,field", SAMPLE_TYPOS)
def test_typos_in_our_kinds_are_rejected_at_any_depth(sample, path, rename, add, field):
    with open(os.path.join(SOURCE_DIR, "config", "samples", sample)) as f:
        doc = yaml.safe_load(f)
    node = doc
    for p in path:
        node = node.setdefault(p, {})
    if rename and rename in node:
        node[add] = node.pop(rename)
    else:
        node[add] = 1
    rc, res, _ = _check(yaml.safe_dump(doc))
    assert rc == 1
    assert field in [f["field"] for f in res[0]["fields"]], res


def test_duplicate_keys_are_rejected():
    rc, res, err = _check("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"
                          "data: {x: '1'}\ndata: {y: '2'}\n")
    assert rc == 2 and 'duplicate field "data"' in err


def test_tls_overlay_adds_tls_to_the_server_and_keeps_its_flags():
    base = _find([d for d in yaml.safe_load_all(_render("config/default")) if d], "Deployment",
                 "inference-cache-server")
    tls = _find([d for d in yaml.safe_load_all(_render("config/tls")) if d], "Deployment",
                "inference-cache-server")
    bargs = base["spec"]["template"]["spec"]["containers"][0]["args"]
    targs = tls["spec"]["template"]["spec"]["containers"][0]["args"]
    assert targs[:len(bargs)] == bargs
    assert targs[len(bargs):] == [
        "--tls-cert-file=/var/run/secrets/inferencecache.io/grpc-tls/tls.crt",
        "--tls-key-file=/var/run/secrets/inferencecache.io/grpc-tls/tls.key"]
    vols = tls["spec"]["template"]["spec"]["volumes"]
    assert {"name": "grpc-tls", "secret": {"secretName": "inference-cache-server-grpc-tls"}} in vols
    certs = [d for d in yaml.safe_load_all(_render("config/tls")) if d and d["kind"] == "Certificate"]
    server_cert = next(c for c in certs if c["spec"]["secretName"] == "inference-cache-server-grpc-tls")
    assert "inference-cache-server.inference-cache-system.svc" in server_cert["spec"]["dnsNames"]


def test_samples_reference_real_images():
    text = _render("config/samples")
    assert "sha256:" + "0" * 64 not in text
    for d in yaml.safe_load_all(text):
        for img in _images(d):
            assert "@sha256:" in img or ":" in img.rsplit("/", 1)[-1], img


def _images(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "image" and isinstance(v, str):
                yield v
            else:
                yield from _images(v)
    elif isinstance(node, list):
        for v in node:
            yield from _images(v)


def test_writer_auth_overlay_turns_on_writer_tokens_over_tls():
    docs = [d for d in yaml.safe_load_all(_render("config/writer-auth")) if d]
    srv = _find(docs, "Deployment", "inference-cache-server")
    sargs = srv["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--tls-cert-file=/var/run/secrets/inferencecache.io/grpc-tls/tls.crt" in sargs
    assert "--writer-auth=token" in sargs
    assert "--writer-token-audience=inferencecache.io/writer" in sargs
    assert any(a.startswith("--writer-allowed-service-accounts=") for a in sargs)
    ctl = _find(docs, "Deployment", "inference-cache-controller-manager")
    cargs = ctl["spec"]["template"]["spec"]["containers"][0]["args"]
    # the sidecars get the writer token and (TLS overlay) the server's CA
    assert "--subscriber-token-audience=inferencecache.io/writer" in cargs
    assert "--subscriber-server-ca-configmap=inference-cache-server-ca" in cargs
