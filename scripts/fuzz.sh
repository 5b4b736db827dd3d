#!/usr/bin/env bash
# Fuzzes kiln's model loading + shape inference (fuzz/fuzz_targets/load_infer.rs) with libFuzzer
# for SECONDS (default 60), seeded with every conformance model and the real models.
# Installs cargo-fuzz if missing. cargo-fuzz needs nightly features; the machine has one stable
# toolchain, so RUSTC_BOOTSTRAP=1 enables them. Exits non-zero on any crash; prints the number
# of executions.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${KILN_CACHE:-$root/.cache}"
seconds="${1:-60}"
cd "$root"
"$root/scripts/fetch-data.sh"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --quiet --locked cargo-fuzz --version 0.13.2
fi
corpus="$root/fuzz/corpus/load_infer"
mkdir -p "$corpus"
if [ -z "$(ls -A "$corpus")" ]; then
  for d in "$cache"/conformance/node/*/; do
    cp "$d/model.onnx" "$corpus/$(basename "$d").onnx"
  done
  cp "$cache"/models/light_squeezenet.onnx "$cache"/models/light_zfnet512.onnx "$corpus/"
fi
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O load_infer 2>&1 | tail -1
log="$(mktemp)"
status=0
cargo fuzz run -O load_infer "$corpus" -- -max_total_time="$seconds" -max_len=65536 \
  -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1 || status=$?
runs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo 0)"
if [ "$status" -ne 0 ]; then
  tail -40 "$log"
  echo "fuzz: 0 passed, 1 failed (crash after $runs executions; see fuzz/artifacts)"
  exit 1
fi
echo "fuzz: load_infer ran $runs executions in ${seconds}s with no crash"
