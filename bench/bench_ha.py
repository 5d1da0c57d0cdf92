#!/usr/bin/env python3
"""make bench BENCH=ha: active-active server replicas (docs/ha.md), real processes on loopback.

Prints JSON lines {"bench":"ha","name":...,"value":...,"unit":...,"params":{...}}:
  fanout_cpu_per_extra_replica  subscriber CPU per engine event with 3 server replicas vs 1,
                                per extra replica ((cpu3/cpu1)^(1/2)); target <= 1.10
  converge_s                    a fresh replica (kill -9, restarted on its address) until its
                                index equals its peer's, with 1 M memberships over 8 engines;
                                target <= 2 s
  agreement_ratio               the same lookup asked of 3 replicas at once under churn, round
                                after round: the share of rounds where they agree at once or
                                within one subscriber flush window of lag (each replica's view
                                of each reporter seen at every other replica within +-50 ms of
                                that instant, judged on the rounds around it: judge());
                                target >= 0.999
  failed_lookups_on_kill        lookups that failed for a round_robin + health-checking client
                                (retrying UNAVAILABLE) while one of 3 replicas was killed; target 0

Usage: bench_ha.py BUILD_DIR. Knobs: IC_HA_PHASES (fanout,converge,agreement,kill),
IC_HA_MEMBERSHIPS (1000000), IC_HA_FANOUT_EVENTS (10000), IC_HA_CHURN_PAUSE_MS (20,0: one
agreement_ratio line per pause of the two churn threads between completions), IC_HA_SHOW (5:
rounds that differ beyond one window logged to stderr with every replica's answer and timing).
The machine's load average is reported in params: these are upper bounds on a shared machine.
"""
import concurrent.futures
import json
import os
import random
import sys
import threading
import time

build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build")
root = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
os.environ.setdefault("IC_BUILD_DIR", build)
os.environ.setdefault("IC_SOURCE_DIR", root)
sys.path.insert(0, os.path.join(root, "tests", "integration"))
import grpc  # noqa: E402
import harness  # noqa: E402
from harness import EngineSim, FakeEngine, Server, Subscriber, http_get  # noqa: E402

pb, pb_grpc = harness.protos()
PHASES = os.environ.get("IC_HA_PHASES", "fanout,converge,agreement,kill").split(",")
MEMBERSHIPS = int(os.environ.get("IC_HA_MEMBERSHIPS", "1000000"))
FANOUT_EVENTS = int(os.environ.get("IC_HA_FANOUT_EVENTS", "10000"))
TICK = os.sysconf("SC_CLK_TCK")


def emit(name, value, unit, **params):
    params["loadavg"] = round(os.getloadavg()[0], 2)
    print(json.dumps({"bench": "ha", "name": name, "value": value, "unit": unit,
                      "params": params}), flush=True)


def log(*a):
    print("[bench_ha]", *a, file=sys.stderr, flush=True)


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def metric(url, sample):
    _, _, body = http_get(url + "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def until(pred, timeout, interval=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise RuntimeError("timed out")


def lookup_req(tokens, model="m", tenant="t"):
    req = pb.LookupRouteRequest(model_id=model, tenant_id=tenant, hash_scheme="vllm")
    req.token_ids.extend(tokens)
    return req


def answer(resp):
    return (resp.reason_code,
            tuple(sorted((r.replica_id, r.matched_tokens) for r in resp.replica_scores)))


# ---- fan-out cost --------------------------------------------------------------------------

def fanout_run(nservers):
    """One subscriber feeding nservers replicas; CPU seconds per engine event."""
    servers = [Server(["--insecure-disable-auth"]).start() for _ in range(nservers)]
    eng = FakeEngine(["--block-size=16", "--num-blocks=8", "--prompts=5000", "--evict-every=5",
                      "--rate=2000", "--count=%d" % FANOUT_EVENTS, "--start-delay=1s"])
    eng.start()
    sub = Subscriber(",".join(s.grpc_addr for s in servers), [eng], replica="fan",
                     extra=["--server-resolve-interval=0"])
    try:
        pid = sub.proc.pid
        until(lambda: sub.metric('kvevent_subscriber_batches_total{result="ok"}') > 0, 30, 0.01)
        c0, t0 = cpu_s(pid), time.monotonic()
        until(lambda: sub.metric('kvevent_subscriber_batches_total{result="ok"}')
              >= FANOUT_EVENTS * 0.99 and sub.metric("kvevent_subscriber_queue_depth") == 0,
              120, 0.1)
        cpu = cpu_s(pid) - c0
        wall = time.monotonic() - t0
        batches = sub.metric('kvevent_subscriber_batches_total{result="ok"}')
        return cpu / batches, wall
    finally:
        sub.stop()
        eng.cleanup()
        for s in servers:
            s.stop()


def phase_fanout():
    per = {}
    for n in (1, 2, 3):
        runs = [fanout_run(n)[0] for _ in range(2)]
        per[n] = min(runs)  # the less disturbed run on a shared machine
        log("fan-out to %d replica(s): %.1f us CPU per message" % (n, per[n] * 1e6))
    ratio = (per[3] / per[1]) ** 0.5
    emit("fanout_cpu_per_extra_replica", round(ratio, 3), "ratio",
         cpu_us_per_message={str(k): round(v * 1e6, 2) for k, v in per.items()},
         messages=FANOUT_EVENTS, message="BlockStored of 8 blocks (16 tokens each); every 5th "
         "a BlockRemoved of 8 blocks", rate_per_s=2000, runs_each=2, statistic="min")


# ---- convergence of a fresh replica --------------------------------------------------------

def phase_converge():
    engines_n = 8
    per_engine = MEMBERSHIPS // engines_n
    nblocks = 125
    prompts = max(1, per_engine // nblocks)
    a = Server(["--insecure-disable-auth"]).start()
    b = Server(["--insecure-disable-auth"]).start()
    engines, subs = [], []
    try:
        for i in range(engines_n):
            e = FakeEngine(["--block-size=16", "--num-blocks=%d" % nblocks,
                            "--prompts=%d" % prompts, "--count=%d" % prompts, "--rate=5000",
                            "--seed=%d" % (i + 1), "--hold", "--buffer-steps=%d" % (prompts + 10),
                            "--print-tokens"])
            engines.append(e.start())
        time.sleep(1)
        for i, e in enumerate(engines):
            subs.append(Subscriber("%s,%s" % (a.grpc_addr, b.grpc_addr), [e],
                                   replica="engine-%d" % i,
                                   extra=["--server-resolve-interval=0"]))
        total = prompts * nblocks * engines_n
        entries = 'inferencecache_index_entries{model="m"}'
        t0 = time.monotonic()
        until(lambda: metric(a.http_url, entries) >= total and metric(b.http_url, entries) >= total,
              600, 0.5)
        log("both replicas hold %d memberships after %.1fs" % (total, time.monotonic() - t0))
        rss_mb = b.rss_mb()
        # kill -9 the second replica, start a fresh one on its address
        b.kill9()
        time.sleep(0.5)
        b.args = ["--insecure-disable-auth", "--warm-start-window-ms=1000"]
        b.wait = False
        t0 = time.monotonic()
        b.start()
        ready_s = conv_s = first_s = None
        while time.monotonic() - t0 < 120 and (conv_s is None or ready_s is None):
            now = time.monotonic() - t0
            try:
                have = metric(b.http_url, entries)
                if first_s is None and have > 0:
                    first_s = now
                if conv_s is None and have >= total:
                    conv_s = now
                if ready_s is None and http_get(b.http_url + "/readyz", timeout=2)[0] == 200:
                    ready_s = now
            except Exception:
                pass
            time.sleep(0.02)
        # answers identical to the peer's on a sample of prompts
        sa = pb_grpc.InferenceCacheStub(a.channel())
        sb = pb_grpc.InferenceCacheStub(b.channel())
        rnd = random.Random(3)
        same = n = 0
        for e in engines:
            ps = e.prompts()
            for p in rnd.sample(ps, min(25, len(ps))):
                toks = p["tokens"]
                n += 1
                same += answer(sa.LookupRoute(lookup_req(toks), timeout=10)) == \
                    answer(sb.LookupRoute(lookup_req(toks), timeout=10))
        emit("converge_s", round(conv_s, 3) if conv_s is not None else None, "s",
             memberships=total, engines=engines_n, blocks_per_engine=prompts * nblocks,
             ready_s=round(ready_s, 3) if ready_s is not None else None,
             first_entry_s=round(first_s, 3) if first_s is not None else None,
             sampled_lookups_identical="%d/%d" % (same, n), server_rss_mb_before_kill=round(rss_mb),
             measured="process start of the fresh replica -> its index holds every membership")
    finally:
        for s in subs:
            s.stop()
        for e in engines:
            e.cleanup()
        a.stop()
        b.stop()


# ---- agreement under churn and a kill ------------------------------------------------------

PROMPTS = [list(range(500000 + i * 1000, 500000 + i * 1000 + 6 * 16 + 1)) for i in range(48)]


def complete(engine, tokens):
    body = json.dumps({"model": engine.model, "prompt": tokens, "max_tokens": 1}).encode()
    http_get(engine.url + "/v1/completions", timeout=30, method="POST", data=body,
             headers={"Content-Type": "application/json"})


def fleet(servers, n=4, window="50ms"):
    addrs = ",".join(s.grpc_addr for s in servers)
    engines = [EngineSim(["--kv-capacity-tokens=2048", "--speedup=20"], model="m")
               for _ in range(n)]
    subs = [Subscriber(addrs, [e], replica="sim-%d" % i, model="m", tenant="t",
                       extra=["--window=" + window, "--server-resolve-interval=1s"])
            for i, e in enumerate(engines)]
    return engines, subs


# Pause of each churn thread between completions: 20 ms (~80 completions/s over 4 engines, far
# above the routing benchmark's request rate) and 0 (back to back, as fast as the machine goes).
CHURN_PAUSES_MS = [float(x) for x in os.environ.get("IC_HA_CHURN_PAUSE_MS", "20,0").split(",")]


def churn(engines, stop, rate_note, pause_s=0.0):
    rnd = random.Random(5)
    n = 0
    while not stop.is_set():
        complete(rnd.choice(engines), rnd.choice(PROMPTS))
        n += 1
        if pause_s:
            time.sleep(pause_s)
    rate_note.append(n)


def phase_agreement():
    for pause in CHURN_PAUSES_MS:
        agreement(pause / 1000)


# Agreement is judged on segments: one prompt asked of every replica at once, round after round,
# for SEGMENT_S. Each round is one lookup compared at one instant; the rounds around it are every
# replica's timeline for that prompt, which is what "allowing one flush window of lag" is
# checked against (docs/ha.md, "Agreement under churn").
WINDOW_S = 0.05
SEGMENT_S = 0.4
SHOW = int(os.environ.get("IC_HA_SHOW", "5"))


def components(ans):
    """An answer split per reporter: matched tokens of each replica id with a prefix match."""
    return {r: m for r, m in ans[1] if m > 0}


def hint(ans):
    """What an answer without a prefix match names (reason + replica ids), else None."""
    return None if components(ans) else ans


def gap(x, y):
    """Seconds between two calls' [start, end] intervals (0 when they overlap)."""
    return max(0.0, y[0] - x[1], x[0] - y[1])


def judge(rounds, window):
    """Verdict per round with a full window of timeline on both sides: "at_once" (all equal),
    "answer" (each replica's answer was given by every other within one window), "reporter" (the
    same per reporter: each replica's view of each reporter was every other's within one window,
    and a round without a match names what every such answer of the segment names), or None;
    with the smallest lag that explains the difference per reporter."""
    if not rounds:
        return []
    start = min(c[0] for c in rounds[0])
    end = max(c[1] for c in rounds[-1])
    n = len(rounds[0])
    timeline = [[(r[i][0], r[i][1], r[i][2], components(r[i][2])) for r in rounds]
                for i in range(n)]
    hints = {hint(c[2]) for r in rounds for c in r} - {None}
    out = []
    for rnd in rounds:
        if min(c[0] for c in rnd) < start + window or max(c[1] for c in rnd) > end - window:
            continue
        if len({c[2] for c in rnd}) == 1:
            out.append(("at_once", 0.0, rnd))
            continue
        answer_lag = comp_lag = 0.0
        for x in range(n):
            xc = components(rnd[x][2])
            for y in range(n):
                if x == y or rnd[x][2] == rnd[y][2]:
                    continue
                seen = timeline[y]
                answer_lag = max(answer_lag, min(
                    [gap(rnd[x], s) for s in seen if s[2] == rnd[x][2]] or [float("inf")]))
                for k in {k for c in rnd for k in components(c[2])}:
                    comp_lag = max(comp_lag, min(
                        [gap(rnd[x], s) for s in seen if s[3].get(k, 0) == xc.get(k, 0)]
                        or [float("inf")]))
            if hint(rnd[x][2]) and len(hints) > 1:
                comp_lag = float("inf")  # no match, yet the answers without one differ
        verdict = ("answer" if answer_lag <= window else
                   "reporter" if comp_lag <= window else None)
        out.append((verdict, comp_lag, rnd))
    return out


def agreement(pause_s):
    servers = [Server(["--insecure-disable-auth"]).start() for _ in range(3)]
    engines, subs = fleet(servers, window="%dms" % round(WINDOW_S * 1000))
    stop = threading.Event()
    done = []
    threads = [threading.Thread(target=churn, args=(engines, stop, done, pause_s))
               for _ in range(2)]
    stubs = [pb_grpc.InferenceCacheStub(s.channel()) for s in servers]
    pool = concurrent.futures.ThreadPoolExecutor(len(stubs))

    def ask(toks):
        def one(stub):
            t0 = time.monotonic()
            a = answer(stub.LookupRoute(lookup_req(toks), timeout=5))
            return t0, time.monotonic(), a
        return [f.result() for f in [pool.submit(one, s) for s in stubs]]

    try:
        for t in threads:
            t.start()
        time.sleep(2)
        rnd = random.Random(9)
        tally = {"total": 0, "at_once": 0, "answer": 0, "reporter": 0}
        lags, shown = [], 0
        t_end = time.monotonic() + 20
        t0 = time.monotonic()
        while time.monotonic() < t_end:
            toks = rnd.choice(PROMPTS)[:96]
            seg_end = time.monotonic() + SEGMENT_S
            rounds = []
            while time.monotonic() < seg_end:
                rounds.append(ask(toks))
            for verdict, lag, rnd_ in judge(rounds, WINDOW_S):
                tally["total"] += 1
                if verdict:
                    tally[verdict] += 1
                if verdict != "at_once":
                    lags.append(min(lag, SEGMENT_S))  # inf: not seen again in the segment
                if not verdict and shown < SHOW:
                    shown += 1
                    log("differs beyond one window (explained only by %.0f ms): %s" %
                        (lag * 1000, [(round(a - t0, 4), round(b - t0, 4), x) for a, b, x in rnd_]))
        wall = time.monotonic() - t0
        stop.set()
        for t in threads:
            t.join(30)
        lags.sort()

        def pct(q):
            return round(lags[min(len(lags) - 1, int(q * len(lags)))] * 1000, 1) if lags else None

        agree = tally["at_once"] + tally["answer"] + tally["reporter"]
        emit("agreement_ratio", round(agree / tally["total"], 5), "ratio",
             lookups=tally["total"], equal_at_once=tally["at_once"],
             same_answer_within_window=tally["answer"],
             same_per_reporter_within_window=tally["reporter"],
             differing=tally["total"] - agree,
             lag_explaining_differences_ms={"p50": pct(0.5), "p99": pct(0.99),
                                            "max": pct(1.0)},
             segment_ms=SEGMENT_S * 1000,
             replicas=len(servers), engines=len(engines), flush_window_ms=WINDOW_S * 1000,
             churn_completions_per_s=round(sum(done) / (wall + 2), 1),
             churn_pause_ms=pause_s * 1000,
             churn="engine simulators, 128-block caches, 48 prompts of 6 blocks: stores + "
             "evictions")
    finally:
        stop.set()
        for s in subs:
            s.stop()
        for e in engines:
            e.stop()
        for s in servers:
            s.stop()


def lb_channel(addrs, retry):
    cfg = {"loadBalancingConfig": [{"round_robin": {}}],
           "healthCheckConfig": {"serviceName": "inferencecache.v1alpha1.InferenceCache"}}
    if retry:
        cfg["methodConfig"] = [{
            "name": [{"service": "inferencecache.v1alpha1.InferenceCache"}],
            "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.01s", "maxBackoff": "0.1s",
                            "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}}]
    return grpc.insecure_channel("ipv4:" + ",".join(addrs), options=[
        ("grpc.service_config", json.dumps(cfg)), ("grpc.enable_retries", 1 if retry else 0),
        ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 1000)])


def phase_kill():
    servers = [Server(["--insecure-disable-auth"]).start() for _ in range(3)]
    engines, subs = fleet(servers, n=2)
    addrs = [s.grpc_addr for s in servers]
    stop = threading.Event()
    counts = {True: [0, 0], False: [0, 0]}  # retry -> [ok, failed]
    lock = threading.Lock()

    def client(retry):
        stub = pb_grpc.InferenceCacheStub(lb_channel(addrs, retry))
        rnd = random.Random(1)
        while not stop.is_set():
            try:
                stub.LookupRoute(lookup_req(rnd.choice(PROMPTS)[:96]), timeout=2)
                k = 0
            except grpc.RpcError:
                k = 1
            with lock:
                counts[retry][k] += 1

    done = []
    threads = [threading.Thread(target=client, args=(r,)) for r in (True, True, False, False)]
    threads.append(threading.Thread(target=churn, args=(engines, stop, done)))
    try:
        for t in threads:
            t.start()
        time.sleep(3)
        servers[2].kill9()
        time.sleep(5)
        stop.set()
        for t in threads:
            t.join(30)
        emit("failed_lookups_on_kill", counts[True][1], "lookups", lookups=sum(counts[True]),
             client="grpc round_robin over 3 addresses, healthCheckConfig, retryPolicy "
             "UNAVAILABLE x3 (2 threads)",
             without_retry_failed=counts[False][1], without_retry_lookups=sum(counts[False]),
             killed="1 of 3 replicas, SIGKILL, mid-traffic")
    finally:
        stop.set()
        for s in subs:
            s.stop()
        for e in engines:
            e.stop()
        for s in servers:
            s.stop()


def main():
    log("load average at start: %s" % (os.getloadavg(),))
    for name, fn in (("fanout", phase_fanout), ("converge", phase_converge),
                     ("agreement", phase_agreement), ("kill", phase_kill)):
        if name in PHASES:
            t0 = time.monotonic()
            fn()
            log("%s phase took %.0fs" % (name, time.monotonic() - t0))


if __name__ == "__main__":
    main()
