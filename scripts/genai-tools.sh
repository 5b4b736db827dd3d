#!/usr/bin/env bash
# Creates (once per machine) the Python tooling of kiln's decoder-LLM tests, in two venvs in the
# per-machine cache ($KILN_TOOLS_CACHE, default ~/.cache/kiln), outside the clone:
#   `genai-tools.sh`        the oracle: onnxruntime-genai's generator alone (small); prints its python.
#   `genai-tools.sh build`  the model builder: onnxruntime-genai with the transformers release its
#                           builder imports and the torch that release needs (newer than the one in
#                           model-tools.sh). torch from PyPI brings its CUDA libraries (several GB),
#                           so scripts/prune-tools.sh removes this venv once the models are made.
set -euo pipefail
cache="${KILN_TOOLS_CACHE:-$HOME/.cache/kiln}"
if [ "${1:-}" = build ]; then
  venv="$cache/genai-venv"
  pins="torch==2.9.1 transformers==5.25.0 onnxruntime-genai==0.18.0 onnxruntime==1.31.1 \
onnx==1.23.2 onnx-ir==1.1.0 tokenizers==0.23.3 numpy==2.4.6 tqdm"
else
  venv="$cache/genai-oracle-venv"
  pins="onnxruntime-genai==0.18.0 numpy==2.4.6"
fi
stamp="$venv/.kiln-pins"
mkdir -p "$cache"
exec 8>"$cache/.genai-tools.lock"
flock 8
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$pins" ]; then
  start=$SECONDS
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  # shellcheck disable=SC2086
  "$venv/bin/pip" install --quiet --no-cache-dir --disable-pip-version-check --only-binary=:all: $pins >&2
  echo "$pins" > "$stamp"
  echo "genai-tools: ready in $venv ($((SECONDS - start))s)" >&2
fi
echo "$venv/bin/python"
