#!/usr/bin/env bash
# Removes the heavy model-making venvs (scripts/model-tools.sh, `scripts/genai-tools.sh build`:
# torch with its CUDA libraries, ~13 GB together) once the models they make are in the cache:
# the tests never run them, and the gen-*.sh scripts make them again only when a generator
# changes. KILN_KEEP_TOOLS=1 keeps them (for work on the generators).
set -euo pipefail
cache="${KILN_TOOLS_CACHE:-$HOME/.cache/kiln}"
if [ "${KILN_KEEP_TOOLS:-0}" = 1 ]; then
  echo "prune-tools: kept (KILN_KEEP_TOOLS=1)"
  exit 0
fi
for venv in tools-venv genai-venv; do
  dir="$cache/$venv"
  [ -d "$dir" ] || continue
  size="$(du -sh "$dir" | cut -f1)"
  # Under the lock its maker holds, so a concurrent generator never sees half a venv.
  lock="$cache/.tools.lock"; [ "$venv" = genai-venv ] && lock="$cache/.genai-tools.lock"
  flock "$lock" rm -rf "$dir"
  echo "prune-tools: removed $dir ($size)"
done
echo "prune-tools: $(df -h --output=avail "$cache" | tail -1 | tr -d ' ') free"
