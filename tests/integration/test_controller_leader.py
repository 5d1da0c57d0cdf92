"""Leader election between two inferencecache-controller processes over a coordination.k8s.io/v1
Lease on the test API server: only the holder reconciles; a graceful stop releases the lease at
once; a killed leader is replaced once its lease expires."""
import os
import signal
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kubeapi"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import free_port  # noqa: E402
from kubetest import CB, LEASES, Controller, KubeAPI, wait_until, CONTROLLER_BIN  # noqa: E402

pytestmark = pytest.mark.skipif(not os.path.exists(CONTROLLER_BIN),
                                reason="inferencecache-controller not built")

LEASE_NS = "inference-cache-system"
LEASE = "inference-cache-controller-leader-lock"
# Generous for a loaded 2-core machine: a leader that cannot renew within 4s would exit.
ARGS = ["--leader-elect", "--leader-elect-lease-duration=6s", "--leader-elect-renew-deadline=4s",
        "--leader-elect-retry-period=500ms", "--cacheindex-refresh-interval=1h",
        "--cachepolicy-push-interval=1h"]


def ext(name, endpoint):
    return {"apiVersion": "inferencecache.io/v1alpha1", "kind": "CacheBackend",
            "metadata": {"name": name}, "spec": {"type": "External", "endpoint": endpoint}}


def holder(api):
    lease = api.get(LEASES, LEASE_NS, LEASE)
    return (lease or {}).get("spec", {}).get("holderIdentity")


def identity(ctl):
    for r in ctl.log_records():
        if r.get("msg") == "controller_started":
            return r.get("identity")
    return None


def mirrored(api, name, endpoint):
    o = api.get(CB, "ns", name)
    return o and (o.get("status") or {}).get("endpoint") == endpoint


def test_leader_handover_on_kill_and_on_graceful_stop():
    with KubeAPI() as api:
        a = Controller(api, ARGS, free_port=free_port).start()
        b = None
        try:
            wait_until(lambda: holder(api), 30, what="a leader")
            b = Controller(api, ARGS, free_port=free_port).start()
            ida = wait_until(lambda: identity(a), what="identity a")
            idb = wait_until(lambda: identity(b), what="identity b")
            first = holder(api)
            assert first in (ida, idb)
            leader, follower = (a, b) if first == ida else (b, a)
            fid = idb if first == ida else ida
            api.create(CB, "ns", ext("one", "one:1"))
            wait_until(lambda: mirrored(api, "one", "one:1"), 30, what="leader reconciles")
            # The follower never wrote status: only the leader's log has a leader_elected record.
            assert not any(r.get("msg") == "leader_elected" for r in follower.log_records())

            # Kill the leader without releasing: the follower takes over after expiry.
            leader.kill(signal.SIGKILL)
            wait_until(lambda: holder(api) == fid, 30, what="follower acquires the lease")
            api.create(CB, "ns", ext("two", "two:2"))
            wait_until(lambda: mirrored(api, "two", "two:2"), 30, what="new leader reconciles")
            lease = api.get(LEASES, LEASE_NS, LEASE)
            assert lease["spec"]["leaseTransitions"] >= 1

            # A graceful stop releases the lease at once.
            assert follower.stop() == 0
            assert holder(api) == ""
        finally:
            for c in (a, b):
                if c is not None:
                    c.discard()
