#!/usr/bin/env bash
# Makes (once per machine and generator version) the decoder LLMs of scripts/gen_llm_models.py:
# a random-weight Llama-style model through onnxruntime-genai's builder, fp32 and int4. They go
# to $KILN_TOOLS_CACHE (default ~/.cache/kiln)/llm/<hash of the generator and tool pins>,
# outside the clone. Prints the folder.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${KILN_TOOLS_CACHE:-$HOME/.cache/kiln}"
key="$(cat "$root/scripts/gen_llm_models.py" "$root/scripts/genai-tools.sh" | sha256sum | cut -c1-16)"
out="$cache/llm/$key"
mkdir -p "$cache"
exec 7>"$cache/.llm.lock"
flock 7
if [ ! -f "$out/.complete" ]; then
  start=$SECONDS
  py="$("$root/scripts/genai-tools.sh" build)"
  rm -rf "$out.tmp"
  mkdir -p "$out.tmp"
  (cd "$root/scripts" && PYTHONHASHSEED=0 "$py" gen_llm_models.py "$out.tmp") >&2
  touch "$out.tmp/.complete"
  rm -rf "$out"
  mv "$out.tmp" "$out"
  # Folders of older generator versions are dead weight on a machine that keeps this cache.
  find "$(dirname "$out")" -mindepth 1 -maxdepth 1 ! -name "$(basename "$out")" -exec rm -rf {} +
  echo "gen-llm-models: made in $out ($((SECONDS - start))s)" >&2
fi
echo "$out"
