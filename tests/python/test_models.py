"""Every real model run by `kiln run` matches ONNX Runtime, as shipped and as ORT optimizes it.

For each model in the cache, and for the same model optimized and saved by ONNX Runtime at
ENABLE_EXTENDED (full of com.microsoft ops such as FusedConv and QuickGelu): seeded random inputs (dynamic dims at the sizes the model is used
at: YOLOv8n 1x3x320x320, ddddocr's detector 1x3x416x416) are written as .npy, `kiln run --level
LEVEL` writes its outputs, and each must match ONNX Runtime's (CPU, graph optimizations off) within
|kiln - ort| <= 1e-4 + 1e-3*|ort| elementwise. LEVEL is `disabled` unless `--level L` is given.
Prints `models: N passed, M failed`.
"""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402

LEVEL = sys.argv[sys.argv.index("--level") + 1] if "--level" in sys.argv else "disabled"
EP = sys.argv[sys.argv.index("--ep") + 1] if "--ep" in sys.argv else "cpu"


def ort_extended(path):
    """The model as ONNX Runtime optimizes and saves it at ENABLE_EXTENDED (cached)."""
    import onnxruntime as ort
    out_dir = os.path.join(common.CACHE, "ort-extended")
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, os.path.basename(path))
    if not os.path.exists(out):
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        opts.optimized_model_filepath = out + ".tmp"
        opts.log_severity_level = 4
        ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        os.replace(out + ".tmp", out)
    return out


def check(item):
    path, variant = item
    model = onnx.load(path)
    feeds = common.make_inputs(path, model)
    sess = common.ort_session(path)
    names = [o.name for o in sess.get_outputs()]
    want = dict(zip(names, sess.run(names, feeds)))
    run_path = ort_extended(path) if variant == "ort-extended" else path
    ms_ops = sorted({f"{n.domain}:{n.op_type}" for n in onnx.load(run_path).graph.node
                     if n.domain == "com.microsoft"})
    with tempfile.TemporaryDirectory(prefix="kiln-models-") as tmp:
        args = ["run", run_path, "--level", LEVEL, "--ep", EP, "--out", os.path.join(tmp, "out"),
                "--json"]
        for i, (name, arr) in enumerate(feeds.items()):
            f = os.path.join(tmp, f"in{i}.npy")
            np.save(f, arr)
            args += ["--input", f"{name}={f}"]
        report = common.kiln_json(*args)
        worst = 0.0
        for o in report["outputs"]:
            got = np.load(o["file"])
            ref = want[o["name"]]
            assert got.dtype == ref.dtype, f"{o['name']}: dtype {got.dtype} vs ORT {ref.dtype}"
            assert got.shape == ref.shape, f"{o['name']}: shape {got.shape} vs ORT {ref.shape}"
            diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
            tol = 1e-4 + 1e-3 * np.abs(ref.astype(np.float64))
            bad = diff > tol
            assert not bad.any(), (f"{o['name']}: {int(bad.sum())} of {bad.size} elements off, "
                                   f"max diff {diff.max():.3g}")
            worst = max(worst, float((diff / tol).max()) if diff.size else 0.0)
    extra = f"; runs {', '.join(ms_ops)}" if ms_ops else ""
    peak, total = report["peak_intermediate_bytes"], report["total_intermediate_bytes"]
    if EP == "cpu":
        # On a GPU the host holds only partition outputs, so the bound is for the CPU alone.
        assert peak < total, f"peak memory {peak} is not below the sum of intermediates {total}"
    return (f"{len(report['outputs'])} outputs match ORT (worst diff {worst:.3f} of tolerance), "
            f"{report['elapsed_ms']:.1f} ms, intermediates peak {peak / 2**20:.1f} of "
            f"{total / 2**20:.1f} MiB{extra}")


if __name__ == "__main__":
    common.kiln_bin()
    common.ensure_data()
    items = [(p, v) for p in common.real_models() for v in ("original", "ort-extended")]
    common.run_tests(f"models-{LEVEL}" + ("" if EP == "cpu" else f"-{EP}"), items, check,
                     name=lambda it: f"{os.path.basename(it[0])} ({it[1]})",
                     desc=lambda it: f"{it[0]} ({it[1]})")
