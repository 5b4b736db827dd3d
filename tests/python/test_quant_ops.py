"""Every quantized op ORT's quantizer writes, in kiln, against ONNX Runtime on random shapes,
zero points and scales, u8 and s8, at --level disabled and all (where the kernels pack weights
once, take the integer paths and, for QLinearConv, the channels-last layout):

QLinearConv (groups, strides, pads, dilations, bias, per-channel weights), QLinearMatMul
(per-tensor and per-column B, batched), MatMulInteger, ConvInteger, QGemm (transposes, alpha, C,
8-bit and float output), QLinearAdd / QLinearMul (equal shapes, broadcasts), QLinearSigmoid,
QLinearLeakyRelu, QLinearSoftmax, QLinearAveragePool, QLinearGlobalAveragePool, QLinearConcat,
QLinearWhere, NhwcMaxPool, com.microsoft QuantizeLinear / DequantizeLinear.

MatMulNBits at accuracy level 4 (activations quantized per block to int8) within 2% of the
output's range, at levels 0-1 (2, 4 and 8 bits, kiln's f32 kernel) within 1e-4; GatherBlockQuantized
(uint8 2/4/8-bit, int4/uint4, float16 scales); QAttention (u8 x s8/u8, per-column weight scales, masks,
unidirectional, past/present) and QEmbedLayerNormalization (u8/s8 tables, segments, mask) within 1e-4. 8-bit outputs may differ from ORT's by one step where ORT computes in float with other
instructions (its element-wise ops, a rounding tie); integer outputs are exact. Products of
u8 x s8 keep the weights within +-63 when compared with ORT: ORT's AVX2 kernel sums pairs in
saturating int16 and is wrong past that, which kiln is not (checked against numpy here, with
extreme values, and in kiln-kernels' tests). Also: kiln runs integer products ORT refuses
(ConvInteger u8 x s8, s8 x s8), checked against numpy. Prints `quant-ops: N passed, M failed`.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import helper  # noqa: E402

MS = "com.microsoft"
rng = np.random.default_rng(7)


def model(node, feeds, outs, opset=19, inits=None):
    """One node; `outs` maps output names to numpy dtypes; `inits` are constants (initializers)."""
    ins = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape))
           for n, a in feeds.items()]
    ov = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.dtype(t)), None)
          for n, t in outs.items()]
    init = [onnx.numpy_helper.from_array(a, n) for n, a in (inits or {}).items()]
    g = helper.make_graph([node], "g", ins, ov, init)
    return helper.make_model(g, ir_version=9, opset_imports=[helper.make_opsetid("", opset),
                                                             helper.make_opsetid(MS, 1)])


def q8(t, *shape, lo=None, hi=None):
    info = np.iinfo(t)
    return np.asarray(rng.integers(info.min if lo is None else lo, (info.max if hi is None else hi) + 1,
                                   shape), t)


def scale(*shape):
    return np.asarray(rng.random(shape) * 0.05 + 0.002, np.float32)


def zp(t, *shape):
    return np.asarray(rng.integers(100, 156, shape) if t == np.uint8 else rng.integers(-20, 21, shape), t)


def weights(at, wt, *shape):
    """u8 activations x s8 weights within +-63 (see above); otherwise the full range."""
    if at == np.uint8 and wt == np.int8:
        return q8(wt, *shape, lo=-63, hi=63)
    return q8(wt, *shape)


CASES = []


def case(name, node, feeds, outs, tol=1, opset=19, consts=()):
    """`consts`: the feeds that become initializers (weights the kernels pack once)."""
    inits = {n: feeds[n] for n in consts}
    feeds = {n: v for n, v in feeds.items() if n not in inits}
    CASES.append((name, model(node, feeds, outs, opset, inits), feeds, tol))


def build():
    for at, wt in [(np.uint8, np.int8), (np.uint8, np.uint8), (np.int8, np.int8)]:
        tag = f"{np.dtype(at).name} x {np.dtype(wt).name}"
        for c, m, k, s, p, d, g, hw in [(8, 16, 3, 1, 1, 1, 1, 9), (3, 8, 7, 2, 3, 1, 1, 17),
                                        (16, 32, 1, 1, 0, 1, 1, 6), (16, 24, 3, 2, 1, 2, 2, 11),
                                        (12, 12, 3, 1, 1, 1, 12, 7),
                                        # 1x1 over channels that are not whole 4-byte steps.
                                        (3, 8, 1, 1, 0, 1, 1, 7)]:
            per_ch = m % 2 == 0
            # ORT's int8 weights take zero points of 0 only; uint8 weights any.
            wz = zp(wt, m) if wt == np.uint8 else np.zeros(m, wt)
            feeds = {"x": q8(at, 1, c, hw, hw), "xs": scale(), "xz": zp(at), "w": weights(at, wt, m, c // g, k, k),
                     "ws": scale(m) if per_ch else scale(), "wz": wz if per_ch else wz[:1].reshape(()),
                     "ys": np.array(0.05 * k, np.float32), "yz": zp(at), "b": q8(np.int32, m, lo=-500, hi=500)}
            node = helper.make_node("QLinearConv", list(feeds), ["y"], strides=[s, s], pads=[p] * 4,
                                    dilations=[d, d], group=g)
            case(f"QLinearConv {tag} C{c} M{m} k{k} s{s} p{p} d{d} g{g}", node, feeds, {"y": at})
            # The same with constant weights (packed once per session).
            case(f"QLinearConv {tag} C{c} M{m} k{k} s{s} p{p} d{d} g{g}, constant weights", node, feeds, {"y": at},
                 consts=["w", "ws", "wz", "b"])
        for ash, bsh, per_col in [((5, 12), (12, 7), False), ((2, 5, 40), (40, 9), True),
                                  ((3, 4, 16), (3, 16, 5), False)]:
            n = bsh[-1]
            feeds = {"a": q8(at, *ash), "as": scale(), "az": zp(at), "b": weights(at, wt, *bsh),
                     "bs": scale(n) if per_col else scale(), "bz": zp(wt, n) if per_col and wt == np.uint8 else zp(wt),
                     "ys": np.array(0.2, np.float32), "yz": zp(at)}
            if per_col and wt == np.int8:
                feeds["bz"] = np.zeros(n, wt)
            node = helper.make_node("QLinearMatMul", list(feeds), ["y"])
            case(f"QLinearMatMul {tag} {ash}x{bsh} per_col={per_col}", node, feeds, {"y": at})
            if len(bsh) == 2:
                case(f"QLinearMatMul {tag} {ash}x{bsh} per_col={per_col}, constant B", node, feeds, {"y": at},
                     consts=["b", "bs", "bz"])
        if (at, wt) != (np.int8, np.uint8):
            feeds = {"a": q8(at, 2, 6, 33), "b": weights(at, wt, 33, 10), "az": zp(at), "bz": zp(wt)}
            node = helper.make_node("MatMulInteger", list(feeds), ["y"])
            case(f"MatMulInteger {tag}", node, feeds, {"y": np.int32}, tol=0)
    # ConvInteger: ORT runs u8 x u8.
    feeds = {"x": q8(np.uint8, 1, 4, 8, 8), "w": q8(np.uint8, 6, 4, 3, 3), "xz": zp(np.uint8), "wz": zp(np.uint8)}
    case("ConvInteger u8 x u8", helper.make_node("ConvInteger", list(feeds), ["y"], pads=[1] * 4), feeds,
         {"y": np.int32}, tol=0)
    # Constant weights take the packed product path: 3x3 windows read in place, 1x1 rows read
    # directly, an RGB input's padded taps, strides, two groups of 8, 5x5, a batch of 2; and the
    # depthwise kernel (stride 1 and 2).
    for c, m, k, st, p, g, hw, n in [(4, 6, 3, 1, 1, 1, 8, 1), (16, 24, 1, 1, 0, 1, 6, 2),
                                     (3, 16, 3, 2, 1, 1, 17, 1), (16, 16, 3, 1, 1, 2, 7, 1),
                                     (8, 16, 5, 1, 2, 1, 9, 1), (16, 16, 3, 1, 1, 16, 9, 2),
                                     (24, 24, 3, 2, 1, 24, 11, 1)]:
        feeds = {"x": q8(np.uint8, n, c, hw, hw), "w": q8(np.uint8, m, c // g, k, k), "xz": zp(np.uint8),
                 "wz": zp(np.uint8)}
        node = helper.make_node("ConvInteger", list(feeds), ["y"], pads=[p] * 4, strides=[st] * 2, group=g)
        case(f"ConvInteger u8 x u8 constant W c{c} m{m} k{k} s{st} g{g} n{n}", node, feeds, {"y": np.int32},
             tol=0, consts=["w", "wz"])
    # QGemm.
    for ta, tb, with_c, quant_out in [(0, 1, True, True), (1, 0, False, True), (0, 0, True, False)]:
        a = q8(np.uint8, *((12, 5) if ta else (5, 12)))
        b = weights(np.uint8, np.int8, *((9, 12) if tb else (12, 9)))
        feeds = {"a": a, "as": scale(), "az": zp(np.uint8), "b": b, "bs": scale(9), "bz": np.zeros(9, np.int8)}
        ins = list(feeds)
        if with_c:
            feeds["c"] = q8(np.int32, 9, lo=-300, hi=300)
            ins.append("c")
        else:
            ins.append("")
        if quant_out:
            feeds.update(ys=np.array(0.3, np.float32), yz=zp(np.uint8))
            ins += ["ys", "yz"]
        node = helper.make_node("QGemm", ins, ["y"], domain=MS, transA=ta, transB=tb, alpha=0.8)
        case(f"QGemm transA={ta} transB={tb} C={with_c} 8-bit out={quant_out}", node, feeds,
             {"y": np.uint8 if quant_out else np.float32})
    # MatMulNBits at accuracy level 4: A quantized per block to int8 (kiln's VNNI kernel, else
    # its dequantizing one), compared within the error of that quantization.
    for k, nn, block, with_zp, m in [(64, 24, 32, True, 1), (96, 40, 16, False, 7), (256, 33, 64, True, 3)]:
        blocks = -(-k // block)
        q = rng.integers(0, 16, (nn, blocks, block)).astype(np.uint8)
        feeds = {"a": rng.standard_normal((m, k)).astype(np.float32),
                 "b": (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8),
                 "scales": np.asarray(rng.random(nn * blocks) * 0.05 + 0.01, np.float32)}
        ins = ["a", "b", "scales"]
        if with_zp:
            z = rng.integers(0, 16, (nn, blocks)).astype(np.uint8)
            if blocks % 2:
                z = np.concatenate([z, np.zeros((nn, 1), np.uint8)], 1)
            feeds["zp"] = (z[:, 0::2] | (z[:, 1::2] << 4)).astype(np.uint8).reshape(-1)
            ins.append("zp")
        node = helper.make_node("MatMulNBits", ins, ["y"], domain=MS, K=k, N=nn, bits=4, block_size=block,
                                accuracy_level=4)
        case(f"MatMulNBits accuracy_level=4 M{m} K{k} N{nn} block{block} zp={with_zp}", node, feeds,
             {"y": np.float32}, tol=0.02, consts=[i for i in ins if i != "a"])
    # MatMulNBits at accuracy levels 0-3 (kiln dequantizes inside its f32 kernel): 2, 4 and 8 bits,
    # blocks 16-256, zero points or not, bias, one row (decode) and many (prefill).
    for bits, k, nn, block, with_zp, m, level in [(4, 64, 24, 32, True, 1, 0), (4, 300, 40, 16, False, 37, 0),
                                                  (8, 256, 33, 64, True, 5, 1), (8, 96, 17, 256, False, 1, 0),
                                                  (2, 128, 20, 128, True, 9, 0), (4, 512, 48, 128, True, 64, 1)]:
        blocks = -(-k // block)
        per = 8 // bits
        q = rng.integers(0, 1 << bits, (nn, blocks, block)).astype(np.uint8)
        packed = np.zeros((nn, blocks, block * bits // 8), np.uint8)
        for i in range(per):
            packed |= (q[..., i::per] << (i * bits)).astype(np.uint8)
        feeds = {"a": rng.standard_normal((m, k)).astype(np.float32), "b": packed,
                 "scales": np.asarray(rng.random(nn * blocks) * 0.05 + 0.01, np.float32)}
        ins = ["a", "b", "scales"]
        if with_zp:
            zcols = -(-blocks // per) * per
            z = np.zeros((nn, zcols), np.uint8)
            z[:, :blocks] = rng.integers(0, 1 << bits, (nn, blocks))
            zb = np.zeros((nn, zcols // per), np.uint8)
            for i in range(per):
                zb |= (z[:, i::per] << (i * bits)).astype(np.uint8)
            feeds["zp"] = zb.reshape(-1)
            ins.append("zp")
        if m > 30:
            ins += [""] * (5 - len(ins)) + ["bias"]
            feeds["bias"] = rng.standard_normal(nn).astype(np.float32)
        node = helper.make_node("MatMulNBits", ins, ["y"], domain=MS, K=k, N=nn, bits=bits, block_size=block,
                                accuracy_level=level)
        case(f"MatMulNBits {bits}-bit accuracy_level={level} M{m} K{k} N{nn} block{block} zp={with_zp}", node,
             feeds, {"y": np.float32}, tol=1e-4, consts=[i for i in ins if i not in ("a", "")])
    # GatherBlockQuantized: uint8 at 2/4/8 bits (packed along the last axis, zero points packed the
    # same way), int4/uint4 tables along either axis, float16 scales, int32 and negative indices.
    import ml_dtypes
    for dt, bits, shape, g_axis, q_axis, block, with_zp, half, ind in [
            ("uint8", 4, (10, 64), 0, 1, 32, True, False, [[1, 9], [-1, 0]]),
            ("uint8", 4, (7, 48), 0, 1, 16, False, True, [3, 3, 6]),
            ("uint8", 8, (5, 40), 0, 1, 16, True, False, [4, 0]),
            ("uint8", 2, (6, 128), 0, 1, 64, True, False, [2, -6]),
            ("int4", 4, (9, 32), 0, 1, 16, True, False, [[0, 8, 3]]),
            ("uint4", 4, (32, 6), 1, 0, 16, False, True, [5, -1]),
            ("int4", 4, (3, 40, 4), 0, 1, 32, False, False, [2])]:
        per = 8 // bits if dt == "uint8" else 1
        blocks = -(-shape[q_axis] // block)
        sshape = list(shape)
        sshape[q_axis] = blocks
        if dt == "uint8":
            q = rng.integers(0, 1 << bits, (*shape[:-1], shape[-1]))
            packed = np.zeros((*shape[:-1], shape[-1] // per), np.uint8)
            for i in range(per):
                packed |= (q[..., i::per] << (i * bits)).astype(np.uint8)
            data = packed
        else:
            lo, hi = (-8, 8) if dt == "int4" else (0, 16)
            data = rng.integers(lo, hi, shape).astype(getattr(ml_dtypes, dt))
        feeds = {"data": data, "idx": np.asarray(ind, np.int64 if with_zp else np.int32),
                 "scales": np.asarray(rng.random(sshape) * 0.1 + 0.01, np.float16 if half else np.float32)}
        if with_zp:
            if dt == "uint8":
                z = rng.integers(0, 1 << bits, sshape)
                zcols = -(-blocks // per)
                zb = np.zeros((*sshape[:-1], zcols), np.uint8)
                for j in range(blocks):
                    zb[..., j // per] |= (z[..., j] << ((j % per) * bits)).astype(np.uint8)
                feeds["zp"] = zb
            else:
                lo, hi = (-8, 8) if dt == "int4" else (0, 16)
                feeds["zp"] = rng.integers(lo, hi, sshape).astype(getattr(ml_dtypes, dt))
        node = helper.make_node("GatherBlockQuantized", list(feeds), ["y"], domain=MS, gather_axis=g_axis,
                                quantize_axis=q_axis, block_size=block, bits=bits)
        case(f"GatherBlockQuantized {dt} bits={bits} {shape} gather {g_axis} quantize {q_axis} block {block} "
             f"zp={with_zp} f16={half}", node, feeds, {"y": np.float16 if half else np.float32}, tol=1e-3,
             consts=[n for n in feeds if n != "idx"])
    # QAttention: u8 input x s8 (+-63) or u8 weights, per-tensor or per-column weight scales, key
    # lengths mask, unidirectional, past -> present.
    for wt, per_col, masked, uni, past in [(np.int8, False, False, 0, False), (np.uint8, True, True, 0, False),
                                           (np.int8, True, True, 1, False), (np.uint8, False, False, 0, True)]:
        b_, s_, d, heads = 2, 5, 16, 2
        feeds = {"x": q8(np.uint8, b_, s_, d), "w": weights(np.uint8, wt, d, 3 * d),
                 "bias": rng.standard_normal(3 * d).astype(np.float32), "xs": scale(),
                 "ws": scale(3 * d) if per_col else scale(),
                 "mask": np.array([5, 3], np.int32) if masked else None, "xz": zp(np.uint8),
                 "wz": (zp(np.uint8, 3 * d) if per_col else zp(np.uint8)) if wt == np.uint8 else np.zeros((), np.int8),
                 "past": rng.standard_normal((2, b_, heads, 3, d // heads)).astype(np.float32) if past else None}
        ins = [n if feeds[n] is not None else "" for n in feeds]
        feeds = {n: v for n, v in feeds.items() if v is not None}
        outs = {"y": np.float32, "present": np.float32} if past else {"y": np.float32}
        node = helper.make_node("QAttention", ins, list(outs), domain=MS, num_heads=heads, unidirectional=uni)
        case(f"QAttention {np.dtype(wt).name} weights per_col={per_col} mask={masked} unidirectional={uni} "
             f"past={past}", node, feeds, outs, tol=1e-4, consts=["w", "bias", "ws", "wz"])
    # QEmbedLayerNormalization: u8 tables with segments and a mask, s8 without segments.
    for t, segs in [(np.uint8, True), (np.int8, False)]:
        b_, s_, h, vocab = 2, 6, 16, 20
        feeds = {"ids": rng.integers(0, vocab, (b_, s_)).astype(np.int32),
                 "seg": rng.integers(0, 2, (b_, s_)).astype(np.int32) if segs else None,
                 "we": q8(t, vocab, h), "pe": q8(t, 8, h), "se": q8(t, 2, h) if segs else None,
                 "g": q8(t, h), "bt": q8(t, h),
                 "mask": np.array([[1] * 6, [1, 1, 1, 0, 0, 0]], np.int32) if segs else None,
                 "wes": scale(), "pes": scale(), "ses": scale() if segs else None, "gs": scale(), "bs": scale(),
                 "wez": zp(t), "pez": zp(t), "sez": zp(t) if segs else None, "gz": zp(t), "bz": zp(t)}
        ins = [n if feeds[n] is not None else "" for n in feeds]
        feeds = {n: v for n, v in feeds.items() if v is not None}
        node = helper.make_node("QEmbedLayerNormalization", ins, ["y", "mask_index"], domain=MS, epsilon=1e-5)
        case(f"QEmbedLayerNormalization {np.dtype(t).name} segments={segs}", node, feeds,
             {"y": np.float32, "mask_index": np.int32}, tol=1e-4,
             consts=[n for n in feeds if n not in ("ids", "seg", "mask")])
    for t in (np.uint8, np.int8):
        tag = np.dtype(t).name
        for op in ("QLinearAdd", "QLinearMul"):
            for ash, bsh in [((2, 3, 5, 7), (2, 3, 5, 7)), ((1, 4, 6, 6), (1, 1, 1, 6)), ((3, 8, 10), (10,)),
                             ((2, 3, 4), ()), ((1, 3, 1), (2, 1, 4))]:
                feeds = {"a": q8(t, *ash), "as": scale(), "az": zp(t), "b": q8(t, *bsh), "bs": scale(), "bz": zp(t),
                         "cs": np.array(0.04, np.float32), "cz": zp(t)}
                node = helper.make_node(op, list(feeds), ["c"], domain=MS)
                case(f"{op} {tag} {ash} {bsh}", node, feeds, {"c": t})
        for op, attrs in [("QLinearSigmoid", {}), ("QLinearLeakyRelu", {"alpha": 0.1})]:
            feeds = {"x": q8(t, 2, 3, 17), "xs": scale(), "xz": zp(t), "ys": np.array(0.004, np.float32), "yz": zp(t)}
            case(f"{op} {tag}", helper.make_node(op, list(feeds), ["y"], domain=MS, **attrs), feeds, {"y": t})
        feeds = {"x": q8(t, 2, 4, 33), "xs": np.array(0.1, np.float32), "xz": zp(t),
                 "ys": np.array(1 / 256, np.float32), "yz": np.array(-128 if t == np.int8 else 0, t)}
        node = helper.make_node("QLinearSoftmax", list(feeds), ["y"], domain=MS, axis=-1, opset=13)
        case(f"QLinearSoftmax {tag}", node, feeds, {"y": t})
        # Over a middle axis (YOLO's DFL head: rows of 16 strided by the rest), and opset 12's
        # flattened semantics.
        feeds = dict(feeds, x=q8(t, 1, 16, 4, 21))
        node = helper.make_node("QLinearSoftmax", list(feeds), ["y"], domain=MS, axis=1, opset=13)
        case(f"QLinearSoftmax {tag} axis 1", node, feeds, {"y": t})
        node = helper.make_node("QLinearSoftmax", list(feeds), ["y"], domain=MS, axis=2, opset=12)
        case(f"QLinearSoftmax {tag} axis 2 opset 12", node, feeds, {"y": t})
        feeds = {"x": q8(t, 2, 5, 9, 7), "xs": scale(), "xz": zp(t), "ys": scale(), "yz": zp(t)}
        case(f"QLinearGlobalAveragePool {tag}",
             helper.make_node("QLinearGlobalAveragePool", list(feeds), ["y"], domain=MS), feeds, {"y": t})
        case(f"QLinearGlobalAveragePool {tag} channels_last",
             helper.make_node("QLinearGlobalAveragePool", list(feeds), ["y"], domain=MS, channels_last=1), feeds,
             {"y": t})
        for cip in (0, 1):
            node = helper.make_node("QLinearAveragePool", list(feeds), ["y"], domain=MS, kernel_shape=[3, 3],
                                    strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=cip)
            case(f"QLinearAveragePool {tag} count_include_pad={cip}", node, feeds, {"y": t})
        feeds = {"ys": scale(), "yz": zp(t), "x1": q8(t, 1, 3, 4), "s1": scale(), "z1": zp(t), "x2": q8(t, 1, 5, 4),
                 "s2": scale(), "z2": zp(t)}
        feeds.update(x3=q8(t, 1, 2, 4), s3=feeds["ys"], z3=feeds["yz"])
        case(f"QLinearConcat {tag}", helper.make_node("QLinearConcat", list(feeds), ["y"], domain=MS, axis=1), feeds,
             {"y": t})
        feeds = {"c": rng.random((3, 1, 5)) < 0.5, "x": q8(t, 3, 4, 5), "xs": scale(), "xz": zp(t), "y": q8(t, 4, 5),
                 "ys": scale(), "yz": zp(t), "zs": scale(), "zz": zp(t)}
        case(f"QLinearWhere {tag}", helper.make_node("QLinearWhere", list(feeds), ["z"], domain=MS), feeds, {"z": t})
        feeds = {"x": q8(t, 2, 9, 11, 6)}
        node = helper.make_node("NhwcMaxPool", ["x"], ["y"], domain=MS, kernel_shape=[3, 3], strides=[2, 2],
                                pads=[1, 1, 1, 1])
        case(f"NhwcMaxPool {tag}", node, feeds, {"y": t}, tol=0)
        feeds = {"x": rng.standard_normal((3, 8)).astype(np.float32), "s": scale(8), "z": zp(t, 8)}
        case(f"com.microsoft QuantizeLinear {tag} per axis",
             helper.make_node("QuantizeLinear", list(feeds), ["y"], domain=MS, axis=1), feeds, {"y": t}, tol=0)
        feeds = {"x": q8(t, 3, 8), "s": scale(8), "z": zp(t, 8)}
        case(f"com.microsoft DequantizeLinear {tag} per axis",
             helper.make_node("DequantizeLinear", list(feeds), ["y"], domain=MS, axis=1), feeds,
             {"y": np.float32}, tol=0)


def check(c):
    name, m, feeds, tol = c
    sess = common.ort_session(m)
    names = [o.name for o in sess.get_outputs()]
    want = sess.run(names, feeds)
    worst = 0
    for level in ("disabled", "all"):
        got = common.kiln_run_model(m, feeds, level=level)
        for n, w in zip(names, want):
            g = got[n]
            assert g.dtype == w.dtype and g.shape == w.shape, f"{n} ({level}): {g.dtype}{g.shape} vs ORT {w.dtype}{w.shape}"
            if w.dtype.kind == "f":
                # `tol` of a float output: relative to the output's scale (int8 activations).
                t = tol if 0 < tol < 1 else 1e-5
                err = float(np.abs(g - w).max() / max(np.abs(w).max(), 1e-6)) if w.size else 0.0
                assert err <= t, f"{n} ({level}): differs from ORT by {err:.3g} of its range (allowed {t})"
                worst = max(worst, err)
                continue
            d = int(np.abs(g.astype(np.int64) - w.astype(np.int64)).max()) if w.size else 0
            assert d <= tol, f"{n} ({level}): differs from ORT by {d} (allowed {tol})"
            worst = max(worst, d)
    return f"max step difference {worst}"


def numpy_cases():
    """Integer products past ORT's limits, against numpy: extreme bytes (u8 x s8 pairs that saturate
    int16), and ConvInteger's u8 x s8 / s8 x s8, which ORT refuses."""
    out = []
    for at, wt in [(np.uint8, np.int8), (np.int8, np.int8)]:
        a = q8(at, 4, 64)
        a[:, ::2] = np.iinfo(at).max
        b = q8(wt, 64, 5)
        b[::2] = np.iinfo(wt).min
        feeds = {"a": a, "b": b}
        want = a.astype(np.int64) @ b.astype(np.int64)
        out.append((f"MatMulInteger {np.dtype(at).name} x {np.dtype(wt).name} extreme values",
                    model(helper.make_node("MatMulInteger", ["a", "b"], ["y"]), feeds, {"y": np.int32}), feeds,
                    want))
        x, w = q8(at, 1, 3, 6, 6), q8(wt, 4, 3, 3, 3)
        xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (1, 1), (1, 1)))
        want = np.zeros((1, 4, 6, 6), np.int64)
        for i in range(6):
            for j in range(6):
                want[0, :, i, j] = np.einsum("chw,mchw->m", xp[0, :, i:i + 3, j:j + 3], w.astype(np.int64))
        feeds = {"x": x, "w": w}
        out.append((f"ConvInteger {np.dtype(at).name} x {np.dtype(wt).name} (ORT refuses)",
                    model(helper.make_node("ConvInteger", ["x", "w"], ["y"], pads=[1] * 4), feeds, {"y": np.int32}),
                    feeds, want))
        out.append((f"ConvInteger {np.dtype(at).name} x {np.dtype(wt).name} constant W (ORT refuses)",
                    model(helper.make_node("ConvInteger", ["x", "w"], ["y"], pads=[1] * 4), {"x": x},
                          {"y": np.int32}, inits={"w": w}),
                    {"x": x}, want))
    return out


def check_numpy(c):
    name, m, feeds, want = c
    for level in ("disabled", "all"):
        got = common.kiln_run_model(m, feeds, level=level)["y"]
        assert np.array_equal(got.astype(np.int64), want), f"{name} ({level}): differs from numpy"
    return "exact"


if __name__ == "__main__":
    print(f"integer kernels: {common.integer_kernels()}", flush=True)
    build()
    items = [("ort", c) for c in CASES] + [("numpy", c) for c in numpy_cases()]
    common.run_tests("quant-ops", items, lambda it: check(it[1]) if it[0] == "ort" else check_numpy(it[1]),
                     workers=2, name=lambda it: it[1][0], desc=lambda it: it[1][0])
