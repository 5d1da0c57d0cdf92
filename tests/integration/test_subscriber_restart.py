"""kvevent-subscriber against engines that restart, die and come with a long replay ring:
real processes only (inferencecache-server, fake-engine, kvevent-subscriber), kill -9 for the
engine, python3-grpcio LookupRoute for what the index answers.

Engine prompts are sequential token ids (fake-engine --start-token): prompt p of an engine started
at S with B blocks of 16 tokens is range(S + p*16*B, S + (p+1)*16*B), so a test computes every
lookup itself (4 blocks: the server answers lookups shorter than 64 tokens without a prefix
match)."""
import os
import re
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from harness import FakeEngine, Server, Subscriber, http_get, protos, wait_until  # noqa: E402

pb, pb_grpc = protos()
BS = 16


def tokens(start, p, nblocks):
    n = BS * nblocks
    return list(range(start + p * n, start + (p + 1) * n))


def top(srv, toks, model):
    req = pb.LookupRouteRequest(model_id=model, tenant_id="t", hash_scheme="vllm")
    req.token_ids.extend(toks)
    r = srv.stub().LookupRoute(req, timeout=10)
    if not r.replica_scores:
        return (r.reason_code, None, 0)
    s = r.replica_scores[0]
    return (r.reason_code, s.replica_id, s.matched_tokens)


def index_entries(srv, model):
    st, _, body = http_get(srv.http_url + "/metrics")
    assert st == 200
    m = re.search(r'^inferencecache_index_entries\{model="%s"\} (\S+)$' % re.escape(model),
                  body.decode(), re.M)
    return float(m.group(1)) if m else 0.0


@pytest.fixture
def procs():
    made = []

    def engine(args, replay=True):
        e = FakeEngine(args, replay=replay)
        made.append(e)
        return e.start()

    def subscriber(*a, **kw):
        s = Subscriber(*a, **kw)
        made.append(s)
        return s

    yield engine, subscriber
    for p in reversed(made):
        if isinstance(p, Subscriber):
            p.stop()
        else:
            p.cleanup()


def engine_args(start, prompts=40, nblocks=4, interval="20ms"):
    return ["--block-size=%d" % BS, "--num-blocks=%d" % nblocks, "--prompts=%d" % prompts,
            "--start-token=%d" % start, "--interval=" + interval, "--topic="]


def all_match(srv, model, start, prompts, nblocks, replica="r0"):
    want = ("PREFIX_MATCH", replica, BS * nblocks)
    return all(top(srv, tokens(start, p, nblocks), model) == want for p in range(prompts))


def none_match(srv, model, start, prompts, nblocks):
    return all(top(srv, tokens(start, p, nblocks), model)[0] != "PREFIX_MATCH"
               for p in range(prompts))


@pytest.mark.parametrize("replay", [True, False], ids=["replay", "no-replay"])
def test_engine_kill9_and_restart_with_new_prompts_relearns_within_seconds(procs, replay):
    """The restarted engine numbers from 0 but the subscriber reconnects with backoff and first
    hears a small non-zero number: before the fix every new event was dropped as a duplicate and
    the dead engine's blocks stayed advertised."""
    engine, subscriber = procs
    model = "m-restart-" + ("r" if replay else "n")
    with Server(["--insecure-disable-auth"]) as srv:
        e = engine(engine_args(1000000), replay=replay)
        sub = subscriber(srv.grpc_addr, [e], model=model, replay=replay)
        wait_until(lambda: all_match(srv, model, 1000000, 40, 4), timeout=30,
                   what="first engine's prompts indexed")
        e.kill9()
        time.sleep(1.0)
        e.start(engine_args(2000000))
        t0 = time.monotonic()
        wait_until(lambda: all_match(srv, model, 2000000, 40, 4)
                   and none_match(srv, model, 1000000, 40, 4), timeout=15, interval=0.2,
                   what="restarted engine relearned and the old prompts gone")
        recovery = time.monotonic() - t0
        print("recovery_s=%.2f" % recovery)
        assert sub.metric("kvevent_subscriber_engine_restarts_total") >= 1
        assert recovery <= 10, recovery


def test_engine_down_past_grace_stops_advertising(procs):
    engine, subscriber = procs
    model = "m-down-grace"
    with Server(["--insecure-disable-auth"]) as srv:
        e = engine(engine_args(4000000, prompts=10))
        sub = subscriber(srv.grpc_addr, [e], model=model, extra=["--engine-down-grace=2s"])
        wait_until(lambda: all_match(srv, model, 4000000, 10, 4), timeout=30,
                   what="prompts indexed")
        e.kill9()
        t0 = time.monotonic()
        # within the grace period the blocks stay (a quick restart must not blank the replica)
        time.sleep(1.0)
        assert top(srv, tokens(4000000, 0, 4), model)[0] == "PREFIX_MATCH"
        wait_until(lambda: none_match(srv, model, 4000000, 10, 4), timeout=15, interval=0.2,
                   what="blocks withdrawn after the grace period")
        assert time.monotonic() - t0 >= 1.9
        m = sub.metrics()
        assert m["kvevent_subscriber_engine_down_clears_total"] == 1
        assert m['kvevent_subscriber_engine_connected{endpoint="%s"}' % e.endpoint] == 0
        # and it comes back: the engine returns, its prompts are learned again
        e.start(engine_args(5000000, prompts=10))
        wait_until(lambda: all_match(srv, model, 5000000, 10, 4), timeout=15, interval=0.2,
                   what="engine back after the outage")
        assert sub.metric('kvevent_subscriber_engine_connected{endpoint="%s"}' % e.endpoint) == 1


def test_late_join_receives_the_whole_replay_ring(procs):
    """A subscriber started next to an engine holding 20k messages learns all of them (before:
    ~1,000, the replay socket's default high-water mark, then 'caught up')."""
    engine, subscriber = procs
    model = "m-catchup-20k"
    n = 20000
    with Server(["--insecure-disable-auth"]) as srv:
        e = engine(["--block-size=%d" % BS, "--num-blocks=4", "--prompts=%d" % n,
                    "--start-token=6000000", "--rate=40000", "--count=%d" % n, "--hold",
                    "--buffer-steps=%d" % (n + 100), "--topic="])
        wait_until(lambda: "holding" in e.logs(), timeout=60, what="engine published its ring")
        sub = subscriber(srv.grpc_addr, [e], model=model)
        # nothing new is published: everything must come from the replay ring
        wait_until(lambda: index_entries(srv, model) >= 4 * n, timeout=60, interval=0.5,
                   what="all %d entries indexed (have %s)" % (4 * n, index_entries(srv, model)))
        sample = list(range(0, n, 97)) + [n - 1]
        wrong = [p for p in sample if top(srv, tokens(6000000, p, 4), model) !=
                 ("PREFIX_MATCH", "r0", 4 * BS)]
        assert not wrong, wrong[:10]
        wait_until(lambda: sub.metric("kvevent_subscriber_replayed_batches_total") == n,
                   timeout=30, what="catch-up finished")
        m = sub.metrics()
        assert m.get("kvevent_subscriber_replay_unrecovered_batches_total", 0) == 0


def test_hung_engine_counts_as_down_and_resumes(procs):
    """SIGSTOP keeps the engine's TCP connection open (the kernel still answers); ZMTP heartbeats
    make the subscriber see it as down, withdraw its blocks after the grace period, and learn it
    again when it resumes, without calling it a restart."""
    import signal
    engine, subscriber = procs
    model = "m-hung"
    with Server(["--insecure-disable-auth"]) as srv:
        e = engine(engine_args(7000000, prompts=10))
        sub = subscriber(srv.grpc_addr, [e], model=model, extra=["--engine-down-grace=2s"])
        wait_until(lambda: all_match(srv, model, 7000000, 10, 4), timeout=30,
                   what="prompts indexed")
        e.proc.send_signal(signal.SIGSTOP)
        try:
            wait_until(lambda: none_match(srv, model, 7000000, 10, 4), timeout=30, interval=0.5,
                       what="hung engine's blocks withdrawn")
            assert sub.metric("kvevent_subscriber_engine_down_clears_total") == 1
        finally:
            e.proc.send_signal(signal.SIGCONT)
        wait_until(lambda: all_match(srv, model, 7000000, 10, 4), timeout=30, interval=0.2,
                   what="resumed engine learned again")
        assert sub.metric("kvevent_subscriber_engine_restarts_total") == 0
