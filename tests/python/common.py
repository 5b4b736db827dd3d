"""Shared helpers for kiln's Python oracle tests (test_inspect/test_roundtrip/test_shapes).

Finds the repo root, the data cache ($KILN_CACHE, default <root>/.cache, filled by
scripts/fetch-data.sh, which is run on first use) and the kiln binary ($KILN_BIN, default
<root>/target/release/kiln); lists the real models and the node conformance cases; converts ONNX
TypeProtos into kiln's type strings and shape lists; builds deterministic seeded inputs for a
model; and provides a tiny test runner (no pytest) that prints one `LABEL: N passed, M failed`
line and exits non-zero if anything failed or nothing ran.
"""

import json
import os
import subprocess
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CACHE = os.environ.get("KILN_CACHE") or os.path.join(ROOT, ".cache")

# TensorProto.DataType 1..28 in enum order.
DTYPES = ["float32", "uint8", "int8", "uint16", "int16", "int32", "int64", "string", "bool",
          "float16", "float64", "uint32", "uint64", "complex64", "complex128", "bfloat16",
          "float8e4m3fn", "float8e4m3fnuz", "float8e5m2", "float8e5m2fnuz", "uint4", "int4",
          "float4e2m1", "float8e8m0", "uint2", "int2", "float6e2m3", "float6e3m2"]

# Concrete sizes for inputs whose shapes have symbolic/unknown dims, by model file stem.
INPUT_SHAPES = {
    "yolov8n_320n": {"images": (1, 3, 320, 320)},
    "ddddocr_common_det": {"images": (1, 3, 416, 416)},
}


def ensure_data():
    """Run scripts/fetch-data.sh (instant and silent when the cache is complete)."""
    subprocess.run([os.path.join(ROOT, "scripts", "fetch-data.sh")], check=True)


def made_by(script):
    """The folder a model-making script (`scripts/gen-*.sh`) prints last, or exit saying why."""
    out = subprocess.run(["bash", os.path.join(ROOT, "scripts", script)], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"scripts/{script} failed:\n{out.stderr[-3000:]}")
    return out.stdout.strip().splitlines()[-1]


def kiln_bin():
    """Path of the kiln binary, or exit(2) saying where we looked."""
    path = os.environ.get("KILN_BIN") or os.path.join(ROOT, "target", "release", "kiln")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        print(f"error: kiln binary not found at {path} "
              "(build with `cargo build --release` or set KILN_BIN)", file=sys.stderr)
        sys.exit(2)
    return path


def kiln(*args, timeout=300):
    """Run kiln with args; return stdout, raising AssertionError with stderr on failure."""
    r = subprocess.run([kiln_bin(), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(f"kiln {' '.join(map(str, args))} exited {r.returncode}: {r.stderr.strip()[-2000:]}")
    return r.stdout


def integer_kernels():
    """The integer kernels' variant the kiln binary runs here (KILN_ISA applied)."""
    out = kiln("--version").strip()
    if "(integer kernels: " not in out:
        return out
    return out.split("(integer kernels: ", 1)[1][:-1]


def kiln_json(*args):
    out = kiln(*args)
    try:
        return json.loads(out)
    except json.JSONDecodeError as e:
        raise AssertionError(f"kiln printed invalid JSON ({e}): {out[:500]!r}")


def real_models():
    d = os.path.join(CACHE, "models")
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".onnx"))


def conformance_cases():
    """Paths of every conformance case's model.onnx."""
    d = os.path.join(CACHE, "conformance", "node")
    return [os.path.join(d, c, "model.onnx") for c in sorted(os.listdir(d))]


def stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def dtype_name(elem_type):
    return DTYPES[elem_type - 1] if 1 <= elem_type <= len(DTYPES) else "unknown"


def type_string(tp):
    """kiln's string for an onnx TypeProto: float32, sequence<T>, optional<T>, map<K,V>, sparse<D>."""
    kind = tp.WhichOneof("value") if tp is not None else None
    if kind == "tensor_type":
        return dtype_name(tp.tensor_type.elem_type)
    if kind == "sparse_tensor_type":
        return f"sparse<{dtype_name(tp.sparse_tensor_type.elem_type)}>"
    if kind == "sequence_type":
        return f"sequence<{type_string(tp.sequence_type.elem_type)}>"
    if kind == "optional_type":
        return f"optional<{type_string(tp.optional_type.elem_type)}>"
    if kind == "map_type":
        return f"map<{dtype_name(tp.map_type.key_type)},{type_string(tp.map_type.value_type)}>"
    return "unknown"


def shape_list(tp):
    """[int | str | None, ...] for (sparse) tensor types with a shape, else None."""
    kind = tp.WhichOneof("value")
    if kind not in ("tensor_type", "sparse_tensor_type"):
        return None
    t = getattr(tp, kind)
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else d.dim_param if d.HasField("dim_param") else None
            for d in t.shape.dim]


def graph_inputs(model):
    """Graph inputs that are not also initializers, in order."""
    inits = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def input_shapes(path, model=None):
    """{input name: concrete shape tuple}: the INPUT_SHAPES table, else static dims (1 for unknown)."""
    model = model or onnx.load(path)
    table = INPUT_SHAPES.get(stem(path), {})
    shapes = {}
    for vi in graph_inputs(model):
        dims = shape_list(vi.type) or []
        shapes[vi.name] = tuple(table.get(vi.name) or [d if isinstance(d, int) else 1 for d in dims])
    return shapes


def make_inputs(path, model=None, seed=0):
    """Deterministic feeds: floats uniform in [0,1), ints in [0,4), random bools."""
    model = model or onnx.load(path)
    rng = np.random.default_rng(seed)
    feeds = {}
    for vi in graph_inputs(model):
        shape = input_shapes(path, model)[vi.name]
        np_type = onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
        if np_type == np.bool_:
            feeds[vi.name] = rng.integers(0, 2, shape).astype(np.bool_)
        elif np.issubdtype(np_type, np.integer):
            feeds[vi.name] = rng.integers(0, 4, shape).astype(np_type)
        else:
            feeds[vi.name] = rng.random(shape).astype(np_type)
    return feeds


def ort_session(model_or_path):
    """Deterministic CPU ONNX Runtime session with all graph optimizations off."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 4
    src = model_or_path.SerializeToString() if isinstance(model_or_path, onnx.ModelProto) else model_or_path
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


def run_tests(label, items, check, workers=1, name=os.path.basename, desc=str):
    """Run check(item) for every item; an exception is a failure. Prints summary and exits."""
    kiln_bin()  # fail early and clearly when the binary is missing

    def one(item):
        try:
            note = check(item)
            return None, note
        except AssertionError as e:
            return str(e), None
        except Exception:
            return traceback.format_exc(limit=3), None

    passed = failed = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for item, (err, note) in zip(items, pool.map(one, items)):
            if err is None:
                passed += 1
                if note:
                    print(f"ok   {name(item)}: {note}")
            else:
                failed += 1
                print(f"FAIL {desc(item)}: {err}")
    print(f"{label}: {passed} passed, {failed} failed")
    sys.exit(1 if failed or not passed else 0)


def assert_close(name, got, ref, atol=1e-4, rtol=1e-3):
    """Same dtype and shape, and |got - ref| <= atol + rtol*|ref| elementwise (NaN matches NaN;
    exact equality for integer, bool and string outputs). Returns the worst diff/tolerance."""
    if ref.dtype.kind in "OU":  # strings: ORT returns object arrays, kiln's .npy is unicode
        assert got.dtype.kind == "U", f"{name}: dtype {got.dtype} vs ORT strings"
        assert got.shape == ref.shape, f"{name}: shape {got.shape} vs ORT {ref.shape}"
        bad = got.astype(str) != ref.astype(str)
        assert not bad.any(), f"{name}: {int(bad.sum())} of {bad.size} strings differ"
        return 0.0
    assert got.dtype == ref.dtype, f"{name}: dtype {got.dtype} vs ORT {ref.dtype}"
    assert got.shape == ref.shape, f"{name}: shape {got.shape} vs ORT {ref.shape}"
    if not (np.issubdtype(ref.dtype, np.floating) or np.issubdtype(ref.dtype, np.complexfloating)):
        bad = got != ref
        assert not bad.any(), f"{name}: {int(bad.sum())} of {bad.size} elements differ"
        return 0.0
    g, r = got.astype(np.float64), ref.astype(np.float64)
    with np.errstate(invalid="ignore"):
        return _close(name, g, r, atol, rtol)


def _close(name, g, r, atol, rtol):
    both_nan = np.isnan(g) & np.isnan(r)
    diff = np.where(both_nan, 0.0, np.abs(g - r))
    same_inf = np.isinf(r) & (g == r)
    diff = np.where(same_inf, 0.0, diff)
    tol = atol + rtol * np.where(np.isinf(r) | np.isnan(r), 0.0, np.abs(r))
    bad = ~(diff <= tol)
    assert not bad.any(), (f"{name}: {int(bad.sum())} of {bad.size} elements off, max diff "
                           f"{np.nanmax(np.where(bad, diff, 0)):.3g}")
    return float((diff / tol).max()) if diff.size else 0.0


def kiln_run_model(model, feeds, level="disabled", ep="cpu", extra=()):
    """Runs a model (in memory, or a path) with `kiln run` on the given feeds; {output name:
    array, or a list of dicts for a sequence of maps}."""
    import tempfile
    with tempfile.TemporaryDirectory(prefix="kiln-case-") as tmp:
        if isinstance(model, str):
            path = model
        else:
            path = os.path.join(tmp, "model.onnx")
            onnx.save(model, path)
        args = ["run", path, "--level", level, "--ep", ep, "--out", os.path.join(tmp, "out"),
                "--json", *extra]
        for i, (name, arr) in enumerate(feeds.items()):
            f = os.path.join(tmp, f"in{i}.npy")
            np.save(f, arr)
            args += ["--input", f"{name}={f}"]
        report = kiln_json(*args)
        return {o["name"]: _load_output(o["file"]) for o in report["outputs"]}


def _load_output(path):
    """A `kiln run` output file: `.npy` for tensors, `.json` for maps and sequences of maps."""
    if path.endswith(".json"):
        with open(path) as f:
            return json.load(f)
    return np.load(path)


def assert_maps_close(name, got, ref, atol=1e-4, rtol=1e-3):
    """A sequence of maps (as ORT returns ZipMap's output: a list of dicts) against kiln's JSON
    (keys as strings): same length, same keys, values close. Returns the worst ratio."""
    assert isinstance(got, list), f"{name}: kiln wrote {type(got).__name__}, ORT a sequence of maps"
    assert len(got) == len(ref), f"{name}: {len(got)} maps vs ORT {len(ref)}"
    worst = 0.0
    for i, (g, r) in enumerate(zip(got, ref)):
        assert sorted(g) == sorted(str(k) for k in r), f"{name}[{i}]: keys {sorted(g)} vs ORT {sorted(r)}"
        keys = sorted(r)
        worst = max(worst, _close(f"{name}[{i}]", np.array([g[str(k)] for k in keys], np.float64),
                                  np.array([r[k] for k in keys], np.float64), atol, rtol))
    return worst


def compare_with_ort(model, feeds, levels=("disabled", "all"), atol=1e-4, rtol=1e-3):
    """kiln at each level against ONNX Runtime with its optimizer off; the worst ratio of
    difference to tolerance."""
    sess = ort_session(model)
    names = [o.name for o in sess.get_outputs()]
    want = dict(zip(names, sess.run(names, feeds)))
    worst = 0.0
    for level in levels:
        got = kiln_run_model(model, feeds, level=level)
        assert sorted(got) == sorted(want), f"outputs {sorted(got)} vs ORT {sorted(want)}"
        for n in names:
            check = assert_maps_close if isinstance(want[n], list) else assert_close
            worst = max(worst, check(f"{n} (--level {level})", got[n], want[n], atol, rtol))
    return worst


def one_node_model(node, feeds, opsets, ir_version=8):
    """A model of one node whose inputs are the feeds (typed from the arrays) and whose outputs
    are float tensors of unknown shape."""
    from onnx import helper
    ins = [helper.make_tensor_value_info(n, onnx.helper.np_dtype_to_tensor_dtype(a.dtype), list(a.shape))
           for n, a in feeds.items()]
    outs = [helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, None) for o in node.output if o]
    g = helper.make_graph([node], "g", ins, outs)
    return helper.make_model(g, ir_version=ir_version,
                             opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()])


def run_ort_cases(label, cases):
    """Runs (name, model, feeds) cases against ORT at --level disabled and all."""
    def check(case):
        _, m, feeds = case
        return f"worst diff {compare_with_ort(m, feeds):.3f} of tolerance"
    run_tests(label, cases, check, workers=2, name=lambda c: c[0], desc=lambda c: c[0])
