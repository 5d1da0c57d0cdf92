#!/usr/bin/env bash
# Builds the gRPC-Go transport anchor offline from Debian's packaged sources (golang-go,
# golang-google-grpc-dev under /usr/share/gocode): build.sh OUTPUT [GOCACHE_DIR].
# Exits 0 with a message, building nothing, when Go or the gRPC-Go sources are missing.
set -euo pipefail
out=$1; cache=${2:-$(dirname "$out")/go-cache}
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v go >/dev/null || [ ! -d /usr/share/gocode/src/google.golang.org/grpc ]; then
  echo "grpc-anchor: skipped (needs golang-go and golang-google-grpc-dev; scripts/install-deps.sh)" >&2
  exit 0
fi
mkdir -p "$cache"
GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="$cache" GOFLAGS= GOPROXY=off \
  go build -o "$out" "$here/main.go"
