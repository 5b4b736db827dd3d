#!/usr/bin/env bash
# Creates (once per machine) the heavy Python tooling that makes kiln's scripted test models:
# torch + transformers (export of random-weight BERT/GPT-2/ViT), torchvision (ResNet50 for the
# quantized set), onnxruntime's transformer optimizer and quantizers (onnx-ir for MatMulNBits),
# scikit-learn + skl2onnx and LightGBM + onnxmltools. torch from PyPI brings its CUDA
# libraries (several GB), so this lives in a per-machine cache outside the clone
# ($KILN_TOOLS_CACHE, default ~/.cache/kiln), reused by every clone and CI run on the machine.
# Prints the venv's python on stdout; silent otherwise when the venv already has the pins.
set -euo pipefail
cache="${KILN_TOOLS_CACHE:-$HOME/.cache/kiln}"
venv="$cache/tools-venv"
stamp="$venv/.kiln-pins"
pins="torch==2.5.1 transformers==4.46.3 onnx==1.23.2 onnxruntime==1.31.1 numpy==2.1.3 \
scikit-learn==1.7.2 scipy==1.17.1 skl2onnx==1.20.0 lightgbm==4.5.0 onnxmltools==1.16.0 \
onnxconverter-common==1.16.0 sympy==1.13.1 pandas==2.2.3 packaging torchvision==0.20.1 \
onnx-ir==0.1.16 ml_dtypes==0.7.0"
mkdir -p "$cache"
exec 8>"$cache/.tools.lock"
flock 8
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$pins" ]; then
  start=$SECONDS
  # pip moves an existing venv to the pins, so a changed pin does not download torch again.
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  # shellcheck disable=SC2086
  "$venv/bin/pip" install --quiet --disable-pip-version-check --only-binary=:all: $pins >&2
  echo "$pins" > "$stamp"
  echo "model-tools: ready in $venv ($((SECONDS - start))s)" >&2
fi
echo "$venv/bin/python"
