"""Helpers for controller integration tests: start the test Kubernetes API server (kubeapi.py) and
the real inferencecache-controller against it, and talk to the API server as a test client.
Every process started here is stopped by its context manager (or the atexit hook)."""
import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("IC_SOURCE_DIR") or os.path.abspath(os.path.join(HERE, "..", ".."))
BUILD_DIR = os.environ.get("IC_BUILD_DIR") or os.path.join(SOURCE_DIR, "build")
CONTROLLER_BIN = os.path.join(BUILD_DIR, "src", "controller", "inferencecache-controller")

_live = set()


@atexit.register
def _kill_leftovers():
    for p in list(_live):
        try:
            p.kill()
            p.wait(5)
        except Exception:
            pass


def wait_until(pred, timeout=30.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
        except Exception as e:  # noqa: BLE001 - keep polling through transient errors
            last = e
            last = None
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


CB = ("inferencecache.io", "v1alpha1", "cachebackends")
CPOL = ("inferencecache.io", "v1alpha1", "cachepolicies")
CT = ("inferencecache.io", "v1alpha1", "cachetenants")
CI = ("inferencecache.io", "v1alpha1", "cacheindices")
DEPLOY = ("apps", "v1", "deployments")
STS = ("apps", "v1", "statefulsets")
SVC = ("", "v1", "services")
PVC = ("", "v1", "persistentvolumeclaims")
PODS = ("", "v1", "pods")
LEASES = ("coordination.k8s.io", "v1", "leases")
EVENTS = ("events.k8s.io", "v1", "events")


class KubeAPI:
    """The test API server as a subprocess plus a small REST client."""

    def __init__(self):
        self.proc = None
        self.port = None

    def start(self):
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "kubeapi.py")],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        _live.add(self.proc)
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError("kubeapi did not start: %r" % line)
        self.port = int(line.split()[1])
        fd, self.kubeconfig = tempfile.mkstemp(prefix="ic-kubeconfig-", suffix=".yaml")
        with os.fdopen(fd, "w") as f:
            f.write("apiVersion: v1\nkind: Config\ncurrent-context: t\n"
                    "clusters:\n- name: t\n  cluster:\n    server: %s\n"
                    "contexts:\n- name: t\n  context:\n    cluster: t\n    user: u\n"
                    "    namespace: inference-cache-system\n"
                    "users:\n- name: u\n  user:\n    token: test-token\n" % self.url)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        _live.discard(self.proc)
        try:
            os.unlink(self.kubeconfig)
        except (OSError, AttributeError):
            pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def call(self, method, path, body=None, ctype="application/json"):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": ctype})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, json.loads(raw) if raw else None

    @staticmethod
    def path(res, ns=None, name=None, sub=None):
        g, v, plural = res
        p = "/api/%s" % v if not g else "/apis/%s/%s" % (g, v)
        if ns:
            p += "/namespaces/%s" % ns
        p += "/" + plural
        if name:
            p += "/" + name
        if sub:
            p += "/" + sub
        return p

    def get(self, res, ns, name):
        code, obj = self.call("GET", self.path(res, ns, name))
        return obj if code == 200 else None

    def list(self, res, ns=None):
        code, obj = self.call("GET", self.path(res, ns))
        assert code == 200, obj
        return obj["items"]

    def create(self, res, ns, obj):
        code, out = self.call("POST", self.path(res, ns), obj)
        assert code == 201, out
        return out

    def patch(self, res, ns, name, patch, sub=None):
        code, out = self.call("PATCH", self.path(res, ns, name, sub), patch,
                              "application/merge-patch+json")
        assert code == 200, out
        return out

    def delete(self, res, ns, name):
        return self.call("DELETE", self.path(res, ns, name))[0]

    def requests(self):
        return self.call("GET", "/_test/requests")[1]["requests"]

    def clear_requests(self):
        self.call("DELETE", "/_test/requests")

    def fault(self, **f):
        self.call("POST", "/_test/faults", f)

    def compact(self):
        return self.call("POST", "/_test/compact", {})[1]

    def close_watches(self):
        return self.call("POST", "/_test/close-watches", {})[1]

    def writes(self, path_contains=""):
        return [r for r in self.requests() if r["method"] in ("POST", "PUT", "PATCH", "DELETE")
                and path_contains in r["path"]]


class Controller:
    """The real inferencecache-controller against a KubeAPI (no webhooks, loopback ports)."""

    def __init__(self, api, args=None, free_port=None):
        self.api = api
        self.args = list(args or [])
        self.free_port = free_port
        self.proc = None
        fd, self.log_path = tempfile.mkstemp(prefix="ic-controller-", suffix=".log")
        os.close(fd)

    def start(self):
        args = [CONTROLLER_BIN, "--kubeconfig=" + self.api.kubeconfig,
                "--webhook-bind-address=", "--metrics-bind-address=127.0.0.1:%d" % self.free_port(),
                "--health-probe-bind-address=127.0.0.1:%d" % self.free_port(),
                "--controller-token-file=/nonexistent", "--policy-token-file=/nonexistent"]
        self.metrics_addr = args[3].split("=", 1)[1]
        self.health_addr = args[4].split("=", 1)[1]
        have = {a.split("=", 1)[0] for a in self.args}
        if "--server-snapshot-url" not in have:
            args.append("--server-snapshot-url=http://127.0.0.1:1/snapshot")
        if "--server-policy-url" not in have:
            args.append("--server-policy-url=http://127.0.0.1:1/policy")
        args += self.args
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self._log)
        _live.add(self.proc)
        wait_until(self._healthy, 30, what="controller /healthz")
        return self

    def _healthy(self):
        if self.proc.poll() is not None:
            raise RuntimeError("controller exited rc=%s: %s" % (self.proc.returncode, self.logs()))
        try:
            with urllib.request.urlopen("http://%s/healthz" % self.health_addr, timeout=2) as r:
                return r.status == 200
        except Exception:  # noqa: BLE001
            return False

    def metrics(self):
        with urllib.request.urlopen("http://%s/metrics" % self.metrics_addr, timeout=5) as r:
            return r.read().decode()

    def logs(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_records(self):
        out = []
        for line in self.logs().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def kill(self, sig=signal.SIGKILL):
        self.proc.send_signal(sig)
        self.proc.wait(30)
        _live.discard(self.proc)

    def discard(self):
        """Stops the process if it still runs and removes its log file."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.stop()
            self._log.close()
        try:
            os.unlink(self.log_path)
        except OSError:
            pass

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        _live.discard(self.proc)
        self._log.close()
        return self.proc.returncode

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        rc = self.stop()
        logs = self.logs()
        try:
            os.unlink(self.log_path)
        except OSError:
            pass
        # A clean SIGTERM shutdown exits 0; sanitizer reports (ASan builds) fail the test.
        if exc[0] is None:
            assert rc == 0 and "Sanitizer" not in logs, "controller exit %s:\n%s" % (rc, logs[-4000:])


def cond(obj, ctype):
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None
