"""kiln's QDQ fusions (kiln-opt passes/qdq/) on small graphs written as ORT's quantizer writes
them, each with:

- positive cases: `kiln optimize --level extended` writes the fused op (QLinearConv,
  QLinearMatMul, MatMulIntegerToFloat, QGemm, QLinearAdd/Mul, QLinearSigmoid, QLinearConcat,
  QLinearAveragePool, DynamicQuantizeMatMul, data movement on 8-bit data, redundant pairs
  removed);
- must-not-fire cases: the float op stays, and the pass reports the reason (a weight that is not
  a constant, a shared intermediate, mixed types, another Q scale, per-channel activations);
- equivalence: kiln's run of the model (--level disabled and all) and ORT's run of the saved
  optimized model equal ORT's run of the original within one quantization step;
- kiln's session-only fusions on the quantized graph (`ai.kiln:QLinearConvAdd`): the pass's
  applications and declines as `kiln demo` reports them, and `--level all` equal to
  `--level extended` bit for bit.

Prints `qdq-fusions: N passed, M failed`.
"""
import collections
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

rng = np.random.default_rng(3)
F = TensorProto.FLOAT


class G:
    """A graph being written: initializers, nodes, float input x."""

    def __init__(self):
        self.nodes, self.inits, self.n = [], [], 0

    def const(self, arr):
        self.n += 1
        name = f"c{self.n}"
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(self, op, ins, domain="", outs=1, **attrs):
        self.n += 1
        names = [f"v{self.n}_{i}" for i in range(outs)]
        self.nodes.append(helper.make_node(op, ins, names, domain=domain, **attrs))
        return names[0] if outs == 1 else names

    def q(self, x, scale, zero):
        return self.node("QuantizeLinear", [x, self.const(np.float32(scale)), self.const(zero)])

    def dq(self, x, scale, zero, **attrs):
        s = self.const(np.asarray(scale, np.float32))
        return self.node("DequantizeLinear", [x, s, self.const(zero)], **attrs)

    def qdq(self, x, scale, zero):
        return self.dq(self.q(x, scale, zero), scale, zero)

    def model(self, inputs, outputs):
        """`inputs`: name -> shape (float) or (shape, element type)."""
        typed = {n: (s if isinstance(s[0], tuple) else (s, F)) for n, s in inputs.items()}
        ins = [helper.make_tensor_value_info(n, t, list(s)) for n, (s, t) in typed.items()]
        outs = [helper.make_tensor_value_info(o, F, None) for o in outputs]
        g = helper.make_graph(self.nodes, "g", ins, outs, self.inits)
        return helper.make_model(g, ir_version=9, opset_imports=[helper.make_opsetid("", 19)])


U8 = lambda v: np.uint8(v)  # noqa: E731
S8 = lambda v: np.int8(v)  # noqa: E731


def conv(bias=True, weight_const=True, share=False, bias_scale_ok=True):
    g = G()
    x = g.qdq("x", 0.02, U8(128))
    w = rng.integers(-60, 61, (8, 4, 3, 3)).astype(np.int8)
    ws = (rng.random(8) * 0.01 + 0.002).astype(np.float32)
    inputs = {"x": (1, 4, 9, 9)}
    feeds = {"x": rng.standard_normal((1, 4, 9, 9)).astype(np.float32)}
    if weight_const:
        wq = g.const(w)
    else:
        # The weights fed at run time.
        wq = "w"
        inputs["w"] = ((8, 4, 3, 3), TensorProto.INT8)
        feeds["w"] = w
    wd = g.dq(wq, ws, np.zeros(8, np.int8), axis=0)
    ins = [x, wd]
    if bias:
        bs = ws * 0.02 * (1.0 if bias_scale_ok else 1.5)
        ins.append(g.dq(g.const(rng.integers(-300, 300, 8).astype(np.int32)), bs, np.zeros(8, np.int32), axis=0))
    y = g.node("Conv", ins, pads=[1, 1, 1, 1])
    out = g.dq(g.q(y, 0.05, U8(120)), 0.05, U8(120))
    outs = [out] + ([y] if share else [])
    return g.model(inputs, outs), feeds


def matmul(with_q=True, b_axis=1):
    g = G()
    a = g.qdq("a", 0.03, U8(130))
    b = rng.integers(-60, 61, (16, 6)).astype(np.int8)
    n = 6 if b_axis == 1 else 16
    bd = g.dq(g.const(b), (rng.random(n) * 0.02 + 0.005).astype(np.float32), np.zeros(n, np.int8), axis=b_axis)
    y = g.node("MatMul", [a, bd])
    out = g.dq(g.q(y, 0.1, U8(128)), 0.1, U8(128)) if with_q else g.node("Relu", [y])
    return g.model({"a": (3, 16)}, [out]), {"a": rng.standard_normal((3, 16)).astype(np.float32)}


def gemm():
    g = G()
    a = g.qdq("a", 0.03, U8(130))
    b = rng.integers(-60, 61, (5, 16)).astype(np.int8)
    bs = (rng.random(5) * 0.02 + 0.005).astype(np.float32)
    bd = g.dq(g.const(b), bs, np.zeros(5, np.int8), axis=0)
    c = g.dq(g.const(rng.integers(-200, 200, 5).astype(np.int32)), bs * np.float32(0.03), np.zeros(5, np.int32),
             axis=0)
    y = g.node("Gemm", [a, bd, c], transB=1)
    out = g.dq(g.q(y, 0.1, U8(128)), 0.1, U8(128))
    return g.model({"a": (3, 16)}, [out]), {"a": rng.standard_normal((3, 16)).astype(np.float32)}


def binary(op="Add", mixed=False, act=None, zy=128, shared_act=False):
    """`act`: None, "Relu", a (min, max) Clip with constant bounds, or "input" (a Clip whose
    min is a graph input)."""
    g = G()
    a = g.qdq("a", 0.02, U8(128))
    b = g.qdq("b", 0.03, S8(3) if mixed else U8(100))
    y = g.node(op, [a, b])
    inputs = {"a": (2, 3, 4), "b": (2, 3, 4)}
    extra = []
    if act == "Relu":
        y = g.node("Relu", [y])
    elif act == "input":
        y = g.node("Clip", [y, "lo"])
        inputs["lo"] = ((), F)
    elif act is not None:
        y = g.node("Clip", [y, g.const(np.float32(act[0])), g.const(np.float32(act[1]))])
    if shared_act:
        extra = [y]
    out = g.dq(g.q(y, 0.05, U8(zy)), 0.05, U8(zy))
    f = lambda: rng.standard_normal((2, 3, 4)).astype(np.float32)  # noqa: E731
    feeds = {"a": f(), "b": f()}
    if act == "input":
        feeds["lo"] = np.array(-0.3, np.float32)
    return g.model(inputs, [out, *extra]), feeds


def unary(op, **attrs):
    g = G()
    x = g.qdq("x", 0.02, U8(128))
    y = g.node(op, [x], **attrs)
    out = g.dq(g.q(y, 0.01, U8(0)), 0.01, U8(0))
    return g.model({"x": (1, 3, 6, 6)}, [out]), {"x": rng.standard_normal((1, 3, 6, 6)).astype(np.float32)}


def concat():
    g = G()
    a, b = g.qdq("a", 0.02, U8(128)), g.qdq("b", 0.04, U8(110))
    y = g.node("Concat", [a, b], axis=1)
    out = g.dq(g.q(y, 0.03, U8(120)), 0.03, U8(120))
    f = lambda c: rng.standard_normal((1, c, 4)).astype(np.float32)  # noqa: E731
    return g.model({"a": (1, 2, 4), "b": (1, 3, 4)}, [out]), {"a": f(2), "b": f(3)}


def movement(same=True):
    g = G()
    x = g.qdq("x", 0.02, U8(128))
    y = g.node("Reshape", [x, g.const(np.array([3, 8], np.int64))])
    out = g.dq(g.q(y, 0.02 if same else 0.03, U8(128)), 0.02, U8(128))
    return g.model({"x": (2, 3, 4)}, [out]), {"x": rng.standard_normal((2, 3, 4)).astype(np.float32)}


def pad(mode="constant", value=None, same=True, value_input=False):
    g = G()
    x = g.qdq("x", 0.02, U8(128))
    ins = [x, g.const(np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64))]
    inputs = {"x": (1, 3, 4, 5)}
    feeds = {"x": rng.standard_normal((1, 3, 4, 5)).astype(np.float32)}
    if value_input:
        ins.append("v")
        inputs["v"] = ((), F)
        feeds["v"] = np.array(0.5, np.float32)
    elif value is not None:
        ins.append(g.const(np.float32(value)))
    y = g.node("Pad", ins, mode=mode)
    out = g.dq(g.q(y, 0.02 if same else 0.03, U8(128)), 0.02, U8(128))
    return g.model(inputs, [out]), feeds


def pair():
    g = G()
    q = g.q("x", 0.02, U8(128))
    out = g.dq(g.q(g.dq(q, 0.02, U8(128)), 0.02, U8(128)), 0.02, U8(128))
    return g.model({"x": (5, 7)}, [out]), {"x": rng.standard_normal((5, 7)).astype(np.float32)}


def dynamic(w_const=True):
    g = G()
    xq, xs, xz = g.node("DynamicQuantizeLinear", ["x"], outs=3)
    wv = rng.integers(-60, 61, (16, 6)).astype(np.int8)
    inputs = {"x": (4, 16)}
    feeds = {"x": rng.standard_normal((4, 16)).astype(np.float32)}
    if w_const:
        w = g.const(wv)
    else:
        w = "w"
        inputs["w"] = ((16, 6), TensorProto.INT8)
        feeds["w"] = wv
    mm = g.node("MatMulInteger", [xq, w, xz, g.const(np.int8(0))])
    cast = g.node("Cast", [mm], to=TensorProto.FLOAT)
    scale = g.node("Mul", [xs, g.const(np.float32(0.01))])
    y = g.node("Mul", [cast, scale])
    out = g.node("Add", [y, g.const(rng.standard_normal(6).astype(np.float32))])
    return g.model(inputs, [out]), feeds


# name, (model, feeds), ops that must be in the optimized model, ops that must not, a decline
# reason that must be reported
CASES = [
    ("Conv -> QLinearConv", conv(), {"QLinearConv": 1}, ["Conv"], None),
    ("Conv without bias -> QLinearConv", conv(bias=False), {"QLinearConv": 1}, ["Conv"], None),
    ("Conv: weights not constant", conv(weight_const=False), {"Conv": 1}, ["QLinearConv"],
     "weights are not a constant"),
    ("Conv: output also read in float", conv(share=True), {"Conv": 1}, ["QLinearConv"], "graph output"),
    ("Conv: bias scale not x_scale * w_scale", conv(bias_scale_ok=False), {"Conv": 1}, ["QLinearConv"],
     "bias scale"),
    ("MatMul -> QLinearMatMul", matmul(), {"QLinearMatMul": 1}, ["MatMul"], None),
    ("MatMul -> MatMulIntegerToFloat", matmul(with_q=False), {"com.microsoft:MatMulIntegerToFloat": 1}, ["MatMul"],
     None),
    ("MatMul: B per row", matmul(b_axis=0), {"MatMul": 1}, ["QLinearMatMul"], "per channel other than per column"),
    ("Gemm -> QGemm", gemm(), {"com.microsoft:QGemm": 1}, ["Gemm"], None),
    ("Add -> QLinearAdd", binary(), {"com.microsoft:QLinearAdd": 1}, ["Add"], None),
    ("Mul -> QLinearMul", binary("Mul"), {"com.microsoft:QLinearMul": 1}, ["Mul"], None),
    ("Add: u8 + s8", binary(mixed=True), {"Add": 1}, ["com.microsoft:QLinearAdd"], "one 8-bit type"),
    # Past ORT's optimizer: Sub as QLinearAdd with B's scale negated, Relu/Clip as a clamp.
    ("Sub -> QLinearAdd (B's scale negated)", binary("Sub"), {"com.microsoft:QLinearAdd": 1}, ["Sub"], None),
    ("Add + Relu, Q zero point 0 -> QLinearAdd alone", binary(act="Relu", zy=0),
     {"com.microsoft:QLinearAdd": 1}, ["Add", "Relu", "Clip"], None),
    ("Add + Relu -> QLinearAdd + Clip on u8", binary(act="Relu"),
     {"com.microsoft:QLinearAdd": 1, "Clip": 1}, ["Add", "Relu"], None),
    ("Sub + Clip(-0.5, 0.8) -> QLinearAdd + Clip on u8", binary("Sub", act=(-0.5, 0.8)),
     {"com.microsoft:QLinearAdd": 1, "Clip": 1}, ["Sub"], None),
    ("Mul + Clip covering the Q's range -> QLinearMul alone", binary("Mul", act=(-100.0, 100.0)),
     {"com.microsoft:QLinearMul": 1}, ["Mul", "Clip"], None),
    ("Add + Clip: min not a constant", binary(act="input"), {"Add": 1, "Clip": 1},
     ["com.microsoft:QLinearAdd"], "bounds are not float constants"),
    ("Add + Relu: the Relu's output also read", binary(act="Relu", shared_act=True), {"Add": 1, "Relu": 1},
     ["com.microsoft:QLinearAdd"], "graph output"),
    ("Sigmoid -> QLinearSigmoid", unary("Sigmoid"), {"com.microsoft:QLinearSigmoid": 1}, ["Sigmoid"], None),
    ("AveragePool -> QLinearAveragePool", unary("AveragePool", kernel_shape=[3, 3], pads=[1] * 4),
     {"com.microsoft:QLinearAveragePool": 1}, ["AveragePool"], None),
    ("GlobalAveragePool -> QLinearGlobalAveragePool", unary("GlobalAveragePool"),
     {"com.microsoft:QLinearGlobalAveragePool": 1}, ["GlobalAveragePool"], None),
    ("Concat -> QLinearConcat", concat(), {"com.microsoft:QLinearConcat": 1}, ["Concat"], None),
    ("Reshape on 8-bit data", movement(), {"Reshape": 1}, [], None),
    ("Reshape: Q scale differs", movement(same=False), {"Reshape": 1}, [], "scale, zero point or type"),
    ("Pad on 8-bit data (border: the zero point)", pad(), {"Pad": 1, "QuantizeLinear": 1, "DequantizeLinear": 1},
     [], None),
    ("Pad on 8-bit data, value 0.37 quantized", pad(value=0.37), {"Pad": 1, "QuantizeLinear": 1,
                                                                   "DequantizeLinear": 1}, [], None),
    ("Pad on 8-bit data, value past the range saturates", pad(value=-9.0), {"Pad": 1, "QuantizeLinear": 1,
                                                                          "DequantizeLinear": 1}, [], None),
    ("Pad reflect on 8-bit data", pad(mode="reflect"), {"Pad": 1, "QuantizeLinear": 1, "DequantizeLinear": 1},
     [], None),
    ("Pad: Q scale differs", pad(same=False), {"Pad": 1, "QuantizeLinear": 2, "DequantizeLinear": 2}, [],
     "scale, zero point or type"),
    ("Pad: value not a constant", pad(value_input=True), {"Pad": 1, "QuantizeLinear": 2, "DequantizeLinear": 2},
     [], "pad value is not a float constant"),
    ("redundant Q(DQ(x)) removed", pair(), {"QuantizeLinear": 1, "DequantizeLinear": 1}, [], None),
    ("dynamic -> DynamicQuantizeMatMul", dynamic(), {"com.microsoft:DynamicQuantizeMatMul": 1},
     ["MatMulInteger", "DynamicQuantizeLinear", "Add"], None),
    ("dynamic: W not constant", dynamic(w_const=False), {"MatMulInteger": 1},
     ["com.microsoft:DynamicQuantizeMatMul"], "not a constant"),
]


def residual(share=False):
    """Two QDQ Convs of one input summed by a QDQ Add (a residual block's end, its shortcut a
    1x1 convolution), so that the channels-last region holds both operands."""
    g = G()
    x = g.qdq("x", 0.02, U8(128))

    def qconv(k, pads, scale, zero):
        w = rng.integers(-60, 61, (16, 8, k, k)).astype(np.int8)
        ws = (rng.random(16) * 0.01 + 0.002).astype(np.float32)
        wd = g.dq(g.const(w), ws, np.zeros(16, np.int8), axis=0)
        y = g.node("Conv", [x, wd], pads=[pads] * 4)
        return g.dq(g.q(y, scale, U8(zero)), scale, U8(zero))

    yq, r = qconv(3, 1, 0.05, 120), qconv(1, 0, 0.04, 110)
    s = g.node("Add", [yq, r])
    out = g.dq(g.q(s, 0.06, U8(125)), 0.06, U8(125))
    feeds = {"x": rng.standard_normal((1, 8, 9, 9)).astype(np.float32)}
    outs = [out] + ([yq, r] if share else [])
    return g.model({"x": (1, 8, 9, 9)}, outs), feeds


def grouped(group, per_group):
    """A QDQ 3x3 convolution of 16 channels in `group` groups, `per_group` outputs each."""
    g = G()
    x = g.qdq("x", 0.02, U8(128))
    m = group * per_group
    w = rng.integers(-60, 61, (m, 16 // group, 3, 3)).astype(np.int8)
    ws = (rng.random(m) * 0.01 + 0.002).astype(np.float32)
    wd = g.dq(g.const(w), ws, np.zeros(m, np.int8), axis=0)
    y = g.node("Conv", [x, wd], pads=[1] * 4, group=group)
    out = g.dq(g.q(y, 0.05, U8(120)), 0.05, U8(120))
    feeds = {"x": rng.standard_normal((1, 16, 9, 9)).astype(np.float32)}
    return g.model({"x": (1, 16, 9, 9)}, [out]), feeds


def session_pass(src, name):
    """`kiln demo`'s report of one pass: (applied, [decline reasons])."""
    text = common.kiln("demo", src, "--iters", "1")
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.split()[:1] == [name])
    applied = int(lines[at].split("applied")[1].split(",")[0])
    reasons = []
    for line in lines[at + 1:]:
        if not line.strip().startswith("declined at"):
            break
        reasons.append(line)
    return applied, reasons


def op_counts(m):
    return collections.Counter(f"{n.domain}:{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type
                               for n in m.graph.node)


def check(case):
    if len(case) == 6:
        return check_session(case)
    name, (m, feeds), want, absent, reason = case
    ref = common.ort_session(m)
    names = [o.name for o in ref.get_outputs()]
    expect = ref.run(names, feeds)
    with tempfile.TemporaryDirectory(prefix="kiln-qdq-") as tmp:
        src, out = os.path.join(tmp, "m.onnx"), os.path.join(tmp, "opt.onnx")
        onnx.save(m, src)
        report = common.kiln_json("optimize", src, "-o", out, "--level", "extended", "--json")
        have = op_counts(onnx.load(out))
        for op, n in want.items():
            assert have[op] == n, f"optimized model has {have[op]} {op}, want {n}: {dict(have)}"
        for op in absent:
            assert have[op] == 0, f"optimized model still has {op}: {dict(have)}"
        if reason:
            declined = [d["reason"] for p in report["passes"] for d in p.get("declined", [])]
            assert any(reason in r for r in declined), f"no decline mentions {reason!r}: {declined}"
        saved = common.ort_session(out).run(names, feeds)
        runs = [("saved, in ORT", saved)]
        for level in ("disabled", "all"):
            got = common.kiln_run_model(src, feeds, level=level)
            runs.append((f"kiln {level}", [got[n] for n in names]))
        worst = 0.0
        for label, got in runs:
            for n, g, w in zip(names, got, expect):
                # One quantization step of the output (the last DQ's scale) at most.
                step = 0.1 if "MatMul" in name or "Gemm" in name else 0.05
                d = float(np.abs(g.astype(np.float64) - w).max()) if w.size else 0.0
                assert d <= step * 1.001 + 1e-6, f"{label} {n}: differs from ORT by {d:.4g} (> one step {step})"
                worst = max(worst, d / step)
    return f"worst {worst:.2f} of a step"


def check_session(case):
    name, (m, feeds), pass_name, applied, reason, _ = case
    with tempfile.TemporaryDirectory(prefix="kiln-qdq-") as tmp:
        src = os.path.join(tmp, "m.onnx")
        onnx.save(m, src)
        got_applied, reasons = session_pass(src, pass_name)
        assert got_applied == applied, f"{pass_name} applied {got_applied} times, want {applied}: {reasons}"
        if reason:
            assert any(reason in r for r in reasons), f"no decline mentions {reason!r}: {reasons}"
        full = common.kiln_run_model(src, feeds, level="all")
        ext = common.kiln_run_model(src, feeds, level="extended")
        for n in ext:
            assert np.array_equal(full[n], ext[n]), f"{n}: --level all differs from extended"
        ref = common.ort_session(m)
        names = [o.name for o in ref.get_outputs()]
        for n, w in zip(names, ref.run(names, feeds)):
            d = float(np.abs(full[n].astype(np.float64) - w).max())
            assert d <= 0.06 * 1.001, f"{n}: differs from ORT by {d:.4g} (> one step)"
    return f"{pass_name} applied {got_applied}, all == extended"


SESSION = "session"
CASES += [
    ("Conv + residual Add -> ai.kiln:QLinearConvAdd", residual(), "quant_conv_add", 1, None, SESSION),
    ("Conv + Add: the Conv's output also read", residual(share=True), "quant_conv_add", 0,
     "consumers", SESSION),
    ("depthwise QLinearConv channels-last", grouped(16, 1), "quant_nhwc_layout", 1, None, SESSION),
    ("grouped QLinearConv, 2 outputs per group: stays channel-first", grouped(8, 2), "quant_nhwc_layout", 0,
     "output channels per group", SESSION),
]


if __name__ == "__main__":
    common.run_tests("qdq-fusions", CASES, check, workers=2, name=lambda c: c[0], desc=lambda c: c[0])
