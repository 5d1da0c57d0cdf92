"""inferencecache replay end to end: the real server, engine simulators (fake-engine) publishing
KV events to real kvevent-subscribers, and the CLI replaying workloads over HTTP/SSE in every
routing mode. Functional, not timed: no request fails, LookupRoute routing finds the cache the
workload guarantees, and its predictions hold on the engines."""
import json
import os
import subprocess
import tempfile
import xml.dom.minidom

import pytest

from harness import CLI_BIN, SOURCE_DIR, Fleet, Server

TRACE = os.path.join(SOURCE_DIR, "data", "traces", "mooncake_conversation_trace.jsonl")
SPEEDUP = "5"
# 24 contexts x 4 questions, random order: with 4 engines an exact index can reuse the context
# for 3 of each group's 4 requests (0.75 x 1024/1088 = 0.706 of prompt tokens), while
# round-robin's fixed rotation lands a question on a replica that saw its context only by chance
# (0.275 for this seed).
SHARED = "shared-prefix:groups=24,questions=4,context=1024,question=64,output=16,rate=20,seed=1"


def cli(*args, timeout=300):
    p = subprocess.run([CLI_BIN] + list(args), capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


@pytest.fixture(scope="module")
def fleet():
    with Server(["--insecure-disable-auth"]) as srv:
        # Engines run 5x faster than wall time; the subscribers flush every 10 ms (50 ms of
        # simulated time) and scrape load every second.
        with Fleet(srv, 4, engine_args=["--speedup=" + SPEEDUP, "--stream-interval=4"],
                   sub_args=["--window=10ms", "--stats-interval=1s"]) as fl:
            yield srv, fl


def replay(srv, fl, *args):
    out = tempfile.mkdtemp(prefix="ic-replay-")
    summary, records, svg = (os.path.join(out, n) for n in ("s.jsonl", "r.jsonl", "p.svg"))
    rc, stdout, stderr = cli("replay", "--server=" + srv.grpc_addr, "--speedup=" + SPEEDUP,
                             "--summary=" + summary, "--records=" + records, "--svg=" + svg,
                             "--quiet", *(fl.engine_flags() + list(args)))
    assert rc == 0, "replay failed rc=%d\n%s\n%s" % (rc, stdout, stderr[-3000:])
    with open(summary) as f:
        sums = {d["mode"]: d for d in map(json.loads, f)}
    with open(records) as f:
        recs = [json.loads(line) for line in f]
    return sums, recs, svg, stdout


def test_lookup_hits_more_than_round_robin_and_predicts_right(fleet):
    srv, fl = fleet
    sums, recs, svg, table = replay(srv, fl, "--workload=" + SHARED, "--mode=round-robin,lookup")
    rr, lk = sums["round-robin"], sums["lookup"]
    for s in (rr, lk):
        assert s["requests"] == 96 and s["failed"] == 0, s
    assert all(r["ok"] and r["sim_timing"] for r in recs)
    # The margin the workload guarantees (0.706 vs 0.275 with an exact, instant index), less
    # slack for requests that arrive before their context's events reached the server.
    assert lk["hit_rate"] >= rr["hit_rate"] + 0.25, (rr["hit_rate"], lk["hit_rate"])
    assert lk["hit_rate"] >= 0.55, lk
    # Lookup named a replica holding the context for most requests, and it really held it.
    assert lk["reasons"].get("PREFIX_MATCH", 0) >= 48, lk["reasons"]
    assert lk["predictions"] >= 48 and lk["prediction_accuracy"] >= 0.95, lk
    assert lk["lookup_route_p99_us"] > 0
    lookups = [r for r in recs if r["mode"] == "lookup"]
    assert all("reason" in r and r["lookup_us"] >= 0 for r in lookups)
    # Engine-side accounting adds up: cached + computed = prompt for every request.
    assert all(r["cached_tokens"] + r["computed_prefill_tokens"] == r["prompt_tokens"] for r in recs)
    assert "round-robin" in table and "lookup" in table
    xml.dom.minidom.parse(svg)


def test_every_mode_replays_the_conversation_trace(fleet):
    srv, fl = fleet
    sums, recs, svg, _ = replay(srv, fl, "--workload=mooncake:" + TRACE, "--max-requests=40",
                                "--mode=all", "--scenario=conversation")
    assert list(sums) == ["random", "round-robin", "least-loaded", "approximate", "lookup",
                          "precise"]
    for mode, s in sums.items():
        assert s["requests"] == 40 and s["failed"] == 0, s
        assert s["scenario"] == "conversation"
        assert s["prompt_tokens"] > 40 * 1000 and s["ttft_p99_ms"] >= s["ttft_p50_ms"] > 0
    assert len(recs) == 6 * 40
    for mode, s in sums.items():
        assert 0 <= s["cached_tokens"] < s["prompt_tokens"], (mode, s)
        assert s["load_imbalance"] >= 1.0 and s["throughput_rps"] > 0, (mode, s)
    assert sums["lookup"]["lookup_route_p99_us"] > 0
    assert sum(sums["lookup"]["reasons"].values()) == 40
    assert sums["precise"]["prediction_accuracy"] >= 0.9 or sums["precise"]["predictions"] == 0
    dom = xml.dom.minidom.parse(svg)
    assert len(dom.getElementsByTagName("polyline")) == 6


def test_cli_help_version_and_usage_errors():
    rc, out, _ = cli("--help")
    assert rc == 0 and "replay" in out
    rc, out, _ = cli("--version")
    assert rc == 0 and out.startswith("inferencecache version ")
    rc, out, _ = cli("replay", "--help")
    assert rc == 0 and out.startswith("inferencecache replay: ")
    for flag in ("-workload string", "-engine string", "-mode string", "-speedup float",
                 "-lookup-fallback string", "-no-reset\n", "shared-prefix", "multi-turn",
                 "cache-stress", '(default "round-robin,lookup")', '(default "127.0.0.1:9090")'):
        assert flag in out, flag
    # Go flag convention: -name is --name.
    rc, out, _ = cli("replay", "-quiet", "-help")
    assert rc == 0 and "-workload string" in out
    rc, _, err = cli("nosuch")
    assert rc == 2 and "unknown command" in err
    rc, _, err = cli("replay")
    assert rc == 2 and "--workload" in err
    eng = "--engine=r0=http://127.0.0.1:1"
    rc, _, err = cli("replay", "--workload=shared-prefix", eng, "--mode=fastest")
    assert rc == 2 and "--mode" in err
    rc, _, err = cli("replay", "--workload=shared-prefix:bogus=1", eng, "--mode=random")
    assert rc == 2 and "bogus" in err
    rc, _, err = cli("replay", "--workload=shared-prefix", eng, "--tenant-id=", "--mode=lookup")
    assert rc == 2 and "tenant" in err
    rc, _, err = cli("replay", "--workload=shared-prefix", "--engine=r0=ftp://x")
    assert rc == 2 and "REPLICA_ID=http" in err
    rc, out, err = cli("replay", "--no-such-flag-xyz=1")
    assert rc == 2 and out == "" and "--help" in err
    rc, _, err = cli("replay", "--workload=mooncake:/nonexistent.jsonl", eng, "--tenant-id=t")
    assert rc == 2 and "/nonexistent.jsonl" in err


def test_unreachable_engine_fails_requests_not_the_tool():
    # Nothing listens on the engine's port: every request fails with a transport error, the
    # tool still reports (exit 3) instead of hanging or crashing.
    from harness import free_port
    out = tempfile.mkdtemp(prefix="ic-replay-")
    summary = os.path.join(out, "s.jsonl")
    rc, _, err = cli("replay", "--workload=shared-prefix:groups=2,questions=2,rate=100",
                     "--engine=r0=http://127.0.0.1:%d" % free_port(), "--mode=round-robin",
                     "--no-reset", "--summary=" + summary, "--quiet", "--request-timeout=5")
    assert rc == 3, err
    with open(summary) as f:
        s = json.loads(f.readline())
    assert s["requests"] == 4 and s["failed"] == 4


def test_make_run_prints_round_robin_and_lookup_side_by_side():
    # `make run` (scripts/run-demo.sh) ends its tour with a short replay; IC_DEMO_ONCE exits
    # after it. Every port comes from free_port (the engine ports need port+1 free as well).
    import socket
    from harness import BUILD_DIR, free_port

    def pair():
        while True:
            p = free_port()
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", p + 1))
                return p
            except OSError:
                continue
            finally:
                s.close()

    env = dict(os.environ, IC_DEMO_ONCE="1",
               IC_DEMO_GRPC="127.0.0.1:%d" % free_port(),
               IC_DEMO_HTTP="127.0.0.1:%d" % free_port(),
               IC_DEMO_SNAPSHOT="127.0.0.1:%d" % free_port(),
               IC_DEMO_SUB0_METRICS="127.0.0.1:%d" % free_port(),
               IC_DEMO_SUB1_METRICS="127.0.0.1:%d" % free_port(),
               IC_DEMO_ENGINE0_PORT=str(pair()), IC_DEMO_ENGINE1_PORT=str(pair()))
    p = subprocess.run([os.path.join(SOURCE_DIR, "scripts", "run-demo.sh"), BUILD_DIR],
                       capture_output=True, text=True, timeout=240, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    out = p.stdout
    assert "What cache-aware routing buys" in out, out + p.stderr[-2000:]
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 6 and parts[0] in ("round-robin", "lookup"):
            rows[parts[0]] = float(parts[1].rstrip("%"))
    assert set(rows) == {"round-robin", "lookup"}, out
    assert rows["lookup"] > rows["round-robin"] + 20, rows
