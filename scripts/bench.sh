#!/usr/bin/env bash
# Side-by-side benchmark: kiln vs ONNX Runtime (ENABLE_ALL, ENABLE_BASIC) vs tract on the six
# benchmark models. Sets up the Python env and the models, builds kiln in release mode, then runs
# scripts/bench_compare.py with the arguments given (see --help; e.g. --json out.json).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/python-env.sh
bash scripts/fetch-data.sh >&2
cargo build --release --quiet --bin kiln
exec "${KILN_CACHE:-$root/.cache}/venv/bin/python" scripts/bench_compare.py "$@"
