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


class Process:
    """One child process of a test, the one way the harness runs a binary: stderr to a temp
    log file (kept across restarts until removed), registered in _live so a failed test leaves
    nothing running, readiness by polling an HTTP URL, stop() = SIGTERM, wait, SIGKILL.
    Subclasses build the command line and add what their binary offers."""

    proc = None
    _log = None
    stop_timeout = 15.0

    def _new_log(self, prefix):
        fd, self.log_path = tempfile.mkstemp(prefix=prefix, suffix=".log")
        os.close(fd)

    def _spawn(self, cmd, prefix=None, env=None, stdout=subprocess.DEVNULL, append=False):
        """Starts cmd with stderr to the log (a new one when prefix is given; append=True keeps
        what a previous run of this object wrote)."""
        if prefix is not None:
            self._new_log(prefix)
        self._log = open(self.log_path, "ab" if append else "wb")
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=stdout, stderr=self._log, env=env)
        _live.add(self.proc)

    def logs(self):
        try:
            with open(self.log_path, "r", errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def _wait_http(self, url, timeout, what):
        """Polls url until it answers 200; raises (with the log's tail) when the process exits
        first or timeout passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited early (rc=%s): %s" % (what, self.proc.returncode,
                                                                   self.logs()[-2000:]))
            try:
                st, _, _ = http_get(url, timeout=2)
                if st == 200:
                    return
            except Exception:
                pass
            time.sleep(0.05)
        raise RuntimeError("%s not ready in %ss: %s" % (what, timeout, self.logs()[-2000:]))

    def signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def pause(self):
        """SIGSTOP: a partitioned (or hung) process; its sockets stay open but nothing answers."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def wait_exit(self, timeout=30.0):
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is not None:
                _live.discard(self.proc)

    def _release(self):
        if self.proc is not None:
            _live.discard(self.proc)
        if self._log is not None and not self._log.closed:
            self._log.close()

    def kill9(self):
        """SIGKILL (a crash, an OOM kill, an evicted pod): nothing drains or flushes."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._release()

    def stop(self, timeout=None):
        """SIGTERM, wait (stop_timeout by default), SIGKILL if needed. Returns the exit code
        (None when never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._release()
        return self.proc.returncode

    def _remove_log(self):
        try:
            os.unlink(self.log_path)
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class Server(Process):
    """The real inferencecache-server on free loopback ports.

    args: extra flags (e.g. ["--insecure-disable-auth"]). Bind-address flags are added unless
    given. `ready` waits for /readyz 200 and a READY gRPC channel (skip with wait=False).
    host and the ports: where it listens (another loopback address, e.g. 127.0.0.3, and ports
    shared with replicas on other addresses, as behind one DNS name).
    stderr is captured to a file (self.log_path); logs() returns it as text."""

    def __init__(self, args=None, wait=True, tls_ca=None, env=None, binary=None,
                 host="127.0.0.1", grpc_port=None, http_port=None, snapshot_port=None):
        self.args = list(args or [])
        self.host = host
        self.grpc_port = grpc_port or free_port()
        self.http_port = http_port or free_port()
        self.snapshot_port = snapshot_port or free_port()
        self.binary = binary or SERVER_BIN
        self.tls_ca = tls_ca
        self.env = env
        self.wait = wait
        self._chan = None
        self._new_log("ic-server-")

    @property
    def grpc_addr(self):
        return "%s:%d" % (self.host, self.grpc_port)

    @property
    def http_url(self):
        return "http://%s:%d" % (self.host, self.http_port)

    @property
    def snapshot_url(self):
        return "http://%s:%d" % (self.host, self.snapshot_port)

    def command(self):
        args = list(self.args)
        have = {a.split("=", 1)[0] for a in args}
        if "--grpc-bind-address" not in have:
            args.append("--grpc-bind-address=" + self.grpc_addr)
        if "--http-bind-address" not in have:
            args.append("--http-bind-address=%s:%d" % (self.host, self.http_port))
        if "--snapshot-bind-address" not in have:
            args.append("--snapshot-bind-address=%s:%d" % (self.host, self.snapshot_port))
        # Warm start (docs/ha.md) waits up to --warm-start-window-ms for reporters before /readyz
        # says 200; tests that do not exercise it start ready, as a lone server always was.
        if not any(a.startswith("--warm-start-") for a in have):
            args.append("--warm-start-timeout-ms=0")
        return [self.binary] + args

    def start(self):
        env = dict(os.environ)
        env.update(self.env or {})
        self._spawn(self.command(), env=env, append=True)  # a restart (after kill9) appends
        if self.wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=60.0):
        """Polls /readyz until 200 and the gRPC channel until READY (generous for loaded CI)."""
        deadline = time.monotonic() + timeout
        self._wait_http(self.http_url + "/readyz", timeout, "server")
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

    def rss_mb(self):
        """The server process's resident set size in MB (from /proc)."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
        return 0.0

    def metric(self, sample):
        """Value of one /metrics sample line, e.g. 'x_total{stream="events"}'; None if absent."""
        _, _, body = http_get(self.http_url + "/metrics")
        for line in body.decode().splitlines():
            if line.startswith(sample + " "):
                return float(line.rsplit(" ", 1)[1])
        return None

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

    def _close_channel(self):
        if self._chan is not None:
            self._chan.close()
            self._chan = None

    def kill9(self):
        """SIGKILL (a crashed or evicted replica): nothing drains. start() again brings a fresh,
        empty process up on the same ports, like a restarted pod behind the same address."""
        self._close_channel()
        super().kill9()

    def stop(self, timeout=30.0):
        """SIGTERM, wait, SIGKILL if needed. Returns the exit code."""
        self._close_channel()
        return super().stop(timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        self._remove_log()


class HostServer(Server):
    """A Server bound to one loopback address (127.0.0.N) with ports its peers share, as Pods
    behind one headless Service do: same port, one address each. ports = (grpc, http, snapshot),
    e.g. (free_port(), free_port(), free_port()) taken once for the whole group."""

    def __init__(self, host, ports, args=None, **kw):
        super().__init__(args, host=host, grpc_port=ports[0], http_port=ports[1],
                         snapshot_port=ports[2], **kw)


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


# ------------------------------------------------------------------------------------------------
# Engine simulators and subscribers (the routing loop: engine -> subscriber -> server)

FAKE_ENGINE_BIN = os.path.join(BUILD_DIR, "src", "fake-engine", "fake-engine")
SUBSCRIBER_BIN = os.path.join(BUILD_DIR, "src", "subscriber", "kvevent-subscriber")
CLI_BIN = os.path.join(BUILD_DIR, "src", "cli", "inferencecache")


_Proc = Process  # the name EngineSim's callers once subclassed


class EngineSim(Process):
    """fake-engine in simulator mode (an OpenAI-compatible vLLM replica with a paged KV cache
    that publishes real KV events) on free loopback ports. args: extra simulator flags."""

    def __init__(self, args=None, model="sim-model", wait=True):
        self.http_port, self.pub_port, self.replay_port = free_port(), free_port(), free_port()
        self.model = model
        cmd = [FAKE_ENGINE_BIN, "--http-bind-address=127.0.0.1:%d" % self.http_port,
               "--bind=tcp://127.0.0.1:%d" % self.pub_port,
               "--replay-bind=tcp://127.0.0.1:%d" % self.replay_port,
               "--model=" + model] + list(args or [])
        self._spawn(cmd, "ic-engine-")
        if wait:
            self._wait_http(self.url + "/health", 30, "engine simulator")

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.http_port

    @property
    def pub_endpoint(self):
        return "tcp://127.0.0.1:%d" % self.pub_port

    @property
    def replay_endpoint(self):
        return "tcp://127.0.0.1:%d" % self.replay_port

    # The name Subscriber looks for: the engine's event endpoint.
    endpoint = pub_endpoint

    def stop(self, timeout=15.0):
        rc = super().stop(timeout)
        self._remove_log()
        return rc


class Fleet:
    """n engine simulators, each with its subscriber (replica ids replica-0..n-1), reporting to
    `server`. engine_args / sub_args: extra flags for every engine / subscriber. The tenant is
    not empty: the server never matches LookupRoute for an empty tenant."""

    def __init__(self, server, n, engine_args=None, sub_args=None, model="sim-model",
                 tenant="default"):
        self.engines, self.subs = [], []
        self.model, self.tenant = model, tenant
        try:
            for i in range(n):
                self.engines.append(EngineSim(engine_args, model=model))
            for i, e in enumerate(self.engines):
                self.subs.append(Subscriber(server, [e], replica="replica-%d" % i, model=model,
                                            tenant=tenant, extra=sub_args))
        except Exception:
            self.stop()
            raise

    def engine_flags(self):
        """--engine, --model-id and --tenant-id flags for `inferencecache replay`."""
        return ["--engine=%s=%s" % (s.replica_id, e.url) for s, e in zip(self.subs, self.engines)] + \
            ["--model-id=" + self.model, "--tenant-id=" + self.tenant]

    def stop(self):
        for p in self.subs + self.engines:
            try:
                p.stop()
            except Exception:
                pass
        self.subs, self.engines = [], []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# ---------------------------------------------------------------------------------------------
# Engine side: the real fake-engine binary and the real kvevent-subscriber.

SUB_BIN = SUBSCRIBER_BIN
FAKE_BIN = FAKE_ENGINE_BIN


def _check_sanitizer_report(text):
    # Against a sanitizer build (IC_BUILD_DIR of an -DIC_SANITIZE=ON tree) any report fails.
    for needle in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert needle not in text, text[-4000:]


class FakeEngine(Process):
    """The fake-engine binary on fixed loopback ports chosen once, so kill9() + start() is an
    engine restart on the same endpoints (a new process, sequence numbers from 0 again).
    args: fake-engine flags besides --bind/--replay-bind. stdout (--print-tokens) and stderr go
    to log files; prompts() parses the JSON lines."""

    stop_timeout = 10.0

    def __init__(self, args=None, replay=True):
        self.args = list(args or [])
        self.port = free_port()
        self.replay_port = free_port() if replay else None
        self.starts = 0
        fd, self.out_path = tempfile.mkstemp(prefix="ic-fake-", suffix=".out")
        os.close(fd)
        self._new_log("ic-fake-")

    @property
    def endpoint(self):
        return "tcp://127.0.0.1:%d" % self.port

    @property
    def replay_endpoint(self):
        return "tcp://127.0.0.1:%d" % self.replay_port if self.replay_port else None

    def start(self, args=None):
        if args is not None:
            self.args = list(args)
        cmd = [FAKE_BIN, "--bind=" + self.endpoint] + self.args
        if self.replay_port:
            cmd.append("--replay-bind=" + self.replay_endpoint)
        self._out = open(self.out_path, "wb")
        self._spawn(cmd, stdout=self._out, append=True)
        self.starts += 1
        return self

    def _release(self):  # kill9() and stop() (10 s before SIGKILL) close the --print-tokens file too
        super()._release()
        if getattr(self, "_out", None) and not self._out.closed:
            self._out.close()

    def prompts(self):
        """The --print-tokens lines of the current process: [{prompt, tokens, ...}]."""
        import json
        out = []
        with open(self.out_path, errors="replace") as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def cleanup(self):
        self.stop()
        self._remove_log()
        try:
            os.unlink(self.out_path)
        except OSError:
            pass


def private_hosts_command(hosts, args):
    """`args` run with the file `hosts` as its /etc/hosts, in a private mount namespace: the
    system resolver (getaddrinfo) of that process alone answers names from it, and re-reads it
    on every lookup, so a test edits the file (in place) to make a name's addresses change. As
    root, or as a user with unprivileged user namespaces (unshare -r)."""
    unshare = ["unshare", "-m", "--propagation", "private"]
    if os.geteuid() != 0:
        unshare.insert(1, "-r")
    return unshare + ["sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', hosts] + args


def private_hosts_supported():
    """Whether private_hosts_command works here (a container may forbid mount namespaces)."""
    fd, path = tempfile.mkstemp(prefix="ic-hosts-")
    try:
        os.write(fd, b"127.0.0.9 ic-probe.invalid\n")
        os.close(fd)
        r = subprocess.run(private_hosts_command(path, ["getent", "hosts", "ic-probe.invalid"]),
                           capture_output=True, timeout=10)
        return r.returncode == 0 and b"127.0.0.9" in r.stdout
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        os.unlink(path)


class Subscriber(Process):
    """The real kvevent-subscriber for `engines` (one engine or a list of objects with .endpoint
    and .replay_endpoint / .replay_port: FakeEngine, EngineSim, python engines; those with
    wait_subscribed() are waited for; an EngineSim's /metrics is scraped for stats, others get
    no stats reports). `server`: a Server or a host:port. stderr to a log file; metrics() parses
    its /metrics. hosts: a file the subscriber resolves names from instead of /etc/hosts
    (private_hosts_command)."""

    def __init__(self, server, engines, replica="r0", model="m", tenant="t", extra=None,
                 replay=True, wait=True, hosts=None):
        if not isinstance(engines, (list, tuple)):
            engines = [engines]
        server_addr = getattr(server, "grpc_addr", server)
        self.replica_id = replica
        self.http_port = free_port()
        args = [SUB_BIN, "--server=" + server_addr, "--replica-id=" + replica,
                "--model-id=" + model, "--tenant-id=" + tenant,
                "--http-bind-address=127.0.0.1:%d" % self.http_port, "--max-backoff=500ms"]
        sims = [e for e in engines if hasattr(e, "url")]
        if sims:
            args.append("--engine-metrics-url=" + sims[0].url + "/metrics")
        else:
            args.append("--stats-interval=1h")
        for e in engines:
            args.append("--engine-endpoint=" + e.endpoint)
        if replay:
            for e in engines:
                if getattr(e, "replay_port", None):
                    args.append("--replay-endpoint=" + e.replay_endpoint)
        args += list(extra or [])
        if hosts:
            args = private_hosts_command(hosts, args)
        self._spawn(args, "ic-sub-")
        if wait:
            waited = 0
            for e in engines:
                if hasattr(e, "wait_subscribed"):
                    e.wait_subscribed()
                    waited += 1 if replay and getattr(e, "replay_port", None) else 0
            # On connecting, the subscriber first learns what a running engine already holds
            # (catch-up from its replay socket); tests publish after that, so what they publish
            # arrives live and not inside the catch-up.
            if waited:
                wait_until(lambda: self.metric('kvevent_subscriber_replays_total{result="catchup"}')
                           >= waited, timeout=30, what="subscriber catch-up on connect")
                # ... and its ALL_CLEARED delivered, so a test's first updates do not ride along
                # with it (a queued clear flushes queued adds early). A server that is down on
                # purpose keeps it queued: then go on after a while.
                try:
                    wait_until(lambda: self.metric("kvevent_subscriber_queue_depth") == 0,
                               timeout=10, what="catch-up delivered")
                except AssertionError:
                    pass
            else:
                self._wait_http("http://127.0.0.1:%d/healthz" % self.http_port, 30, "subscriber")

    def metrics(self):
        st, _, body = http_get("http://127.0.0.1:%d/metrics" % self.http_port)
        assert st == 200
        out = {}
        for line in body.decode().splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name, val = line.rsplit(" ", 1)
            out[name] = float(val)
        return out

    def metric(self, name):
        return self.metrics().get(name, 0.0)

    def stop(self, timeout=30.0):
        """Stops once (later calls return the exit code); a sanitizer report in the log fails."""
        if self._log.closed:
            return self.proc.returncode
        rc = super().stop(timeout)
        text = self.logs()
        self._remove_log()
        _check_sanitizer_report(text)
        return rc


class SlowClients:
    """A slowloris: `n` TCP connections to 127.0.0.1:port that send a request line and then
    trickle one header line each every `interval` s, never finishing the request.

    Sources: connection i is bound to 127.0.0.<2 + i % sources> (all of 127/8 is loopback on
    Linux), so a flood can come from one address or many; 127.0.0.1 stays free for the checks
    a test makes meanwhile. trickle() sends one round; closed() counts connections the server
    closed (EOF or reset). Use as a context manager (closes everything on exit)."""

    def __init__(self, port, n, sources=1, interval=0.5):
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < n + 256 and (hard == resource.RLIM_INFINITY or hard > soft):
            want = n + 1024 if hard == resource.RLIM_INFINITY else min(hard, n + 1024)
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        self.port, self.n, self.sources, self.interval = port, n, sources, interval
        self.socks = []
        self.dead = set()

    def open(self):
        for i in range(self.n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.%d" % (2 + i % self.sources), 0))
            s.settimeout(5)
            try:
                s.connect(("127.0.0.1", self.port))
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            except OSError:
                self.dead.add(i)
            s.setblocking(False)
            self.socks.append(s)
        return self

    def _poll(self):
        for i, s in enumerate(self.socks):
            if i in self.dead:
                continue
            try:
                if s.recv(4096) == b"":
                    self.dead.add(i)
            except BlockingIOError:
                pass
            except OSError:
                self.dead.add(i)

    def trickle(self):
        """One round: one more header line on every connection still open."""
        self._poll()
        for i, s in enumerate(self.socks):
            if i in self.dead:
                continue
            try:
                s.send(b"X-Slow: 1\r\n")
            except BlockingIOError:
                pass
            except OSError:
                self.dead.add(i)

    def run(self, seconds):
        """Trickles for `seconds`."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.trickle()
            time.sleep(self.interval)

    def closed(self):
        self._poll()
        return len(self.dead)

    def close(self):
        for s in self.socks:
            s.close()
        self.socks = []

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()


class TokenReviewer:
    """A Kubernetes TokenReview endpoint over HTTPS (self-signed, openssl) for auth tests.

    tokens: {token: (username, audience)}; a token authenticates only for its audience.
    reviews: every request answered, as (path, Authorization header, decoded body).
    `hang` = True makes every review wait `hang_s` seconds before answering (a stuck API
    server); `fail` = True answers 500. env() gives the in-cluster variables a server needs
    (KUBERNETES_SERVICE_HOST/PORT, IC_SA_TOKEN_FILE, IC_SA_CA_FILE)."""

    def __init__(self, tokens):
        import http.server
        import json
        import ssl
        self.tokens = dict(tokens)
        self.dir = tempfile.mkdtemp(prefix="ic-tokenreview-")
        self.crt = os.path.join(self.dir, "tls.crt")
        self.key = os.path.join(self.dir, "tls.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        self.key, "-out", self.crt, "-days", "1", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
        self.token_file = os.path.join(self.dir, "token")
        with open(self.token_file, "w") as f:
            f.write("server-sa-token\n")
        self.reviews = []
        self.fail = False
        self.hang = False
        self.hang_s = 30.0
        self.lock = threading.Lock()
        self._release = threading.Event()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.reviews.append((self.path, self.headers.get("Authorization"), body))
                    fail, hang = outer.fail, outer.hang
                if hang:
                    outer._release.wait(outer.hang_s)
                if fail or self.path != "/apis/authentication.k8s.io/v1/tokenreviews":
                    self.send_response(500)
                    self.end_headers()
                    return
                spec = body.get("spec", {})
                tok, auds = spec.get("token"), spec.get("audiences") or []
                status = {"authenticated": False, "error": "invalid bearer token"}
                if tok in outer.tokens and outer.tokens[tok][1] in auds:
                    status = {"authenticated": True, "user": {"username": outer.tokens[tok][0]},
                              "audiences": auds}
                elif tok in outer.tokens:
                    status["error"] = "token audiences %s is invalid for the target audiences" % auds
                out = json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                  "spec": spec, "status": status}).encode()
                try:
                    self.send_response(201)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except OSError:
                    pass  # the client gave up (a hang test)

        self.port = free_port()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        self.httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.crt, self.key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def env(self):
        return {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(self.port),
                "IC_SA_TOKEN_FILE": self.token_file, "IC_SA_CA_FILE": self.crt}

    def count(self):
        with self.lock:
            return len(self.reviews)

    def close(self):
        self._release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        import shutil
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class TestPKI:
    """A throwaway certificate authority (openssl) in `directory`: ca(name) makes a CA,
    leaf(name, ca, cn, sans) a certificate it signs. Returns (cert, key) paths."""
    __test__ = False  # not a pytest test class

    def __init__(self, directory):
        self.dir = str(directory)

    def _p(self, name, ext):
        return os.path.join(self.dir, "%s.%s" % (name, ext))

    def ca(self, name):
        crt, key = self._p(name, "crt"), self._p(name, "key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                        "-out", crt, "-days", "2", "-subj", "/CN=%s" % name,
                        "-addext", "basicConstraints=critical,CA:TRUE",
                        "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                       check=True, capture_output=True)
        return crt, key

    def leaf(self, name, ca, cn, sans=(), server=False):
        crt, key, csr = self._p(name, "crt"), self._p(name, "key"), self._p(name, "csr")
        ext = self._p(name, "ext")
        with open(ext, "w") as f:
            if sans:
                f.write("subjectAltName=%s\n" % ",".join(sans))
            f.write("extendedKeyUsage=%s\n" % ("serverAuth" if server else "clientAuth"))
        subprocess.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                        "-out", csr, "-subj", "/CN=%s" % cn], check=True, capture_output=True)
        subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1],
                        "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext],
                       check=True, capture_output=True)
        return crt, key


# ---------------------------------------------------------------------------------------------
# `inferencecache doctor`

def doctor(*args, server=None, kubeconfig=None, env=None, binary=None, timeout=120):
    """Runs `inferencecache doctor --output=json` with `args`; `server` (a Server) fills in
    --server-endpoint and --snapshot-endpoint, `kubeconfig` --kubeconfig. No token file unless
    given. Returns (exit code, parsed report, stderr); the report's `codes` key lists the
    finding codes in order."""
    import json
    cmd = list(binary or [CLI_BIN]) + ["doctor", "--output=json", "--timeout=10s"]
    have = {a.split("=", 1)[0] for a in args}
    if "--snapshot-token-file" not in have:
        cmd.append("--snapshot-token-file=/nonexistent")
    if server is not None:
        cmd += ["--server-endpoint=" + server.grpc_addr,
                "--snapshot-endpoint=127.0.0.1:%d" % server.snapshot_port]
    if kubeconfig:
        cmd.append("--kubeconfig=" + kubeconfig)
    cmd += list(args)
    full_env = dict(os.environ)
    full_env.update(env or {})
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env,
                       stdin=subprocess.DEVNULL)
    _check_sanitizer_report(p.stderr)
    try:
        report = json.loads(p.stdout)
    except ValueError:
        raise AssertionError("doctor printed no JSON (rc %d): %s %s" % (p.returncode, p.stdout,
                                                                        p.stderr))
    report["codes"] = [f["code"] for f in report["findings"]]
    return p.returncode, report, p.stderr
