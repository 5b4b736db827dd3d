"""ONNX's attention-era ops in kiln match ONNX Runtime: Attention (opset 23: 4-D and 3-D inputs,
grouped-query heads, causal, float and bool masks, softcap, scale, past key/value with the
present outputs), RMSNormalization and RotaryEmbedding (halves and interleaved, position ids),
each at `--level disabled` and `--level all`. Prints `attention-ops: N passed, M failed`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import numpy as np  # noqa: E402
from onnx import helper  # noqa: E402


def model(node, feeds, opset=23):
    return common.one_node_model(node, feeds, {"": opset}, ir_version=10)


def cases():
    rng = np.random.default_rng(0)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    out = []
    q, k, v = f(2, 4, 5, 8), f(2, 2, 7, 8), f(2, 2, 7, 6)
    base = {"Q": q, "K": k, "V": v}
    for name, attrs in [("gqa", {}), ("causal", {"is_causal": 1}), ("scale", {"scale": 0.3}),
                        ("softcap", {"softcap": 2.0})]:
        out.append((f"Attention 4-D {name}", model(helper.make_node("Attention", ["Q", "K", "V"], ["Y"], **attrs), base), base))
    for mname, mask in [("float", f(5, 7)), ("bool", rng.random((2, 1, 5, 7)) < 0.7)]:
        feeds = dict(base, M=mask)
        out.append((f"Attention {mname} mask", model(helper.make_node("Attention", ["Q", "K", "V", "M"], ["Y"]), feeds), feeds))
    feeds = dict(base, PK=f(2, 2, 3, 8), PV=f(2, 2, 3, 6))
    node = helper.make_node("Attention", ["Q", "K", "V", "", "PK", "PV"], ["Y", "present_key", "present_value"], is_causal=1)
    out.append(("Attention past key/value, causal", model(node, feeds), feeds))
    feeds = {"Q": f(2, 5, 32), "K": f(2, 7, 16), "V": f(2, 7, 12)}
    node = helper.make_node("Attention", ["Q", "K", "V"], ["Y"], q_num_heads=4, kv_num_heads=2)
    out.append(("Attention 3-D", model(node, feeds), feeds))
    for axis in (-1, 1):
        feeds = {"X": f(2, 3, 16), "S": f(16) if axis == -1 else f(3, 16)}
        out.append((f"RMSNormalization axis {axis}", model(helper.make_node("RMSNormalization", ["X", "S"], ["Y"], axis=axis), feeds), feeds))
    for inter in (0, 1):
        feeds = {"X": f(2, 4, 3, 8), "C": f(2, 3, 4), "S": f(2, 3, 4)}
        node = helper.make_node("RotaryEmbedding", ["X", "C", "S"], ["Y"], interleaved=inter)
        out.append((f"RotaryEmbedding interleaved={inter}", model(node, feeds), feeds))
    feeds = {"X": f(2, 3, 16), "C": f(10, 2), "S": f(10, 2), "P": rng.integers(0, 10, (2, 3)).astype(np.int64)}
    node = helper.make_node("RotaryEmbedding", ["X", "C", "S", "P"], ["Y"], num_heads=4, rotary_embedding_dim=4)
    out.append(("RotaryEmbedding 3-D, partial, position ids", model(node, feeds), feeds))
    return out


if __name__ == "__main__":
    common.run_ort_cases("attention-ops", cases())
