#!/usr/bin/python3
"""Soak (issue 16): one inferencecache-server, several fake-engines each with its kvevent-subscriber,
engines killed (-9) and restarted with new prompts on a schedule, engines evicting and clearing
all the time, StreamCacheEvents readers, and a steady stream of LookupRoute calls whose answers
are checked against what each engine holds. Prints JSON lines ("bench": "soak"): RSS over time
per process, recovery time after each engine restart, lookups checked / wrong / missed, and exits
non-zero on any loss (a wrong or missing answer outside a restart window, a restart never
recovered, a process that died, a stream that failed).

    make soak SOAK_MINUTES=20          # or: scripts/soak.py --build build --minutes 3

Engines: "stable" ones only store (every prompt must match its replica once learned); "churn"
ones also evict every 5th message and clear every 500th (their answers are checked for wrong
replicas and stale generations only). Prompt p of engine k, generation g, is 64 sequential
tokens from 10,000,000*(k+1) + 100,000*g + 64*p."""
import argparse
import json
import os
import random
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

ap = argparse.ArgumentParser()
ap.add_argument("--build", default=os.environ.get("IC_BUILD_DIR", "build"))
ap.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "20")))
ap.add_argument("--stable", type=int, default=2, help="engines that only store")
ap.add_argument("--churn", type=int, default=2, help="engines that also evict and clear")
ap.add_argument("--restart-every", type=float, default=45.0, help="seconds between engine restarts")
ap.add_argument("--lookup-rate", type=float, default=40.0, help="checked lookups per second")
ap.add_argument("--rss-every", type=float, default=30.0, help="seconds between RSS samples")
ap.add_argument("--recovery-target", type=float, default=5.0)
# The server's StreamCacheEvents ring is mapped lazily and its pages are touched as it fills, so
# with the 64 MiB default the server's RSS climbs for the whole run while the readers are
# connected and hides any real growth. A 4 MiB ring fills in the first minutes; after that the
# server's RSS should be flat (server_rss_growth_second_half_mb).
ap.add_argument("--stream-log-bytes", type=int, default=4 << 20,
                help="server --stream-log-bytes (the change log the stream readers read)")
args = ap.parse_args()
os.environ["IC_BUILD_DIR"] = os.path.abspath(args.build)

from harness import FakeEngine, Server, Subscriber, protos  # noqa: E402

pb, pb_grpc = protos()
BS, NB, PROMPTS = 16, 4, 100
MODEL, TENANT = "soak", "t"
SETTLE_S = 10.0  # after a restart's recovery, answers about that engine are checked strictly
RECOVERY_LIMIT_S = 30.0


def emit(name, value, unit, **params):
    print(json.dumps({"bench": "soak", "name": name, "value": value, "unit": unit,
                      "params": params}), flush=True)


def tokens(k, g, p):
    s = 10_000_000 * (k + 1) + 100_000 * g + BS * NB * p
    return list(range(s, s + BS * NB))


class Eng:
    def __init__(self, k, churn):
        self.k, self.churn, self.gen = k, churn, 0
        self.replica = "eng-%d" % k
        self.retired = {}  # generation -> monotonic time it was killed
        self.recovering = False
        self.settled_at = 0.0
        self.proc = FakeEngine(self.args())

    def args(self):
        a = ["--block-size=%d" % BS, "--num-blocks=%d" % NB, "--prompts=%d" % PROMPTS,
             "--start-token=%d" % tokens(self.k, self.gen, 0)[0], "--interval=10ms", "--topic=",
             "--buffer-steps=20000"]
        if self.churn:
            a += ["--evict-every=5", "--clear-every=500"]
        return a


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def main():
    lock = threading.Lock()
    stats = {"checked": 0, "wrong": 0, "missed": 0, "skipped": 0, "errors": 0}
    failures = []
    stop = threading.Event()
    server_rss = []  # (seconds since start, MB)
    with Server(["--insecure-disable-auth",
                 "--stream-log-bytes=%d" % args.stream_log_bytes]) as srv:
        stub = srv.stub()
        engines = [Eng(k, k >= args.stable) for k in range(args.stable + args.churn)]
        subs = []
        for e in engines:
            e.proc.start()
            subs.append(Subscriber(srv.grpc_addr, [e.proc], replica=e.replica, model=MODEL,
                                   tenant=TENANT, extra=["--engine-down-grace=10s"]))

        def lookup(toks):
            req = pb.LookupRouteRequest(model_id=MODEL, tenant_id=TENANT, hash_scheme="vllm")
            req.token_ids.extend(toks)
            r = stub.LookupRoute(req, timeout=10)
            return [(s.replica_id, s.matched_tokens) for s in r.replica_scores
                    if s.matched_tokens > 0]

        # -- initial learning: every stable engine's prompts match before the clock starts
        t0 = time.monotonic()
        for e in engines:
            while True:
                if all(lookup(tokens(e.k, 0, p))[:1] == [(e.replica, BS * NB)]
                       for p in range(0, PROMPTS, 10)) or e.churn:
                    break
                if time.monotonic() - t0 > 60:
                    failures.append("engine %d never learned" % e.k)
                    break
                time.sleep(0.2)
        for e in engines:
            e.settled_at = time.monotonic()

        # -- stream readers
        streamed = [0, 0]

        def reader(i):
            try:
                for _ in stub.StreamCacheEvents(pb.StreamEventsRequest(model_id=MODEL,
                                                                       tenant_id=TENANT)):
                    streamed[i] += 1
                    if stop.is_set():
                        return
            except Exception as ex:  # cancelled at the end, or a failure
                if not stop.is_set():
                    failures.append("stream reader %d: %s" % (i, ex))
        calls = []
        for i in range(2):
            th = threading.Thread(target=reader, args=(i,), daemon=True)
            th.start()
            calls.append(th)

        # -- checked lookups
        def checker():
            period = 1.0 / args.lookup_rate
            rnd = random.Random(7)
            while not stop.is_set():
                time.sleep(period)
                e = rnd.choice(engines)
                with lock:
                    gen, recovering, settled = e.gen, e.recovering, e.settled_at
                    old = [g for g, t in e.retired.items() if time.monotonic() - t > SETTLE_S
                           and not recovering]
                stale = old and rnd.random() < 0.3
                g = rnd.choice(old) if stale else gen
                p = rnd.randrange(PROMPTS)
                try:
                    ans = lookup(tokens(e.k, g, p))
                except Exception:
                    with lock:
                        stats["errors"] += 1
                    continue
                with lock:
                    if e.gen != gen or e.recovering or recovering or \
                            time.monotonic() - settled < SETTLE_S:
                        stats["skipped"] += 1  # the engine restarted around this lookup
                        continue
                    stats["checked"] += 1
                    if stale:
                        if ans:
                            stats["wrong"] += 1
                            failures.append("stale prompt eng %d gen %d p %d -> %r" %
                                            (e.k, g, p, ans))
                    elif ans and ans[0][0] != e.replica:
                        stats["wrong"] += 1
                        failures.append("eng %d gen %d p %d -> %r" % (e.k, g, p, ans))
                    elif not e.churn and ans[:1] != [(e.replica, BS * NB)]:
                        stats["missed"] += 1
                        failures.append("missed eng %d gen %d p %d -> %r" % (e.k, g, p, ans))

        ck = threading.Thread(target=checker, daemon=True)
        ck.start()

        # -- restarts, RSS sampling, until the time is up
        procs = lambda: ([("server", srv.proc.pid)] +  # noqa: E731
                         [("subscriber-%d" % i, s.proc.pid) for i, s in enumerate(subs)] +
                         [("engine-%d" % e.k, e.proc.proc.pid) for e in engines])
        start = time.monotonic()
        end = start + args.minutes * 60
        next_rss, next_restart = start, start + args.restart_every
        recoveries = []
        rnd = random.Random(11)
        while time.monotonic() < end and not failures:
            now = time.monotonic()
            if now >= next_rss:
                for name, pid in procs():
                    kb = rss_kb(pid)
                    emit("rss_mb", round(kb / 1024, 1) if kb else None, "MB", process=name,
                         t_s=round(now - start))
                    if name == "server" and kb:
                        server_rss.append((now - start, kb / 1024))
                next_rss += args.rss_every
            for name, pid in procs()[:1 + len(subs)]:
                if rss_kb(pid) is None:
                    failures.append("%s (pid %d) died" % (name, pid))
            if now >= next_restart:
                e = rnd.choice(engines)
                with lock:
                    e.recovering = True
                    e.retired[e.gen] = time.monotonic()
                e.proc.kill9()
                time.sleep(1.0)
                with lock:
                    e.gen += 1
                e.proc.start(e.args())
                t_restart = time.monotonic()
                while True:
                    new_ok = sum(lookup(tokens(e.k, e.gen, p))[:1] == [(e.replica, BS * NB)]
                                 for p in range(0, PROMPTS, 10))
                    old_gone = all(not lookup(tokens(e.k, e.gen - 1, p))
                                   for p in range(0, PROMPTS, 10))
                    if old_gone and new_ok >= (8 if e.churn else 10):
                        break
                    if time.monotonic() - t_restart > RECOVERY_LIMIT_S:
                        failures.append("engine %d restart not recovered in %ss" %
                                        (e.k, RECOVERY_LIMIT_S))
                        break
                    time.sleep(0.1)
                rec = time.monotonic() - t_restart
                recoveries.append(rec)
                emit("restart_recovery_s", round(rec, 2), "s", engine=e.k, generation=e.gen,
                     churn=e.churn, target=args.recovery_target)
                with lock:
                    e.recovering = False
                    e.settled_at = time.monotonic()
                next_restart = time.monotonic() + args.restart_every
            time.sleep(0.5)
        stop.set()
        ck.join(5)
        for name, pid in procs():
            kb = rss_kb(pid)
            emit("rss_mb", round(kb / 1024, 1) if kb else None, "MB", process=name,
                 t_s=round(time.monotonic() - start))
        if len(server_rss) >= 2:
            half = server_rss[-1][0] / 2
            mid = min(server_rss, key=lambda p: abs(p[0] - half))
            emit("server_rss_growth_second_half_mb", round(server_rss[-1][1] - mid[1], 1), "MB",
                 from_s=round(mid[0]), to_s=round(server_rss[-1][0]),
                 stream_log_bytes=args.stream_log_bytes)
        with lock:
            for k in ("checked", "wrong", "missed", "skipped", "errors"):
                emit("lookups_" + k, stats[k], "lookups", minutes=args.minutes)
        emit("restarts", len(recoveries), "restarts")
        if recoveries:
            emit("restart_recovery_max_s", round(max(recoveries), 2), "s",
                 target=args.recovery_target)
            emit("restart_recovery_over_target", sum(r > args.recovery_target for r in recoveries),
                 "restarts", target=args.recovery_target)
        emit("stream_events_read", sum(streamed), "events", readers=len(streamed))
        metrics = {}
        for i, s in enumerate(subs):
            m = s.metrics()
            for key in ("kvevent_subscriber_engine_restarts_total",
                        "kvevent_subscriber_replay_unrecovered_batches_total",
                        'kvevent_subscriber_queue_dropped_total{kind="add"}'):
                metrics[key] = metrics.get(key, 0) + m.get(key, 0)
        for key, v in metrics.items():
            emit("subscriber_" + key.replace("kvevent_subscriber_", ""), v, "count")
        if stats["checked"] == 0:
            failures.append("no lookup was checked")
        if stats["errors"]:
            failures.append("%d lookups failed" % stats["errors"])
        for s in subs:
            s.stop()
        for e in engines:
            e.proc.cleanup()
    for f in failures[:20]:
        print("SOAK FAILURE: " + f, file=sys.stderr)
    emit("result", 0 if not failures else 1, "exit_code", failures=len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
