#!/usr/bin/env bash
# Tests `kiln serve` (tests/serve) with Triton's HTTP and gRPC clients and ONNX Runtime as the
# oracle, in the clients' virtualenv (scripts/clients-venv.sh). Needs target/release/kiln and
# the real models (scripts/fetch-data.sh). Extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$(bash "$root/scripts/clients-venv.sh")"
cd "$root/tests/serve"
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
