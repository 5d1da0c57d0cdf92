#!/usr/bin/env bash
# Runs benchmarks: run-bench.sh BUILD_DIR [all|index|grpc|subscriber|routing|...]. Each prints JSON lines.
set -euo pipefail
build=${1:-build}; which=${2:-all}
shopt -s nullglob
[ "$which" = subscriber ] && which=kvevents  # the subscriber's benchmark lives in bench_kvevents
ran=0
for b in "$build"/bench/bench_*; do
  [ -x "$b" ] || continue
  name=$(basename "$b"); name=${name#bench_}
  # RenderTemplate's figures (bench_promptstore) belong to the tokenizer benchmark's JSON lines
  if [ "$which" = tokenizer ] && [ "$name" = promptstore ]; then "$b"; continue; fi
  if [ "$which" = all ] || [ "$which" = "$name" ]; then "$b"; ran=1; fi
done
# Scripted end-to-end benchmarks: bench/bench_<name>.py BUILD_DIR (routing: server + engine
# simulators + subscribers + inferencecache replay, ~10 minutes; see docs/performance.md).
for s in "$(dirname "$0")"/../bench/bench_*.py; do
  name=$(basename "$s" .py); name=${name#bench_}
  if [ "$which" = all ] || [ "$which" = "$name" ]; then /usr/bin/python3 "$s" "$build"; ran=1; fi
done
[ $ran = 1 ] || { echo "run-bench: no benchmark named '$which' built" >&2; exit 1; }
