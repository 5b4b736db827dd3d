#!/usr/bin/env bash
# Creates (once per machine) the Python tooling that makes kiln's decoder-LLM test models:
# onnxruntime-genai (its model builder, and its generator as the oracle for tokens/s), the
# transformers release its builder imports, and the torch that release needs (newer than the
# one in model-tools.sh, which the other scripted models stay pinned to). torch from PyPI brings
# its CUDA libraries (several GB), so this lives in the per-machine cache outside the clone
# ($KILN_TOOLS_CACHE, default ~/.cache/kiln). Prints the venv's python on stdout.
set -euo pipefail
cache="${KILN_TOOLS_CACHE:-$HOME/.cache/kiln}"
venv="$cache/genai-venv"
stamp="$venv/.kiln-pins"
pins="torch==2.9.1 transformers==5.25.0 onnxruntime-genai==0.18.0 onnxruntime==1.31.1 \
onnx==1.23.2 onnx-ir==1.1.0 tokenizers==0.23.3 numpy==2.4.6 tqdm"
mkdir -p "$cache"
exec 8>"$cache/.genai-tools.lock"
flock 8
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$pins" ]; then
  start=$SECONDS
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  # shellcheck disable=SC2086
  "$venv/bin/pip" install --quiet --disable-pip-version-check --only-binary=:all: $pins >&2
  echo "$pins" > "$stamp"
  echo "genai-tools: ready in $venv ($((SECONDS - start))s)" >&2
fi
echo "$venv/bin/python"
