"""A bounded fuzzer of the feeds kiln's Python API takes, with onnxruntime as the oracle: every
dtype ONNX tensors have, C order, Fortran order, negative and zero strides (a huge view of a
few bytes), empty and oversized shapes, wrong ranks and dims, lists, scalars, ragged lists,
None, object and structured arrays, wrong, missing and extra names. Where ORT runs a feed kiln
must too, with the same outputs; where ORT raises, kiln raises an exception of the same kind
(a KilnError, a TypeError or a ValueError, never a crash), and the session still runs right
afterwards. `KILN_FUZZ_FEEDS` sets how many feeds (default 400); run this file directly with
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


def feed_for(rng, dtype, shape):
    """A feed meant for an input of `dtype` and `shape` (symbolic dims as None), made wrong now
    and then."""
    dims = [d if d is not None else rng.choice([1, 2, 5]) for d in shape]
    k = rng.randrange(16)
    if k < 5:
        return values(rng, dtype, dims)
    if k == 5:
        other = rng.choice(TYPES)[1]
        return values(rng, other, dims)
    if k == 6:
        return values(rng, dtype, dims + [2])  # wrong rank
    if k == 7:
        return values(rng, dtype, [d + 1 for d in dims] if dims else [1])
    if k == 8:
        return values(rng, dtype, [0] + dims[1:] if dims else [0])
    if k == 9 and dtype != np.object_:
        # A huge view of a few bytes: zero strides, gigantic logical size.
        base = values(rng, dtype, [1] * max(len(dims), 1))
        big = [rng.choice([1 << 20, 1 << 31, 1 << 40]) for _ in range(max(len(dims), 1))]
        return np.lib.stride_tricks.as_strided(base, shape=big, strides=[0] * len(big))
    if k == 10:
        a = values(rng, dtype, [d * 2 for d in dims] if dims else [])
        return a[tuple(slice(None, None, -2) for _ in dims)] if dims else a  # negative strides
    if k == 11:
        return np.asfortranarray(values(rng, dtype, dims))
    if k == 12:
        return values(rng, dtype, dims).tolist()
    if k == 13:
        return rng.choice([None, 3, 2.5, "str", [[1, 2], [3]], {"a": 1}, b"raw", object()])
    if k == 14:
        return np.zeros(dims, dtype=rng.choice([np.complex64, np.dtype("datetime64[s]"),
                                                np.dtype([("a", np.int32), ("b", np.float32)])]))
    return values(rng, dtype, dims)


def random_feeds(rng, inputs):
    feeds = {}
    for a in inputs:
        if rng.random() < 0.04:
            continue  # missing
        shape = [d if isinstance(d, int) else None for d in a.shape]
        dt = {"tensor(string)": np.object_}.get(a.type) or np.dtype(
            ort_dtype(a.type)).type
        feeds[a.name if rng.random() > 0.03 else a.name + "_nope"] = feed_for(rng, dt, shape)
    if rng.random() < 0.05:
        feeds["extra"] = np.zeros(2, np.float32)
    return feeds


def ort_dtype(t):
    return {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
            "tensor(int8)": np.int8, "tensor(int16)": np.int16, "tensor(int32)": np.int32,
            "tensor(int64)": np.int64, "tensor(uint8)": np.uint8, "tensor(uint16)": np.uint16,
            "tensor(uint32)": np.uint32, "tensor(uint64)": np.uint64, "tensor(bool)": np.bool_}[t]


def kind(e):
    """What sort of failure an exception is, as a caller would catch it."""
    if isinstance(e, TypeError):
        return "TypeError"
    if isinstance(e, (ValueError, MemoryError)) and not isinstance(e, kiln.KilnError):
        return "ValueError"
    return "error"  # ORT's Fail/InvalidArgument/..., kiln's KilnError classes


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
    problems = []
    for i in range(n):
        sub = rng.sample(o.get_inputs(), rng.randint(1, 4))
        feeds = random_feeds(rng, sub)
        names = [f"y{a.name[1:]}" if a.name.startswith("x") else "s" for a in sub]
        try:
            want, oerr = o.run(names, feeds), None
        except Exception as e:  # noqa: BLE001 - ORT's verdict is the oracle
            want, oerr = None, e
        try:
            got, kerr = k.run(names, feeds), None
        except Exception as e:  # noqa: BLE001
            got, kerr = None, e
        what = {n: (type(v).__name__, getattr(v, "dtype", None), getattr(v, "shape", None)) for n, v in feeds.items()}
        if oerr is None and kerr is None:
            try:
                same(got, want)
                counts["both ran"] += 1
            except AssertionError as e:
                problems.append(f"feed {i} {what}: outputs differ: {e}")
        elif oerr is not None and kerr is not None:
            counts["both raised"] += 1
            if kind(oerr) != kind(kerr):
                problems.append(f"feed {i} {what}: ORT raised {type(oerr).__name__} ({str(oerr)[:120]}), "
                                f"kiln {type(kerr).__name__} ({str(kerr)[:120]})")
        elif oerr is None:
            problems.append(f"feed {i} {what}: ORT ran it, kiln raised {type(kerr).__name__}: {str(kerr)[:200]}")
        else:
            problems.append(f"feed {i} {what}: ORT raised {type(oerr).__name__} ({str(oerr)[:160]}), kiln ran it")
    # Still right afterwards.
    good = {"x0": values(rng, np.float32, [2, 3]), "p": values(rng, np.float32, [3, 4]),
            "q": values(rng, np.float32, [4])}
    same(k.run(["y0", "s"], good), o.run(["y0", "s"], good))
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
