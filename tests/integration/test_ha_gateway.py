"""Gateways balancing over server replicas client-side (docs/ha.md "Gateways"), with a real gRPC
client (grpcio, gRPC C-core): one channel to three real inferencecache-servers (127.0.0.1-3, one
port, as behind a headless Service) with round_robin, client-side health checking
(grpc.health.v1 Watch) and a retry policy for UNAVAILABLE. Lookups run continuously; one server
is killed with SIGKILL and later a fresh one starts on its address. Asserts: every replica takes
lookups, no lookup fails beyond those in flight at the kill (in practice none: the retry policy
re-sends those too), the restarted replica takes lookups again, and a replica whose health says
NOT_SERVING (warming up) takes none until it is SERVING."""
import json
import signal
import threading
import time

import grpc
import pytest

from harness import SERVER_BIN, HostServer, free_port, protos

pb, pb_grpc = protos()

pytestmark = pytest.mark.skipif(not __import__("os").path.exists(SERVER_BIN),
                                reason="inferencecache-server not built")

# What docs/ha.md tells gateway authors to configure (the dns:/// target in a cluster; a static
# ipv4: list here, because loopback has no DNS name with three addresses).
SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "healthCheckConfig": {"serviceName": ""},
    "methodConfig": [{
        "name": [{"service": "inferencecache.v1alpha1.InferenceCache", "method": "LookupRoute"}],
        "timeout": "2s",
        "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.01s", "maxBackoff": "0.1s",
                        "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]},
    }],
}
CHANNEL_OPTIONS = [
    ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
    ("grpc.enable_retries", 1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]


def lookups_served(srv):
    """LookupRoute calls this server answered (sum over its labelled series)."""
    try:
        _, _, body = __import__("harness").http_get(srv.http_url + "/metrics", timeout=5)
    except Exception:  # noqa: BLE001 - a dead or restarting server
        return None
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith("inferencecache_lookup_route_calls_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


class LookupLoad:
    """Threads issuing LookupRoute back to back through one load-balanced channel, recording each
    call's start, end and status."""

    def __init__(self, target, threads=2):
        self.channel = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        self.stub = pb_grpc.InferenceCacheStub(self.channel)
        self.calls = []  # (start, end, code name)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        self.req = pb.LookupRouteRequest(model_id="m", tenant_id="t", hash_scheme="vllm",
                                         token_ids=list(range(1, 65)))

    def _run(self):
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                self.stub.LookupRoute(self.req)
                code = "OK"
            except grpc.RpcError as e:
                code = e.code().name
            with self.lock:
                self.calls.append((t0, time.monotonic(), code))

    def start(self):
        grpc.channel_ready_future(self.channel).result(timeout=20)
        for t in self.threads:
            t.start()
        return self

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(10)
        self.channel.close()
        return list(self.calls)


def test_round_robin_with_health_checking_survives_kill_and_restart():
    ports = (free_port(), free_port(), free_port())
    servers = [HostServer("127.0.0.%d" % (i + 1), ports, ["--insecure-disable-auth"])
               for i in range(3)]
    target = "ipv4:" + ",".join(s.grpc_addr for s in servers)
    load = None
    try:
        for s in servers:
            s.start()
        load = LookupLoad(target).start()
        time.sleep(2.0)
        before = [lookups_served(s) for s in servers]
        assert all(b and b > 10 for b in before), before  # round_robin: every replica serves

        victim = servers[1]
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(10)
        t_kill = time.monotonic()
        time.sleep(3.0)
        survivors = [lookups_served(s) for s in (servers[0], servers[2])]
        assert survivors[0] > before[0] and survivors[1] > before[2]

        victim.stop()
        victim.start()  # a fresh process on the same address (a restarted Pod)
        t_back = time.monotonic()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (lookups_served(victim) or 0) > 10:
            time.sleep(0.2)
        assert lookups_served(victim) > 10, "the restarted replica takes lookups again"
        time.sleep(1.0)
        calls = load.finish()
        load = None
    finally:
        if load:
            load.finish()
        for s in servers:
            s.stop()

    failed = [c for c in calls if c[2] != "OK"]
    in_flight = [c for c in calls if c[0] <= t_kill <= c[1]]
    after_kill = [c for c in failed if c[0] > t_kill]
    print("lookups=%d failed=%d in_flight_at_kill=%d restart_at=+%.1fs" % (
        len(calls), len(failed), len(in_flight), t_back - t_kill))
    assert len(calls) > 200
    assert after_kill == [], after_kill[:5]
    assert len(failed) <= len(in_flight), failed[:5]


def test_not_serving_replica_gets_no_lookups_until_it_is_serving():
    ports = (free_port(), free_port(), free_port())
    ready = HostServer("127.0.0.1", ports, ["--insecure-disable-auth"])
    # Warm start: NOT_SERVING (readyz 503, health NOT_SERVING) for its window since nobody reports.
    warming = HostServer("127.0.0.2", ports, ["--insecure-disable-auth",
                                              "--warm-start-window-ms=4000",
                                              "--warm-start-timeout-ms=4000"])
    warming.wait = False
    load = None
    try:
        ready.start()
        warming.start()
        load = LookupLoad("ipv4:%s,%s" % (ready.grpc_addr, warming.grpc_addr)).start()
        time.sleep(2.0)
        assert (lookups_served(warming) or 0) == 0, "no lookups while NOT_SERVING"
        assert lookups_served(ready) > 10
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (lookups_served(warming) or 0) > 10:
            time.sleep(0.2)
        assert lookups_served(warming) > 10, "SERVING after its warm start: it takes lookups"
        calls = load.finish()
        load = None
    finally:
        if load:
            load.finish()
        warming.stop()
        ready.stop()
    assert [c for c in calls if c[2] != "OK"] == []
