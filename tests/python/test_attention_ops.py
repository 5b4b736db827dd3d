"""ONNX's attention-era ops in kiln match ONNX Runtime: Attention (opset 23: 4-D and 3-D inputs,
grouped-query heads, causal, float and bool masks, softcap, scale, past key/value with the
present outputs), RMSNormalization and RotaryEmbedding (halves and interleaved, position ids),
and com.microsoft GroupQueryAttention (see gqa_cases), each at `--level disabled` and `--level all`.
Prints `attention-ops: N passed, M failed`.
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
    out += gqa_cases(rng)
    return out


def gqa_cases(rng):
    """com.microsoft GroupQueryAttention as onnxruntime-genai's builder writes it (packed QKV,
    rotary inside, BNSH caches) and its other forms: prompts, decode steps over a cache with
    rows of different lengths, a max-length cache buffer, a later prompt chunk, separate Q/K/V,
    sliding window, softcap, smooth softmax, head sinks, attention bias, position ids."""
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    n, nk, h = 4, 2, 16
    cos_sin = lambda: {"cos": np.cos(f(32, 8)), "sin": np.sin(f(32, 8))}  # noqa: E731
    i32 = lambda v: np.asarray(v, np.int32)  # noqa: E731

    def case(name, b, s, past, seqlens, total, packed=True, rotary=True, extra=None, **attrs):
        feeds = {}
        if packed:
            feeds["qkv"] = f(b, s, (n + 2 * nk) * h)
            ins = ["qkv", "", ""]
        else:
            feeds.update(q=f(b, s, n * h), k=f(b, s, nk * h), v=f(b, s, nk * h))
            ins = ["q", "k", "v"]
        if past is None:
            ins += ["", ""]
        else:
            feeds.update(pk=f(b, nk, past, h), pv=f(b, nk, past, h))
            if past > total:
                # A max-length buffer as a generator holds it: rows past each sequence's end
                # were never written (zeros). ORT leaves them as they are when it shares the
                # buffer, as kiln does when it writes in place, and zeroes its own copy.
                for bi, sk in enumerate(seqlens):
                    feeds["pk"][bi, :, sk + 1 - s:] = 0
                    feeds["pv"][bi, :, sk + 1 - s:] = 0
            ins += ["pk", "pv"]
        feeds.update(seqlens=i32(seqlens), total=i32(total))
        ins += ["seqlens", "total"]
        if rotary:
            feeds.update(cos_sin())
            ins += ["cos", "sin"]
            attrs.setdefault("do_rotary", 1)
        else:
            ins += ["", ""]
        for i, (k, v) in enumerate((extra or {}).items()):
            # position_ids, attention_bias, head_sink: inputs 9, 10, 11.
            slot = {"pos": 9, "bias": 10, "sink": 11}[k]
            ins += [""] * (slot - len(ins))
            ins.append(k)
            feeds[k] = v
        node = helper.make_node("GroupQueryAttention", ins, ["y", "present_key", "present_value"],
                                domain="com.microsoft", num_heads=n, kv_num_heads=nk, **attrs)
        m = common.one_node_model(node, feeds, {"": 21, "com.microsoft": 1}, ir_version=10)
        return (f"GroupQueryAttention {name}", m, feeds)

    return [
        case("prompt, packed QKV, rotary", 2, 5, None, [4, 4], 5),
        case("prompt over an empty cache", 2, 5, 0, [4, 4], 5),
        case("prompt, right-padded row", 2, 5, 0, [4, 2], 5),
        case("decode, rows of different lengths", 2, 1, 6, [6, 4], 7),
        case("decode into a max-length cache buffer", 2, 1, 10, [5, 7], 8),
        case("later prompt chunk", 1, 3, 4, [6], 7),
        case("separate Q/K/V, no rotary, scale", 1, 4, 3, [6], 7, packed=False, rotary=False, scale=0.2),
        case("separate Q/K/V prompt, rotary", 2, 4, None, [3, 3], 4, packed=False),
        case("sliding window 3", 2, 6, None, [5, 5], 6, local_window_size=3),
        case("decode, sliding window 4", 2, 1, 8, [8, 6], 9, local_window_size=4),
        case("softcap 2", 2, 5, None, [4, 4], 5, softcap=2.0),
        case("interleaved rotary, position ids", 2, 1, 5, [5, 3], 6, rotary_interleaved=1,
             extra={"pos": np.asarray([[9], [4]], np.int64)}),
        case("prompt, position ids", 1, 4, None, [3], 4, extra={"pos": np.asarray([[2, 3, 4, 5]], np.int64)}),
        case("smooth softmax", 2, 5, None, [4, 4], 5, smooth_softmax=1),
        case("head sinks", 2, 1, 6, [6, 4], 7, extra={"sink": f(n)}),
        case("attention bias", 2, 1, 6, [6, 6], 7, extra={"bias": f(2, 1, 1, 7)}),
    ]


if __name__ == "__main__":
    common.run_ort_cases("attention-ops", cases())
