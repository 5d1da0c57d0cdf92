#!/usr/bin/env bash
# Installs every Debian package the build, tests, fuzzers and benchmarks need.
# Idempotent: installs only what is missing and runs `apt-get update` at most once.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config clang libclang-rt-14-dev git curl ca-certificates
  protobuf-compiler protobuf-c-compiler libprotobuf-c-dev libprotobuf-dev
  libgrpc-dev protobuf-compiler-grpc
  libmicrohttpd-dev libgnutls28-dev zlib1g-dev libcurl4-openssl-dev libjansson-dev libmsgpack-dev
  libzmq3-dev libxxhash-dev libssl-dev libcriterion-dev
  python3 python3-grpcio python3-grpc-tools python3-zmq python3-msgpack
  python3-pytest python3-jsonschema python3-jsonpatch python3-yaml openssl
  libyaml-dev
  libpcre2-dev libutf8proc-dev python3-jinja2
  prometheus mmdebstrap umoci skopeo python3-xxhash
  golang-go golang-google-grpc-dev linux-perf
)
# kubectl (with kustomize) renders config/ in the tests; Debian's kubernetes-client provides it
# where no newer kubectl is installed.
command -v kubectl >/dev/null 2>&1 || PACKAGES+=(kubernetes-client)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exec "$(dirname "$0")/install-oracles.sh"
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1
  fi
fi

echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done" >&2

# npm fixtures for the tokenizer/chat-template conformance tests (their own idempotent step).
"$(dirname "$0")/install-oracles.sh"
