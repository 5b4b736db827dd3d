"""The com.microsoft ops that ONNX Runtime's optimizers write, in kiln, against ONNX Runtime:
SkipLayerNormalization (with and without beta and bias, all four outputs),
SkipSimplifiedLayerNormalization, SimplifiedLayerNormalization, Gelu, FastGelu,
BiasGelu, QuickGelu, RotaryEmbedding, Attention (masks in ORT's formats, unidirectional, past)
and MultiHeadAttention (bias, key padding masks, attention bias, past key/value),
MatMulNBits (4-bit blocks, zero points, bias), MatMulIntegerToFloat, DynamicQuantizeMatMul,
DynamicQuantizeLSTM (int8 and uint8 weights, per-direction and per-column scales),
EmbedLayerNormalization, FusedMatMul (alpha, transA/B, transBatchA/B), at
`--level disabled` and `all`. Prints
`contrib-ops: N passed, M failed`. (BiasAdd and BiasSoftmax have no CPU kernel in ORT; their unit tests are in Rust.)
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import numpy as np  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

MS = "com.microsoft"


def model(node, feeds):
    return common.one_node_model(node, feeds, {"": 17, MS: 1})


def cases():
    rng = np.random.default_rng(1)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    out = []
    h = 24
    x, skip, gamma, beta, bias = f(2, 5, h), f(2, 5, h), f(h), f(h), f(h)
    for name, ins, outs, attrs in [
        ("plain", ["x", "skip", "gamma"], ["y"], {}),
        ("beta+bias, 4 outputs", ["x", "skip", "gamma", "beta", "bias"], ["y", "mean", "inv", "sum"], {"epsilon": 1e-5}),
        ("bias only, sum output", ["x", "skip", "gamma", "", "bias"], ["y", "", "", "sum"], {}),
    ]:
        feeds = {k: v for k, v in dict(x=x, skip=skip, gamma=gamma, beta=beta, bias=bias).items() if k in ins}
        node = helper.make_node("SkipLayerNormalization", ins, outs, domain=MS, **attrs)
        out.append((f"SkipLayerNormalization {name}", model(node, feeds), feeds))
    for name, ins, outs in [("plain", ["x", "skip", "gamma"], ["y"]),
                            ("bias, sum", ["x", "skip", "gamma", "bias"], ["y", "", "", "sum"])]:
        feeds = {k: v for k, v in dict(x=x, skip=skip, gamma=gamma, bias=bias).items() if k in ins}
        node = helper.make_node("SkipSimplifiedLayerNormalization", ins, outs, domain=MS, epsilon=1e-6)
        out.append((f"SkipSimplifiedLayerNormalization {name}", model(node, feeds), feeds))
    feeds = {"x": x, "gamma": gamma}
    node = helper.make_node("SimplifiedLayerNormalization", ["x", "gamma"], ["y"], axis=-1, epsilon=1e-6)
    out.append(("SimplifiedLayerNormalization", model(node, feeds), feeds))
    xb = f(3, 16)
    for op, ins in [("Gelu", ["x"]), ("FastGelu", ["x"]), ("FastGelu", ["x", "b"]), ("BiasGelu", ["x", "b"]),
                    ("QuickGelu", ["x"])]:
        feeds = {"x": xb, "b": f(16)} if "b" in ins else {"x": xb}
        out.append((f"{op}({', '.join(ins)})", model(helper.make_node(op, ins, ["y"], domain=MS), feeds), feeds))
    feeds = {"x": f(2, 3, 16), "pos": rng.integers(0, 8, (2, 3)).astype(np.int64), "cos": f(8, 2), "sin": f(8, 2)}
    node = helper.make_node("RotaryEmbedding", ["x", "pos", "cos", "sin"], ["y"], domain=MS, num_heads=4)
    out.append(("RotaryEmbedding (com.microsoft)", model(node, feeds), feeds))
    # Attention (BERT style): projection inside, masks in ORT's formats, unidirectional, past.
    b, sq, d, n = 2, 5, 16, 4
    xa, wa, ba = f(b, sq, d), f(d, 3 * d) * 0.3, f(3 * d)
    masks = {
        "no mask": None,
        "key lengths [B]": np.array([5, 3], np.int32),
        "start/end [2B]": np.array([5, 4, 0, 1], np.int32),
        "0/1 [B, T]": (rng.random((b, sq)) < 0.8).astype(np.int32),
        "0/1 [B, S, T]": (rng.random((b, sq, sq)) < 0.8).astype(np.int32),
    }
    for mname, mask in masks.items():
        # A start position past a query's causal keys leaves that row no key at all; ORT's
        # output for such a row is not a defined value, so that pair is not compared.
        for uni in (0,) if mname.startswith("start") else (0, 1):
            feeds = {"x": xa, "w": wa, "bias": ba}
            ins = ["x", "w", "bias"]
            if mask is not None:
                feeds["mask"] = mask
                ins.append("mask")
            node = helper.make_node("Attention", ins, ["y"], domain=MS, num_heads=n, unidirectional=uni)
            out.append((f"Attention {mname} unidirectional={uni}", model(node, feeds), feeds))
    feeds = {"x": xa, "w": wa, "bias": ba, "past": f(2, b, n, 3, d // n)}
    node = helper.make_node("Attention", ["x", "w", "bias", "", "past"], ["y", "present"], domain=MS, num_heads=n,
                            unidirectional=1)
    out.append(("Attention with past, present", model(node, feeds), feeds))
    # MultiHeadAttention: separate Q/K/V, bias, key padding mask, attention bias, past.
    q, k, v = f(b, sq, d), f(b, 7, d), f(b, 7, d)
    for mname, extra in [("plain", {}), ("bias", {"bias": f(3 * d)}),
                         ("key padding [B]", {"kpm": np.array([7, 4], np.int32)}),
                         ("key padding [B, L]", {"kpm": (rng.random((b, 7)) < 0.8).astype(np.int32)}),
                         ("attention bias", {"ab": f(1, n, sq, 7)})]:
        feeds = dict(q=q, k=k, v=v, **extra)
        ins = ["q", "k", "v", "bias" if "bias" in extra else "", "kpm" if "kpm" in extra else "",
               "ab" if "ab" in extra else ""]
        while ins and ins[-1] == "":
            ins.pop()
        node = helper.make_node("MultiHeadAttention", ins, ["y"], domain=MS, num_heads=n)
        out.append((f"MultiHeadAttention {mname}", model(node, feeds), feeds))
    feeds = dict(q=q, k=f(b, sq, d), v=f(b, sq, d), pk=f(b, n, 3, d // n), pv=f(b, n, 3, d // n))
    node = helper.make_node("MultiHeadAttention", ["q", "k", "v", "", "", "", "pk", "pv"], ["y", "present_k", "present_v"],
                            domain=MS, num_heads=n)
    out.append(("MultiHeadAttention past key/value", model(node, feeds), feeds))
    # MatMulNBits: 4-bit blocks, with and without zero points, K not a multiple of the block.
    for k, nn, block, zp, with_bias in [(32, 8, 16, False, False), (40, 5, 16, True, True), (64, 6, 32, True, False)]:
        blocks = -(-k // block)
        q = rng.integers(0, 16, (nn, blocks, block)).astype(np.uint8)
        packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
        feeds = {"a": f(3, k), "b": packed, "scales": (np.abs(f(nn * blocks)) * 0.1 + 0.01)}
        ins = ["a", "b", "scales"]
        if zp:
            z = rng.integers(0, 16, (nn, blocks)).astype(np.uint8)
            if blocks % 2:
                z = np.concatenate([z, np.zeros((nn, 1), np.uint8)], 1)
            feeds["zp"] = (z[:, 0::2] | (z[:, 1::2] << 4)).astype(np.uint8).reshape(-1)
            ins.append("zp")
        if with_bias:
            while len(ins) < 5:
                ins.append("")
            feeds["bias"] = f(nn)
            ins.append("bias")
        node = helper.make_node("MatMulNBits", ins, ["y"], domain=MS, K=k, N=nn, bits=4, block_size=block)
        out.append((f"MatMulNBits K={k} N={nn} block={block} zp={zp} bias={with_bias}", model(node, feeds), feeds))
    for at, bt in [(np.uint8, np.uint8), (np.uint8, np.int8), (np.int8, np.int8)]:
        a8 = rng.integers(np.iinfo(at).min, np.iinfo(at).max, (4, 12)).astype(at)
        # ORT's uint8 x int8 kernels on AVX2 add pairs in saturating int16 (machine-dependent
        # results); int8 weights within +-63 keep them exact, as kiln always is.
        lo, hi = (-64, 63) if (at, bt) == (np.uint8, np.int8) else (np.iinfo(bt).min, np.iinfo(bt).max)
        b8 = rng.integers(lo, hi, (12, 6)).astype(bt)
        feeds = {"a": a8, "b": b8, "sa": np.array(0.02, np.float32), "sb": (np.abs(f(6)) * 0.05).astype(np.float32),
                 "za": np.array(3, at), "zb": rng.integers(0, 5, 6).astype(bt), "bias": f(6)}
        node = helper.make_node("MatMulIntegerToFloat", ["a", "b", "sa", "sb", "za", "zb", "bias"], ["y"], domain=MS)
        out.append((f"MatMulIntegerToFloat {np.dtype(at).name} x {np.dtype(bt).name}", model(node, feeds), feeds))
    b8 = rng.integers(-64, 63, (12, 6)).astype(np.int8)
    feeds = {"a": f(4, 12), "b": b8, "sb": (np.abs(f(6)) * 0.05).astype(np.float32), "bias": f(6)}
    node = helper.make_node("DynamicQuantizeMatMul", ["a", "b", "sb", "", "bias"], ["y"], domain=MS)
    out.append(("DynamicQuantizeMatMul", model(node, feeds), feeds))
    # DynamicQuantizeLSTM: W [dirs, input, 4h] and R [dirs, h, 4h] in 8 bits (int8 within +-63, as
    # above), activations quantized per product; per-direction and per-column scales.
    seq, bt, inp, hd = 4, 2, 6, 5
    for direction, wt, per_col in [("forward", np.int8, False), ("bidirectional", np.int8, True),
                                   ("reverse", np.uint8, False)]:
        d = 2 if direction == "bidirectional" else 1
        lo, hi = (-64, 63) if wt == np.int8 else (0, 255)
        shape_s = (d, 4 * hd) if per_col else (d,)
        zp = (rng.integers(-3, 3, d) if wt == np.int8 else rng.integers(120, 136, d)).astype(wt)
        # ONNX Runtime takes per-column scales only with zero points of zero.
        zps = np.zeros((d, 4 * hd), wt) if per_col else zp
        feeds = {"x": f(seq, bt, inp), "w": rng.integers(lo, hi, (d, inp, 4 * hd)).astype(wt),
                 "r": rng.integers(lo, hi, (d, hd, 4 * hd)).astype(wt), "b": f(d, 8 * hd) * 0.1,
                 "h0": f(d, bt, hd) * 0.5, "c0": f(d, bt, hd) * 0.5,
                 "ws": (np.abs(f(*shape_s)) * 0.01 + 0.005).astype(np.float32), "wz": zps.astype(wt),
                 "rs": (np.abs(f(*shape_s)) * 0.01 + 0.005).astype(np.float32), "rz": zps.astype(wt)}
        node = helper.make_node("DynamicQuantizeLSTM", ["x", "w", "r", "b", "", "h0", "c0", "", "ws", "wz", "rs", "rz"],
                                ["y", "yh", "yc"], domain=MS, direction=direction, hidden_size=hd)
        out.append((f"DynamicQuantizeLSTM {direction} {np.dtype(wt).name} per_column={per_col}", model(node, feeds),
                    feeds))
    # EmbedLayerNormalization: word + position (+ segment), with and without a mask.
    vocab, npos, hid = 30, 16, 12
    ids = rng.integers(0, vocab, (2, 7)).astype(np.int32)
    for with_seg, with_mask in [(False, False), (True, True)]:
        feeds = {"ids": ids}
        ins = ["ids", "segs" if with_seg else ""]
        if with_seg:
            feeds["segs"] = rng.integers(0, 2, (2, 7)).astype(np.int32)
        feeds.update(word=f(vocab, hid), pos=f(npos, hid))
        ins += ["word", "pos"]
        if with_seg:
            feeds["segtab"] = f(2, hid)
        ins.append("segtab" if with_seg else "")
        feeds.update(gamma=f(hid), beta=f(hid))
        ins += ["gamma", "beta"]
        outs = ["y", "mask_index"]
        if with_mask:
            feeds["mask"] = (rng.random((2, 7)) < 0.7).astype(np.int32)
            ins.append("mask")
        node = helper.make_node("EmbedLayerNormalization", ins, outs, domain=MS, epsilon=1e-12)
        m = model(node, feeds)
        m.graph.output[1].type.tensor_type.elem_type = TensorProto.INT32
        out.append((f"EmbedLayerNormalization segment={with_seg} mask={with_mask}", m, feeds))
    # FusedMatMul: every combination of the batch and matrix transposes, on 4-D and 3-D operands
    # (logical A [2, 3, 4, 5] x B [2, 3, 5, 6]; transBatch moves dim 0 behind the batch dims).
    import itertools
    for tba, ta, tbb, tb in itertools.product((0, 1), repeat=4):
        a = (5 if ta else 4, 5 if not ta else 4)
        b = (6 if tb else 5, 5 if tb else 6)
        sa = (a[0], 2, 3, a[1]) if tba else (2, 3) + a
        sb = (b[0], 2, 3, b[1]) if tbb else (2, 3) + b
        feeds = {"A": f(*sa), "B": f(*sb)}
        node = helper.make_node("FusedMatMul", ["A", "B"], ["y"], domain=MS, alpha=0.75, transA=ta, transB=tb,
                                transBatchA=tba, transBatchB=tbb)
        out.append((f"FusedMatMul transBatchA={tba} transA={ta} transBatchB={tbb} transB={tb}", model(node, feeds),
                    feeds))
    feeds = {"A": f(4, 3, 5), "B": f(5, 3, 6)}
    node = helper.make_node("FusedMatMul", ["A", "B"], ["y"], domain=MS, transBatchA=1, transBatchB=1)
    out.append(("FusedMatMul transBatchA/B 3-D", model(node, feeds), feeds))
    return out


if __name__ == "__main__":
    common.run_ort_cases("contrib-ops", cases())
