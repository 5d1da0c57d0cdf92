"""Integration tests for controller-listener auth: the real
server reviews bearer tokens against a small TokenReview endpoint served over HTTPS by this
test (self-signed certificate made with openssl), found through the in-cluster environment
(KUBERNETES_SERVICE_HOST/PORT) and IC_SA_TOKEN_FILE / IC_SA_CA_FILE."""
import json
import re

import pytest

from harness import Server, TokenReviewer, http_get

SA = "system:serviceaccount:inference-cache-system:inference-cache-controller-manager"
CTRL_AUD = "inferencecache.io/controller"
POLICY_AUD = "inferencecache.io/policy"

# token -> (username, audience the token is valid for)
TOKENS = {
    "ctrl-token": (SA, CTRL_AUD),
    "policy-token": (SA, POLICY_AUD),
    "other-sa-ctrl": ("system:serviceaccount:x:intruder", CTRL_AUD),
    "other-sa-policy": ("system:serviceaccount:x:intruder", POLICY_AUD),
}


@pytest.fixture(scope="module")
def reviewer():
    r = TokenReviewer(TOKENS)
    yield r
    r.close()


@pytest.fixture
def srv(reviewer):
    with Server(["--allowed-controller-sa=" + SA], env=reviewer.env()) as s:
        yield s


def call(srv, path, token=None, method=None, body=None):
    headers = {"Authorization": "Bearer " + token} if token else {}
    if method is None:
        method = "GET" if path == "/snapshot" else "POST"
    data = body.encode() if body is not None else (b"" if method in ("POST", "PUT") else None)
    return http_get(srv.snapshot_url + path, method=method, data=data, headers=headers, timeout=30)


def metric(srv, name, result):
    _, _, body = http_get(srv.http_url + "/metrics")
    m = re.search(r'^%s\{result="%s"\} (\S+)$' % (name, result), body.decode(), re.M)
    return float(m.group(1)) if m else 0.0


PROBE = '{"backend":"b","model":"m","hashScheme":"vllm"}'


def test_rejects_unauthenticated_and_admits_controller(srv, reviewer):
    st, hdrs, body = call(srv, "/snapshot")
    assert st == 401 and body == b"unauthorized\n\n"
    assert hdrs["Content-Type"] == "text/plain; charset=utf-8"
    st, _, body = call(srv, "/policy", body='{"version":7}')
    assert st == 401 and body == b"unauthorized\n\n"
    st, _, _ = call(srv, "/snapshot", token="ctrl-token")
    assert st == 200
    st, _, _ = call(srv, "/policy", token="policy-token", body='{"version":7}')
    assert st == 204
    for name in ("inferencecache_snapshot_auth_total", "inferencecache_policy_auth_total"):
        assert metric(srv, name, "unauth") == 1
        assert metric(srv, name, "ok") == 1
    # The server authenticated to the API server with its own SA token.
    assert reviewer.reviews[-1][1] == "Bearer server-sa-token"


def test_policy_uses_policy_audience(srv, reviewer):
    n0 = reviewer.count()
    assert call(srv, "/snapshot", token="ctrl-token")[0] == 200
    assert call(srv, "/probe", token="ctrl-token", body=PROBE)[0] == 200
    assert call(srv, "/policy", token="policy-token", body='{"version":7}')[0] == 204
    auds = [r[2]["spec"].get("audiences") for r in reviewer.reviews[n0:]]
    assert auds == [[CTRL_AUD], [CTRL_AUD], [POLICY_AUD]]
    assert all(r[2]["kind"] == "TokenReview" and r[2]["apiVersion"] == "authentication.k8s.io/v1"
               for r in reviewer.reviews[n0:])
    st, _, body = call(srv, "/policy", token="ctrl-token", body='{"version":7}')
    assert st == 401 and body == b"unauthorized\n\n", "controller-audience token on /policy"
    assert call(srv, "/snapshot", token="policy-token")[0] == 401
    assert "auth_token_review_unauthenticated" in srv.logs()


def test_policy_rejects_forbidden(srv):
    st, _, body = call(srv, "/policy", token="other-sa-policy", body='{"version":7}')
    assert st == 403 and body == b"forbidden\n\n"
    assert metric(srv, "inferencecache_policy_auth_total", "forbidden") == 1


def test_reporters_uses_the_policy_authenticator(srv):
    """PUT /reporters (docs/ha.md): the same bearer auth as /policy."""
    body = '{"replicas":["pod-a"]}'
    assert call(srv, "/reporters", method="PUT", body=body)[0] == 401
    assert call(srv, "/reporters", token="ctrl-token", method="PUT", body=body)[0] == 401
    assert call(srv, "/reporters", token="other-sa-policy", method="PUT", body=body)[0] == 403
    assert call(srv, "/reporters", token="policy-token", method="PUT", body=body)[0] == 204
    assert call(srv, "/reporters", token="policy-token", method="POST", body=body)[0] == 405


def test_probe_auth(srv):
    assert call(srv, "/probe", body=PROBE)[0] == 401
    st, _, body = call(srv, "/probe", token="ctrl-token", body=PROBE)
    assert st == 200 and json.loads(body)["routing"] == "ok"
    assert metric(srv, "inferencecache_probe_auth_total", "unauth") == 1
    assert metric(srv, "inferencecache_probe_auth_total", "ok") == 1


def test_auth_runs_before_method_check(srv):
    st, _, _ = call(srv, "/snapshot", method="POST")
    assert st == 401, "unauthenticated wrong-method request is 401, not 405"
    st, hdrs, _ = call(srv, "/snapshot", token="ctrl-token", method="POST")
    assert st == 405 and hdrs["Allow"] == "GET"
    assert http_get(srv.snapshot_url + "/nope")[0] == 404, "unknown paths need no auth"


def test_bearer_parsing_and_cache(srv, reviewer):
    for authz in ("Basic Zm9v", "Bearer ", "Bearer"):
        st, _, _ = http_get(srv.snapshot_url + "/snapshot", headers={"Authorization": authz})
        assert st == 401, authz
    n0 = reviewer.count()
    for scheme in ("bearer", "BEARER", "Bearer"):
        st, _, _ = http_get(srv.snapshot_url + "/snapshot",
                            headers={"Authorization": scheme + "  ctrl-token "})
        assert st == 200, scheme
    assert reviewer.count() - n0 == 1, "same token within 30 s is served from the cache"
    assert call(srv, "/snapshot", token="bogus")[0] == 401
    assert call(srv, "/snapshot", token="bogus")[0] == 401
    assert reviewer.count() - n0 == 3, "failures are never cached"
    assert metric(srv, "inferencecache_snapshot_auth_total", "ok") == 3
    assert metric(srv, "inferencecache_snapshot_auth_total", "unauth") == 5


def test_fail_closed_when_review_unavailable(srv, reviewer):
    reviewer.fail = True
    try:
        st, hdrs, body = call(srv, "/snapshot", token="ctrl-token")
        assert st == 503 and body == b"token review unavailable\n\n"
        assert hdrs["X-Content-Type-Options"] == "nosniff"
        assert metric(srv, "inferencecache_snapshot_auth_total", "error") == 1
    finally:
        reviewer.fail = False
    assert call(srv, "/snapshot", token="ctrl-token")[0] == 200


def test_startup_logs_auth_enabled(srv):
    recs = [r for r in srv.log_records() if r.get("msg") == "controller_auth_enabled"]
    assert recs and recs[0]["expected_sa"] == SA
    assert recs[0]["controller_audience"] == CTRL_AUD and recs[0]["policy_audience"] == POLICY_AUD


def test_missing_in_cluster_config_exits_1(reviewer):
    env = {"KUBERNETES_SERVICE_HOST": "", "KUBERNETES_SERVICE_PORT": ""}
    s = Server(["--allowed-controller-sa=" + SA], env=env, wait=False)
    s.start()
    try:
        assert s.wait_exit(30) == 1
        assert any(r.get("msg") == "in_cluster_config" for r in s.log_records())
    finally:
        s.stop()
