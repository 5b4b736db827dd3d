"""A bounded fuzzer of the feeds kiln's Python API takes, with onnxruntime as the oracle: every
dtype ONNX tensors have, in C order, Fortran order, with negative strides or as lists, and
then one thing wrong: another dtype, rank or size, an empty dim, a huge view of a few bytes
(zero strides), a scalar, dict, string or ragged list, a complex, datetime or structured
array, a missing, misnamed or extra input. Where ORT runs a feed kiln must too, with the same
outputs; where ORT raises, kiln raises too, catchable as ORT's was (never a crash), and the
session still runs right afterwards. `KILN_FUZZ_FEEDS` sets how many feeds (default 400); run this file directly with
`--feeds N --seed S` for longer hunts.
"""
import os
import random
import sys

import numpy as np
import onnxruntime as ort
import pytest

import kiln

TYPES = [  # (ONNX element type, numpy dtype)
    (1, np.float32), (11, np.float64), (10, np.float16), (3, np.int8), (5, np.int16), (6, np.int32),
    (7, np.int64), (2, np.uint8), (4, np.uint16), (12, np.uint32), (13, np.uint64), (9, np.bool_),
    (8, np.object_),
]


def identity_model():
    """One Identity per element type, with static, symbolic and scalar shapes, plus a float
    Add with broadcasting."""
    from onnx import helper
    nodes, ins, outs = [], [], []
    for i, (et, _) in enumerate(TYPES):
        shape = [[2, 3], ["n", 3], [], ["a", "b", "c"]][i % 4]
        ins.append(helper.make_tensor_value_info(f"x{i}", et, shape))
        outs.append(helper.make_tensor_value_info(f"y{i}", et, None))
        nodes.append(helper.make_node("Identity", [f"x{i}"], [f"y{i}"]))
    ins.append(helper.make_tensor_value_info("p", 1, ["m", 4]))
    ins.append(helper.make_tensor_value_info("q", 1, [4]))
    outs.append(helper.make_tensor_value_info("s", 1, None))
    nodes.append(helper.make_node("Add", ["p", "q"], ["s"]))
    g = helper.make_graph(nodes, "feeds", ins, outs)
    return helper.make_model(g, ir_version=8, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def values(rng, dtype, shape):
    n = int(np.prod(shape)) if shape else 1
    if dtype == np.object_:
        return np.array([rng.choice(["", "a", "ünï", "x" * 50]) for _ in range(n)], dtype=object).reshape(shape)
    if dtype == np.bool_:
        return (np.arange(n) % 3 == 0).reshape(shape)
    return (np.arange(n) % 7 * 1.5 - 3).astype(dtype).reshape(shape)


def good_feed(rng, dtype, dims):
    """A valid feed in one of the layouts and forms a caller may use."""
    k = rng.randrange(6)
    a = values(rng, dtype, dims)
    if k == 1 and dims:
        return np.asfortranarray(a)  # (of a 0-d array numpy makes a 1-d one)
    if k == 2 and dims:
        big = values(rng, dtype, [d * 2 for d in dims])
        return big[tuple(slice(None, None, -2) for _ in dims)]  # negative strides
    if k == 3 and dtype != np.object_ and dims:
        return a.tolist()  # lists, converted to the input's type (ORT refuses bare scalars)
    return a


def bad_feed(rng, dtype, dims):
    """A feed for an input of `dtype` and `dims` that is wrong in one way."""
    k = rng.randrange(9)
    if k == 0:
        other = rng.choice([t for t in TYPES if t[1] != dtype])[1]
        return values(rng, other, dims)
    if k == 1:
        return values(rng, dtype, dims + [2])  # wrong rank
    if k == 2:
        return values(rng, dtype, [d + 1 for d in dims] if dims else [1])
    if k == 3 and dtype != np.object_:
        # A huge view of a few bytes (zero strides): at least 2^40 elements, so that neither
        # runtime can copy it and both must refuse; a view that fits would only measure RAM.
        base = values(rng, dtype, [1] * max(len(dims), 1))
        big = [rng.choice([1 << 40, 1 << 44])] + [rng.choice([1, 3]) for _ in dims[1:]]
        return np.lib.stride_tricks.as_strided(base, shape=big, strides=[0] * len(big))
    if k == 4:
        return rng.choice([3, 2.5, "str", [[1, 2], [3]], {"a": 1}, b"raw", object()])
    if k == 5:
        return np.zeros(dims, dtype=rng.choice([np.complex64, np.dtype("datetime64[s]"),
                                                np.dtype([("a", np.int32), ("b", np.float32)])]))
    if k == 6:
        return values(rng, dtype, [0] + dims[1:] if dims else [0])  # empty: valid where dims allow
    return values(rng, dtype, list(reversed(dims)) + [1])


def random_feeds(rng, inputs):
    """Valid feeds for every input (symbolic dims picked once per name, as a run binds them),
    then, three times in four, one thing made wrong: a bad feed, a missing or misnamed input,
    an extra name."""
    sizes = {}
    spec = {}
    for a in inputs:
        dims = [d if isinstance(d, int) else sizes.setdefault(d, rng.choice([1, 2, 5])) for d in a.shape]
        dt = np.object_ if a.type == "tensor(string)" else ort_dtype(a.type)
        spec[a.name] = (dt, dims)
    feeds = {n: good_feed(rng, dt, dims) for n, (dt, dims) in spec.items()}
    if rng.random() < 0.75:
        victim = rng.choice(list(spec))
        k = rng.randrange(10)
        if k < 7:
            feeds[victim] = bad_feed(rng, *spec[victim])
        elif k == 7:
            del feeds[victim]
        elif k == 8:
            feeds[victim + "_nope"] = feeds.pop(victim)
        else:
            feeds["extra"] = np.zeros(2, np.float32)
    return feeds


def ort_dtype(t):
    return {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
            "tensor(int8)": np.int8, "tensor(int16)": np.int16, "tensor(int32)": np.int32,
            "tensor(int64)": np.int64, "tensor(uint8)": np.uint8, "tensor(uint16)": np.uint16,
            "tensor(uint32)": np.uint32, "tensor(uint64)": np.uint64, "tensor(bool)": np.bool_}[t]


def catchable_alike(ort_err, kiln_err):
    """Whether code written for ORT catches kiln's exception where it caught ORT's: the Python
    classes ORT's is an instance of, kiln's is too; ORT's own classes (InvalidArgument, Fail,
    ...) are matched by kiln's classes of the same name."""
    for base in (RuntimeError, TypeError, ValueError, MemoryError):
        if isinstance(ort_err, base) and not isinstance(kiln_err, base):
            return False
    if type(ort_err).__module__.startswith("onnxruntime"):
        return isinstance(kiln_err, getattr(kiln, type(ort_err).__name__, ()))
    return True


# Where kiln is knowingly stricter or more lenient than ORT: counted and printed, not failed.
# kiln binds a named dim to one size across all inputs (its optimizer relies on equal names
# being equal sizes; ORT does not check), checks the rank of inputs declared as scalars (ORT
# checks no shape for them), takes Python scalars as 0-d feeds (ORT refuses them), and refuses
# structured arrays (ORT reads them as strings).
DIVERGENCES = {
    "named dim bound across inputs": lambda o, k: o is None and "another input set" in str(k),
    "scalar input fed a tensor": lambda o, k: o is None and "expected rank 0" in str(k),
    "Python scalar taken": lambda o, k: k is None and "Unable to handle object of type" in str(o),
    # ORT turns a structured array fed to a string input into strings; kiln refuses it.
    "structured array as strings": lambda o, k: o is None and "numpy dtype [(" in str(k),
}


def divergence(oerr, kerr):
    return next((name for name, test in DIVERGENCES.items() if test(oerr, kerr)), None)


def same(got, want):
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape, (g.dtype, g.shape, w.dtype, w.shape)
        if w.dtype.kind == "f":
            assert np.allclose(g, w, equal_nan=True)
        else:
            assert (g == w).all()


def fuzz(n, seed):
    model = identity_model()
    so = ort.SessionOptions()
    so.log_severity_level = 4
    o = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    k = kiln.InferenceSession(model)
    rng = random.Random(seed)
    counts = {"both ran": 0, "both raised": 0}
    counts.update({name: 0 for name in DIVERGENCES})
    problems = []
    for i in range(n):
        feeds = random_feeds(rng, o.get_inputs())
        outs = [a.name for a in o.get_outputs()]
        names = None if rng.random() < 0.3 else rng.sample(outs, rng.randint(1, 4))
        try:
            want, oerr = o.run(names, feeds), None
        except Exception as e:  # noqa: BLE001 - ORT's verdict is the oracle
            want, oerr = None, e
        try:
            got, kerr = k.run(names, feeds), None
        except Exception as e:  # noqa: BLE001
            got, kerr = None, e
        what = {n: (type(v).__name__, getattr(v, "dtype", None), getattr(v, "shape", None)) for n, v in feeds.items()}
        known = divergence(oerr, kerr)
        if known:
            counts[known] += 1
        elif oerr is None and kerr is None:
            try:
                same(got, want)
                counts["both ran"] += 1
            except AssertionError as e:
                problems.append(f"feed {i}: outputs differ: {e} -- {what}")
        elif oerr is not None and kerr is not None:
            counts["both raised"] += 1
            if not catchable_alike(oerr, kerr):
                problems.append(f"feed {i}: ORT raised {type(oerr).__name__} ({str(oerr)[:120]}), "
                                f"kiln {type(kerr).__name__} ({str(kerr)[:120]}) -- {what}")
        elif oerr is None:
            problems.append(f"feed {i}: ORT ran it, kiln raised {type(kerr).__name__}: {str(kerr)[:200]} -- {what}")
        else:
            problems.append(f"feed {i}: ORT raised {type(oerr).__name__} ({str(oerr)[:160]}), kiln ran it -- {what}")
    # Still right afterwards.
    good = {}
    for a in o.get_inputs():
        shape = [d if isinstance(d, int) else 2 for d in a.shape]
        good[a.name] = values(rng, np.object_ if a.type == "tensor(string)" else ort_dtype(a.type), shape)
    same(k.run(None, good), o.run(None, good))
    return counts, problems


def test_fuzzed_feeds_are_run_or_raised_as_ort_does():
    n = int(os.environ.get("KILN_FUZZ_FEEDS", "400"))
    counts, problems = fuzz(n, seed=int(os.environ.get("KILN_FUZZ_SEED", "1")))
    print(f"feed fuzz: {n} feeds, {counts}")
    assert not problems, "\n".join(problems[:15]) + f"\n({len(problems)} problems)"


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--feeds", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    counts, problems = fuzz(a.feeds, a.seed)
    print(f"feed fuzz: {a.feeds} feeds, {counts}, {len(problems)} problems")
    for p in problems[:40]:
        print(p)
    sys.exit(1 if problems else 0)
