"""Predict-on-route (docs/ranking.md, section 3) on the real server: a CachePolicy pushed to /policy turns
it on for one tenant; a routed prompt's blocks become speculative entries that a sibling finds
(tier CACHE_TIER_SPECULATIVE), that the engine's real report confirms, that expire, and that show
in /snapshot and /metrics. Another tenant keeps the reference's answers."""
import json
import re

import pytest

from harness import Server, http_get, protos, wait_until

pb, _ = protos()
T = 20
SPECULATIVE = 4  # CACHE_TIER_SPECULATIVE


@pytest.fixture(scope="module")
def srv():
    with Server(["--insecure-disable-auth", "--predict-ttl-ms=400"]) as s:
        yield s


@pytest.fixture(scope="module")
def stub(srv):
    return srv.stub()


def report(stub, tenant, replica, entry):
    u = pb.CacheStateUpdate(replica_id=replica, model_id="m", tenant_id=tenant, hash_scheme="vllm",
                            prefixes=[entry])
    return stub.ReportCacheState(iter([u]), timeout=T)


def chain_entry(blocks):
    return pb.PrefixEntry(block_hashes=blocks, block_token_counts=[16] * len(blocks))


def lookup(stub, tenant, blocks):
    return stub.LookupRoute(pb.LookupRouteRequest(tenant_id=tenant, model_id="m", hash_scheme="vllm",
                                                  block_hashes=blocks, block_token_counts=[16] * len(blocks)),
                            timeout=T)


def snapshot(srv):
    st, _, body = http_get(srv.snapshot_url + "/snapshot")
    assert st == 200
    return json.loads(body)


def counter(srv, outcome):
    st, _, body = http_get(srv.http_url + "/metrics")
    assert st == 200
    m = re.search(r'^inferencecache_predict_entries_total\{outcome="%s"\} (\S+)$' % outcome, body.decode(), re.M)
    return float(m.group(1)) if m else 0.0


def test_sibling_follows_the_prediction_until_the_real_event(srv, stub):
    for t in ("pr", "ref"):
        for rid in ("r-1", "r-2", "r-3"):
            report(stub, t, rid, chain_entry([rid.encode()]))
    st, _, body = http_get(srv.snapshot_url + "/policy", method="POST", data=json.dumps(
        {"version": 7, "policies": [{"namespace": "pr", "strategy": {"predictOnRoute": True}}]}).encode(),
        headers={"Content-Type": "application/json"})
    assert st == 204, body
    assert "speculative" not in snapshot(srv), "absent until a prediction is recorded"
    shared = [b"doc-block-%d" % i for i in range(8)]
    first = lookup(stub, "pr", shared + [b"question-1"])
    assert first.reason_code == "AFFINITY_HINT"
    target = first.replica_scores[0].replica_id
    # the sibling, sent before any event: a speculative prefix match on the same replica
    sib = lookup(stub, "pr", shared + [b"question-2"])
    assert sib.reason_code == "PREFIX_MATCH"
    assert [s.replica_id for s in sib.replica_scores] == [target]
    assert sib.replica_scores[0].tier == SPECULATIVE
    assert sib.replica_scores[0].matched_tokens == 8 * 16
    # the reference tenant: the sibling's own consistent-hash answer, nothing speculative
    ref = lookup(stub, "ref", shared + [b"question-2"])
    assert ref.reason_code == "AFFINITY_HINT"
    snap = snapshot(srv)["speculative"]
    assert snap["entries"] >= 9 and snap["created"] >= 9
    assert [r["replicaId"] for r in snap["replicas"]] == [target]
    assert counter(srv, "created") >= 9
    # the engine reports the document on that replica: confirmed, and the answer is real (T1)
    report(stub, "pr", target, chain_entry(shared))
    assert snapshot(srv)["speculative"]["confirmed"] >= 8
    real = lookup(stub, "pr", shared + [b"question-3"])
    assert real.reason_code == "PREFIX_MATCH"
    assert real.replica_scores[0].replica_id == target and real.replica_scores[0].tier == 1


def test_unconfirmed_predictions_expire(srv, stub):
    blocks = [b"lonely-%d" % i for i in range(4)]
    assert lookup(stub, "pr", blocks).reason_code == "AFFINITY_HINT"
    assert lookup(stub, "pr", blocks).reason_code == "PREFIX_MATCH"
    before = counter(srv, "expired")
    # --predict-ttl-ms=400; the maintenance thread sweeps every second
    wait_until(lambda: counter(srv, "expired") >= before + 4, timeout=10)
    assert lookup(stub, "pr", blocks).reason_code == "AFFINITY_HINT", "expired: a fresh answer"
