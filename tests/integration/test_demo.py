"""`make run` (scripts/run-demo.sh) as a new user meets it: a taken port is reported up front,
naming the address and the IC_DEMO_* variable that moves it, instead of a late traceback."""
import os
import socket
import subprocess
import time

from harness import BUILD_DIR, SOURCE_DIR, free_port

SCRIPT = os.path.join(SOURCE_DIR, "scripts", "run-demo.sh")


def _env(**over):
    env = dict(os.environ, IC_DEMO_ONCE="1")
    for var in ("IC_DEMO_GRPC", "IC_DEMO_HTTP", "IC_DEMO_SNAPSHOT", "IC_DEMO_SUB0_METRICS",
                "IC_DEMO_SUB1_METRICS"):
        env[var] = "127.0.0.1:%d" % free_port()
    env["IC_DEMO_ENGINE0_PORT"] = str(free_port())
    env["IC_DEMO_ENGINE1_PORT"] = str(free_port())
    env.update(over)
    return env


def test_taken_grpc_port_is_named_with_its_variable_before_anything_starts():
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    addr = "127.0.0.1:%d" % blocker.getsockname()[1]
    try:
        t0 = time.time()
        p = subprocess.run([SCRIPT, BUILD_DIR], capture_output=True, text=True, timeout=60,
                           env=_env(IC_DEMO_GRPC=addr))
        elapsed = time.time() - t0
    finally:
        blocker.close()
    assert p.returncode == 1, p.stderr
    assert "gRPC address %s is not available" % addr in p.stderr
    assert "set IC_DEMO_GRPC to another one" in p.stderr
    assert elapsed < 10 and "inferencecache-server is starting" not in p.stderr


def test_taken_engine_replay_port_is_named_too():
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    port = blocker.getsockname()[1]
    try:
        p = subprocess.run([SCRIPT, BUILD_DIR], capture_output=True, text=True, timeout=60,
                           env=_env(IC_DEMO_ENGINE1_PORT=str(port - 1)))
    finally:
        blocker.close()
    assert p.returncode == 1
    assert "fake-engine-1-replay(+1) address 127.0.0.1:%d is not available" % port in p.stderr
    assert "IC_DEMO_ENGINE1_PORT" in p.stderr


def test_printed_snippet_runs_with_the_interpreter_it_names():
    """The banner's Python example is copied from the terminal by new users: run it as printed."""
    env = _env()
    env.pop("IC_DEMO_ONCE")
    p = subprocess.Popen([SCRIPT, BUILD_DIR], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env, start_new_session=True)
    try:
        out = ""
        deadline = time.time() + 90
        while "serving:" not in out and time.time() < deadline and p.poll() is None:
            out += p.stdout.readline()
        assert "serving:" in out, out
        banner = ""
        # The banner went to stderr before the demo started; read what is buffered so far.
        os.set_blocking(p.stderr.fileno(), False)
        banner = p.stderr.read() or ""
        start = banner.index("/usr/bin/python3 - <<'PY'")
        body = banner[banner.index("\n", start) + 1:banner.index("\nPY\n", start)]
        lines = body.splitlines()
        indent = len(lines[0]) - len(lines[0].lstrip())
        code = "\n".join(l[indent:] if l[:indent].strip() == "" else l for l in lines)
        r = subprocess.run(["/usr/bin/python3", "-"], input=code, capture_output=True, text=True,
                           cwd=SOURCE_DIR, timeout=60)
        assert r.returncode == 0, r.stderr
        assert 'reason_code: "PREFIX_MATCH"' in r.stdout and 'replica_id: "pod-a"' in r.stdout
    finally:
        os.killpg(p.pid, 2)
        p.wait(timeout=30)
