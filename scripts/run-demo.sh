#!/usr/bin/env bash
# `make run`: the live demo on localhost. inferencecache-server + two fake engines (vLLM map
# encoding and SGLang) + one kvevent-subscriber per engine, a few LookupRoute calls printed with
# their reason codes and ranked replicas, then everything keeps serving until Ctrl-C.
# Ports (override with env): gRPC 9090, HTTP 8080, snapshot 8081, engines 5557/5558 and 5567/5568,
# subscriber metrics 8090/8091. DEMO_ONCE=1 stops after the lookups (used by tests).
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
server_bin="$build/src/server/inferencecache-server"
sub_bin="$build/src/subscriber/kvevent-subscriber"
fake_bin="$build/src/fake-engine/fake-engine"
if [ ! -x "$server_bin" ]; then
  echo "make run: the server is not built yet; it will start inferencecache-server on 127.0.0.1:9090 (gRPC),"
  echo "          127.0.0.1:8080 (health, metrics) and 127.0.0.1:8081 (/snapshot, /policy, /probe)."
  exit 1
fi
grpc=${DEMO_GRPC_PORT:-9090}; http=${DEMO_HTTP_PORT:-8080}; snap=${DEMO_SNAPSHOT_PORT:-8081}
e0=${DEMO_ENGINE0_PORT:-5557}; e1=${DEMO_ENGINE1_PORT:-5567}
m0=${DEMO_SUB0_METRICS_PORT:-8090}; m1=${DEMO_SUB1_METRICS_PORT:-8091}
logs=$(mktemp -d /tmp/ic-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$logs"
}
trap cleanup EXIT
trap 'echo; echo "stopping"; exit 0' INT TERM

"$server_bin" --insecure-disable-auth \
  --grpc-bind-address=127.0.0.1:$grpc --http-bind-address=127.0.0.1:$http \
  --snapshot-bind-address=127.0.0.1:$snap 2>"$logs/server.log" &
pids+=($!)
if [ ! -x "$sub_bin" ] || [ ! -x "$fake_bin" ]; then
  echo "make run: kvevent-subscriber or fake-engine not built; serving the server alone (Ctrl-C stops)."
  wait
fi

# Two replicas of model demo-model in tenant demo, each with its own engine and subscriber.
for i in 0 1; do
  port=$([ $i = 0 ] && echo $e0 || echo $e1); mport=$([ $i = 0 ] && echo $m0 || echo $m1)
  "$sub_bin" --engine-endpoint=tcp://127.0.0.1:$port --replay-endpoint=tcp://127.0.0.1:$((port + 1)) \
    --server=127.0.0.1:$grpc --replica-id=replica-$i --model-id=demo-model --tenant-id=demo \
    --hash-scheme=vllm --window=50ms --stats-interval=1h --http-bind-address=127.0.0.1:$mport \
    2>"$logs/subscriber-$i.log" &
  pids+=($!)
done
# replica-0: vLLM map encoding, 8 blocks of 16 tokens over 2 chained events, prompts from 1000.
"$fake_bin" --bind=tcp://127.0.0.1:$e0 --replay-bind=tcp://127.0.0.1:$((e0 + 1)) --encoding=vllm-map \
  --block-size=16 --num-blocks=8 --events=2 --start-token=1000 --interval=1s --print-tokens \
  >"$logs/engine-0.json" 2>"$logs/engine-0.log" &
pids+=($!)
# replica-1: SGLang encoding (one event per page, negative hashes), 5 blocks from token 50000.
"$fake_bin" --bind=tcp://127.0.0.1:$e1 --replay-bind=tcp://127.0.0.1:$((e1 + 1)) --encoding=sglang \
  --block-size=16 --num-blocks=5 --start-token=50000 --interval=1s --print-tokens \
  >"$logs/engine-1.json" 2>"$logs/engine-1.log" &
pids+=($!)

IC_SOURCE_DIR="$root" DEMO_GRPC="127.0.0.1:$grpc" DEMO_LOGS="$logs" /usr/bin/python3 - <<'EOF'
import json, os, sys, time
sys.path.insert(0, os.path.join(os.environ["IC_SOURCE_DIR"], "tests", "integration"))
from harness import protos
import grpc
pb, pb_grpc = protos()
stub = pb_grpc.InferenceCacheStub(grpc.insecure_channel(os.environ["DEMO_GRPC"]))
logs = os.environ["DEMO_LOGS"]

def tokens(i):
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with open(os.path.join(logs, "engine-%d.json" % i)) as f:
                return json.loads(f.readline())["tokens"]
        except (OSError, ValueError):
            time.sleep(0.1)
    sys.exit("demo: fake engine %d printed no prompt" % i)

def lookup(toks):
    return stub.LookupRoute(pb.LookupRouteRequest(model_id="demo-model", tenant_id="demo",
                                                  hash_scheme="vllm", token_ids=toks), timeout=5)

a, b = tokens(0), tokens(1)
deadline = time.time() + 30
while time.time() < deadline:  # until both subscribers delivered their engine's blocks
    try:
        if lookup(a).reason_code == "PREFIX_MATCH" and lookup(b).reason_code == "PREFIX_MATCH":
            break
    except grpc.RpcError:
        pass
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
EOF

echo
echo "serving: gRPC 127.0.0.1:$grpc, server metrics http://127.0.0.1:$http/metrics,"
echo "         snapshot http://127.0.0.1:$snap/snapshot, subscriber metrics http://127.0.0.1:$m0/metrics"
echo "         and http://127.0.0.1:$m1/metrics; engines republish every second. Ctrl-C stops."
[ "${DEMO_ONCE:-0}" = 1 ] && exit 0
wait
