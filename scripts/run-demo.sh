#!/usr/bin/env bash
# `make run`: starts the local demo. Until the server lands it says what it will do.
set -euo pipefail
build=${1:-build}
if [ -x "$build/src/server/inferencecache-server" ]; then
  exec "$build/src/server/inferencecache-server" --insecure-disable-auth \
    --grpc-bind-address=127.0.0.1:9090 --http-bind-address=127.0.0.1:8080 \
    --snapshot-bind-address=127.0.0.1:8081
fi
echo "make run: the server is not built yet; it will start inferencecache-server on 127.0.0.1:9090 (gRPC),"
echo "          127.0.0.1:8080 (health, metrics) and 127.0.0.1:8081 (/snapshot, /policy, /probe)."
