"""scripts/ha_capacity.py (docs/ha-fleet.md, "Beyond one fleet"): the arithmetic is self-consistent
and the doc quotes exactly what the script prints, so the doc cannot drift from the measured
inputs it cites."""
import json
import os
import subprocess
import sys

from harness import SOURCE_DIR

SCRIPT = os.path.join(SOURCE_DIR, "scripts", "ha_capacity.py")
DOC = os.path.join(SOURCE_DIR, "docs", "ha-fleet.md")


def run(*args):
    p = subprocess.run([sys.executable, SCRIPT] + list(args), capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_doc_quotes_the_script_table():
    with open(DOC) as f:
        doc = f.read()
    rows = [line for line in run().splitlines() if line.startswith("|")]
    assert len(rows) >= 4
    for line in rows:
        assert line in doc, line


def test_arithmetic_is_consistent():
    lines = [json.loads(x) for x in run("--json").splitlines()]
    groups = [x["params"] for x in lines if x["name"] == "group"]
    for g in groups:
        # memory = memberships x measured bytes per membership; never summed over replicas
        assert abs(g["memory_gib"] * 2**30 - g["memberships"] * 26.6) < 1e3
        assert g["replicas"] >= 2
    sim = next(x["params"] for x in lines if x["name"] == "shard_simulation")
    assert sim["engines_per_group_max"] <= sim["group_cap"]
    assert sim["groups"] * sim["group_cap"] >= sim["engines"]
    assert sim["pools"] >= sim["models"]
