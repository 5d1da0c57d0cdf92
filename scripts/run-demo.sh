#!/usr/bin/env bash
# `make run`: starts inferencecache-server on localhost with controller auth DISABLED and prints
# how to call it. Ctrl-C stops it (graceful shutdown). Usage: run-demo.sh [BUILD_DIR]
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
  python3 - <<'PY'    # from the repository root; needs python3-grpcio + python3-grpc-tools
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
exec "$bin" --insecure-disable-auth --grpc-bind-address="$GRPC" --http-bind-address="$HTTP" \
  --snapshot-bind-address="$CTRL" "$@"
