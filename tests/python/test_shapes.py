"""Checks kiln's shape inference (`kiln inspect MODEL --json --shapes`) against ONNX Runtime.

The truth for every real model is observed, not inferred: ORT (optimizations off) runs a copy of
the model whose graph outputs are extended with every top-level node output, on the seeded inputs
from common.py; inputs and initializers contribute their known types too. Two checks per model:
(a) `concrete`: with `--shape NAME=D0,...` fixing every input, kiln's `values` must give every
value's exact dtype and integer shape; (b) `symbolic`: without `--shape`, kiln's dims are ints or
expressions over the inputs' dim_param names (`+ - *`, `/` = floor division, parentheses,
ceildiv/min/max) that must evaluate, with each dim_param bound to the size used in (a), to the
same shape. Run as `python tests/python/test_shapes.py`; prints `shapes: N passed, M failed`.
"""

import ast
import functools
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import onnx  # noqa: E402

MAX_REPORT = 12


@functools.lru_cache(maxsize=None)
def truth(path):
    """{value name: (dtype string, shape list)} for inputs, initializers and node outputs."""
    model = onnx.load(path)
    feeds = common.make_inputs(path, model)
    values = {name: (common.dtype_name(onnx.helper.np_dtype_to_tensor_dtype(a.dtype)), list(a.shape))
              for name, a in feeds.items()}
    for t in model.graph.initializer:
        values.setdefault(t.name, (common.dtype_name(t.data_type), list(t.dims)))
    have = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for name in node.output:
            if name and name not in have:
                model.graph.output.append(onnx.ValueInfoProto(name=name))
                have.add(name)
    sess = common.ort_session(model)
    names = [o.name for o in sess.get_outputs()]
    for name, a in zip(names, sess.run(names, feeds)):
        values[name] = (common.dtype_name(onnx.helper.np_dtype_to_tensor_dtype(a.dtype)), list(a.shape))
    return values


def safe_eval(node, env):
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value
    if isinstance(node, ast.Name) and node.id in env:
        return env[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = safe_eval(node.operand, env)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp):
        a, b = safe_eval(node.left, env), safe_eval(node.right, env)
        ops = {ast.Add: lambda: a + b, ast.Sub: lambda: a - b, ast.Mult: lambda: a * b, ast.FloorDiv: lambda: a // b}
        if type(node.op) in ops:
            return ops[type(node.op)]()
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        args = [safe_eval(x, env) for x in node.args]
        if node.func.id == "ceildiv" and len(args) == 2:
            return -(-args[0] // args[1])
        if node.func.id in ("min", "max") and len(args) >= 2:
            return (min if node.func.id == "min" else max)(args)
    raise ValueError(f"unsupported syntax {ast.dump(node)[:120]}")


def eval_dim(dim, env):
    """Evaluate one kiln dim (int or expression string) with dim_param names bound by env."""
    if isinstance(dim, int) and not isinstance(dim, bool):
        return dim
    if not isinstance(dim, str):
        raise ValueError("unknown dim")
    text, alias = dim, {}
    for i, name in enumerate(sorted(env, key=len, reverse=True)):
        text = re.sub(r"(?<!\w)" + re.escape(name) + r"(?!\w)", f"__d{i}", text)
        alias[f"__d{i}"] = env[name]
    return safe_eval(ast.parse(re.sub(r"/+", "//", text), mode="eval").body, alias)


def kiln_values(path, extra):
    out = common.kiln_json("inspect", path, "--json", "--shapes", *extra)
    assert isinstance(out.get("values"), list), "kiln output has no `values` list"
    return {v["name"]: v for v in out["values"]}


def check(item):
    mode, path = item
    model = onnx.load(path, load_external_data=False)
    sizes = common.input_shapes(path, model)
    want = truth(path)
    if mode == "concrete":
        extra = [a for name, dims in sizes.items() for a in ("--shape", f"{name}={','.join(map(str, dims))}")]
        env = {}
    else:
        extra = []
        env = {d: sizes[vi.name][i] for vi in common.graph_inputs(model)
               for i, d in enumerate(common.shape_list(vi.type) or []) if isinstance(d, str)}
    got = kiln_values(path, extra)
    bad = []
    for name, (dtype, shape) in want.items():
        v = got.get(name)
        if v is None:
            bad.append(f"{name}: missing from kiln values")
            continue
        if v.get("dtype") != dtype:
            bad.append(f"{name}: dtype kiln={v.get('dtype')} ort={dtype}")
        dims = v.get("shape")
        try:
            if mode == "concrete" and not all(type(d) is int for d in dims):
                raise ValueError("non-integer dim")
            ev = [eval_dim(d, env) for d in dims]
        except (TypeError, ValueError, SyntaxError, ZeroDivisionError) as e:
            bad.append(f"{name}: shape kiln={dims} ({e}) ort={shape}")
            continue
        if ev != shape:
            bad.append(f"{name}: shape kiln={dims}" + (f" = {ev}" if ev != dims else "") + f" ort={shape}")
    more = f"\n    ... and {len(bad) - MAX_REPORT} more" if len(bad) > MAX_REPORT else ""
    assert not bad, f"{mode}: {len(bad)}/{len(want)} values wrong\n    " + "\n    ".join(bad[:MAX_REPORT]) + more
    return f"{mode}: {len(want)} values checked"


if __name__ == "__main__":
    common.kiln_bin()
    common.ensure_data()
    items = [(mode, p) for p in common.real_models() for mode in ("concrete", "symbolic")]
    common.run_tests("shapes", items, check, name=lambda it: common.stem(it[1]), desc=lambda it: f"{it[1]} ({it[0]})")
