#!/usr/bin/env bash
# Side-by-side benchmark: kiln vs ONNX Runtime (ENABLE_ALL, ENABLE_BASIC) vs tract on the float
# set (six CNNs, BERT as exported and as ORT's optimizer writes it) and the quantized set
# (scripts/gen-quant-models.sh: QDQ, QOperator, dynamic and 4-bit models), with session
# creation time and peak memory. Sets up the Python env and the models (the BERT pair through
# scripts/gen-models.sh, cached per machine), builds kiln in release mode, then runs
# scripts/bench_compare.py with the arguments given (see --help; e.g. --json out.json).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash scripts/python-env.sh
bash scripts/fetch-data.sh >&2
generated="$(bash scripts/gen-models.sh)"
quantized="$(bash scripts/gen-quant-models.sh)"
cargo build --release --quiet --bin kiln
exec "${KILN_CACHE:-$root/.cache}/venv/bin/python" scripts/bench_compare.py --generated "$generated" \
  --quantized "$quantized" "$@"
