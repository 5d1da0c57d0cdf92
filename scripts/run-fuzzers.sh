#!/usr/bin/env bash
# Runs every built libFuzzer target for N seconds each: run-fuzzers.sh BUILD_DIR SECONDS.
# Seeds come from tests/fuzz/corpus/<target>/ when present; crashes fail the run.
set -euo pipefail
build=${1:-build-fuzz}; secs=${2:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
shopt -s nullglob
targets=("$build"/tests/fuzz/fuzz_*)
status=0
for t in "${targets[@]}"; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  corpus="$work/$name"; mkdir -p "$corpus"
  seeds="$root/tests/fuzz/corpus/$name"
  [ -d "$seeds" ] && cp -r "$seeds"/. "$corpus"/ 2>/dev/null || true
  if "$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/" "$corpus" >"$work/$name.log" 2>&1; then
    echo "fuzz: $name ok ($(grep -o 'stat::number_of_executed_units: [0-9]*' "$work/$name.log" | awk '{print $2}') runs)"
  else
    echo "fuzz: $name FAILED"; tail -40 "$work/$name.log"; status=1
  fi
done
echo "fuzz: ${#targets[@]} targets"
exit $status
