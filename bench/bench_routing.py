#!/usr/bin/env python3
"""make bench BENCH=routing: what cache-aware routing buys, end to end on loopback.

Starts the real inferencecache-server, N engine simulators (fake-engine, simulated vLLM
replicas publishing real KV events) and N kvevent-subscribers, then replays with
`inferencecache replay` (a) the first requests of the Mooncake conversation trace and (b) a
synthetic shared-prefix scenario, each in every routing mode, and prints JSON lines:
{"bench":"routing","name":...,"value":...,"unit":...,"params":{"scenario":...,"mode":...}}.
Tables go to stderr; SVG pictures and the raw summaries to BUILD/bench/routing/.

Usage: bench_routing.py BUILD_DIR. Environment knobs (defaults in parentheses):
  IC_ROUTING_ENGINES (8)        engine simulators
  IC_ROUTING_SIM_SPEEDUP (4)    simulated ms per wall ms in every engine
  IC_ROUTING_LOAD (0.7)         offered load / the fleet's measured prefill capacity
  IC_ROUTING_CAPACITY_RPS (6.2) conversation requests/s (simulated) the fleet completes when
                                saturated under round-robin (measured, see docs/performance.md)
  IC_ROUTING_SHARED_CAPACITY_RPS (5.6)  the same for one engine and the shared-prefix shape
  IC_ROUTING_REQUESTS (1200)    conversation requests replayed (a prefix of the trace)
  IC_ROUTING_WINDOW (5ms)       subscriber flush window (wall time)
  IC_ROUTING_MODES (all)         baseline modes; "none" skips them
  IC_ROUTING_RANKING_POLICY ({})  more CachePolicy keys for the ranking modes, e.g.
                                {"affinityRouting": false} (reported as params.policy)
  IC_ROUTING_SERVER_FLAGS ("")   extra inferencecache-server flags, e.g. the --load-* knobs
  IC_ROUTING_RANKING (lookup+load,lookup+predict,lookup+load+predict)  the ranking modes of
                                docs/ranking.md run after the baselines, each a lookup replay
                                under its CachePolicy; "" = none
  IC_ROUTING_SCENARIOS (conversation,shared-prefix,burst)  scenarios replayed
  IC_ROUTING_BURST_RATE (1)     bursts per second of the burst scenario (16 siblings of a new
                                4k-token prefix within 50 ms each; burst_same_replica_ratio)
"""
import json
import os
import subprocess
import sys
import time

build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
root = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
os.environ.setdefault("IC_BUILD_DIR", build)
os.environ.setdefault("IC_SOURCE_DIR", root)
sys.path.insert(0, os.path.join(root, "tests", "integration"))
import harness  # noqa: E402

ENGINES = int(os.environ.get("IC_ROUTING_ENGINES", "8"))
SIM_SPEEDUP = float(os.environ.get("IC_ROUTING_SIM_SPEEDUP", "4"))
LOAD = float(os.environ.get("IC_ROUTING_LOAD", "0.7"))
CAPACITY_RPS = float(os.environ.get("IC_ROUTING_CAPACITY_RPS", "6.2"))
SHARED_CAPACITY_RPS = float(os.environ.get("IC_ROUTING_SHARED_CAPACITY_RPS", "5.6"))
REQUESTS = int(os.environ.get("IC_ROUTING_REQUESTS", "1200"))
WINDOW = os.environ.get("IC_ROUTING_WINDOW", "5ms")
MODES = os.environ.get("IC_ROUTING_MODES", "all")
SERVER_FLAGS = os.environ.get("IC_ROUTING_SERVER_FLAGS", "").split()
RANKING = [m for m in os.environ.get(
    "IC_ROUTING_RANKING", "lookup+load,lookup+predict,lookup+load+predict").split(",") if m]
SCENARIOS = [x for x in os.environ.get(
    "IC_ROUTING_SCENARIOS", "conversation,shared-prefix,burst").split(",") if x]
# docs/ranking.md: the CachePolicy strategy switches behind each ranking mode
RANKING_EXTRA = json.loads(os.environ.get("IC_ROUTING_RANKING_POLICY", "{}"))
RANKING_STRATEGY = {"lookup+load": {"loadAwareRouting": True},
                    "lookup+predict": {"predictOnRoute": True},
                    "lookup+load+predict": {"loadAwareRouting": True, "predictOnRoute": True}}
TRACE = os.path.join(root, "data", "traces", "mooncake_conversation_trace.jsonl")
OUT = os.path.join(build, "bench", "routing")
# RAG-style: 128 documents of 4k tokens, 8 questions each, in random order; the fleet completes
# ~5.6 of these requests/s per engine when saturated under round-robin.
SHARED = ("shared-prefix:groups=128,questions=8,context=4096,question=256,output=128,rate=%g" %
          (SHARED_CAPACITY_RPS * LOAD * ENGINES))
# Sibling bursts (docs/replay.md): 32 bursts of 16 requests sharing a new 4k-token prefix, each
# burst within 50 ms (faster than the engines' events reach the index).
BURST = ("burst:bursts=32,siblings=16,prefix=4096,suffix=128,output=64,window=50,rate=%g" %
         float(os.environ.get("IC_ROUTING_BURST_RATE", "1")))


def trace_rate(n):
    """Requests per second of the first n trace requests, in trace time."""
    with open(TRACE) as f:
        ts = [json.loads(line)["timestamp"] for _, line in zip(range(n), f)]
    return len(ts) / max(1e-3, (ts[-1] - ts[0]) / 1000.0)


def emit(name, value, unit, **params):
    print(json.dumps({"bench": "routing", "name": name, "value": round(value, 6), "unit": unit,
                      "params": params}), flush=True)


def replay(srv, fleet, scenario, workload, speedup, extra, modes=MODES, policy=None, label=None):
    """label: report the (single) lookup run under this mode name, e.g. "lookup+load"."""
    os.makedirs(OUT, exist_ok=True)
    tag = scenario + ("-" + policy if policy else "") + ("-" + label if label else "")
    summary = os.path.join(OUT, tag + ".summary.jsonl")
    cmd = [harness.CLI_BIN, "replay", "--workload=" + workload, "--scenario=" + scenario,
           "--mode=" + modes, "--speedup=%g" % speedup, "--server=" + srv.grpc_addr,
           "--summary=" + summary, "--svg=" + os.path.join(OUT, tag + ".svg"),
           "--records=" + os.path.join(OUT, tag + ".records.jsonl"),
           "--quiet"] + fleet.engine_flags() + extra
    t = time.monotonic()
    p = subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr, timeout=1800)
    print("bench_routing: %s took %.0f s (exit %d)" % (tag, time.monotonic() - t, p.returncode),
          file=sys.stderr)
    with open(summary) as f:
        sums = {(label or d["mode"]): d for d in map(json.loads, f)}
    for mode, s in sums.items():
        p = dict(scenario=scenario, mode=mode)
        if policy:
            p["policy"] = policy
        emit("hit_rate", s["hit_rate"], "ratio", **p)
        emit("ttft_mean_ms", s["ttft_mean_ms"], "ms", **p)
        emit("ttft_p99_ms", s["ttft_p99_ms"], "ms", **p)
        emit("load_imbalance", s["load_imbalance"], "ratio", **p)
        if s["predictions"]:
            emit("prediction_accuracy", s["prediction_accuracy"], "ratio", **p)
        if s["lookup_route_p99_us"]:
            emit("lookup_route_p99_us", s["lookup_route_p99_us"], "us", **p)
        if s["failed"]:
            emit("failed_requests", s["failed"], "requests", **p)
        if s.get("bursts"):
            emit("burst_same_replica_ratio", s["burst_same_replica_ratio"], "ratio", **p)
            emit("burst_prefill_computes_per_replica", s["burst_prefill_computes_per_replica"],
                 "computes", **p)
    if policy or label:
        return sums
    lk, rr, pr = sums.get("lookup"), sums.get("round-robin"), sums.get("precise")
    if lk and rr and rr["ttft_mean_ms"] > 0:
        emit("lookup_vs_round_robin_ttft_mean", lk["ttft_mean_ms"] / rr["ttft_mean_ms"], "ratio",
             scenario=scenario)
    if lk and pr and pr["hit_rate"] > 0:
        emit("lookup_vs_precise_hit_rate", lk["hit_rate"] / pr["hit_rate"], "ratio",
             scenario=scenario)
    return sums


def push_policy(srv, fleet, policy):
    st, _, body = harness.http_get(srv.snapshot_url + "/policy", method="POST", data=json.dumps(
        {"version": 7, "policies": [dict(namespace=fleet.tenant, **policy)]}).encode())
    if st // 100 != 2:
        sys.exit("bench_routing: POST /policy failed: %d %s" % (st, body[:200]))


def scenarios(compress):
    """(scenario, workload, speedup, extra flags) of every scenario asked for."""
    known = {
        "conversation": ("mooncake:" + TRACE, compress * SIM_SPEEDUP,
                         ["--max-requests=%d" % REQUESTS]),
        "shared-prefix": (SHARED, SIM_SPEEDUP, []),
        "burst": (BURST, SIM_SPEEDUP, []),
    }
    for name in SCENARIOS:
        if name not in known:
            sys.exit("bench_routing: unknown scenario %r (known: %s)" % (name, ", ".join(known)))
        yield (name,) + known[name]


def ranking_modes(srv, fleet, compress):
    """lookup+load, lookup+predict, lookup+load+predict on every scenario, same fleet."""
    for mode in RANKING:
        if mode not in RANKING_STRATEGY:
            sys.exit("bench_routing: unknown ranking mode %r (known: %s)" %
                     (mode, ", ".join(RANKING_STRATEGY)))
        push_policy(srv, fleet, dict(RANKING_EXTRA, strategy=RANKING_STRATEGY[mode]))
        tag = "affinity-off" if RANKING_EXTRA.get("affinityRouting") is False else None
        for name, workload, speedup, extra in scenarios(compress):
            replay(srv, fleet, name, workload, speedup, extra, modes="lookup", label=mode,
                   policy=tag)


def main():
    # Offered load: the trace prefix, compressed so it asks for LOAD of what the fleet completes
    # when saturated (CAPACITY_RPS is per 8 engines; scale with the fleet).
    capacity = CAPACITY_RPS * ENGINES / 8.0
    compress = LOAD * capacity / trace_rate(REQUESTS)
    print("bench_routing: %d engines, sim speedup %g, conversation: %d requests at %.2fx the "
          "trace's rate (%.0f%% of %.1f req/s capacity), replay speedup %.2f" %
          (ENGINES, SIM_SPEEDUP, REQUESTS, compress, LOAD * 100, capacity,
           compress * SIM_SPEEDUP), file=sys.stderr)
    engine_args = ["--speedup=%g" % SIM_SPEEDUP, "--stream-interval=16"]
    sub_args = ["--window=" + WINDOW, "--stats-interval=500ms", "--load-interval=100ms"]
    with harness.Server(["--insecure-disable-auth"] + SERVER_FLAGS) as srv, \
            harness.Fleet(srv, ENGINES, engine_args=engine_args, sub_args=sub_args) as fleet:
        if MODES != "none":
            for name, workload, speedup, extra in scenarios(compress):
                replay(srv, fleet, name, workload, speedup, extra)
        # The reference ranking answers AFFINITY_HINT (a hash over the serving replicas, blind
        # to load) for every prompt nobody holds beyond a prefix all replicas share: new
        # conversations. Turning it off for the tenant sends those to the gateway's
        # least-loaded fallback instead; measured as params.policy "affinity-off".
        if (MODES == "all" or "lookup" in MODES.split(",")) and "conversation" in SCENARIOS:
            push_policy(srv, fleet, {"affinityRouting": False})
            replay(srv, fleet, "conversation", "mooncake:" + TRACE, compress * SIM_SPEEDUP,
                   ["--max-requests=%d" % REQUESTS], modes="lookup", policy="affinity-off")
        ranking_modes(srv, fleet, compress)


if __name__ == "__main__":
    main()
