#!/usr/bin/env bash
# Tests kiln's Python package (python/): installs it with the README's command,
# `python -m pip install ./python`, into
#   1. a fresh virtualenv (the package's own dependencies only), which runs one model;
#   2. a virtualenv cached per machine ($KILN_TOOLS_CACHE, default ~/.cache/kiln/pkg-venv) with
#      the oracle and the client packages (onnxruntime, nudenet, ddddocr, scikit-image's photos,
#      pytest), which runs python/tests with pytest.
# Builds share the workspace's target folder. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="$root/target"
cache="${KILN_TOOLS_CACHE:-$HOME/.cache/kiln}"
venv="$cache/pkg-venv"
pins="onnxruntime==1.31.1 onnx==1.23.2 numpy==2.3.5 pytest==9.2.0 nudenet==3.4.2 ddddocr==1.6.1 scikit-image==0.26.0 scipy==1.17.1 pillow==13.0.0 opencv-python-headless==5.1.0.95"
mkdir -p "$cache"
exec 8>"$cache/.pkg-venv.lock"
flock 8
if [ ! -f "$venv/.kiln-pins" ] || [ "$(cat "$venv/.kiln-pins")" != "$pins" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check $pins
  echo "$pins" > "$venv/.kiln-pins"
fi
bash scripts/fetch-data.sh >&2

# 1. A fresh virtualenv: the install command as a user types it.
fresh="$(mktemp -d)"
trap 'rm -rf "$fresh"' EXIT
python3 -m venv "$fresh/venv"
start=$SECONDS
"$fresh/venv/bin/python" -m pip install --quiet --disable-pip-version-check ./python
echo "python-pkg: installed into a fresh virtualenv in $((SECONDS - start))s" >&2
(cd "$fresh" && "$fresh/venv/bin/python" - "${KILN_CACHE:-$root/.cache}/models/light_squeezenet.onnx" <<'PY')
import sys

import numpy as np

import kiln

s = kiln.InferenceSession(sys.argv[1])
x = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
(y,) = s.run(None, {s.get_inputs()[0].name: x})
assert y.shape == (1, 1000, 1, 1) and abs(float(y.sum()) - 1.0) < 1e-3, (y.shape, y.sum())
print(f"python-pkg: fresh virtualenv runs kiln {kiln.__version__}: squeezenet ok")
PY

# 2. The test suite, in the cached virtualenv with the oracle and the clients.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps ./python
rm -rf "$fresh"
cd "$root/python/tests"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
