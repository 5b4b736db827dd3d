"""Every real model run by `kiln run` matches ONNX Runtime.

For each model in the cache: seeded random inputs (dynamic dims at the sizes the model is used
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


def check(path):
    model = onnx.load(path)
    feeds = common.make_inputs(path, model)
    sess = common.ort_session(path)
    names = [o.name for o in sess.get_outputs()]
    want = dict(zip(names, sess.run(names, feeds)))
    with tempfile.TemporaryDirectory(prefix="kiln-models-") as tmp:
        args = ["run", path, "--level", LEVEL, "--out", os.path.join(tmp, "out"), "--json"]
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
    return f"{len(report['outputs'])} outputs match ORT (worst diff {worst:.3f} of tolerance), {report['elapsed_ms']:.1f} ms"


if __name__ == "__main__":
    common.kiln_bin()
    common.ensure_data()
    common.run_tests(f"models-{LEVEL}", common.real_models(), check)
