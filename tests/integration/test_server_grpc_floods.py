"""gRPC transport floods (issue 16 item 6), sent with a raw HTTP/2 client (h2flood.py): a rapid
reset (streams opened and cancelled at once) and streams that are opened and never finished.
The server keeps answering, bounds open streams per connection and in total, and its memory
returns after the flood."""
import time

import grpc

import h2flood
from harness import Server, protos, wait_until

pb, pb_grpc = protos()
T = 30
REPORT = "/inferencecache.v1alpha1.InferenceCache/ReportCacheState"
LOOKUP = "/inferencecache.v1alpha1.InferenceCache/LookupRoute"


def connect(srv, n):
    conns = [h2flood.Conn("127.0.0.1", srv.grpc_port) for _ in range(n)]
    # Streams count against the limit only once the server's SETTINGS are acknowledged.
    wait_until(lambda: all(c.got_settings for c in conns), T, what="server SETTINGS")
    time.sleep(0.2)
    return conns


def test_rapid_reset_memory_returns():
    with Server(["--insecure-disable-auth"]) as srv:
        time.sleep(1.0)
        rss_before = srv.rss_mb()
        conns = connect(srv, 4)
        for i in range(20000):
            conns[i % 4].open_stream(LOOKUP, reset=True)
        time.sleep(3.0)  # the connections stay up while the server works through the backlog
        # The server keeps answering during the flood's aftermath.
        r = srv.stub().LookupRoute(pb.LookupRouteRequest(tenant_id="t", model_id="m", hash_scheme="vllm"),
                                   timeout=T)
        assert r.reason_code
        for c in conns:
            c.close()
        # Before: RSS went from ~30 to ~250 MB and stayed there.
        wait_until(lambda: srv.rss_mb() < rss_before + 25, 60, interval=0.5,
                   what="RSS back near %.0f MB (now %.0f)" % (rss_before, srv.rss_mb()))


def test_never_finished_streams_are_bounded_and_memory_returns():
    with Server(["--insecure-disable-auth", "--grpc-max-concurrent-streams=100", "--grpc-max-streams=300"]) as srv:
        time.sleep(1.0)
        rss_before = srv.rss_mb()
        one = connect(srv, 1)[0]
        assert one.max_streams == 100
        for _ in range(100):
            one.open_stream(REPORT)  # HEADERS only: the stream stays open
        wait_until(lambda: srv.metric("inferencecache_grpc_open_streams") == 100, T, what="100 open")
        # A client that goes past the advertised limit loses its connection (gRPC core treats it
        # as a protocol violation) and with it every stream it held.
        for _ in range(900):
            one.open_stream(REPORT)
        wait_until(lambda: one.closed, T, what="the server to drop the connection")
        wait_until(lambda: srv.metric("inferencecache_grpc_open_streams") == 0, T, what="its streams closed")
        # More connections: the server-wide cap ends the rest with RESOURCE_EXHAUSTED.
        more = connect(srv, 4)
        for c in more:
            for _ in range(100):
                c.open_stream(REPORT)
        wait_until(lambda: (srv.metric("inferencecache_grpc_streams_refused_total") or 0) >= 100, T,
                   what="server-wide refusals")
        assert srv.metric("inferencecache_grpc_open_streams") == 300
        # A well-behaved client on its own connection is still served (unary calls are not capped).
        r = srv.stub().LookupRoute(pb.LookupRouteRequest(tenant_id="t", model_id="m", hash_scheme="vllm"),
                                   timeout=T)
        assert r.reason_code
        with grpc.insecure_channel(srv.grpc_addr) as ch:
            stub = pb_grpc.InferenceCacheStub(ch)
            with_cap = None
            try:
                stub.ReportCacheState(iter([]), timeout=T)
            except grpc.RpcError as e:
                with_cap = e
            assert with_cap is not None and with_cap.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        for c in more:
            c.close()
        wait_until(lambda: srv.metric("inferencecache_grpc_open_streams") == 0, T, what="streams closed")
        wait_until(lambda: srv.rss_mb() < rss_before + 15, 60, interval=0.5,
                   what="RSS back near %.0f MB (now %.0f)" % (rss_before, srv.rss_mb()))
