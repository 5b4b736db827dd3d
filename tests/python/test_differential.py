"""Differential testing against ONNX Runtime: random small graphs of common ops, run by kiln at
every optimization level and by ORT with its optimizer off, must agree (1e-4 + 1e-3*|ort|).

Each graph grows from one or two random inputs: every step picks an op (element-wise unary
and binary ops with broadcasting, Where and comparisons, reductions, Softmax, Transpose,
Reshape, Concat, Slice, Conv with random kernel/stride/pads/dilation/groups and a fused
activation after it, pools with ceil_mode, Gemm/MatMul, normalizations, Resize, Pad, Gather)
with random attributes and sizes that miss the vector width. Graphs ORT itself refuses are
skipped and counted. Seeds are deterministic: `--seeds A:B` picks a range (default 0:200 in
CI), `--seconds S` stops early. A seed that once disagreed goes into REGRESSIONS and runs every
time. Prints `differential: N passed, M failed` and how many graphs ran.

`--ep wgpu,cpu` runs the same graphs through the GPU provider (lavapipe without a GPU) at
`--level disabled` and `all` against kiln's CPU provider at `disabled`, and counts the nodes
the GPU ran (`kiln partition --json`): a graph the GPU took no node of still counts, but the
total must be more than none.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import numpy as np  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

# Seeds that found a difference once; they run in every round.
REGRESSIONS = []

UNARY = ["Relu", "Sigmoid", "Tanh", "Abs", "Neg", "Erf", "Softplus", "Softsign", "Elu",
         "LeakyRelu", "HardSigmoid", "HardSwish", "Selu", "Exp", "Floor", "Ceil", "Round",
         "Sqrt", "Log", "Reciprocal", "Sin", "Cos", "Mish", "Gelu", "Identity", "Clip"]
BINARY = ["Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "PRelu"]
CMP = ["Less", "Greater", "Equal", "LessOrEqual", "GreaterOrEqual"]
REDUCE = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceL2", "ReduceLogSumExp",
          "ReduceSumSquare"]


class Gen:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.inputs, self.feeds = [], [], [], {}
        self.vals = []  # (name, shape)
        self.n = 0

    def r(self, lo, hi):
        return int(self.rng.integers(lo, hi + 1))

    def pick(self, xs):
        return xs[int(self.rng.integers(0, len(xs)))]

    def name(self, base):
        self.n += 1
        return f"{base}_{self.n}"

    def const(self, arr, base="c"):
        n = self.name(base)
        self.inits.append(numpy_helper.from_array(arr, n))
        return n

    def add(self, op, ins, shape, **attrs):
        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, ins, [out], name=self.name("n"), **attrs))
        self.vals.append((out, shape))
        return out

    def new_input(self, shape):
        n = self.name("in")
        self.inputs.append(helper.make_tensor_value_info(n, TensorProto.FLOAT, list(shape)))
        self.feeds[n] = (self.rng.standard_normal(shape) * 1.5).astype(np.float32)
        self.vals.append((n, tuple(shape)))
        return n

    def floats(self, shape, scale=0.5):
        return (self.rng.standard_normal(shape) * scale).astype(np.float32)

    # --- one step --------------------------------------------------------------------------
    def step(self):
        x, xs = self.pick(self.vals[-3:])
        rank = len(xs)
        kinds = ["unary", "binary", "binary", "where", "reduce", "softmax", "transpose",
                 "reshape", "concat", "slice", "gemm", "norm", "pad", "gather"]
        if rank == 4:
            kinds += ["conv", "conv", "pool", "resize"]
        kind = self.pick(kinds)
        if kind == "unary":
            op = self.pick(UNARY)
            src = x
            if op in ("Sqrt", "Log"):
                src = self.add("Abs", [x], xs)
                src = self.add("Add", [src, self.const(np.array(0.5, np.float32))], xs)
            if op == "Exp":
                src = self.add("Clip", [x, self.const(np.array(-5, np.float32)),
                                        self.const(np.array(5, np.float32))], xs)
            if op == "Reciprocal":
                src = self.add("Add", [self.add("Abs", [x], xs), self.const(np.array(1.0, np.float32))], xs)
            if op == "Clip":
                return self.add("Clip", [x, self.const(np.array(-1.0, np.float32)),
                                         self.const(np.array(self.rng.uniform(0, 2), np.float32))], xs)
            attrs = {"alpha": float(self.rng.uniform(0.05, 0.5))} if op in ("LeakyRelu", "Elu") else {}
            return self.add(op, [src], xs, **attrs)
        if kind == "binary":
            op = self.pick(BINARY)
            # The other operand broadcasts: a suffix of X's shape with some dims set to 1.
            k = self.r(0, rank)
            oshape = tuple(d if self.rng.random() < 0.6 else 1 for d in xs[rank - k:])
            if op == "PRelu":
                oshape = tuple(1 if i != 1 else xs[1] for i in range(rank)) if rank >= 2 else xs
            other = self.const(self.floats(oshape, 1.0))
            if op == "Pow":
                base = self.add("Add", [self.add("Abs", [x], xs), self.const(np.array(0.5, np.float32))], xs)
                other = self.const(self.rng.uniform(-1.5, 2.5, oshape).astype(np.float32))
                return self.add("Pow", [base, other], xs)
            if op == "Div":
                other = self.const((np.abs(self.floats(oshape, 1.0)) + 0.5).astype(np.float32))
            out_shape = tuple(np.broadcast_shapes(xs, oshape))
            ins = [other, x] if self.rng.random() < 0.3 and op != "PRelu" else [x, other]
            return self.add(op, ins, out_shape)
        if kind == "where":
            op = self.pick(CMP)
            thr = self.const(self.floats((xs[-1],) if rank else (), 1.0))
            c = self.add(op, [x, thr], xs)
            self.vals.pop()  # a bool tensor: not an operand for the float ops
            y = self.const(self.floats(xs[-1:] if rank else (), 1.0))
            return self.add("Where", [c, x, y], xs)
        if kind == "reduce" and rank >= 1:
            op = self.pick(REDUCE)
            axes = sorted(set(int(a) for a in self.rng.integers(-rank, rank, self.r(1, rank))))
            axes = sorted(set(a % rank for a in axes))
            keep = int(self.rng.integers(0, 2))
            shape = tuple((1 if i in axes else d) for i, d in enumerate(xs)) if keep else \
                tuple(d for i, d in enumerate(xs) if i not in axes)
            if not shape and not keep:
                shape = ()
            return self.add(op, [x, self.const(np.array(axes, np.int64))], shape, keepdims=keep)
        if kind == "softmax" and rank >= 1:
            op = self.pick(["Softmax", "LogSoftmax"])
            return self.add(op, [x], xs, axis=self.r(-rank, rank - 1))
        if kind == "transpose" and rank >= 2:
            perm = [int(p) for p in self.rng.permutation(rank)]
            return self.add("Transpose", [x], tuple(xs[p] for p in perm), perm=perm)
        if kind == "reshape" and rank >= 1:
            total = int(np.prod(xs))
            if self.rng.random() < 0.5 and rank >= 2:
                a = self.r(1, rank - 1)
                return self.add("Flatten", [x], (int(np.prod(xs[:a])), int(np.prod(xs[a:]))), axis=a)
            shape = [total] if total < 2 or self.rng.random() < 0.3 else [-1, xs[-1]]
            real = (total,) if shape == [total] else (total // xs[-1], xs[-1])
            return self.add("Reshape", [x, self.const(np.array(shape, np.int64))], real)
        if kind == "concat" and rank >= 1:
            axis = self.r(0, rank - 1)
            extra = list(xs)
            extra[axis] = self.r(1, 3)
            other = self.const(self.floats(tuple(extra)))
            shape = list(xs)
            shape[axis] += extra[axis]
            return self.add("Concat", [x, other], tuple(shape), axis=axis - rank if self.rng.random() < 0.3 else axis)
        if kind == "slice" and rank >= 1:
            axis = self.r(0, rank - 1)
            d = xs[axis]
            if d < 2:
                return None
            step = self.pick([1, 1, 2, -1])
            if step > 0:
                start, end = self.r(0, d - 1), self.r(1, d)
                if end <= start:
                    start, end = end - 1, start + 1
                n = len(range(start, end, step))
            else:
                start, end = self.r(1, d - 1), -d - 1
                n = len(range(start, -1, -1))
            shape = list(xs)
            shape[axis] = n
            return self.add("Slice", [x, self.const(np.array([start], np.int64)), self.const(np.array([end], np.int64)),
                                      self.const(np.array([axis], np.int64)), self.const(np.array([step], np.int64))],
                            tuple(shape))
        if kind == "gemm" and rank >= 1:
            k = xs[-1]
            n = self.r(1, 19)
            w = self.const(self.floats((k, n)))
            if rank == 2 and self.rng.random() < 0.5:
                tb = int(self.rng.integers(0, 2))
                w = self.const(self.floats((n, k) if tb else (k, n)))
                b = self.const(self.floats((n,)))
                return self.add("Gemm", [x, w, b], (xs[0], n), transB=tb,
                                alpha=float(self.rng.uniform(0.5, 1.5)), beta=float(self.rng.uniform(0.5, 1.5)))
            return self.add("MatMul", [x, w], xs[:-1] + (n,))
        if kind == "norm" and rank >= 2:
            if rank == 4 and self.rng.random() < 0.5:
                c = xs[1]
                ins = [x] + [self.const(a) for a in (self.floats((c,)) + 1, self.floats((c,)), self.floats((c,)),
                                                    np.abs(self.floats((c,))) + 0.5)]
                return self.add("BatchNormalization", ins, xs, epsilon=1e-5)
            axis = self.r(1, rank - 1)
            ns = xs[axis:]
            return self.add("LayerNormalization", [x, self.const(self.floats(ns) + 1), self.const(self.floats(ns))],
                            xs, axis=axis, epsilon=1e-5)
        if kind == "pad" and rank >= 1:
            pads = [self.r(0, 2) for _ in range(2 * rank)]
            mode = self.pick(["constant", "reflect", "edge"])
            if mode == "reflect" and any(p >= d for p, d in zip(pads, list(xs) * 2)):
                mode = "edge"
            shape = tuple(d + pads[i] + pads[i + rank] for i, d in enumerate(xs))
            return self.add("Pad", [x, self.const(np.array(pads, np.int64))], shape, mode=mode)
        if kind == "gather" and rank >= 1:
            axis = self.r(0, rank - 1)
            idx = self.rng.integers(-xs[axis], xs[axis], self.r(1, 4)).astype(np.int64)
            shape = xs[:axis] + (len(idx),) + xs[axis + 1:]
            return self.add("Gather", [x, self.const(idx)], shape, axis=axis)
        if kind == "conv":
            n, c, h, w = xs
            group = self.pick([1, 1, c]) if c > 1 else 1
            m = self.pick([c, self.r(1, 9)]) if group == 1 else c * self.pick([1, 2])
            k = self.pick([1, 3, 3, 5])
            s, d = self.pick([1, 1, 2]), self.pick([1, 1, 2])
            p = [self.r(0, k // 2 + 1) for _ in range(4)]
            span = d * (k - 1) + 1
            oh, ow = (h + p[0] + p[2] - span) // s + 1, (w + p[1] + p[3] - span) // s + 1
            if oh < 1 or ow < 1:
                return None
            ins = [x, self.const(self.floats((m, c // group, k, k)))]
            if self.rng.random() < 0.7:
                ins.append(self.const(self.floats((m,))))
            y = self.add("Conv", ins, (n, m, oh, ow), kernel_shape=[k, k], strides=[s, s], dilations=[d, d],
                         pads=p, group=group)
            act = self.pick(["Relu", "Sigmoid", "LeakyRelu", "Clip", "Tanh", "HardSigmoid", None, "silu", "add"])
            if act == "silu":
                return self.add("Mul", [y, self.add("Sigmoid", [y], (n, m, oh, ow))], (n, m, oh, ow))
            if act == "add":
                z = self.const(self.floats((n, m, oh, ow)))
                return self.add("Relu", [self.add("Add", [y, z], (n, m, oh, ow))], (n, m, oh, ow))
            if act == "Clip":
                return self.add("Clip", [y, self.const(np.array(0, np.float32)), self.const(np.array(6, np.float32))],
                                (n, m, oh, ow))
            if act:
                return self.add(act, [y], (n, m, oh, ow))
            return y
        if kind == "pool":
            n, c, h, w = xs
            op = self.pick(["MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool"])
            if op.startswith("Global"):
                return self.add(op, [x], (n, c, 1, 1))
            k, s = self.pick([2, 3]), self.pick([1, 2])
            p = [self.r(0, k - 1) for _ in range(4)]
            ceil = int(self.rng.integers(0, 2))
            def out(i, pb, pe):
                v = i + pb + pe - k
                o = (-(-v // s) if ceil else v // s) + 1
                if ceil and (o - 1) * s >= i + pb:
                    o -= 1
                return o
            oh, ow = out(h, p[0], p[2]), out(w, p[1], p[3])
            if oh < 1 or ow < 1 or h + p[0] + p[2] < k or w + p[1] + p[3] < k:
                return None
            attrs = dict(kernel_shape=[k, k], strides=[s, s], pads=p, ceil_mode=ceil)
            if op == "AveragePool":
                attrs["count_include_pad"] = int(self.rng.integers(0, 2))
            return self.add(op, [x], (n, c, oh, ow), **attrs)
        if kind == "resize":
            n, c, h, w = xs
            mode = self.pick(["nearest", "linear", "cubic"])
            coord = self.pick(["half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel"])
            sh, sw = self.pick([0.5, 1.5, 2.0, 0.75]), self.pick([0.5, 1.5, 2.0, 3.0])
            oh, ow = int(np.floor(h * sh)), int(np.floor(w * sw))
            if oh < 1 or ow < 1:
                return None
            scales = self.const(np.array([1, 1, sh, sw], np.float32))
            return self.add("Resize", [x, "", scales], (n, c, oh, ow), mode=mode,
                            coordinate_transformation_mode=coord)
        return None

    def build(self, steps):
        rank = self.pick([1, 2, 3, 4, 4, 4])
        dims = [self.pick([1, 2, 3, 5, 7, 9, 13, 17]) for _ in range(rank)]
        if rank == 4:
            dims = [self.pick([1, 2]), self.pick([1, 3, 4, 8, 17]), self.r(3, 19), self.r(3, 19)]
        self.new_input(tuple(dims))
        made = 0
        tries = 0
        while made < steps and tries < steps * 6:
            tries += 1
            if self.step() is not None:
                made += 1
                # Keep sizes small: stop growing a huge tensor.
                if int(np.prod(self.vals[-1][1] or (1,))) > 200_000:
                    break
        outs = [self.vals[-1][0]]
        if len(self.vals) > 3 and self.rng.random() < 0.4:
            outs.append(self.vals[-2][0])
        g = helper.make_graph(self.nodes, "diff", self.inputs,
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in dict.fromkeys(outs)],
                              initializer=self.inits)
        m = helper.make_model(g, ir_version=8, opset_imports=[helper.make_opsetid("", 20)])
        return m, self.feeds


def case(seed):
    g = Gen(seed)
    m, feeds = g.build(g.r(2, 7))
    ops = " ".join(n.op_type for n in m.graph.node)
    return seed, m, feeds, ops


SKIPPED = []


def check(item):
    seed, m, feeds, ops = item
    try:
        sess = common.ort_session(m)
        sess.run(None, feeds)
    except Exception as e:  # noqa: BLE001 - ORT refusing a random graph is not kiln's failure
        SKIPPED.append(seed)
        return f"seed {seed}: ORT refuses it ({str(e).splitlines()[0][:300]})"
    worst = common.compare_with_ort(m, feeds, levels=("disabled", "basic", "extended", "all"))
    return f"seed {seed} [{ops}]: worst {worst:.3f} of tolerance"


GPU_NODES = []


def check_gpu(item):
    seed, m, feeds, ops = item
    import tempfile
    try:
        want = common.kiln_run_model(m, feeds, level="disabled")
    except Exception as e:  # noqa: BLE001 - a graph kiln's CPU refuses is covered by the ORT mode
        SKIPPED.append(seed)
        return f"seed {seed}: the CPU refuses it ({str(e).splitlines()[0][:300]})"
    with tempfile.TemporaryDirectory(prefix="kiln-diff-") as tmp:
        path = os.path.join(tmp, "m.onnx")
        import onnx
        onnx.save(m, path)
        part = common.kiln_json("partition", path, "--ep", "wgpu,cpu", "--level", "disabled", "--json")
        on_gpu = sum(len(p["nodes"]) for p in part["partitions"] if p["ep"] == "wgpu")
        GPU_NODES.append(on_gpu)
        worst = 0.0
        for level in ("disabled", "all"):
            got = common.kiln_run_model(path, feeds, level=level, ep="wgpu,cpu")
            for name, ref in want.items():
                worst = max(worst, common.assert_close(f"{name} at --level {level} on wgpu", got[name], ref))
    return f"seed {seed} [{ops}]: {on_gpu} nodes on wgpu, worst {worst:.3f} of tolerance"


def main():
    lo, hi = 0, 200
    if "--seeds" in sys.argv:
        a, b = sys.argv[sys.argv.index("--seeds") + 1].split(":")
        lo, hi = int(a), int(b)
    limit = float(sys.argv[sys.argv.index("--seconds") + 1]) if "--seconds" in sys.argv else None
    start = time.time()
    seeds = list(dict.fromkeys(REGRESSIONS + list(range(lo, hi))))
    items = []
    for s in seeds:
        if limit is not None and time.time() - start > limit / 4:
            break
        items.append(case(s))
    t0 = time.time()
    gpu = "--ep" in sys.argv and "wgpu" in sys.argv[sys.argv.index("--ep") + 1]
    try:
        if gpu:
            try:
                common.run_tests("differential (wgpu)", items, check_gpu, workers=2,
                                 name=lambda c: f"seed {c[0]}", desc=lambda c: f"seed {c[0]} [{c[3]}]")
            except SystemExit as e:
                if not sum(GPU_NODES):
                    print("differential (wgpu): FAIL no node of any graph ran on the GPU")
                    print("differential (wgpu): 0 passed, 1 failed")
                    sys.exit(1)
                raise e
        else:
            common.run_tests("differential", items, check, workers=2,
                             name=lambda c: f"seed {c[0]}", desc=lambda c: f"seed {c[0]} [{c[3]}]")
    finally:
        if gpu:
            print(f"differential graphs on wgpu: {len(items) - len(SKIPPED)} compared at 2 levels, "
                  f"{sum(GPU_NODES)} nodes ran on the GPU ({sum(1 for n in GPU_NODES if n)} graphs with some), "
                  f"{len(SKIPPED)} refused by the CPU, {time.time() - t0:.0f} s")
        else:
            print(f"differential graphs: {len(items) - len(SKIPPED)} compared at 4 levels, "
                  f"{len(SKIPPED)} refused by ORT, {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
