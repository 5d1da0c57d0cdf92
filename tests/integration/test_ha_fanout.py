"""The subscriber's fan-out follows a DNS name (docs/ha.md): --server=dns:///name:port is
re-resolved every --server-resolve-interval through the system resolver. Real processes: the
subscriber resolves from a hosts file of its own (a private mount namespace, so getaddrinfo is
the code path it runs in production), servers listen on 127.0.0.2/.3/.4 behind one port. A new
address becomes a replica that gets the engine's full state and then every batch on the same
window tick as the others; an address no longer listed stops being fed."""
import time

import pytest

from harness import (FakeEngine, Server, Subscriber, free_port, private_hosts_supported,
                     wait_until)

NAME = "ic-servers.invalid"  # .invalid: never sent to a real DNS server
ENTRIES = 'inferencecache_index_entries{model="m"}'
WINDOW_S = 1.0

pytestmark = pytest.mark.skipif(not private_hosts_supported(),
                                reason="needs a private mount namespace (unshare -m)")


def write_hosts(path, ips):
    # In place (same inode): the subscriber's /etc/hosts is a bind mount of this file.
    with open(path, "w") as f:
        f.write("".join("%s %s\n" % (ip, NAME) for ip in ips))


def entries(srv):
    return srv.metric(ENTRIES) or 0


def arrivals(servers, seconds):
    """Polls each server's index size for `seconds`: {server index: [(time, entries)] on every
    change}."""
    seen = {i: [] for i in range(len(servers))}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for i, s in enumerate(servers):
            t, v = time.monotonic(), entries(s)
            if not seen[i] or seen[i][-1][1] != v:
                seen[i].append((t, v))
        time.sleep(0.01)
    return seen


def first_at_least(series, value):
    return next((t for t, v in series if v >= value), None)


def test_dns_name_re_resolved_new_replica_gets_full_state_and_gone_one_is_dropped(tmp_path):
    port = free_port()
    hosts = str(tmp_path / "hosts")
    write_hosts(hosts, ["127.0.0.2", "127.0.0.3"])
    a = Server(["--insecure-disable-auth"], host="127.0.0.2", grpc_port=port).start()
    b = Server(["--insecure-disable-auth"], host="127.0.0.3", grpc_port=port).start()
    c = Server(["--insecure-disable-auth", "--warm-start-window-ms=500",
                "--warm-start-timeout-ms=60000"], host="127.0.0.4", grpc_port=port,
               wait=False)
    # Two new prompts of 2 blocks a second, kept (no evictions), for as long as the test runs.
    eng = FakeEngine(["--block-size=16", "--num-blocks=2", "--prompts=100000", "--rate=2",
                      "--count=0"]).start()
    sub = None
    try:
        sub = Subscriber("dns:///%s:%d" % (NAME, port), [eng], replica="e0", hosts=hosts,
                         extra=["--server-resolve-interval=300ms", "--window=%dms" %
                                (WINDOW_S * 1000)])
        target = 'kvevent_subscriber_target_%s{target="%s"}'
        wait_until(lambda: sub.metric("kvevent_subscriber_targets") == 2, timeout=10,
                   what="two targets from the name")
        wait_until(lambda: entries(a) >= 10 and entries(b) >= 10, timeout=30,
                   what="both replicas fed")

        # A third address appears: a new, empty replica on it gets everything the engine holds
        # (not only what is published from now on), then the marker that ends its warm start.
        c.start()
        write_hosts(hosts, ["127.0.0.2", "127.0.0.3", "127.0.0.4"])
        c.wait_ready(timeout=30)
        rec = [r for r in c.log_records() if r.get("msg") == "warm_start_done"][-1]
        assert rec["reason"] == "complete" and rec["synced"] == 1, rec
        assert sub.metric("kvevent_subscriber_targets") == 3
        assert sub.metric(target % ("resyncs_total", c.grpc_addr)) >= 1
        assert sub.metric(target % ("full_state_sent_total", c.grpc_addr)) >= 1
        # It holds what was published before it existed: at the moment it became ready it
        # already had more entries than the engine publishes in the time it took.
        wait_until(lambda: entries(c) >= entries(a) > 0 and entries(c) == entries(b),
                   timeout=10, interval=0.01, what="new replica equal to its peers")
        assert 'server replica added' in open(sub.log_path).read()

        # From then on every batch reaches the new replica on the same window tick as the
        # others (one flush grid), not up to a window later (with a grid of its own it was a
        # random 0-1 window behind).
        seen = arrivals([a, c], 4 * WINDOW_S)
        steps = [(t, v) for t, v in seen[0][1:]]
        assert len(steps) >= 3, seen
        for t, v in steps:
            tc = first_at_least(seen[1], v)
            assert tc is not None and abs(tc - t) < 0.25 * WINDOW_S, (v, t, tc, seen)

        # An address no longer listed: its target goes (queue and all), the others go on.
        write_hosts(hosts, ["127.0.0.2", "127.0.0.4"])
        wait_until(lambda: sub.metric("kvevent_subscriber_targets") == 2, timeout=10,
                   what="target removed")
        assert 'server replica removed (no longer resolved)' in open(sub.log_path).read()
        time.sleep(2 * WINDOW_S)  # anything already in flight to it has landed
        frozen = entries(b)
        grown = entries(a)
        wait_until(lambda: entries(a) > grown + 4 and entries(c) >= entries(a) - 4, timeout=15,
                   what="the remaining replicas still fed")
        assert entries(b) == frozen
        assert sub.metric("kvevent_subscriber_server_connected") == 1
    finally:
        if sub:
            sub.stop()
        eng.cleanup()
        for s in (a, b, c):
            s.stop()
