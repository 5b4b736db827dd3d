#!/usr/bin/env bash
# Makes (once per machine and pin set) the virtualenv of the client-side tests and prints its
# folder: ONNX Runtime as the oracle, the real client packages (nudenet, ddddocr), scikit-image's
# photos, Triton's HTTP client and pytest. It lives outside the clone, in $KILN_TOOLS_CACHE
# (default ~/.cache/kiln)/pkg-venv.
set -euo pipefail
cache="${KILN_TOOLS_CACHE:-$HOME/.cache/kiln}"
venv="$cache/pkg-venv"
pins="onnxruntime==1.31.1 onnx==1.23.2 numpy==2.3.5 pytest==9.2.0 nudenet==3.4.2 ddddocr==1.6.1 scikit-image==0.26.0 scipy==1.17.1 pillow==13.0.0 opencv-python-headless==5.1.0.95 tritonclient[http,grpc]==2.73.0 openai==3.63.0"
mkdir -p "$cache"
exec 8>"$cache/.pkg-venv.lock"
flock 8
if [ ! -f "$venv/.kiln-pins" ] || [ "$(cat "$venv/.kiln-pins")" != "$pins" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check $pins >&2
  echo "$pins" > "$venv/.kiln-pins"
fi
echo "$venv"
