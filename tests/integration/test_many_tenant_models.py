"""Many (tenant, model) pairs (issue 16 item 8): the index_entries gauge is kept per changed
record, not recomputed over every record on each write — 20,000 pairs used to make each ingest
walk 20,000 records (one stream of 20,000 single-pair updates did not finish in 300 s; it takes
seconds now) — and /metrics stays bounded (--metrics-max-label-values). The gauge stays exact:
a model's series follows its entries and drains to 0 when they are cleared."""
import re
import time

from harness import Server, http_get, protos

N = 20000


def gauge(body, model):
    m = re.search(r'^inferencecache_index_entries\{model="%s"\} (\S+)$' % re.escape(model), body, re.M)
    return float(m.group(1)) if m else None


def test_twenty_thousand_pairs_ingest_fast_and_metrics_stay_bounded():
    pb, _ = protos()
    with Server(["--insecure-disable-auth", "--metrics-max-label-values=256"]) as s:
        stub = s.stub()

        def updates():
            for i in range(N):
                yield pb.CacheStateUpdate(
                    replica_id="r", model_id="model-%d" % (i % 100), tenant_id="tenant-%d" % i,
                    hash_scheme="vllm",
                    prefixes=[pb.PrefixEntry(prefix_hash=(i + 1).to_bytes(8, "big"), token_count=16)])

        t0 = time.monotonic()
        assert stub.ReportCacheState(updates(), timeout=120).accepted
        took = time.monotonic() - t0
        assert took < 60, took  # was > 300 s
        _, _, body = http_get(s.http_url + "/metrics")
        body = body.decode()
        assert len(body) < 64 * 1024
        # 100 models, each in 200 tenants with one entry each
        assert gauge(body, "model-7") == 200
        assert sum(gauge(body, "model-%d" % m) for m in range(100)) == N
        # two more entries for one model, then every tenant of it cleared: the series drains to 0
        stub.ReportCacheState(iter([pb.CacheStateUpdate(
            replica_id="r2", model_id="model-7", tenant_id="tenant-7", hash_scheme="vllm",
            prefixes=[pb.PrefixEntry(prefix_hash=(N + k).to_bytes(8, "big"), token_count=16)
                      for k in (1, 2)])]), timeout=30)
        _, _, body = http_get(s.http_url + "/metrics")
        assert gauge(body.decode(), "model-7") == 202
        for i in range(7, N, 100):
            for rep in ("r", "r2"):
                stub.PublishEvent(pb.CacheEvent(type=pb.CacheEvent.ALL_CLEARED, replica_id=rep,
                                                model_id="model-7", tenant_id="tenant-%d" % i),
                                  timeout=30)
        _, _, body = http_get(s.http_url + "/metrics")
        body = body.decode()
        assert gauge(body, "model-7") == 0
        assert gauge(body, "model-8") == 200
