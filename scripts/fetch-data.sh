#!/usr/bin/env bash
# Fetches (once) the test data kiln's Python oracle tests use, into the cache dir
# ($KILN_CACHE, default <repo>/.cache, never committed):
#   models/       real models pulled out of pinned PyPI wheels: YOLOv8n (nudenet 320n),
#                 ddddocr's detector, and onnx's light_* model zoo samples;
#   conformance/node/<case>/  the ONNX node conformance suite generated from the pinned onnx
#                 package by scripts/gen_conformance.py.
# Each part writes a marker holding its pins when complete, so reruns are instant and silent.
# Safe to run from several processes at once (flock on $cache/.fetch-data.lock). Any download or
# generation problem aborts with a non-zero exit and a message.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${KILN_CACHE:-$root/.cache}"
mkdir -p "$cache"
exec 9>"$cache/.fetch-data.lock"
flock 9

die() { echo "fetch-data: error: $*" >&2; exit 1; }
trap 'echo "fetch-data: failed (line $LINENO)" >&2' ERR

"$root/scripts/python-env.sh"
py="$cache/venv/bin/python"

# ---- real models ---------------------------------------------------------------------------
models="$cache/models"
model_pins="nudenet==3.4.2 ddddocr==1.6.1 onnx==1.23.2"
if [ ! -f "$models/.complete" ] || [ "$(cat "$models/.complete")" != "$model_pins" ]; then
  start=$SECONDS
  wheels="$cache/wheels"
  mkdir -p "$wheels" "$models"
  rm -f "$models/.complete"
  for pkg in nudenet==3.4.2 ddddocr==1.6.1; do
    "$py" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      -d "$wheels" "$pkg" || die "pip download $pkg failed"
  done
  # onnx's light_* models: take them from the installed package if present, else from its wheel.
  light_src="$("$py" -c 'import onnx, os; print(os.path.join(os.path.dirname(onnx.__file__), "backend/test/data/light"))')"
  if ! ls "$light_src"/light_*.onnx >/dev/null 2>&1; then
    "$py" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      -d "$wheels" onnx==1.23.2 || die "pip download onnx==1.23.2 failed"
    light_src=""
  fi
  "$py" - "$wheels" "$models" "$light_src" <<'EOF' || die "extracting models failed"
import fnmatch, glob, os, shutil, sys, zipfile
wheels, models, light_src = sys.argv[1:4]

def wheel(prefix):
    found = sorted(glob.glob(os.path.join(wheels, prefix + "-*.whl")))
    if not found:
        sys.exit(f"no {prefix} wheel in {wheels}")
    return found[-1]

def put(data, name):
    tmp = os.path.join(models, f".{name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, os.path.join(models, name))

def extract(prefix, pattern, rename):
    with zipfile.ZipFile(wheel(prefix)) as z:
        names = [n for n in z.namelist() if fnmatch.fnmatch(n, pattern)]
        if not names:
            sys.exit(f"{pattern} not found in {prefix} wheel")
        for n in names:
            put(z.read(n), rename(n))

extract("nudenet-3.4.2", "nudenet/320n.onnx", lambda n: "yolov8n_320n.onnx")
extract("ddddocr-1.6.1", "ddddocr/common_det.onnx", lambda n: "ddddocr_common_det.onnx")
if light_src:
    files = sorted(glob.glob(os.path.join(light_src, "light_*.onnx")))
    for path in files:
        with open(path, "rb") as f:
            put(f.read(), os.path.basename(path))
else:
    extract("onnx-1.23.2", "onnx/backend/test/data/light/light_*.onnx", os.path.basename)
EOF
  rm -rf "$wheels"
  echo "$model_pins" > "$models/.complete"
  echo "fetch-data: $(ls "$models"/*.onnx | wc -l) models in $models ($((SECONDS - start))s)" >&2
fi

# ---- node conformance suite ----------------------------------------------------------------
conf="$cache/conformance"
# ml_dtypes decides the expected outputs of the int2/int4 casts, so its version is a pin too.
conf_pins="$("$py" -c 'import onnx, ml_dtypes; print(f"onnx=={onnx.__version__} ml_dtypes=={ml_dtypes.__version__}")') gen_conformance-v1"
if [ ! -f "$conf/.complete" ] || [ "$(cat "$conf/.complete")" != "$conf_pins" ]; then
  start=$SECONDS
  mkdir -p "$conf"
  rm -f "$conf/.complete"
  rm -rf "$conf/node.tmp" "$conf/node.old"
  count="$("$py" "$root/scripts/gen_conformance.py" "$conf/node.tmp")" || die "gen_conformance.py failed"
  if [ -d "$conf/node" ]; then mv "$conf/node" "$conf/node.old"; fi
  mv "$conf/node.tmp" "$conf/node"
  rm -rf "$conf/node.old"
  echo "$conf_pins" > "$conf/.complete"
  echo "fetch-data: $count node conformance cases in $conf/node ($((SECONDS - start))s)" >&2
fi
