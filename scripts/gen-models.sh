#!/usr/bin/env bash
# Makes (once per machine and generator version) the scripted test models of
# scripts/gen_models.py: random-weight transformers exported by torch and rewritten by ORT's
# transformer optimizer, and scikit-learn / LightGBM models through skl2onnx / onnxmltools.
# They go to $KILN_TOOLS_CACHE (default ~/.cache/kiln)/generated/<hash of the generators and
# tool pins>, outside the clone; a changed generator makes a new folder. Prints the folder.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${KILN_TOOLS_CACHE:-$HOME/.cache/kiln}"
key="$(cat "$root/scripts/gen_models.py" "$root/scripts/gen_ml_models.py" "$root/scripts/model-tools.sh" | sha256sum | cut -c1-16)"
out="$cache/generated/$key"
mkdir -p "$cache"
exec 7>"$cache/.generate.lock"
flock 7
if [ ! -f "$out/.complete" ]; then
  start=$SECONDS
  py="$("$root/scripts/model-tools.sh")"
  rm -rf "$out.tmp"
  mkdir -p "$out.tmp"
  (cd "$root/scripts" && PYTHONHASHSEED=0 "$py" gen_models.py "$out.tmp") >&2
  touch "$out.tmp/.complete"
  rm -rf "$out"
  mv "$out.tmp" "$out"
  # Folders of older generator versions are dead weight on a machine that keeps this cache.
  find "$(dirname "$out")" -mindepth 1 -maxdepth 1 ! -name "$(basename "$out")" -exec rm -rf {} +
  echo "gen-models: $(ls "$out"/*.onnx | wc -l) models in $out ($((SECONDS - start))s)" >&2
fi
echo "$out"
