#!/usr/bin/env bash
# Makes (once per machine and generator version) kiln's quantized model set with ONNX Runtime's
# own quantizers (scripts/gen_quant_models.py): ResNet50 (torchvision, random weights) and
# YOLOv8n in QDQ and QOperator form, MobileNetV2 as QDQ and quantize_dynamic, BERT-L6 as QDQ,
# quantize_dynamic and 4-bit MatMulNBits.
# Needs the real models (scripts/fetch-data.sh) and the scripted BERT (scripts/gen-models.sh).
# Output: $KILN_TOOLS_CACHE (default ~/.cache/kiln)/quantized/<hash>; prints the folder.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${KILN_TOOLS_CACHE:-$HOME/.cache/kiln}"
bash "$root/scripts/fetch-data.sh" >&2
generated="$(bash "$root/scripts/gen-models.sh")"
models="${KILN_CACHE:-$root/.cache}/models"
key="$( (cat "$root/scripts/gen_quant_models.py" "$root/scripts/model-tools.sh"; echo "$generated") | sha256sum | cut -c1-16)"
out="$cache/quantized/$key"
mkdir -p "$cache/quantized"
mkdir -p "$cache"
exec 7>"$cache/.quantize.lock"
flock 7
if [ ! -f "$out/.complete" ]; then
  start=$SECONDS
  py="$("$root/scripts/model-tools.sh")"
  rm -rf "$out.tmp"
  mkdir -p "$out.tmp"
  PYTHONHASHSEED=0 "$py" "$root/scripts/gen_quant_models.py" "$out.tmp" "$models" "$generated" >&2
  touch "$out.tmp/.complete"
  rm -rf "$out"
  mv "$out.tmp" "$out"
  # Folders of older generator versions are dead weight on a machine that keeps this cache.
  find "$(dirname "$out")" -mindepth 1 -maxdepth 1 ! -name "$(basename "$out")" -exec rm -rf {} +
  echo "gen-quant-models: $(ls "$out"/*.onnx | wc -l) models in $out ($((SECONDS - start))s)" >&2
fi
echo "$out"
