#!/usr/bin/env python3
"""Capacity arithmetic for active-active server groups (docs/ha.md, "Beyond one fleet"): memory,
event volume and lookup load per server replica for a fleet, from the figures measured in
docs/performance.md, and a small simulation of sharding the index by model across server groups
(Zipf-popular models packed onto groups by event volume). Deterministic; stdlib only.

  scripts/ha_capacity.py            the tables docs/ha.md quotes (markdown)
  scripts/ha_capacity.py --json     the same as JSON lines"""
import argparse
import json
import math

# Measured (docs/performance.md): bench_index `bytes_per_membership_unique` (RSS growth per
# (replica, block) membership at 10 M), bench_grpc `report_blocks_per_s` and `lookup_route_qps`
# (one server, a 2-core machine shared with the load generator: lower bounds for a real node).
BYTES_PER_MEMBERSHIP = 26.6
INGEST_BLOCKS_PER_S = 2.90e6
LOOKUP_QPS = 31.7e3
# Planning rule: a replica runs at <= 50 % of measured ingest and lookup capacity, so it can absorb
# a dead peer's lookups and a burst of re-reports after a restart.
HEADROOM = 0.5
BLOCK_TOKENS = 16

# Assumed engine shapes (not measured here; the doc states them): KV blocks an engine holds and
# the blocks it newly stores per second (prefill of uncached tokens / 16). At steady state a full
# cache evicts as much as it stores, so membership changes = 2 x stored.
ENGINES = {
    # Llama-3.1-8B bf16 on one 80 GB GPU: 128 KiB of KV per token, ~60 GiB of KV -> 30,720 blocks
    # of 16 tokens; ~8,000 uncached prompt tokens/s.
    "8b-1gpu": {"blocks": 30720, "stored_per_s": 8000 / BLOCK_TOKENS, "lookups_per_s": 20},
    # Llama-3.1-70B bf16 on 8 x 80 GB (TP 8): 320 KiB per token, ~400 GiB of KV -> 81,920 blocks;
    # ~4,000 uncached prompt tokens/s.
    "70b-8gpu": {"blocks": 81920, "stored_per_s": 4000 / BLOCK_TOKENS, "lookups_per_s": 10},
}


def per_group(n_engines, shape):
    e = ENGINES[shape]
    memberships = n_engines * e["blocks"]
    events = n_engines * e["stored_per_s"] * 2
    lookups = n_engines * e["lookups_per_s"]
    return {
        "engines": n_engines,
        "shape": shape,
        "memberships": memberships,
        "memory_gib": memberships * BYTES_PER_MEMBERSHIP / 2**30,
        "events_per_s": events,
        "ingest_utilisation": events / INGEST_BLOCKS_PER_S,
        "lookups_per_s": lookups,
        # Every replica takes every event (active-active), so replicas add lookup capacity and
        # availability, never ingest capacity: size them for lookups, plus one spare.
        "replicas": max(2, math.ceil(lookups / (LOOKUP_QPS * HEADROOM)) + 1),
    }


def max_engines_per_group(shape):
    """Engines one group (any number of replicas) can follow at the headroom rule."""
    e = ENGINES[shape]
    return int(INGEST_BLOCKS_PER_S * HEADROOM / (e["stored_per_s"] * 2))


def shard_simulation(n_models, n_engines, shape, zipf_s=1.1):
    """Models with Zipf(s) popularity (engines per model, at least 1) packed onto the fewest
    server groups that keep each under the headroom rule (largest first onto the least loaded
    group). A model bigger than one group is cut into engine pools of at most a group each (a
    routing domain per pool: the gateway picks the pool by tenant or session hash, then asks that
    pool's group); other models are never split. Returns the groups' figures."""
    weights = [1 / (k ** zipf_s) for k in range(1, n_models + 1)]
    total = sum(weights)
    engines = [max(1, round(n_engines * w / total)) for w in weights]
    cap = max_engines_per_group(shape)
    units = []  # (model, engines) after cutting oversized models into pools
    for m, n in enumerate(engines):
        pools = math.ceil(n / cap)
        for p in range(pools):
            units.append((m, n // pools + (1 if p < n % pools else 0)))
    groups = max(1, math.ceil(sum(engines) / cap))
    while True:
        load = [0] * groups
        for _, n in sorted(units, key=lambda x: -x[1]):
            g = min(range(groups), key=lambda i: load[i])
            load[g] += n
        if max(load) <= cap:
            break
        groups += 1
    return {"models": n_models, "engines": sum(engines), "largest_model_engines": max(engines),
            "split_models": sum(1 for n in engines if n > cap),
            "pools": len(units), "groups": groups, "engines_per_group_max": max(load),
            "engines_per_group_min": min(load), "group_cap": cap,
            "groups_detail": [per_group(n, shape) for n in load]}


SCENARIOS = [(64, "8b-1gpu"), (512, "8b-1gpu"), (2048, "8b-1gpu"), (256, "70b-8gpu")]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = [per_group(n, s) for n, s in SCENARIOS]
    sim = shard_simulation(200, 20000, "8b-1gpu")
    if args.json:
        for r in rows:
            print(json.dumps({"bench": "ha_capacity", "name": "group", "params": r}))
        print(json.dumps({"bench": "ha_capacity", "name": "shard_simulation",
                          "params": {k: v for k, v in sim.items() if k != "groups_detail"}}))
        return
    print("| engines (shape) | memberships | memory / replica | events/s / replica | "
          "of measured ingest | lookups/s | replicas |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %d (%s) | %.1f M | %.2f GiB | %.0f k | %.0f %% | %.1f k | %d |" % (
            r["engines"], r["shape"], r["memberships"] / 1e6, r["memory_gib"],
            r["events_per_s"] / 1e3, r["ingest_utilisation"] * 100, r["lookups_per_s"] / 1e3,
            r["replicas"]))
    print()
    for s in ENGINES:
        print("- one group follows at most %d engines of shape %s (50 %% of %.2f M events/s)" % (
            max_engines_per_group(s), s, INGEST_BLOCKS_PER_S / 1e6))
    print("- shard simulation: %d models (Zipf 1.1), %d engines (8b-1gpu), largest model %d "
          "engines (%d model(s) cut into pools) -> %d groups of %d-%d engines (cap %d); per "
          "group at most %.2f GiB per replica, %d replicas" % (
              sim["models"], sim["engines"], sim["largest_model_engines"], sim["split_models"],
              sim["groups"], sim["engines_per_group_min"],
                           sim["engines_per_group_max"], sim["group_cap"],
                           max(g["memory_gib"] for g in sim["groups_detail"]),
                           max(g["replicas"] for g in sim["groups_detail"])))


if __name__ == "__main__":
    main()
