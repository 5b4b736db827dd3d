"""The quantized model set (scripts/gen-quant-models.sh: ResNet50 and YOLOv8n as QDQ and
QOperator, BERT-L6 as QDQ, quantize_dynamic and 4-bit MatMulNBits, all made by ORT's own
quantizers) runs in kiln at --level disabled and all, as accurately as in ONNX Runtime:

- error against the float model: for every output, max|y - y_float| / max|y_float|, kiln's at
  most 1.5 x ORT's (ENABLE_ALL) + 1e-3, at --level disabled, extended and all;
- the CNNs at --level all (channels-last 8-bit regions, the SiLU table) equal --level extended
  bit for bit;
- `kiln optimize --level extended` (the fused quantized graph) saved and loaded in ORT: its
  error against the float model within the same bound, and the fused ops it must contain.

Prints `quant-models: N passed, M failed`.
"""
import collections
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402

# Ops `kiln optimize --level extended` must have written (at least this many).
FUSED = {
    "resnet50_qdq": {"QLinearConv": 53},
    "yolov8n_qdq": {"QLinearConv": 64},
    "bert_qdq": {"QLinearMatMul": 36},
    "bert_dynamic": {"com.microsoft:DynamicQuantizeMatMul": 36},
    "mobilenetv2_qdq": {"QLinearConv": 52},
    "bert_ortopt_dynamic": {"com.microsoft:QAttention": 6, "com.microsoft:QEmbedLayerNormalization": 1},
}


def folder():
    return common.made_by("gen-quant-models.sh")


def ort_all(path):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = 2
    so.log_severity_level = 4
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def rel_err(y, ref):
    y, ref = np.asarray(y, np.float64), np.asarray(ref, np.float64)
    assert y.shape == ref.shape, f"shape {y.shape} vs {ref.shape}"
    return float(np.abs(y - ref).max() / max(np.abs(ref).max(), 1e-12))


def main():
    d = folder()
    with open(os.path.join(d, "manifest.json")) as f:
        manifest = json.load(f)
    only = sys.argv[1:]
    items = [n for n in sorted(manifest) if not only or n in only]

    def check(name):
        path = os.path.join(d, f"{name}.onnx")
        feeds = dict(np.load(os.path.join(d, f"{name}.npz")))
        fsess = common.ort_session(os.path.join(d, manifest[name]["float"]))
        names = [o.name for o in fsess.get_outputs()]
        ref = dict(zip(names, fsess.run(names, feeds)))
        ort = dict(zip(names, ort_all(path).run(names, feeds)))
        ort_err = {n: rel_err(ort[n], ref[n]) for n in names}
        notes = []

        def judge(label, got):
            for n in names:
                e = rel_err(got[n], ref[n])
                bound = 1.5 * ort_err[n] + 1e-3
                assert e <= bound, (f"{label} {n}: error {e:.4g} vs float; ORT's {ort_err[n]:.4g} "
                                    f"(bound {bound:.4g})")
                notes.append(f"{label} {e:.3g}/{ort_err[n]:.3g}")

        runs = {}
        for level in ("disabled", "extended", "all"):
            runs[level] = common.kiln_run_model(path, feeds, level=level)
            judge(f"kiln {level}", runs[level])
        if name.startswith(("resnet50", "yolov8n", "mobilenetv2")):
            # Session-only rewrites of an integer pipeline (channels-last regions, the SiLU
            # table) change no bit.
            for n in names:
                diff = np.abs(runs["all"][n].astype(np.float64) - runs["extended"][n]).max()
                assert diff == 0, f"{n}: --level all differs from extended by {diff}"
        with tempfile.TemporaryDirectory(prefix="kiln-quant-") as tmp:
            out = os.path.join(tmp, "opt.onnx")
            common.kiln_json("optimize", path, "-o", out, "--level", "extended", "--json")
            have = collections.Counter(
                f"{n.domain}:{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type
                for n in onnx.load(out).graph.node)
            for op, count in FUSED.get(name, {}).items():
                assert have[op] >= count, f"kiln optimize wrote {have[op]} {op}, want {count}"
            judge("saved, in ORT", dict(zip(names, ort_all(out).run(names, feeds))))
        return "; ".join(notes[:3])

    common.run_tests("quant-models", items, check, name=lambda n: n, desc=lambda n: n)


if __name__ == "__main__":
    print(f"integer kernels: {common.integer_kernels()}", flush=True)
    main()
