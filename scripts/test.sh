#!/usr/bin/env bash
# Runs all of kiln's tests on a fresh machine: fetches the test data and the Python oracle
# (scripts/fetch-data.sh), lavapipe for the GPU provider (scripts/gpu-env.sh) and the scripted
# models (scripts/gen-models.sh: torch-exported transformers, skl2onnx/LightGBM; scripts/gen-quant-models.sh:
# the quantized set), runs the Rust tests (the kernels also with their AVX2 and portable
# micro-kernels), a smoke run of the kernel micro-benchmarks, the ONNX Runtime / onnx oracle
# tests over the real models and the node conformance suite, the Python package's tests, and a short fuzzing run. Ends with one summary line
# `tests: N passed, M failed`; exits non-zero if anything failed.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
fuzz_seconds="${KILN_FUZZ_SECONDS:-60}"
log="$(mktemp)"
failed_steps=()
# Each step's line ends with the free disk: a full disk fails builds in confusing ways.
disk_free() { echo "$(df -h --output=avail "$root" | tail -1 | tr -d ' ') free"; }
step() {
  local name="$1"; shift
  echo "== $name"
  local start=$SECONDS
  if "$@" 2>&1 | tee -a "$log"; then
    echo "== $name: ok ($((SECONDS - start))s, $(disk_free))"
  else
    echo "== $name: FAILED ($((SECONDS - start))s, $(disk_free))"
    failed_steps+=("$name")
  fi
}

# Headless Vulkan drivers want a session directory; the wgpu provider's tests run on lavapipe.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
step "fetch data" scripts/fetch-data.sh
step "gpu env (lavapipe)" scripts/gpu-env.sh
# torch/transformers/skl2onnx tooling and the models it makes, cached per machine (~/.cache/kiln).
step "scripted models" scripts/gen-models.sh
# The quantized set, made by ORT's own quantizers from the models above (cached per machine).
step "quantized models" scripts/gen-quant-models.sh
# Decoder LLMs from onnxruntime-genai's builder (its own tool venv, cached per machine).
step "llm models" scripts/gen-llm-models.sh
# The tests never run the model makers' torch venvs (~13 GB); a changed generator makes them again.
step "prune model tools" scripts/prune-tools.sh
# One build per profile: incremental caches only cost disk here.
export CARGO_INCREMENTAL=0
step "build kiln" cargo build --release --locked --bin kiln
step "cargo test" cargo test --workspace --locked
# The fast kernels pick a micro-kernel from the CPU; cap the choice to cover the other paths.
for isa in avx2 portable; do
  step "cargo test kernels (KILN_ISA=$isa)" env KILN_ISA=$isa cargo test --locked -p kiln-kernels -p kiln-ops
done
step "micro-benchmarks (smoke)" cargo bench --locked -p kiln-kernels --bench kernels -- --ms 5
step "integer micro-benchmarks (smoke)" cargo bench --locked -p kiln-kernels --bench qgemm -- --ms 5
step "op micro-benchmarks (smoke)" cargo bench --locked -p kiln-ops --bench ops -- --ms 5
py="${KILN_CACHE:-$root/.cache}/venv/bin/python"
for t in inspect roundtrip roundtrip_conformance shapes shapes_conformance models conformance optimize recurrent ml_ops attention_ops contrib_ops scripted_models quant_ops qdq_fusions quant_models llm_models generate precision; do
  step "python $t" "$py" "tests/python/test_$t.py"
done
step "python differential (2000 random graphs)" "$py" tests/python/test_differential.py --seeds 0:2000
# The same graphs through the GPU provider on lavapipe, against kiln's CPU provider.
step "python differential --ep wgpu,cpu (500 random graphs, lavapipe)" "$py" tests/python/test_differential.py --seeds 0:500 --ep wgpu,cpu
step "python numerics (normalizations offset by 1e4 vs ORT)" "$py" tests/python/test_numerics.py
step "python models --level all" "$py" tests/python/test_models.py --level all
step "python models (KILN_ISA=avx2)" env KILN_ISA=avx2 "$py" tests/python/test_models.py --level all
# The integer kernels' other variants (VNNI is the default where the CPU has it).
# avxvnni: 256-bit VNNI, through AVX512-VNNI's 256-bit form on a CPU without AVX-VNNI.
for isa in avx512 avxvnni avx2 portable; do
  step "python quant ops (KILN_ISA=$isa)" env KILN_ISA=$isa "$py" tests/python/test_quant_ops.py
done
for isa in avxvnni avx2; do
  step "python quant models (KILN_ISA=$isa)" env KILN_ISA=$isa "$py" tests/python/test_quant_models.py
done
step "python models --ep wgpu,cpu (lavapipe)" "$py" tests/python/test_models.py --level all --ep wgpu,cpu
step "python scripted models --ep wgpu,cpu (lavapipe)" "$py" tests/python/test_scripted_models.py --ep wgpu,cpu
# kiln's Python package: `pip install ./python` into a fresh virtualenv, then pytest against
# onnxruntime and the real client packages (nudenet, ddddocr) in a per-machine virtualenv.
step "python package (pytest)" scripts/python-pkg.sh
# `kiln serve` with Triton's HTTP and gRPC clients, ONNX Runtime as the oracle.
step "server (tritonclient)" scripts/serve-test.sh
# Over-sized runs under an address-space limit and in a memory cgroup: error lines, no aborts.
step "memory limits (prlimit, cgroup)" scripts/memory-limits.sh
step "fuzz" scripts/fuzz.sh "$fuzz_seconds"

passed=$(grep -oE '([0-9]+) passed' "$log" | awk '{s+=$1} END {print s+0}')
failed=$(grep -oE '([0-9]+) failed' "$log" | awk '{s+=$1} END {print s+0}')
failed=$((failed + ${#failed_steps[@]}))
rm -f "$log"
if [ ${#failed_steps[@]} -gt 0 ]; then
  echo "failed steps: ${failed_steps[*]}"
fi
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
