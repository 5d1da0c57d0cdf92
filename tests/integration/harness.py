"""Shared helpers for the integration tests: free loopback ports, python gRPC stubs generated
from our own proto files at test time, and starting/stopping the real binaries.

Usage:
    from harness import Server, protos, free_port
    pb, pb_grpc = protos()                      # inferencecache.v1alpha1 messages + stubs
    with Server(["--insecure-disable-auth"]) as srv:
        stub = pb_grpc.InferenceCacheStub(srv.channel())
        resp = stub.LookupRoute(pb.LookupRouteRequest(model_id="m"), timeout=10)

Everything binds to 127.0.0.1 on ports chosen here; every process started is stopped by the
helper (context manager, stop(), or the atexit hook), so no test leaves a server behind.
"""
import atexit
import importlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

SOURCE_DIR = os.environ.get("IC_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_DIR = os.environ.get("IC_BUILD_DIR") or os.path.join(SOURCE_DIR, "build")
SERVER_BIN = os.path.join(BUILD_DIR, "src", "server", "inferencecache-server")
TEMPLATE_RENDER_BIN = os.path.join(BUILD_DIR, "src", "template-render", "ic-template-render")

_ports_lock = threading.Lock()
_ports_given = set()


def free_port():
    """A TCP port free on 127.0.0.1 right now (never the same one twice per process)."""
    with _ports_lock:
        for _ in range(100):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            s.close()
            if port not in _ports_given:
                _ports_given.add(port)
                return port
    raise RuntimeError("no free port")


_protos_lock = threading.Lock()
_protos_dir = None


def _gen_protos():
    """Runs grpc_tools.protoc once per process over proto/ into a temp dir on sys.path."""
    global _protos_dir
    with _protos_lock:
        if _protos_dir:
            return _protos_dir
        from grpc_tools import protoc
        out = tempfile.mkdtemp(prefix="ic-pb-")
        atexit.register(lambda: __import__("shutil").rmtree(out, ignore_errors=True))
        proto_root = os.path.join(SOURCE_DIR, "proto")
        files = []
        for root, _, names in os.walk(proto_root):
            for n in names:
                if n.endswith(".proto"):
                    files.append(os.path.relpath(os.path.join(root, n), proto_root))
        import grpc_tools
        include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
        args = ["protoc", "-I" + proto_root]
        if os.path.isdir(include):
            args.append("-I" + include)
        args += ["--python_out=" + out, "--grpc_python_out=" + out] + sorted(files)
        if protoc.main(args) != 0:
            raise RuntimeError("grpc_tools.protoc failed on " + proto_root)
        # Make our generated directories importable packages, except the top-level "grpc"
        # folder (health/reflection): a package named grpc would shadow grpcio. Those modules
        # are loaded by file path in protos().
        for root, dirs, _ in os.walk(out):
            for d in dirs:
                if root == out and d == "grpc":
                    continue
                init = os.path.join(root, d, "__init__.py")
                if not os.path.exists(init):
                    open(init, "w").close()
        sys.path.append(out)
        _protos_dir = out
        return out


def protos(name="inferencecache.v1alpha1.inferencecache"):
    """(messages module, grpc stubs module) for a proto under proto/, default ours.
    Other names: "grpc.health.v1.health", "grpc.reflection.v1alpha.reflection",
    "grpc.reflection.v1.reflection"."""
    _gen_protos()
    # Our generated "grpc" package would shadow grpcio's; import grpcio first and load the
    # generated health/reflection modules under their file paths instead.
    import grpc  # noqa: F401
    if name.startswith("grpc."):
        base = os.path.join(_protos_dir, *name.split("."))
        pkg, leaf = name.rsplit(".", 1)
        mods = []
        for suffix in ("_pb2", "_pb2_grpc"):
            modname = "icgen_" + name.replace(".", "_") + suffix
            if modname in sys.modules:
                mods.append(sys.modules[modname])
                continue
            with open(base + suffix + ".py") as f:
                src = f.read()
            # The stubs import their messages as "from grpc.health.v1 import health_pb2";
            # point that at the module loaded here instead.
            src = src.replace("from %s import %s_pb2 as" % (pkg, leaf), "import %s as" % mods[0].__name__
                              if mods else "from %s import %s_pb2 as" % (pkg, leaf))
            mod = importlib.util.module_from_spec(importlib.util.spec_from_loader(modname, loader=None))
            sys.modules[modname] = mod
            exec(compile(src, base + suffix + ".py", "exec"), mod.__dict__)
            mods.append(mod)
        return mods[0], mods[1]
    return (importlib.import_module(name + "_pb2"), importlib.import_module(name + "_pb2_grpc"))


def http_get(url, timeout=5.0, headers=None, method="GET", data=None):
    """(status, headers, body bytes); HTTP errors are returned, not raised."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


_live = set()


@atexit.register
def _kill_leftovers():
    for p in list(_live):
        try:
            p.kill()
            p.wait(5)
        except Exception:
            pass


class Server:
    """The real inferencecache-server on free loopback ports.

    args: extra flags (e.g. ["--insecure-disable-auth"]). Bind-address flags are added unless
    given. `ready` waits for /readyz 200 and a READY gRPC channel (skip with wait=False).
    stderr is captured to a file (self.log_path); logs() returns it as text."""

    def __init__(self, args=None, wait=True, tls_ca=None, env=None, binary=None):
        self.args = list(args or [])
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.snapshot_port = free_port()
        self.binary = binary or SERVER_BIN
        self.tls_ca = tls_ca
        self.env = env
        self.wait = wait
        self.proc = None
        self._chan = None
        fd, self.log_path = tempfile.mkstemp(prefix="ic-server-", suffix=".log")
        os.close(fd)

    @property
    def grpc_addr(self):
        return "127.0.0.1:%d" % self.grpc_port

    @property
    def http_url(self):
        return "http://127.0.0.1:%d" % self.http_port

    @property
    def snapshot_url(self):
        return "http://127.0.0.1:%d" % self.snapshot_port

    def command(self):
        args = list(self.args)
        have = {a.split("=", 1)[0] for a in args}
        if "--grpc-bind-address" not in have:
            args.append("--grpc-bind-address=" + self.grpc_addr)
        if "--http-bind-address" not in have:
            args.append("--http-bind-address=127.0.0.1:%d" % self.http_port)
        if "--snapshot-bind-address" not in have:
            args.append("--snapshot-bind-address=127.0.0.1:%d" % self.snapshot_port)
        return [self.binary] + args

    def start(self):
        env = dict(os.environ)
        env.update(self.env or {})
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=self._log,
                                     env=env)
        _live.add(self.proc)
        if self.wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=60.0):
        """Polls /readyz until 200 and the gRPC channel until READY (generous for loaded CI)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited early (rc=%s): %s" % (self.proc.returncode,
                                                                       self.logs()[-2000:]))
            try:
                st, _, _ = http_get(self.http_url + "/readyz", timeout=2)
                if st == 200:
                    break
            except Exception:
                pass
            time.sleep(0.05)
        else:
            raise RuntimeError("server not ready in %ss: %s" % (timeout, self.logs()[-2000:]))
        import grpc
        grpc.channel_ready_future(self.channel()).result(timeout=max(1.0, deadline - time.monotonic()))
        return self

    def channel(self):
        """A shared grpc channel to the server (TLS when tls_ca was given)."""
        import grpc
        if self._chan is None:
            if self.tls_ca:
                with open(self.tls_ca, "rb") as f:
                    creds = grpc.ssl_channel_credentials(root_certificates=f.read())
                self._chan = grpc.secure_channel("localhost:%d" % self.grpc_port, creds)
            else:
                self._chan = grpc.insecure_channel(self.grpc_addr)
        return self._chan

    def stub(self):
        _, pb_grpc = protos()
        return pb_grpc.InferenceCacheStub(self.channel())

    def logs(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_records(self):
        """Parsed JSON log lines (non-JSON lines skipped)."""
        import json
        out = []
        for line in self.logs().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=30.0):
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is not None:
                _live.discard(self.proc)

    def stop(self, timeout=30.0):
        """SIGTERM, wait, SIGKILL if needed. Returns the exit code."""
        if self._chan is not None:
            self._chan.close()
            self._chan = None
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        _live.discard(self.proc)
        self._log.close()
        return self.proc.returncode

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        try:
            os.unlink(self.log_path)
        except OSError:
            pass


def run_server(args, timeout=30.0):
    """Runs the server binary to completion (flag-validation tests): (rc, stdout, stderr)."""
    p = subprocess.run([SERVER_BIN] + list(args), capture_output=True, timeout=timeout, text=True)
    return p.returncode, p.stdout, p.stderr


def wait_until(pred, timeout=30.0, interval=0.05, what="condition"):
    """Polls pred() until truthy; returns its value or raises AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(interval)
