#!/usr/bin/env bash
# Tests kiln's Python package (python/): installs it with the README's command,
# `python -m pip install ./python`, into
#   1. a fresh virtualenv (the package's own dependencies only), which runs one model;
#   2. the clients' virtualenv (scripts/clients-venv.sh: cached per machine, with the oracle and
#      the client packages), which runs python/tests with pytest.
# Builds share the workspace's target folder. Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="$root/target"
venv="$(bash scripts/clients-venv.sh)"
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
