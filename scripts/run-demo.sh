#!/usr/bin/env bash
# `make run`: starts inferencecache-server on localhost with controller auth DISABLED and prints
# how to call it. Ctrl-C stops it (graceful shutdown). Usage: run-demo.sh [BUILD_DIR]
# When kvevent-subscriber and fake-engine are built it is the live demo of the whole path: two
# fake engines (vLLM map encoding and SGLang) + one kvevent-subscriber each (replica-0,
# replica-1), a few LookupRoute answers printed, then (when inferencecache is built) a few
# seconds of `inferencecache replay` on 4 engine simulators comparing round-robin with lookup,
# then everything serves until Ctrl-C.
# Addresses (env, defaults): IC_DEMO_GRPC 127.0.0.1:9090, IC_DEMO_HTTP 127.0.0.1:8080,
# IC_DEMO_SNAPSHOT 127.0.0.1:8081, IC_DEMO_ENGINE0_PORT 5557, IC_DEMO_ENGINE1_PORT 5567 (each also
# uses +1 for replay), IC_DEMO_SUB0_METRICS 127.0.0.1:8090, IC_DEMO_SUB1_METRICS 127.0.0.1:8091.
# Every port is checked before anything starts; a taken one is named with the variable that moves
# it. IC_DEMO_ONCE=1 exits after the lookups (tests).
set -euo pipefail
build=${1:-build}
[ $# -gt 0 ] && shift
bin="$build/src/server/inferencecache-server"
if [ ! -x "$bin" ]; then
  echo "make run: $bin is not built (run 'make build' first)" >&2
  exit 1
fi
GRPC=${IC_DEMO_GRPC:-127.0.0.1:9090}
HTTP=${IC_DEMO_HTTP:-127.0.0.1:8080}
CTRL=${IC_DEMO_SNAPSHOT:-127.0.0.1:8081}
PY=/usr/bin/python3  # the interpreter the demo and the printed snippet use (Debian's, with grpcio)
sub_bin="$build/src/subscriber/kvevent-subscriber"
fake_bin="$build/src/fake-engine/fake-engine"
live=0
[ -x "$sub_bin" ] && [ -x "$fake_bin" ] && live=1
e0=${IC_DEMO_ENGINE0_PORT:-5557}; e1=${IC_DEMO_ENGINE1_PORT:-5567}
m0=${IC_DEMO_SUB0_METRICS:-127.0.0.1:8090}; m1=${IC_DEMO_SUB1_METRICS:-127.0.0.1:8091}

# Every address the demo binds, checked up front: a clash otherwise shows up late and misleadingly.
# Lines: "variable what host:port".
ports="IC_DEMO_GRPC gRPC $GRPC
IC_DEMO_HTTP public-HTTP $HTTP
IC_DEMO_SNAPSHOT controller-listener $CTRL"
if [ "$live" = 1 ]; then
  ports="$ports
IC_DEMO_ENGINE0_PORT fake-engine-0 127.0.0.1:$e0
IC_DEMO_ENGINE0_PORT fake-engine-0-replay(+1) 127.0.0.1:$((e0 + 1))
IC_DEMO_ENGINE1_PORT fake-engine-1 127.0.0.1:$e1
IC_DEMO_ENGINE1_PORT fake-engine-1-replay(+1) 127.0.0.1:$((e1 + 1))
IC_DEMO_SUB0_METRICS subscriber-0-metrics $m0
IC_DEMO_SUB1_METRICS subscriber-1-metrics $m1"
fi
if ! IC_DEMO_PORTS="$ports" "$PY" - <<'PYCHECK'; then
import os, socket, sys
taken = []
for line in os.environ["IC_DEMO_PORTS"].splitlines():
    var, what, addr = line.split()
    host, _, port = addr.rpartition(":")
    try:
        port = int(port)
        s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host.strip("[]") or "0.0.0.0", port))
        s.close()
    except (OSError, ValueError) as e:
        taken.append((var, what, addr, e.strerror if isinstance(e, OSError) else "not host:port"))
for var, what, addr, why in taken:
    print("make run: %s address %s is not available (%s); set %s to another one" % (what, addr, why, var),
          file=sys.stderr)
if taken:
    print("  e.g.  IC_DEMO_GRPC=127.0.0.1:19090 IC_DEMO_HTTP=127.0.0.1:18080 make run   "
          "(all variables: scripts/run-demo.sh, README.md)", file=sys.stderr)
    sys.exit(1)
PYCHECK
  exit 1
fi
cat >&2 <<MSG
######################################################################################
#  WARNING: demo mode -- the controller listener ($CTRL: /snapshot /policy /probe)
#  runs with --insecure-disable-auth. Anyone who can reach it can rewrite routing
#  policy. Never expose this configuration beyond localhost.
######################################################################################

inferencecache-server is starting:
  gRPC        $GRPC   (inferencecache.v1alpha1.InferenceCache, grpc.health.v1, reflection)
  public HTTP $HTTP   (/healthz /readyz /metrics)
  controller  $CTRL   (/snapshot /policy /probe, auth DISABLED)

Try it from another terminal:
  curl -s http://$HTTP/readyz
  curl -s http://$HTTP/metrics | grep inferencecache_
  curl -s http://$CTRL/snapshot
  curl -s -XPOST http://$CTRL/policy -d '{"version":7,"policies":[{"namespace":"team-a","minimumMatchedTokens":0}]}'
  curl -s -XPOST http://$CTRL/probe -d '{"backend":"demo/cache","model":"llama","hashScheme":"vllm"}'
  grpcurl -plaintext $GRPC list                      # if grpcurl is installed (reflection is on)
  $PY - <<'PY'    # from the repository root; needs python3-grpcio + python3-grpc-tools
import sys, tempfile, grpc
from grpc_tools import protoc
out = tempfile.mkdtemp(); protoc.main(["protoc", "-Iproto", "--python_out=" + out, "--grpc_python_out=" + out,
    "proto/inferencecache/v1alpha1/inferencecache.proto"]); sys.path.append(out)
from inferencecache.v1alpha1 import inferencecache_pb2 as pb, inferencecache_pb2_grpc as rpc
stub = rpc.InferenceCacheStub(grpc.insecure_channel("$GRPC"))
chain = dict(block_hashes=[bytes([i]) * 8 for i in range(8)], block_token_counts=[16] * 8)
stub.ReportCacheState(iter([pb.CacheStateUpdate(replica_id="pod-a", model_id="llama", tenant_id="team-a",
    hash_scheme="vllm", prefixes=[pb.PrefixEntry(**chain)])]))
print(stub.LookupRoute(pb.LookupRouteRequest(model_id="llama", tenant_id="team-a", hash_scheme="vllm", **chain)))
PY
(docs/server.md describes every flag, RPC and endpoint.)

MSG
if [ "$live" = 0 ]; then
  exec "$bin" --insecure-disable-auth --grpc-bind-address="$GRPC" --http-bind-address="$HTTP" \
    --snapshot-bind-address="$CTRL" "$@"
fi

# ---- live demo: server + 2 fake engines + 2 subscribers ----
root=$(cd "$(dirname "$0")/.." && pwd)
logs=$(mktemp -d /tmp/ic-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$logs"
}
trap cleanup EXIT
trap 'echo; echo "stopping"; exit 0' INT TERM
"$bin" --insecure-disable-auth --grpc-bind-address="$GRPC" --http-bind-address="$HTTP" \
  --snapshot-bind-address="$CTRL" "$@" 2>"$logs/server.log" &
pids+=($!); procs="server:$!"
# Two replicas of model demo-model in tenant demo, each with its own engine and subscriber.
for i in 0 1; do
  port=$([ $i = 0 ] && echo "$e0" || echo "$e1"); maddr=$([ $i = 0 ] && echo "$m0" || echo "$m1")
  "$sub_bin" --engine-endpoint=tcp://127.0.0.1:$port --replay-endpoint=tcp://127.0.0.1:$((port + 1)) \
    --server="$GRPC" --replica-id=replica-$i --model-id=demo-model --tenant-id=demo \
    --hash-scheme=vllm --window=50ms --stats-interval=1h --http-bind-address="$maddr" \
    2>"$logs/subscriber-$i.log" &
  pids+=($!); procs="$procs subscriber-$i:$!"
done
# replica-0: vLLM map encoding, 8 blocks of 16 tokens over 2 chained events, tokens from 1000.
"$fake_bin" --bind=tcp://127.0.0.1:$e0 --replay-bind=tcp://127.0.0.1:$((e0 + 1)) --encoding=vllm-map \
  --block-size=16 --num-blocks=8 --events=2 --start-token=1000 --interval=1s --print-tokens \
  >"$logs/engine-0.json" 2>"$logs/engine-0.log" &
pids+=($!); procs="$procs engine-0:$!"
# replica-1: SGLang encoding (one event per page, negative hashes), 5 blocks from token 50000.
"$fake_bin" --bind=tcp://127.0.0.1:$e1 --replay-bind=tcp://127.0.0.1:$((e1 + 1)) --encoding=sglang \
  --block-size=16 --num-blocks=5 --start-token=50000 --interval=1s --print-tokens \
  >"$logs/engine-1.json" 2>"$logs/engine-1.log" &
pids+=($!); procs="$procs engine-1:$!"

IC_SOURCE_DIR="$root" DEMO_GRPC="$GRPC" DEMO_LOGS="$logs" DEMO_PROCS="$procs" "$PY" - <<'PYDEMO'
import json, os, sys, time
sys.path.insert(0, os.path.join(os.environ["IC_SOURCE_DIR"], "tests", "integration"))
from harness import protos
import grpc
pb, pb_grpc = protos()
stub = pb_grpc.InferenceCacheStub(grpc.insecure_channel(os.environ["DEMO_GRPC"]))
logs = os.environ["DEMO_LOGS"]

def fail(why):
    """Says what went wrong with the end of every process's log, then exits non-zero."""
    print("make run: " + why, file=sys.stderr)
    for name in sorted(os.listdir(logs)):
        with open(os.path.join(logs, name), errors="replace") as f:
            tail = f.read().splitlines()[-5:]
        print("--- %s (last lines)" % name, file=sys.stderr)
        for line in tail:
            print("    " + line, file=sys.stderr)
    sys.exit(1)

def check_alive():
    for item in os.environ["DEMO_PROCS"].split():
        name, pid = item.split(":")
        try:  # the shell's children, not ours: gone or a zombie means it exited
            with open("/proc/%s/stat" % pid) as f:
                alive = f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            alive = False
        if not alive:
            fail("%s exited early" % name)

def tokens(i):
    deadline = time.time() + 30
    while time.time() < deadline:
        check_alive()
        try:
            with open(os.path.join(logs, "engine-%d.json" % i)) as f:
                return json.loads(f.readline())["tokens"]
        except (OSError, ValueError):
            time.sleep(0.1)
    fail("fake engine %d printed no prompt within 30 s" % i)

def lookup(toks):
    return stub.LookupRoute(pb.LookupRouteRequest(model_id="demo-model", tenant_id="demo",
                                                  hash_scheme="vllm", token_ids=toks), timeout=5)

a, b = tokens(0), tokens(1)
deadline = time.time() + 30
while True:  # until both subscribers delivered their engine's blocks
    check_alive()
    try:
        if lookup(a).reason_code == "PREFIX_MATCH" and lookup(b).reason_code == "PREFIX_MATCH":
            break
    except grpc.RpcError:
        pass
    if time.time() > deadline:
        fail("the replicas' blocks were not indexed within 30 s")
    time.sleep(0.2)
tier = {0: "UNSPECIFIED", 1: "T1", 2: "T2", 3: "T3"}
cases = [("replica-0's prompt (128 tokens)", a),
         ("replica-1's prompt (80 tokens)", b),
         ("replica-0's first 64 tokens + a new suffix", a[:64] + list(range(900000, 900032))),
         ("a prompt nobody has seen", list(range(700000, 700096)))]
for title, toks in cases:
    r = lookup(toks)
    print("LookupRoute %-44s -> %s" % (title, r.reason_code))
    for s in r.replica_scores:
        print("    %-10s score=%-9.3f matched_tokens=%-4d tier=%s" %
              (s.replica_id, s.score, s.matched_tokens, tier.get(s.tier, s.tier)))
sys.stdout.flush()
PYDEMO

# ---- what it buys: a few seconds of replay, round-robin vs lookup, on 4 simulated engines ----
cli_bin="$build/src/cli/inferencecache"
if [ -x "$cli_bin" ]; then
  IC_SOURCE_DIR="$root" IC_BUILD_DIR="$build" DEMO_GRPC="$GRPC" /usr/bin/python3 - <<'PYREPLAY' || echo "(replay demo skipped: see above)"
import json, os, subprocess, sys
sys.path.insert(0, os.path.join(os.environ["IC_SOURCE_DIR"], "tests", "integration"))
import harness
class Srv:
    grpc_addr = os.environ["DEMO_GRPC"]
# 4 engine simulators (5x faster than wall time) + their subscribers, on free loopback ports.
with harness.Fleet(Srv(), 4, engine_args=["--speedup=5", "--stream-interval=8"],
                   sub_args=["--window=10ms", "--stats-interval=1s"], tenant="demo") as fleet:
    wl = "shared-prefix:groups=24,questions=4,context=1024,question=64,output=16,rate=20"
    p = subprocess.run([harness.CLI_BIN, "replay", "--workload=" + wl, "--mode=round-robin,lookup",
                        "--speedup=5", "--server=" + Srv.grpc_addr, "--summary=-", "--quiet"]
                       + fleet.engine_flags(), capture_output=True, text=True, timeout=300)
    if p.returncode not in (0, 3):
        sys.exit("replay failed: " + p.stderr[-500:])
    rows = [json.loads(line) for line in p.stdout.splitlines()]
print()
print("What cache-aware routing buys: 96 requests (24 shared 1k-token contexts x 4 questions)")
print("replayed on 4 simulated engines with inferencecache replay (docs/replay.md):")
print("  %-12s %9s %12s %12s" % ("policy", "hit rate", "TTFT mean", "TTFT p99"))
for r in rows:
    print("  %-12s %8.1f%% %9.1f ms %9.1f ms" % (r["mode"], 100 * r["hit_rate"], r["ttft_mean_ms"],
                                              r["ttft_p99_ms"]))
PYREPLAY
fi

echo
echo "serving: fake engines republish every second; subscriber metrics http://$m0/metrics and"
echo "         http://$m1/metrics; the server as listed above. Ctrl-C stops."
[ "${IC_DEMO_ONCE:-0}" = 1 ] && exit 0
wait
