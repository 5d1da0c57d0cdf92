"""kvevent-subscriber end to end: real binaries (inferencecache-server, kvevent-subscriber,
fake-engine), pyzmq publishing real [topic, seq, msgpack] frames in every encoding engines use,
python3-grpcio LookupRoute calls against the real server.

Each test publishes under its own model id, so one server serves the whole module (except the
restart tests, which own theirs). Waits poll for the observable outcome; nothing sleeps blindly
except where the test is that nothing changes."""
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import msgpack
import pytest
import zmq

sys.path.insert(0, os.path.dirname(__file__))
from harness import (BUILD_DIR, FAKE_BIN, SUB_BIN, Server, Subscriber, free_port, http_get,  # noqa: E402
                     protos, wait_until)

BS = 16  # the server fingerprints token_ids lookups with --engine-block-size 16

pb, pb_grpc = protos()


# ---------------------------------------------------------------------------------------------
# A python engine: XPUB (so we publish only once the subscription arrived) + ROUTER replay.

class Engine:
    def __init__(self, encoding="vllm-array", topic=b"", replay=True):
        self.encoding = encoding
        self.topic = topic
        self.ctx = zmq.Context()
        self.pub = self.ctx.socket(zmq.XPUB)
        self.pub.setsockopt(zmq.LINGER, 0)
        self.port = free_port()
        self.pub.bind("tcp://127.0.0.1:%d" % self.port)
        self.seq = 0
        self.ring = []
        self.lock = threading.Lock()
        self.replay_port = None
        self.stop_evt = threading.Event()
        self.replay_requests = 0
        self.thread = None
        if replay:
            self.router = self.ctx.socket(zmq.ROUTER)
            self.router.setsockopt(zmq.LINGER, 0)
            self.replay_port = free_port()
            self.router.bind("tcp://127.0.0.1:%d" % self.replay_port)
            self.thread = threading.Thread(target=self._serve, daemon=True)
            self.thread.start()

    @property
    def endpoint(self):
        return "tcp://127.0.0.1:%d" % self.port

    @property
    def replay_endpoint(self):
        return "tcp://127.0.0.1:%d" % self.replay_port

    def wait_subscribed(self, timeout=30):
        self.pub.RCVTIMEO = int(timeout * 1000)
        msg = self.pub.recv()  # b"\x01" + topic
        assert msg[:1] == b"\x01"

    def _serve(self):
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        while not self.stop_evt.is_set():
            if not poller.poll(100):
                continue
            frames = self.router.recv_multipart()
            if len(frames) != 3:
                continue
            ident, _, start = frames
            start = int.from_bytes(start, "big")
            self.replay_requests += 1
            with self.lock:
                items = [(s, p) for s, p in self.ring if s >= start]
            for s, p in items:
                self.router.send_multipart([ident, b"", s.to_bytes(8, "big"), p])
            self.router.send_multipart([ident, b"", b"\xff" * 8, b""])

    def close(self):
        self.stop_evt.set()
        if self.thread:
            self.thread.join(5)
            self.router.close()
        self.pub.close()
        self.ctx.term()

    # -- encodings --------------------------------------------------------------------------
    def _hash(self, h):
        if self.encoding == "sglang":
            return -h  # SGLang: signed int64, often negative
        if self.encoding == "vllm-map":
            return h | (1 << 63)  # vLLM: uint64, >= 2^63 half the time
        return h

    def stored(self, hashes, parent, tokens, bs=BS, lora_id=None, medium=None, lora_name=None):
        hs = [self._hash(h) for h in hashes]
        ph = None if parent is None else self._hash(parent)
        if self.encoding == "vllm-map":
            return {"type": "BlockStored", "block_hashes": hs, "parent_block_hash": ph,
                    "token_ids": list(tokens), "block_size": bs, "lora_id": lora_id,
                    "medium": medium or "GPU", "lora_name": lora_name,
                    "extra_keys": [None] * len(hs), "group_idx": 0,
                    "kv_cache_spec_kind": "full_attention"}
        ev = ["BlockStored", hs, ph, list(tokens), bs, lora_id]
        if medium is not None or lora_name is not None:
            ev += [medium, lora_name]
        return ev

    def removed(self, hashes, medium=None):
        hs = [self._hash(h) for h in hashes]
        if self.encoding == "vllm-map":
            return {"type": "BlockRemoved", "block_hashes": hs, "medium": medium or "GPU",
                    "group_idx": 0}
        return ["BlockRemoved", hs] + ([medium] if medium else [])

    def cleared(self):
        if self.encoding == "vllm-map":
            return {"type": "AllBlocksCleared"}
        return ["AllBlocksCleared"]

    def payload(self, events, ts=None):
        ts = time.time() if ts is None else ts
        if self.encoding == "vllm-map":
            batch = {"ts": ts, "events": events, "data_parallel_rank": 0}
        elif self.encoding == "sglang":
            batch = [ts, events, None]
        else:
            batch = [ts, events, 0]
        return msgpack.packb(batch, use_bin_type=True)

    def publish_raw(self, payload, skip=False):
        """Sends [topic, seq, payload]; skip=True keeps it only for replay (a lost message)."""
        seq = self.seq
        self.seq += 1
        with self.lock:
            self.ring.append((seq, payload))
        if not skip:
            self.pub.send_multipart([self.topic, seq.to_bytes(8, "big"), payload])
        return seq

    def publish(self, events, skip=False, ts=None):
        return self.publish_raw(self.payload(events, ts), skip=skip)


def prompt(start, nblocks, bs=BS):
    return list(range(start, start + nblocks * bs))


def chain_events(eng, tokens, base_hash, split=1, bs=BS, **kw):
    """BlockStored events for tokens (full blocks), split into `split` parent-chained events."""
    n = len(tokens) // bs
    per = (n + split - 1) // split
    evs = []
    for lo in range(0, n, per):
        hi = min(n, lo + per)
        parent = None if lo == 0 else base_hash + lo - 1
        evs.append(eng.stored([base_hash + i for i in range(lo, hi)], parent,
                              tokens[lo * bs:hi * bs], bs=bs, **kw))
    return evs


# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server():
    with Server(["--insecure-disable-auth"]) as srv:
        yield srv


_engines = []


@pytest.fixture
def mk():
    """Factory for engines and subscribers that are torn down after the test."""
    made = {"eng": [], "sub": []}

    def engine(encoding="vllm-array", **kw):
        e = Engine(encoding, **kw)
        made["eng"].append(e)
        return e

    def subscriber(*a, **kw):
        s = Subscriber(*a, **kw)
        made["sub"].append(s)
        return s

    yield engine, subscriber
    for s in made["sub"]:
        s.stop()
    for e in made["eng"]:
        e.close()


def lookup(srv, tokens=None, model="m", tenant="t", adapter="", hashes=None, counts=None,
           scheme="vllm"):
    req = pb.LookupRouteRequest(model_id=model, tenant_id=tenant, hash_scheme=scheme,
                                adapter_id=adapter)
    if tokens is not None:
        req.token_ids.extend(tokens)
    if hashes is not None:
        req.block_hashes.extend(hashes)
        req.block_token_counts.extend(counts)
    return srv.stub().LookupRoute(req, timeout=10)


def top(resp):
    if not resp.replica_scores:
        return (resp.reason_code, None, 0)
    r = resp.replica_scores[0]
    return (resp.reason_code, r.replica_id, r.matched_tokens)


def wait_match(srv, tokens, want, timeout=30, **kw):
    """Polls until the top LookupRoute answer equals `want` = (reason, replica, matched)."""
    last = []

    def check():
        last[:] = [top(lookup(srv, tokens, **kw))]
        return last[0] == want

    try:
        wait_until(check, timeout=timeout, what="lookup %r" % (want,))
    except AssertionError:
        raise AssertionError("lookup never became %r; last %r" % (want, last))


# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["vllm-array", "vllm-map", "sglang"])
def test_stored_blocks_prefix_match_right_replica_each_encoding(server, mk, encoding):
    engine, subscriber = mk
    model = "m-store-" + encoding
    scheme = "sglang" if encoding == "sglang" else "vllm"
    e0, e1 = engine(encoding), engine(encoding)
    subscriber(server.grpc_addr, [e0], replica="r0", model=model, extra=["--hash-scheme=" + scheme])
    subscriber(server.grpc_addr, [e1], replica="r1", model=model, extra=["--hash-scheme=" + scheme])
    a, b = prompt(1000, 6), prompt(5000, 5)
    e0.publish(chain_events(e0, a, 0x100, split=2))  # 6 blocks over 2 chained events
    e1.publish(chain_events(e1, b, 0x100, split=5))  # SGLang-style: one event per page
    wait_match(server, a, ("PREFIX_MATCH", "r0", 96), model=model, scheme=scheme)
    wait_match(server, b, ("PREFIX_MATCH", "r1", 80), model=model, scheme=scheme)
    if scheme == "sglang":  # the updates carry the scheme: a vllm lookup does not see them
        assert lookup(server, a, model=model).reason_code == "UNKNOWN_HASH_SCHEME"
    # A prompt that extends a's first 4 blocks then diverges matches 64 tokens on r0 only.
    c = a[:4 * BS] + prompt(90000, 2)
    resp = lookup(server, c, model=model, scheme=scheme)
    assert top(resp) == ("PREFIX_MATCH", "r0", 64)
    assert [r.replica_id for r in resp.replica_scores] == ["r0"]
    assert resp.replica_scores[0].tier == pb.CACHE_TIER_T1


def test_block_removed_evicts_and_all_blocks_cleared_clears(server, mk):
    engine, subscriber = mk
    model = "m-evict"
    e = engine("vllm-map")
    sub = subscriber(server.grpc_addr, [e], model=model)
    a = prompt(7000, 6)
    e.publish(chain_events(e, a, 0x200))
    wait_match(server, a, ("PREFIX_MATCH", "r0", 96), model=model)
    e.publish([e.removed([0x204, 0x205])])  # the engine evicts the last two blocks
    wait_match(server, a, ("PREFIX_MATCH", "r0", 64), model=model)
    assert sub.metric('kvevent_subscriber_events_applied_total{type="BlockRemoved"}') == 1
    e.publish([e.cleared()])

    def gone():
        reason, _, matched = top(lookup(server, a, model=model))
        return reason != "PREFIX_MATCH" and matched == 0
    wait_until(gone, timeout=30, what="cleared")
    # the server applies an event before it answers, so the lookup can see the clear a moment
    # before the subscriber has counted the answer (the two clears go as PublishEvent; the
    # eviction rides in a ReportCacheState: this server applies batched evictions)
    wait_until(lambda: sub.metric('kvevent_subscriber_rpcs_total{code="OK",method="PublishEvent"}')
               >= 2, timeout=10, what="2 PublishEvent answers counted")


def test_block_removed_downgrades_to_t2_with_offload_tier(server, mk):
    engine, subscriber = mk
    model = "m-l2"
    e = engine("vllm-array")
    subscriber(server.grpc_addr, [e], model=model, extra=["--ignore-block-removed"])
    a = prompt(11000, 5)
    e.publish(chain_events(e, a, 0x300))
    wait_match(server, a, ("PREFIX_MATCH", "r0", 80), model=model)
    e.publish([e.removed([0x304])])

    def t2():
        resp = lookup(server, a, model=model)
        return (top(resp) == ("PREFIX_MATCH", "r0", 80)
                and resp.replica_scores[0].tier == pb.CACHE_TIER_T2)
    wait_until(t2, timeout=30, what="T2 downgrade keeps the prefix")


def test_medium_cpu_store_is_t2_and_gpu_eviction_downgrades(server, mk):
    engine, subscriber = mk
    model = "m-medium"
    e = engine("vllm-array")
    subscriber(server.grpc_addr, [e], model=model)
    a = prompt(13000, 4)
    e.publish(chain_events(e, a, 0x400, medium="GPU"))
    wait_match(server, a, ("PREFIX_MATCH", "r0", 64), model=model)
    # vLLM offload: the CPU copy arrives without tokens, then the GPU copy is evicted.
    e.publish([e.stored([0x400 + i for i in range(4)], None, [], medium="CPU"),
               e.removed([0x400 + i for i in range(4)], medium="GPU")])

    def t2():
        resp = lookup(server, a, model=model)
        return (top(resp) == ("PREFIX_MATCH", "r0", 64)
                and resp.replica_scores[0].tier == pb.CACHE_TIER_T2)
    wait_until(t2, timeout=30, what="CPU copy keeps the prefix at T2")


def test_gap_is_repaired_through_replay(server, mk):
    engine, subscriber = mk
    model = "m-gap"
    e = engine("vllm-array")
    sub = subscriber(server.grpc_addr, [e], model=model)
    a = prompt(20000, 6)
    evs = chain_events(e, a, 0x500, split=3)  # blocks 0-1, 2-3, 4-5, each chained to the last
    e.publish([evs[0]])
    e.publish([evs[1]], skip=True)  # lost on the PUB socket, still in the replay ring
    e.publish([evs[2]])
    # Without the replayed middle batch the third event's parent would be unknown and its
    # blocks would start a fresh chain: a full 96-token match proves the repair.
    wait_match(server, a, ("PREFIX_MATCH", "r0", 96), model=model)
    m = sub.metrics()
    assert m["kvevent_subscriber_seq_gaps_total"] == 1
    assert m["kvevent_subscriber_seq_missing_batches_total"] == 1
    assert m['kvevent_subscriber_replays_total{result="ok"}'] == 1
    assert m["kvevent_subscriber_replayed_batches_total"] == 1
    assert e.replay_requests == 2  # the catch-up on connecting (empty ring), then the gap


def test_gap_without_replay_socket_is_counted_and_logged(server, mk):
    engine, subscriber = mk
    model = "m-gap-noreplay"
    e = engine("vllm-array", replay=False)
    sub = subscriber(server.grpc_addr, [e], model=model)
    a = prompt(22000, 4)
    evs = chain_events(e, a, 0x580, split=2)
    e.publish([evs[0]], skip=True)
    e.publish([evs[1]])
    wait_until(lambda: sub.metric("kvevent_subscriber_seq_gaps_total") == 0
               and sub.metric('kvevent_subscriber_batches_total{result="ok"}') == 1,
               timeout=30, what="first batch seen")
    b = prompt(23000, 4)
    e.publish_raw(e.payload(chain_events(e, b, 0x5c0)), skip=True)
    e.publish(chain_events(e, prompt(24000, 4), 0x5e0))
    wait_until(lambda: sub.metric("kvevent_subscriber_seq_gaps_total") == 1, timeout=30,
               what="gap counted")
    assert "sequence gap: engine events lost" in sub.logs()


def test_malformed_frames_between_good_ones_change_only_a_counter(server, mk):
    engine, subscriber = mk
    model = "m-malformed"
    e = engine("vllm-array")
    sub = subscriber(server.grpc_addr, [e], model=model)
    a, b = prompt(30000, 4), prompt(31000, 4)
    e.publish(chain_events(e, a, 0x600))
    wait_match(server, a, ("PREFIX_MATCH", "r0", 64), model=model)
    before = lookup(server, a, model=model).replica_scores[0].matched_tokens
    e.publish_raw(b"\xff\x00\x01")  # garbage payload
    e.publish_raw(msgpack.packb([1.0]))  # 1-element envelope
    # One batch: malformed events around a good one (nil hash, block_size 0, truncated tuple).
    e.publish([["BlockStored", [None], None, [1] * BS, BS],
               ["BlockStored", [0x700], None, [2] * BS, 0],
               ["BlockStored", [0x701], None],
               ["Mystery", 1, 2]] + chain_events(e, b, 0x640))
    wait_match(server, b, ("PREFIX_MATCH", "r0", 64), model=model)
    assert lookup(server, a, model=model).replica_scores[0].matched_tokens == before
    m = sub.metrics()
    assert m['kvevent_subscriber_batches_total{result="undecodable"}'] == 2
    assert m['kvevent_subscriber_events_malformed_total{type="BlockStored"}'] == 3
    assert m["kvevent_subscriber_events_unknown_tag_total"] == 1
    assert m['kvevent_subscriber_events_applied_total{type="BlockStored"}'] == 2
    assert "dropping undecodable event batch" in sub.logs()
    assert sub.proc.poll() is None


def test_topic_filters_and_default_topic_hears_everything(server, mk):
    engine, subscriber = mk
    model = "m-topic"
    e = engine("vllm-array", topic=b"kv-events")
    subscriber(server.grpc_addr, [e], model=model)  # default --topic "" hears any topic
    a = prompt(33000, 4)
    e.publish(chain_events(e, a, 0x680))
    wait_match(server, a, ("PREFIX_MATCH", "r0", 64), model=model)
    e2 = engine("vllm-array", topic=b"other")
    sub2 = subscriber(server.grpc_addr, [], replica="r9", model=model,
                      extra=["--engine-endpoint=" + e2.endpoint, "--topic=kv-events"])
    e2.wait_subscribed()
    e2.publish(chain_events(e2, prompt(34000, 4), 0x6a0))
    e2.publish_raw(b"x")  # would count as undecodable if it were heard
    time.sleep(1.0)  # asserting that nothing arrives
    assert sub2.metric('kvevent_subscriber_batches_total{result="ok"}') == 0
    assert sub2.metric('kvevent_subscriber_batches_total{result="undecodable"}') == 0


def test_lora_mapped_unmapped_and_engine_lora_name(server, mk):
    engine, subscriber = mk
    model = "m-lora"
    e = engine("vllm-array")
    sub = subscriber(server.grpc_addr, [e], model=model, extra=["--lora-adapter-names=1=sql-lora"])
    a, b, c = prompt(40000, 4), prompt(41000, 4), prompt(42000, 4)
    e.publish(chain_events(e, a, 0x800, lora_id=1)
              + chain_events(e, b, 0x840, lora_id=9)  # unmapped: fail closed
              + chain_events(e, c, 0x880, lora_id=5, lora_name="chat-lora", medium="GPU"))
    wait_match(server, a, ("PREFIX_MATCH", "r0", 64), model=model, adapter="sql-lora")
    wait_match(server, c, ("PREFIX_MATCH", "r0", 64), model=model, adapter="chat-lora")
    assert top(lookup(server, a, model=model))[2] == 0  # base partition does not hold it
    for adapter in ("", "sql-lora"):
        assert top(lookup(server, b, model=model, adapter=adapter))[2] == 0
    assert sub.metric("kvevent_subscriber_lora_dropped_total") == 1  # one event, fail-closed
    assert sub.logs().count("dropping BlockStored for an unmapped LoRA id") == 1


def test_dp_ranks_on_several_endpoints_with_rank_suffix(server, mk):
    engine, subscriber = mk
    model = "m-dp"
    e0, e1 = engine("vllm-map"), engine("vllm-map")
    subscriber(server.grpc_addr, [e0, e1], replica="pod", model=model, extra=["--dp-rank-suffix"])
    a, b = prompt(50000, 4), prompt(51000, 4)
    e0.publish(chain_events(e0, a, 0x900))
    e1.pub.send_multipart([b"", (0).to_bytes(8, "big"), msgpack.packb(
        {"ts": time.time(), "events": chain_events(e1, b, 0x900), "data_parallel_rank": 1})])
    wait_match(server, a, ("PREFIX_MATCH", "pod-dp0", 64), model=model)
    wait_match(server, b, ("PREFIX_MATCH", "pod-dp1", 64), model=model)


def test_fake_engine_chain_prefix_match_and_miss(server, mk):
    _, _ = mk
    model = "m-fake"
    port, rport, hport = free_port(), free_port(), free_port()
    sub = subprocess.Popen([SUB_BIN, "--server=" + server.grpc_addr, "--replica-id=fake-0",
                            "--model-id=" + model, "--tenant-id=t", "--stats-interval=1h",
                            "--engine-endpoint=tcp://127.0.0.1:%d" % port,
                            "--replay-endpoint=tcp://127.0.0.1:%d" % rport,
                            "--http-bind-address=127.0.0.1:%d" % hport],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    fe = subprocess.Popen([FAKE_BIN, "--bind=tcp://127.0.0.1:%d" % port,
                           "--replay-bind=tcp://127.0.0.1:%d" % rport, "--block-size=128",
                           "--num-blocks=2", "--events=2", "--start-token=5000",
                           "--interval=100ms", "--print-tokens", "--encoding=vllm-map"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        info = json.loads(fe.stdout.readline())
        # The reference implementation's chained block hashes of tokens 5000..5255 (block 128).
        assert info["prefix_hashes"] == ["3da0ff8dcd1d4e46", "4c9d2e3832e383a5"]
        hashes = [bytes.fromhex(h) for h in info["prefix_hashes"]]
        wait_until(lambda: top(lookup(server, model=model, hashes=hashes, counts=[128, 128]))
                   == ("PREFIX_MATCH", "fake-0", 256), timeout=30, what="full chain")
        assert top(lookup(server, model=model, hashes=hashes[:1], counts=[128])) == \
            ("PREFIX_MATCH", "fake-0", 128)
        novel = lookup(server, model=model, hashes=[b"\x01" * 8], counts=[128])
        assert novel.reason_code == "AFFINITY_HINT"
        assert novel.replica_scores[0].matched_tokens == 0
        raw = lookup(server, model=model, hashes=[(0xE000 | 1 << 63).to_bytes(8, "big")],
                     counts=[128])  # the engine's own hash is not an index key
        assert raw.reason_code == "AFFINITY_HINT"
    finally:
        fe.terminate()
        fe.wait(10)
        sub.terminate()
        assert sub.wait(30) == 0


def test_healthz_and_metrics_families(server, mk):
    engine, subscriber = mk
    e = engine("vllm-array")
    sub = subscriber(server.grpc_addr, [e], model="m-health")
    st, _, body = http_get("http://127.0.0.1:%d/healthz" % sub.http_port)
    assert st == 200 and body == b"ok\n"
    st, hdr, body = http_get("http://127.0.0.1:%d/metrics" % sub.http_port)
    assert st == 200
    assert hdr["Content-Type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    for fam in ("kvevent_subscriber_queue_depth", "kvevent_subscriber_queue_max_bytes",
                "kvevent_subscriber_server_connected", "kvevent_subscriber_seq_gaps_total",
                "kvevent_subscriber_event_to_send_lag_seconds"):
        assert "# TYPE " + fam in text, fam
    assert sub.stop() == 0


@pytest.mark.parametrize("args,needle", [
    (["--model-id=m"], "engine config: ReplicaID is required"),
    (["--replica-id=r"], "engine config: ModelID is required"),
    (["--replica-id=r", "--model-id=m", "--hash-scheme="], "HashScheme is required"),
    (["--replica-id=r", "--model-id=m", "--cache-tier=AUTO"], "invalid --cache-tier"),
    (["--replica-id=r", "--model-id=m", "--lora-adapter-names=1=a,1=b"],
     "invalid --lora-adapter-names"),
    (["--replica-id=r", "--model-id=m", "--no-such-flag=1"], "flag provided but not defined"),
    (["--replica-id=r", "--model-id=m", "--window=10"], "invalid value"),
])
def test_flag_validation_exits_2(args, needle):
    p = subprocess.run([SUB_BIN] + args, capture_output=True, text=True, timeout=30)
    assert p.returncode == 2, p.stderr
    assert needle in p.stderr


def test_help_exits_0():
    p = subprocess.run([SUB_BIN, "--help"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and "--engine-endpoint" in p.stdout


# ---------------------------------------------------------------------------------------------
# Server outages: the tests own their server.

def test_server_restart_mid_stream_relearns_blocks(mk):
    engine, subscriber = mk
    srv = Server(["--insecure-disable-auth"]).start()
    try:
        e = engine("vllm-array")
        sub = subscriber(srv.grpc_addr, [e], model="m-restart")
        a, b = prompt(60000, 5), prompt(61000, 4)
        e.publish(chain_events(e, a, 0xa00))
        wait_match(srv, a, ("PREFIX_MATCH", "r0", 80), model="m-restart")
        srv.stop()
        wait_until(lambda: sub.metric("kvevent_subscriber_server_connected") == 0, timeout=30,
                   what="outage noticed")
        e.publish(chain_events(e, b, 0xa40))  # arrives while the server is down: queued
        srv.start()
        # Nothing new is published: the restarted (empty) server learns a from the re-report
        # and b from the queue.
        wait_match(srv, a, ("PREFIX_MATCH", "r0", 80), model="m-restart")
        wait_match(srv, b, ("PREFIX_MATCH", "r0", 64), model="m-restart")
        m = sub.metrics()
        assert m["kvevent_subscriber_resyncs_total"] >= 1
        assert m["kvevent_subscriber_server_connected"] == 1
    finally:
        srv.stop()


def test_queue_overflow_drops_oldest_adds_never_removals(mk):
    engine, subscriber = mk
    srv = Server(["--insecure-disable-auth"])
    e = engine("vllm-array")
    # The server is not running yet: everything queues. 64 ops fit (the minimum bound).
    sub = subscriber(srv.grpc_addr, [e], model="m-overflow", extra=["--queue-max-bytes=1"])
    prompts = [prompt(70000 + 1000 * i, 4) for i in range(40)]  # 160 adds
    for i, p in enumerate(prompts):
        e.publish(chain_events(e, p, 0x1000 + 16 * i))
    e.publish([e.removed([0x1000 + 16 * 39 + k for k in range(4)])])  # evict the last prompt
    wait_until(lambda: sub.metric('kvevent_subscriber_queue_dropped_total{kind="add"}') > 0,
               timeout=30, what="adds dropped")
    assert sub.metric('kvevent_subscriber_queue_dropped_total{kind="evict"}') == 0
    srv.start()
    try:
        # After reconnecting, the re-report restores what the engine still holds, including
        # the prompts whose adds were dropped; the evicted prompt stays gone.
        wait_match(srv, prompts[0], ("PREFIX_MATCH", "r0", 64), model="m-overflow")
        wait_match(srv, prompts[38], ("PREFIX_MATCH", "r0", 64), model="m-overflow")
        assert top(lookup(srv, prompts[39], model="m-overflow"))[0] != "PREFIX_MATCH"
    finally:
        srv.stop()


# ---------------------------------------------------------------------------------------------
# Stats path: a fake engine /metrics page, the real scraper, the real server's /snapshot.

VLLM_METRICS = (
    "# TYPE vllm:kv_cache_usage_perc gauge\n"
    "vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"m\"} 0.42\n"
    "# TYPE vllm:num_requests_running gauge\n"
    "vllm:num_requests_running{engine=\"0\",model_name=\"m\"} 3.0\n"
    "# TYPE vllm:num_requests_waiting gauge\n"
    "vllm:num_requests_waiting{engine=\"0\",model_name=\"m\"} 5.0\n"
    "# TYPE vllm:prefix_cache_hits_total counter\n"
    "vllm:prefix_cache_hits_total{engine=\"0\",model_name=\"m\"} 25.0\n"
    "# TYPE vllm:prefix_cache_queries_total counter\n"
    "vllm:prefix_cache_queries_total{engine=\"0\",model_name=\"m\"} 100.0\n"
    "# TYPE vllm:external_prefix_cache_hits_total counter\n"
    "vllm:external_prefix_cache_hits_total{model_name=\"m\"} 750\n"
    "# TYPE vllm:external_prefix_cache_queries_total counter\n"
    "vllm:external_prefix_cache_queries_total{model_name=\"m\"} 1000\n")


class MetricsPage:
    """A tiny HTTP server answering /metrics with `self.body` and `self.status`."""

    def __init__(self):
        import http.server
        page = self
        self.body, self.status = VLLM_METRICS, 200

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                data = page.body.encode()
                self.send_response(page.status)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d/metrics" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def snapshot_replica(srv, replica):
    st, _, body = http_get(srv.snapshot_url + "/snapshot")
    assert st == 200
    for r in json.loads(body).get("replicas") or []:
        if r["replicaId"] == replica:
            return r
    return None


SGLANG_METRICS = (
    "# TYPE sglang:token_usage gauge\n"
    "sglang:token_usage{model_name=\"m\",tp_rank=\"0\"} 0.63\n"
    "# TYPE sglang:num_running_reqs gauge\n"
    "sglang:num_running_reqs{model_name=\"m\",tp_rank=\"0\"} 6\n"
    "# TYPE sglang:num_queue_reqs gauge\n"
    "sglang:num_queue_reqs{model_name=\"m\",priority=\"\"} 2\n"
    "sglang:num_queue_reqs{model_name=\"m\",priority=\"0\"} 2\n"
    "# TYPE sglang:cache_hit_rate gauge\n"
    "sglang:cache_hit_rate{model_name=\"m\"} 0.75\n")


@pytest.mark.parametrize("scheme", ["vllm", "sglang"])
def test_stats_reporter_populates_snapshot_replicas(server, mk, scheme):
    engine, subscriber = mk
    page = MetricsPage()
    page.body = VLLM_METRICS if scheme == "vllm" else SGLANG_METRICS
    replica = "stats-" + scheme
    try:
        e = engine("vllm-array")
        subscriber(server.grpc_addr, [e], replica=replica, model="m-stats-" + scheme,
                   extra=["--engine-metrics-url=" + page.url, "--stats-interval=200ms",
                          "--engine-cache-size-bytes=1073741824", "--hash-scheme=" + scheme])
        wait_until(lambda: snapshot_replica(server, replica) is not None, timeout=30,
                   what="stats row")
        r = snapshot_replica(server, replica)
        assert r["pressure"] == 0.03125
        assert r.get("statsReported") is True
        if scheme == "vllm":
            assert r["cacheMemoryBytes"] == 450971566
            assert r["hitRate"] == 0  # first scrape: no delta yet
            assert r["t2HitTokens"] == 750 and r["t2QueryTokens"] == 1000
        else:
            assert r["cacheMemoryBytes"] == 676457349
            assert r["hitRate"] == 0.75  # SGLang reports the rate itself
            assert "t2HitTokens" not in r
    finally:
        page.close()


def test_stats_stale_escalation_and_recovery_logs(server, mk):
    engine, subscriber = mk
    page = MetricsPage()
    page.status = 500
    try:
        e = engine("vllm-array")
        sub = subscriber(server.grpc_addr, [e], replica="stale-0", model="m-stale",
                         extra=["--engine-metrics-url=" + page.url, "--stats-interval=100ms"])

        def records():
            out = []
            for line in sub.logs().splitlines():
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
            return out
        wait_until(lambda: any(r.get("event") == "load_signal_stale" for r in records()),
                   timeout=30, what="stale error")
        recs = records()
        stale = [r for r in recs if r.get("event") == "load_signal_stale"]
        assert len(stale) == 1 and stale[0]["level"] == "ERROR"
        assert "undelivered since startup" in stale[0]["msg"]
        assert "IC has no" not in stale[0]["msg"]
        assert stale[0]["consecutive_failures"] == 3
        warns = [r for r in recs if r["msg"] == "engine load stats update failed; will retry"]
        assert len(warns) == 2
        page.status = 200
        wait_until(lambda: any(r.get("event") == "load_signal_recovered" for r in records()),
                   timeout=30, what="recovery")
        rec = [r for r in records() if r.get("event") == "load_signal_recovered"][0]
        assert rec["level"] == "INFO" and rec["after_failures"] >= 3
    finally:
        page.close()


def test_buffered_adds_are_delivered_on_shutdown(server, mk):
    engine, subscriber = mk
    e = engine("vllm-array")
    sub = subscriber(server.grpc_addr, [e], model="m-shutdown", extra=["--window=1h"])
    a = prompt(80000, 4)
    e.publish(chain_events(e, a, 0xb00))
    wait_until(lambda: sub.metric("kvevent_subscriber_queue_depth") == 4, timeout=30,
               what="adds buffered for the 1h window")
    assert top(lookup(server, a, model="m-shutdown"))[0] != "PREFIX_MATCH"
    assert sub.stop() == 0
    assert top(lookup(server, a, model="m-shutdown")) == ("PREFIX_MATCH", "r0", 64)


def test_missing_token_ids_index_nothing(server, mk):
    _, _ = mk
    model = "m-notokens"
    port, hport = free_port(), free_port()
    log = tempfile.NamedTemporaryFile(prefix="ic-sub-", suffix=".log", delete=False)
    sub = subprocess.Popen([SUB_BIN, "--server=" + server.grpc_addr, "--replica-id=nt-0",
                            "--model-id=" + model, "--tenant-id=t", "--stats-interval=1h",
                            "--engine-endpoint=tcp://127.0.0.1:%d" % port,
                            "--http-bind-address=127.0.0.1:%d" % hport],
                           stdout=subprocess.DEVNULL, stderr=log)
    fe = subprocess.Popen([FAKE_BIN, "--bind=tcp://127.0.0.1:%d" % port, "--block-size=16",
                           "--num-blocks=4", "--interval=100ms", "--omit-token-ids",
                           "--start-token=100"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert "EXPECT no index entries" in fe.stderr.readline()

        def warned():
            with open(log.name, errors="replace") as f:
                return "BlockStored produced no index entries" in f.read()
        wait_until(warned, timeout=30, what="no-entries warning")
        st, _, body = http_get("http://127.0.0.1:%d/metrics" % hport)
        assert b"kvevent_subscriber_no_entries_total " in body
        # nothing indexed for the model: NO_HINT on an empty index, UNKNOWN_MODEL on the shared one
        assert top(lookup(server, prompt(100, 4), model=model)) in (("NO_HINT", None, 0),
                                                                     ("UNKNOWN_MODEL", None, 0))
    finally:
        fe.terminate()
        fe.wait(10)
        sub.terminate()
        sub.wait(30)
        log.close()
        os.unlink(log.name)


def test_make_run_demo_prints_lookups(tmp_path):
    import socket

    def pair():  # engines use port and port+1 (replay)
        while True:
            p = free_port()
            s2 = socket.socket()
            try:
                s2.bind(("127.0.0.1", p + 1))
                return p
            except OSError:
                continue
            finally:
                s2.close()
    env = dict(os.environ, IC_DEMO_ONCE="1",
               IC_DEMO_GRPC="127.0.0.1:%d" % free_port(),
               IC_DEMO_HTTP="127.0.0.1:%d" % free_port(),
               IC_DEMO_SNAPSHOT="127.0.0.1:%d" % free_port(),
               IC_DEMO_SUB0_METRICS="127.0.0.1:%d" % free_port(),
               IC_DEMO_SUB1_METRICS="127.0.0.1:%d" % free_port(),
               IC_DEMO_ENGINE0_PORT=str(pair()), IC_DEMO_ENGINE1_PORT=str(pair()))
    script = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "run-demo.sh")
    p = subprocess.run([script, BUILD_DIR], capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "replica-0's prompt (128 tokens)              -> PREFIX_MATCH" in out
    assert "replica-0  score=" in out and "matched_tokens=128" in out
    assert "replica-1's prompt (80 tokens)               -> PREFIX_MATCH" in out
    assert "-> AFFINITY_HINT" in out


def test_late_join_catches_up_from_the_replay_buffer(server, mk):
    engine, subscriber = mk
    model = "m-catchup"
    e = engine("vllm-map")
    a = prompt(90000, 6)
    evs = chain_events(e, a, 0xc00, split=2)
    e.publish([evs[0]])  # published before any subscriber: only the replay ring has it
    sub = subscriber(server.grpc_addr, [e], model=model)
    e.publish([evs[1]])  # seq 1, chained to a block the subscriber never received live
    wait_match(server, a, ("PREFIX_MATCH", "r0", 96), model=model)
    m = sub.metrics()
    assert m['kvevent_subscriber_replays_total{result="catchup"}'] == 1
    assert m["kvevent_subscriber_replayed_batches_total"] == 1
    assert m["kvevent_subscriber_seq_gaps_total"] == 0


def test_large_eviction_run_is_sent_concurrently_and_complete(server, mk):
    """--batch-evictions=false (and servers that do not apply batched evictions): one
    PublishEvent per eviction, concurrently."""
    engine, subscriber = mk
    model = "m-bulk-evict"
    e = engine("vllm-array")
    sub = subscriber(server.grpc_addr, [e], model=model, extra=["--batch-evictions=false"])
    prompts = [prompt(100000 + 1000 * i, 4) for i in range(100)]
    e.publish([ev for i, p in enumerate(prompts) for ev in chain_events(e, p, 0x10000 + 8 * i)])
    wait_match(server, prompts[99], ("PREFIX_MATCH", "r0", 64), model=model)
    ok = 'kvevent_subscriber_rpcs_total{code="OK",method="PublishEvent"}'
    before = sub.metric(ok)  # the ALL_CLEARED that starts the catch-up on connecting
    # one engine step evicts all 400 blocks: 400 PREFIX_EVICTED, at most 256 in flight
    e.publish([e.removed([0x10000 + 8 * i + k for i in range(100) for k in range(4)])])
    wait_until(lambda: sub.metric(ok) - before == 400, timeout=60,
               what="400 evictions delivered")
    for p in (prompts[0], prompts[50], prompts[99]):
        assert top(lookup(server, p, model=model))[0] != "PREFIX_MATCH"


def test_large_eviction_run_is_batched_for_a_server_that_applies_it(server, mk):
    """The server's Ack says evicted_supported: 400 evictions ride in ReportCacheState
    (CacheStateUpdate.evicted, with the window's adds), no PublishEvent, and all of them apply."""
    engine, subscriber = mk
    model = "m-bulk-evict-batched"
    e = engine("vllm-array")
    sub = subscriber(server.grpc_addr, [e], model=model)
    prompts = [prompt(400000 + 1000 * i, 4) for i in range(100)]
    e.publish([ev for i, p in enumerate(prompts) for ev in chain_events(e, p, 0x40000 + 8 * i)])
    wait_match(server, prompts[99], ("PREFIX_MATCH", "r0", 64), model=model)
    pub = 'kvevent_subscriber_rpcs_total{code="OK",method="PublishEvent"}'
    rep = 'kvevent_subscriber_rpcs_total{code="OK",method="ReportCacheState"}'
    pub0, rep0 = sub.metric(pub), sub.metric(rep)
    e.publish([e.removed([0x40000 + 8 * i + k for i in range(100) for k in range(4)])])
    wait_until(lambda: all(top(lookup(server, p, model=model))[0] != "PREFIX_MATCH"
                           for p in prompts), timeout=60, what="400 evictions applied")
    wait_until(lambda: sub.metric(rep) - rep0 >= 1, timeout=10, what="batched call counted")
    assert sub.metric(pub) == pub0
    assert sub.metric(rep) - rep0 <= 2  # one update carries all 400 (at most 4096)


def test_engine_restart_sequence_reset_clears_its_blocks(server, mk):
    engine, subscriber = mk
    model = "m-engine-restart"
    e = engine("vllm-array")
    sub = subscriber(server.grpc_addr, [e], model=model)
    a, b = prompt(120000, 4), prompt(121000, 4)
    e.publish(chain_events(e, a, 0xd00))
    e.publish(chain_events(e, prompt(122000, 4), 0xd40))
    wait_match(server, a, ("PREFIX_MATCH", "r0", 64), model=model)
    e.seq = 0  # the engine restarted: a fresh process numbers from 0 and its cache is empty
    e.publish(chain_events(e, b, 0xd00))  # even reusing engine hashes
    wait_match(server, b, ("PREFIX_MATCH", "r0", 64), model=model)
    assert top(lookup(server, a, model=model))[0] != "PREFIX_MATCH"
    assert sub.metric("kvevent_subscriber_engine_restarts_total") == 1


def test_hostile_sequence_number_is_bounded_and_not_adopted(server, mk):
    """One message numbered 2^64-2 must not count 1.8e19 missing batches, nor make every later
    (honest) message look like an engine restart that wipes the replica."""
    engine, subscriber = mk
    model = "m-hostile-seq"
    e = engine("vllm-array")
    sub = subscriber(server.grpc_addr, [e], model=model)
    a, b = prompt(130000, 4), prompt(131000, 4)
    e.publish(chain_events(e, a, 0xe00))
    wait_match(server, a, ("PREFIX_MATCH", "r0", 64), model=model)
    honest = e.seq
    e.seq = (1 << 64) - 2
    e.publish([])  # hostile number, empty batch
    e.seq = honest
    e.publish(chain_events(e, b, 0xe40))
    wait_match(server, b, ("PREFIX_MATCH", "r0", 64), model=model)
    assert top(lookup(server, a, model=model)) == ("PREFIX_MATCH", "r0", 64)
    m = sub.metrics()
    assert m["kvevent_subscriber_seq_missing_batches_total"] < 1000
    assert m["kvevent_subscriber_engine_restarts_total"] == 0
    assert m["kvevent_subscriber_seq_invalid_total"] == 1


def test_engine_metrics_start_time_change_is_a_restart(server, mk):
    """A restart the event stream cannot show (the connection stayed up, numbering went on):
    the engine's /metrics process_start_time_seconds changed, so its old blocks go."""
    engine, subscriber = mk
    model = "m-start-time"
    page = MetricsPage()
    page.body = VLLM_METRICS + "process_start_time_seconds 1765000000.5\n"
    try:
        e = engine("vllm-array")
        sub = subscriber(server.grpc_addr, [e], model=model,
                         extra=["--engine-metrics-url=" + page.url, "--stats-interval=300ms"])
        a, b = prompt(140000, 4), prompt(141000, 4)
        e.publish(chain_events(e, a, 0xf00))
        wait_match(server, a, ("PREFIX_MATCH", "r0", 64), model=model)
        wait_until(lambda: sub.metric('kvevent_subscriber_stats_reports_total{result="success"}')
                   >= 2, timeout=30, what="two scrapes with the first start time")
        assert sub.metric("kvevent_subscriber_engine_restarts_total") == 0
        with e.lock:
            e.ring.clear()  # the new process holds nothing of the old one
        page.body = VLLM_METRICS + "process_start_time_seconds 1765000900.25\n"
        wait_until(lambda: sub.metric("kvevent_subscriber_engine_restarts_total") == 1,
                   timeout=30, what="restart detected from the start time")
        wait_until(lambda: top(lookup(server, a, model=model))[0] != "PREFIX_MATCH", timeout=30,
                   what="old blocks withdrawn")
        e.publish(chain_events(e, b, 0xf40))
        wait_match(server, b, ("PREFIX_MATCH", "r0", 64), model=model)
        assert "engine process restarted" in sub.logs()
    finally:
        page.close()


def test_gap_the_engine_no_longer_holds_resynchronises_the_replica(server, mk):
    """The lost message was a removal and the engine's ring no longer has it: keeping the removed
    blocks would be a wrong hint until the TTL, so the replica is cleared and re-learned from
    what follows the hole."""
    engine, subscriber = mk
    model = "m-gap-lost"
    e = engine("vllm-array")
    sub = subscriber(server.grpc_addr, [e], model=model)
    a, b = prompt(150000, 4), prompt(151000, 4)
    e.publish(chain_events(e, a, 0x1100))
    wait_match(server, a, ("PREFIX_MATCH", "r0", 64), model=model)
    lost = e.publish([e.removed([0x1100 + k for k in range(4)])], skip=True)
    with e.lock:
        e.ring = [(s, p) for s, p in e.ring if s != lost]  # fell out of the engine's ring
    e.publish(chain_events(e, b, 0x1140))
    wait_match(server, b, ("PREFIX_MATCH", "r0", 64), model=model)
    wait_until(lambda: top(lookup(server, a, model=model))[0] != "PREFIX_MATCH", timeout=30,
               what="blocks removed inside the lost range withdrawn")
    m = sub.metrics()
    assert m["kvevent_subscriber_replay_unrecovered_batches_total"] == 1
    assert m['kvevent_subscriber_engine_resyncs_total{reason="gap_unrecoverable"}'] == 1
    assert "sequence gap not repairable by replay" in sub.logs()
