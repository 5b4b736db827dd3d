#!/usr/bin/env bash
# Creates (once) the project's Python virtualenv: onnx for the conformance suite and reference
# checks, onnxruntime for reference outputs, numpy for .npy/.pb data, tract as the other peer in
# the side-by-side benchmark (scripts/bench.sh).
# Prints nothing on success when the environment already exists with the pinned versions.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${KILN_CACHE:-$root/.cache}"
venv="$cache/venv"
stamp="$venv/.kiln-pins"
pins="onnx==1.23.2 onnxruntime==1.31.1 numpy==2.3.5 ml_dtypes==0.6.0 tract==0.23.9"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$pins" ]; then
  exit 0
fi
mkdir -p "$cache"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check $pins
echo "$pins" > "$stamp"
echo "python env ready: $venv" >&2
