"""Every program follows one command-line convention: --help on stdout with exit 0 in one layout
(summary, usage line, each flag with a description and its default), --version with the version
and the git commit baked in at build time, flag errors on stderr with exit 2, and the startup log
carrying the version and commit. The help is checked against the parser: every flag it lists is
accepted."""
import json
import os
import re
import subprocess

import pytest

from harness import BUILD_DIR, SOURCE_DIR, free_port

PROGRAMS = {
    "inferencecache-server": "src/server/inferencecache-server",
    "inferencecache-controller": "src/controller/inferencecache-controller",
    "kvevent-subscriber": "src/subscriber/kvevent-subscriber",
    "fake-engine": "src/fake-engine/fake-engine",
    "ic-webhook-server": "src/webhook-server/ic-webhook-server",
    "ic-api-check": "src/api-check/ic-api-check",
}
# Programs added by other modules join the convention as soon as they are built.
OPTIONAL = {"inferencecache": "src/cli/inferencecache",
            "ic-template-render": "src/template-render/ic-template-render",
            "ic-tokenize": "src/tokenize/ic-tokenize"}
SAMPLE = {"string": "x", "int": "1", "duration": "1s", "float": "1.5"}


def _programs():
    out = dict(PROGRAMS)
    for name, rel in OPTIONAL.items():
        if os.path.exists(os.path.join(BUILD_DIR, rel)):
            out[name] = rel
    return sorted(out.items())


def _run(rel, *args):
    return subprocess.run([os.path.join(BUILD_DIR, rel)] + list(args), capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)


def _flags(help_text):
    """(name, type or None, default or None) for each '  -name [type]' entry of a help text."""
    out = []
    lines = help_text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^  -([a-z0-9][a-z0-9-]*)(?: (\w+))?$", line)
        if not m:
            continue
        desc = []
        for nxt in lines[i + 1:]:
            if not nxt.startswith("    \t"):
                break
            desc.append(nxt)
        assert desc and len(desc[0].strip()) > 3, "flag -%s has no description" % m.group(1)
        d = re.search(r'\(default "?(.*?)"?\)$', desc[-1])
        out.append((m.group(1), m.group(2), d.group(1) if d else None))
    return out


@pytest.mark.parametrize("name,rel", _programs())
def test_help_layout_on_stdout_exit_zero(name, rel):
    p = _run(rel, "--help")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert out.startswith(name + ": "), out[:200]
    assert "\nUsage: %s [flags]" % name in out
    assert "\nFlags (-name or --name; a value as -name=value or -name value):\n" in out
    names = [f[0] for f in _flags(out)]
    assert names[-2:] == ["help", "version"]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("name,rel", _programs())
def test_every_listed_flag_is_accepted_by_the_parser(name, rel):
    flags = _flags(_run(rel, "--help").stdout)
    for flag, typ, default in flags:
        if flag in ("help", "version"):
            continue
        if typ is None:
            args = ["--" + flag]
        else:
            args = ["--%s=%s" % (flag, default if default not in (None, "") else SAMPLE.get(typ, "x"))]
        p = _run(rel, *(args + ["--help"]))
        assert p.returncode == 0, "%s %s: rc %d %s" % (name, args, p.returncode, p.stderr)


@pytest.mark.parametrize("name,rel", _programs())
def test_version_names_a_commit_of_this_repository(name, rel):
    p = _run(rel, "--version")
    assert p.returncode == 0, p.stderr
    m = re.match(r"^%s version (\d+\.\d+\.\d+\S*) \(commit (\S+)\)\n$" % re.escape(name), p.stdout)
    assert m, p.stdout
    commit = m.group(2)
    if commit != "unknown" and os.path.exists(os.path.join(SOURCE_DIR, ".git")):
        sha = commit.split("-")[0]
        assert re.fullmatch(r"[0-9a-f]{7,40}", sha), commit
        r = subprocess.run(["git", "-C", SOURCE_DIR, "cat-file", "-e", sha + "^{commit}"],
                           capture_output=True)
        assert r.returncode == 0, "commit %s is not in this repository" % sha


@pytest.mark.parametrize("name,rel", _programs())
def test_unknown_flag_exits_two_and_points_to_help(name, rel):
    p = _run(rel, "--no-such-flag-xyz=1")
    assert p.returncode == 2
    assert "--help" in p.stderr or "-help" in p.stderr
    assert p.stdout == ""


def _first_json_log(cmd, msg, timeout=20):
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if line.startswith("{"):
                rec = json.loads(line)
                if rec.get("msg") == msg:
                    return rec
        raise AssertionError("no %r log line" % msg)
    finally:
        proc.terminate()
        proc.wait(timeout=timeout)


def test_startup_logs_carry_version_and_commit():
    version = _run(PROGRAMS["kvevent-subscriber"], "--version").stdout
    commit = re.search(r"\(commit (\S+)\)", version).group(1)
    sub = _first_json_log([os.path.join(BUILD_DIR, PROGRAMS["kvevent-subscriber"]),
                           "--replica-id=r", "--model-id=m", "--http-bind-address=",
                           "--engine-endpoint=tcp://127.0.0.1:%d" % free_port(),
                           "--server=127.0.0.1:%d" % free_port()], "kvevent-subscriber starting")
    eng = _first_json_log([os.path.join(BUILD_DIR, PROGRAMS["fake-engine"]),
                           "--bind=tcp://127.0.0.1:%d" % free_port()], "fake_engine_started")
    wh = _first_json_log([os.path.join(BUILD_DIR, PROGRAMS["ic-webhook-server"]),
                          "--bind=127.0.0.1:%d" % free_port()], "webhook_server_started")
    for rec in (sub, eng, wh):
        assert rec["version"] == re.search(r"version (\S+)", version).group(1)
        assert rec["commit"] == commit
