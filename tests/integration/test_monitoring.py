"""The monitoring bundle (config/monitoring) holds up: the PrometheusRule's groups pass
`promtool check rules` and the unit tests in alerts_test.yaml (`promtool test rules`), every alert
has a unit test and a runbook in docs/alerts.md, the bundle renders with kustomize, and every
metric name the rules and the Grafana dashboard use is served by our real programs' /metrics
(server, controller, kvevent-subscriber driven with traffic), the engine's own metrics and `up`
excepted."""
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from harness import BUILD_DIR, SOURCE_DIR, Server, free_port, http_get, protos, wait_until

sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "kubeapi"))
from kubetest import CB, Controller, KubeAPI  # noqa: E402

MON = os.path.join(SOURCE_DIR, "config", "monitoring")
PROMTOOL = shutil.which("promtool")
need_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian prometheus)")
# Series that do not come from our programs: Prometheus' scrape health and the engine's metrics.
EXTERNAL = re.compile(r"^(up|vllm:.*)$")
PROMQL_WORDS = {"sum", "by", "rate", "increase", "histogram_quantile", "max", "min", "count", "and",
                "or", "unless", "on", "ignoring", "group_left", "group_right", "without", "avg",
                "le", "label_values", "time", "abs", "bool", "offset"}


def _rule_groups():
    with open(os.path.join(MON, "prometheusrule.yaml")) as f:
        return yaml.safe_load(f)["spec"]["groups"]


def _rules():
    return [r for g in _rule_groups() for r in g["rules"]]


@pytest.fixture(scope="module")
def rules_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("rules")
    with open(d / "rules.yaml", "w") as f:
        yaml.safe_dump({"groups": _rule_groups()}, f)
    shutil.copy(os.path.join(MON, "alerts_test.yaml"), d / "alerts_test.yaml")
    return d


@need_promtool
def test_promtool_check_rules(rules_dir):
    p = subprocess.run([PROMTOOL, "check", "rules", str(rules_dir / "rules.yaml")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS: %d rules found" % len(_rules()) in p.stdout


@need_promtool
def test_promtool_unit_tests(rules_dir):
    p = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yaml"], cwd=rules_dir,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "SUCCESS" in p.stdout


def test_every_alert_has_a_unit_test_and_a_runbook():
    with open(os.path.join(MON, "alerts_test.yaml")) as f:
        tests = yaml.safe_load(f)["tests"]
    tested = {t["alertname"] for case in tests for t in case.get("alert_rule_test", [])
              if t.get("exp_alerts")}
    with open(os.path.join(SOURCE_DIR, "docs", "alerts.md")) as f:
        runbooks = f.read()
    headings = {m.group(1) for m in re.finditer(r"^### (\w+)$", runbooks, re.M)}
    names = [r["alert"] for r in _rules()]
    assert len(names) == len(set(names))
    for r in _rules():
        name = r["alert"]
        assert name in tested, "%s has no firing unit test in alerts_test.yaml" % name
        assert name in headings, "%s has no runbook section in docs/alerts.md" % name
        assert r["annotations"]["runbook_url"] == "docs/alerts.md#" + name.lower()
        assert r["labels"]["component"] == "inference-cache"
        assert r["labels"]["severity"] in ("critical", "warning", "info")
    assert headings == set(names), "runbooks without an alert: %s" % (headings - set(names))


def test_reference_alert_names_are_kept():
    names = {r["alert"] for r in _rules()}
    for ref in ("IndexEmpty", "LMCacheT2NoHits", "LookupRouteDegenerate", "LookupRouteHighTimeout",
                "IndexEvictionsSpike", "ServerProbeFail"):
        assert ref in names


def test_bundle_renders_with_kustomize():
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl not installed")
    p = subprocess.run([kubectl, "kustomize", MON], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    kinds = sorted((d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(p.stdout))
    assert kinds == [("ConfigMap", "inference-cache-grafana-dashboard"),
                     ("PodMonitor", "inference-cache-controller"),
                     ("PodMonitor", "inference-cache-kvevent-subscribers"),
                     ("PrometheusRule", "inference-cache-alerts"),
                     ("ServiceMonitor", "inference-cache-server")]
    cm = [d for d in yaml.safe_load_all(p.stdout) if d["kind"] == "ConfigMap"][0]
    json.loads(cm["data"]["grafana-dashboard.json"])


def _metric_names(expr):
    """Metric names a PromQL expression selects (identifiers outside label matchers/strings)."""
    expr = re.sub(r'"[^"]*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "{}", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|on|ignoring|without|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        w = m.group(0)
        nxt = expr[m.end():m.end() + 1]
        if w in PROMQL_WORDS or nxt == "(" or w.startswith("$"):
            continue
        names.add(w)
    for m in re.finditer(r'__name__=~"([^"]+)"', expr):
        names.add(m.group(1))
    return names


def _used_metrics():
    used = set()
    for r in _rules():
        used |= _metric_names(r["expr"])
        used |= {m.group(1) for m in re.finditer(r'__name__=~"([^"]+)"', r["expr"])}
    with open(os.path.join(MON, "grafana-dashboard.json")) as f:
        dash = json.load(f)
    for p in dash["panels"]:
        for t in p.get("targets", []):
            used |= _metric_names(t["expr"])
    for v in dash["templating"]["list"]:
        q = v.get("query")
        if isinstance(q, dict):
            used |= _metric_names(re.sub(r"label_values\((\w+),.*\)", r"\1", q["query"]))
    # Histogram series belong to their family.
    return {re.sub(r"_(bucket|sum|count)$", "", n) if n.endswith(("_bucket", "_sum", "_count")) else n
            for n in used if not EXTERNAL.match(n) and "(" not in n}


def _families(text):
    return {m.group(1) for m in re.finditer(r"^# TYPE (\S+) ", text, re.M)}


def _scrape(url):
    st, _, body = http_get(url)
    assert st == 200
    return body.decode()


def _drive_server(srv):
    """Traffic that makes the server's labelled families appear: lookups, ingest, a quota."""
    pb, pb_grpc = protos()
    stub = pb_grpc.InferenceCacheStub(srv.channel())
    st, _, _ = http_get(srv.snapshot_url + "/policy", method="POST", data=json.dumps(
        {"version": 7, "policies": [{"namespace": "t", "minimumMatchedTokens": 0}],
         "tenants": [{"tenantID": "t", "maxIndexEntries": 2}]}).encode(),
        headers={"Content-Type": "application/json"})
    assert st == 204
    chain = dict(block_hashes=[bytes([i]) * 8 for i in range(6)], block_token_counts=[16] * 6)
    stub.ReportCacheState(iter([pb.CacheStateUpdate(
        replica_id="r0", model_id="m", tenant_id="t", hash_scheme="vllm",
        prefixes=[pb.PrefixEntry(**chain)])]), timeout=10)
    stub.ReportCacheState(iter([pb.CacheStateUpdate(
        replica_id="r1", model_id="m", tenant_id="u", hash_scheme="vllm",
        prefixes=[pb.PrefixEntry(**chain)])]), timeout=10)
    stub.LookupRoute(pb.LookupRouteRequest(model_id="m", tenant_id="u", hash_scheme="vllm", **chain),
                     timeout=10)
    it = stub.StreamCacheEvents(pb.StreamEventsRequest(), timeout=5)
    wait_until(lambda: 'inferencecache_stream_subscribers{stream="events"} 1' in
               _scrape(srv.http_url + "/metrics"), 20, what="stream subscriber")
    it.cancel()


def test_every_metric_the_rules_and_dashboard_use_is_served(tmp_path):
    used = _used_metrics()
    assert len(used) > 20
    served = set()
    binaries = {}
    with Server(["--insecure-disable-auth"]) as srv:
        _drive_server(srv)
        served |= _families(_scrape(srv.http_url + "/metrics"))
        binaries["server"] = srv.binary
        # A subscriber fed by a fake engine with gaps and garbage, reporting to this server.
        port = free_port()
        rport = free_port()
        mport = free_port()
        eng = subprocess.Popen([os.path.join(BUILD_DIR, "src", "fake-engine", "fake-engine"),
                                "--bind=tcp://127.0.0.1:%d" % port,
                                "--replay-bind=tcp://127.0.0.1:%d" % rport, "--block-size=16",
                                "--num-blocks=4", "--interval=50ms", "--gap-every=5",
                                "--malformed-every=7"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sub_bin = os.path.join(BUILD_DIR, "src", "subscriber", "kvevent-subscriber")
        sub = subprocess.Popen([sub_bin, "--engine-endpoint=tcp://127.0.0.1:%d" % port,
                                "--replay-endpoint=tcp://127.0.0.1:%d" % rport,
                                "--server=" + srv.grpc_addr, "--replica-id=r9", "--model-id=m",
                                "--window=20ms", "--stats-interval=200ms",
                                "--engine-metrics-url=http://127.0.0.1:%d/metrics" % free_port(),
                                "--http-bind-address=127.0.0.1:%d" % mport],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = "http://127.0.0.1:%d/metrics" % mport
            need = ("kvevent_subscriber_replays_total", "kvevent_subscriber_batches_total",
                    "kvevent_subscriber_stats_reports_total", "kvevent_subscriber_tracked_blocks")

            def ready():
                try:
                    return all(n in _families(_scrape(url)) for n in need)
                except OSError:
                    return False
            wait_until(ready, 30, what="subscriber families")
            served |= _families(_scrape(url))
        finally:
            for p in (sub, eng):
                p.terminate()
                p.wait(timeout=10)
        binaries["subscriber"] = sub_bin
        # The controller against the test API server, pushing policy to and polling this server.
        with KubeAPI() as api, Controller(api, [
                "--server-snapshot-url=" + srv.snapshot_url + "/snapshot",
                "--server-policy-url=" + srv.snapshot_url + "/policy",
                "--cacheindex-refresh-interval=1s", "--cachepolicy-push-interval=1s"],
                free_port=free_port) as ctl:
            api.create(CB, "llm", {"apiVersion": "inferencecache.io/v1alpha1", "kind": "CacheBackend",
                                "metadata": {"name": "ext"},
                                "spec": {"type": "External", "endpoint": "kv.example.svc:8200"}})
            want = ("inferencecache_controller_policy_push_total",
                    "inferencecache_controller_snapshot_poll_total", "controller_runtime_reconcile_total")
            wait_until(lambda: all(n in _families(ctl.metrics()) for n in want), 30,
                       what="controller push/poll/reconcile families")
            served |= _families(ctl.metrics())
            binaries["controller"] = os.path.join(BUILD_DIR, "src", "controller",
                                                  "inferencecache-controller")
    missing = used - served
    # Families that appear only after rare events (cap evictions, queue overflow, reconcile
    # errors, probe failures) must at least be registered by one of the programs.
    blobs = {k: open(v, "rb").read() for k, v in binaries.items()}
    unknown = sorted(n for n in missing if not any(n.encode() + b"\0" in b for b in blobs.values()))
    assert not unknown, "metrics used by rules/dashboard that no program serves: %s" % unknown
    assert len(missing) <= 8, "too few families observed live: %s" % sorted(missing)
    for n in ("process_resident_memory_bytes", "inferencecache_index_entries",
              "inferencecache_lookup_route_calls_total", "kvevent_subscriber_event_to_send_lag_seconds",
              "kvevent_subscriber_reported_hit_rate"):
        assert n in served
