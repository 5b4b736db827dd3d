#!/usr/bin/env bash
# The wgpu provider on a real GPU: the one prepared script for the lent NVIDIA machine (see
# DEVELOPERS.md, the `device` tool). Not part of CI; it has not yet run on the machine.
#
# Here, before the call (once per session):
#   cargo build --release --bin kiln && mkdir -p .devbin && strip -o .devbin/kiln target/release/kiln
#   echo /.devbin/ >> .git/info/exclude; echo /.gl/ >> .git/info/exclude
#   (the Vulkan loader debs into .gl/ as the device tool's README says)
# The call: command `bash scripts/device-gpu-check.sh`, carry [".gl", ".devbin"].
#
# There: unpacks the loader, asserts the adapter kiln opens is the NVIDIA GPU (not llvmpipe),
# makes the models with the machine's own torch/torchvision (random weights; nothing is
# fetched), and records into $OUT: GEMM GFLOP/s at 1024..4096, and per model the cold first
# run and warm p50 at batch 1 and 32 for kiln's CPU provider and `--ep wgpu,cpu`, plus
# ONNX Runtime's CPU provider as installed there. ORT's CUDA and WebGPU providers need wheels
# (onnxruntime-gpu, onnxruntime-webgpu) carried in .whl when they fit the 64 MiB limit.
set -euo pipefail
out="${OUT:-/tmp/kiln-gpu-out}"
mkdir -p "$out"
exec > >(tee "$out/log.txt") 2>&1
if ls .gl/*.deb >/dev/null 2>&1; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
fi
nv_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$nv_icd" ] && export VK_DRIVER_FILES="${VK_DRIVER_FILES:-$nv_icd}"
export WGPU_BACKEND=vulkan KILN_WGPU_ADAPTER="${KILN_WGPU_ADAPTER:-nvidia}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"
kiln="${KILN_BIN:-.devbin/kiln}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
models="$out/models"
mkdir -p "$models"
python3 - "$models" <<'PY'
import os, sys
import numpy as np, onnx, torch, torchvision
from onnx import helper, numpy_helper, TensorProto
out = sys.argv[1]
torch.manual_seed(0)
for name, ctor in [("resnet50", torchvision.models.resnet50),
                   ("squeezenet", torchvision.models.squeezenet1_1),
                   ("densenet121", torchvision.models.densenet121)]:
    m = ctor(weights=None).eval()
    torch.onnx.export(m, torch.randn(1, 3, 224, 224), os.path.join(out, f"{name}.onnx"),
                      input_names=["input"], output_names=["output"], opset_version=17,
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, dynamo=False)
for n in (1024, 2048, 4096):
    w = numpy_helper.from_array(np.random.rand(n, n).astype(np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["a", "w"], ["y"])], "mm",
                          [helper.make_tensor_value_info("a", TensorProto.FLOAT, [n, n])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, n])], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]),
              os.path.join(out, f"mm{n}.onnx"))
import onnxruntime as ort
for name in ("resnet50", "squeezenet", "densenet121"):
    o = ort.SessionOptions()
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    o.optimized_model_filepath = os.path.join(out, f"{name}.ort.onnx")
    ort.InferenceSession(os.path.join(out, f"{name}.onnx"), o, providers=["CPUExecutionProvider"])
PY
"$kiln" partition "$models/resnet50.ort.onnx" --ep wgpu,cpu --json > "$out/partition_resnet50.json"
python3 - "$out/partition_resnet50.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
dev = j["devices"]["wgpu"]
print("adapter:", dev, "| partitions:", j["num_partitions"], "| nodes:", j["nodes_per_ep"])
assert "nvidia" in dev.lower() and "llvmpipe" not in dev.lower(), f"not the NVIDIA GPU: {dev}"
PY
for n in 1024 2048 4096; do
  "$kiln" bench "$models/mm$n.onnx" --ep wgpu,cpu --warmup 2 --iters 10 --json > "$out/gemm$n.json"
  python3 -c "import json,sys; j=json.load(open(sys.argv[1])); n=int(sys.argv[2]); print(f'GEMM {n}: p50 {j[\"p50_ms\"]:.3f} ms, {2*n**3/j[\"p50_ms\"]/1e6:.0f} GFLOP/s')" "$out/gemm$n.json" "$n"
done
for m in resnet50 squeezenet densenet121; do
  for b in 1 32; do
    "$kiln" bench "$models/$m.ort.onnx" --ep cpu --ep wgpu,cpu --shape "input=$b,3,224,224" \
      --warmup 1 --iters 10 --rounds 2 --threads 16 --json > "$out/bench_${m}_b$b.json"
    python3 - "$out/bench_${m}_b$b.json" "$m" "$b" <<'PY'
import json, sys
for v in json.load(open(sys.argv[1]))["variants"]:
    print(f"{sys.argv[2]} batch {sys.argv[3]} {v['ep']}: first {v['first_ms']:.1f} ms, "
          f"p50 {v['p50_ms']:.2f} ms, partitions {v['partitions']}")
PY
  done
done
python3 - "$models" <<'PY'
import sys, time, numpy as np, onnxruntime as ort
for m in ("resnet50", "squeezenet", "densenet121"):
    for b in (1, 32):
        for prov in [p for p in ("CUDAExecutionProvider", "WebGpuExecutionProvider", "CPUExecutionProvider")
                     if p in ort.get_available_providers()]:
            t0 = time.perf_counter()
            s = ort.InferenceSession(f"{sys.argv[1]}/{m}.onnx", providers=[prov])
            x = np.random.rand(b, 3, 224, 224).astype(np.float32)
            s.run(None, {"input": x}); first = (time.perf_counter() - t0) * 1e3
            ts = []
            for _ in range(10):
                t = time.perf_counter(); s.run(None, {"input": x}); ts.append((time.perf_counter() - t) * 1e3)
            print(f"ORT {prov} {m} batch {b}: first {first:.1f} ms (with session), p50 {np.median(ts):.2f} ms")
PY
