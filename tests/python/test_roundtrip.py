"""Checks that kiln's load/save round trip preserves model behaviour exactly.

For every real model: `kiln optimize MODEL -o TMP/out.onnx --level disabled`, then verifies with
onnx that the re-saved model has the same number of top-level nodes, and runs ONNX Runtime (CPU,
graph optimizations disabled, one thread) on the original and the re-saved model with the same
seeded inputs, requiring every output to have the same dtype, shape and bytes. Run as
`python tests/python/test_roundtrip.py`; prints `roundtrip: N passed, M failed`.
"""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402


def run(path, feeds):
    sess = common.ort_session(path)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def check(path):
    with tempfile.TemporaryDirectory(prefix="kiln-roundtrip-") as tmp:
        out = os.path.join(tmp, "out.onnx")
        common.kiln("optimize", path, "-o", out, "--level", "disabled")
        orig, saved = onnx.load(path), onnx.load(out)
        assert len(saved.graph.node) == len(orig.graph.node), \
            f"node count: kiln wrote {len(saved.graph.node)}, original has {len(orig.graph.node)}"
        feeds = common.make_inputs(path, orig)
        want, got = run(path, feeds), run(out, feeds)
    assert list(got) == list(want), f"outputs: re-saved {list(got)} vs original {list(want)}"
    for name, a in want.items():
        b = got[name]
        assert a.dtype == b.dtype, f"output {name}: dtype {b.dtype} vs original {a.dtype}"
        assert a.shape == b.shape, f"output {name}: shape {b.shape} vs original {a.shape}"
        assert np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes(), \
            f"output {name}: values differ (max abs diff {np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))})"
    return f"{len(orig.graph.node)} nodes, {len(want)} outputs bit-identical"


if __name__ == "__main__":
    common.kiln_bin()
    common.ensure_data()
    common.run_tests("roundtrip", common.real_models(), check)
