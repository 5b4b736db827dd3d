"""kiln's onnxruntime API against onnxruntime itself, on every real model: the same metadata,
outputs within 1e-4 + 1e-3·|ort|, an optimized model that ORT loads and runs to the same
outputs, errors for bad feeds, and one session run by several Python threads at once."""
import threading

import numpy as np
import onnxruntime as ort
import pytest

import kiln
from conftest import real_models

MODELS = real_models()
ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def model_feeds(path, sess, seed=0):
    """Random feeds of each input's type; symbolic dims are 1 for the batch, 64 elsewhere."""
    rng = np.random.default_rng(seed)
    out = {}
    for a in sess.get_inputs():
        shape = [d if isinstance(d, int) else (1 if i == 0 else 64) for i, d in enumerate(a.shape)]
        dt = ORT_TYPES[a.type]
        out[a.name] = (rng.random(shape) * (1 if dt == np.float32 else 5)).astype(dt)
    return out


def close(got, want):
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.dtype, want.shape)
    if not np.issubdtype(want.dtype, np.floating):
        assert np.array_equal(got, want), f"{np.sum(got != want)} values differ"
        return
    g, w = got.astype(np.float64), want.astype(np.float64)
    bad = np.abs(g - w) > 1e-4 + 1e-3 * np.abs(w)
    assert not bad.any(), f"{bad.sum()} values differ; worst {np.max(np.abs(g - w))}"


def ort_session(path, **kw):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"], **kw)


def args(nodes):
    return [(a.name, a.type, a.shape) for a in nodes]


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_metadata_matches_ort(path):
    o, k = ort_session(path), kiln.InferenceSession(str(path))
    assert args(k.get_inputs()) == args(o.get_inputs())
    assert args(k.get_outputs()) == args(o.get_outputs())
    assert args(k.get_overridable_initializers()) == args(o.get_overridable_initializers())
    mo, mk = o.get_modelmeta(), k.get_modelmeta()
    for field in ("producer_name", "graph_name", "domain", "description", "graph_description", "version",
                  "custom_metadata_map"):
        assert getattr(mk, field) == getattr(mo, field), field
    assert k.get_providers() == ["CPUExecutionProvider"]


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_outputs_and_optimized_model_match_ort(path, tmp_path):
    o = ort_session(path)
    feeds = model_feeds(path, o)
    want = o.run(None, feeds)
    so = kiln.SessionOptions()
    saved = tmp_path / "optimized.onnx"
    so.optimized_model_filepath = str(saved)
    k = kiln.InferenceSession(str(path), sess_options=so)
    got = k.run(None, feeds)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        close(g, w)
    # Outputs by name, in the order asked, once and twice.
    names = [a.name for a in k.get_outputs()]
    again = k.run(names[::-1] + names[:1], feeds)
    for g, w in zip(again, want[::-1] + want[:1]):
        close(g, w)
    # The optimized model kiln wrote loads in ORT and gives the same outputs.
    reloaded = ort_session(saved).run(None, feeds)
    for g, w in zip(reloaded, want):
        close(g, w)


def test_levels_threads_and_bytes(models_dir):
    path = models_dir / "light_squeezenet.onnx"
    o = ort_session(path)
    feeds = model_feeds(path, o)
    (want,) = o.run(None, feeds)
    for level in kiln.GraphOptimizationLevel:
        so = kiln.SessionOptions()
        so.graph_optimization_level = level
        so.intra_op_num_threads = 1
        (got,) = kiln.InferenceSession(path.read_bytes(), so).run(None, feeds)
        close(got, want)


def test_feeds_as_lists_and_scalars():
    from onnx import TensorProto, helper
    g = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])], "g",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    (y,) = kiln.InferenceSession(m).run(None, {"a": [1.5, 2.0], "b": 3})
    assert y.dtype == np.float32 and y.tolist() == [4.5, 5.0]
    (y,) = kiln.InferenceSession(m).run(["y"], {"a": np.array([1, 2], np.float32), "b": np.float32(0.5)})
    assert y.tolist() == [1.5, 2.5]


def test_bad_feeds_raise_with_the_input_named(models_dir):
    path = models_dir / "light_squeezenet.onnx"
    k = kiln.InferenceSession(str(path))
    name = k.get_inputs()[0].name
    x = np.zeros((1, 3, 224, 224), np.float32)
    with pytest.raises(kiln.InvalidArgument, match="nope"):
        k.run(None, {name: x, "nope": x})
    with pytest.raises(kiln.InvalidArgument, match=name):
        k.run(None, {name: x.astype(np.float64)})
    with pytest.raises(kiln.InvalidArgument, match=name):
        k.run(None, {name: x[0]})
    with pytest.raises(kiln.InvalidArgument, match=name):
        k.run(None, {name: np.zeros((1, 3, 100, 224), np.float32)})
    with pytest.raises(ValueError, match=name):
        k.run(None, {})
    with pytest.raises(kiln.InvalidArgument, match="no_such_output"):
        k.run(["no_such_output"], {name: x})
    with pytest.raises(kiln.Fail, match="terminate"):
        k.run(None, {name: x}, run_options=_terminated())
    with pytest.raises(TypeError):
        k.run(k.get_outputs()[0].name, {name: x})
    assert issubclass(kiln.InvalidArgument, kiln.KilnError)


def _terminated():
    ro = kiln.RunOptions()
    ro.terminate = True
    return ro


def test_bad_models_raise(tmp_path):
    with pytest.raises(kiln.NoSuchFile):
        kiln.InferenceSession(str(tmp_path / "missing.onnx"))
    with pytest.raises(kiln.InvalidProtobuf):
        kiln.InferenceSession(b"\x08\x07garbage\xff\xff")
    with pytest.raises(kiln.KilnError):
        kiln.InferenceSession(b"")


def test_providers_kiln_lacks_are_skipped_with_a_warning(models_dir):
    path = str(models_dir / "light_squeezenet.onnx")
    with pytest.warns(UserWarning, match="CUDAExecutionProvider"):
        k = kiln.InferenceSession(path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert k.get_providers() == ["CPUExecutionProvider"]
    assert "CPUExecutionProvider" in kiln.get_available_providers()
    assert k.get_provider_options()["CPUExecutionProvider"] == {}
    assert kiln.get_device() == "CPU"


def test_threads_share_one_session(models_dir):
    path = models_dir / "light_resnet50.onnx"
    k = kiln.InferenceSession(str(path))
    feeds = model_feeds(path, k)
    inputs = [{n: v + np.float32(i) * 0.01 for n, v in feeds.items()} for i in range(4)]
    want = [k.run(None, f)[0] for f in inputs]
    results, errors = {}, []

    def worker(t):
        try:
            for r in range(3):
                i = (t + r) % 4
                results[(t, r)] = (i, k.run(None, inputs[i])[0])
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(results) == 12
    for i, got in results.values():
        assert np.array_equal(got, want[i])


def test_feeds_in_any_memory_layout(models_dir):
    """Fortran order, reversed and strided views give what the same values in C order give."""
    path = models_dir / "light_squeezenet.onnx"
    o, k = ort_session(path), kiln.InferenceSession(str(path))
    name = k.get_inputs()[0].name
    x = np.random.default_rng(5).random((1, 3, 224, 224), dtype=np.float32)
    (want,) = o.run(None, {name: x})
    wide = np.zeros((1, 3, 224, 448), np.float32)
    wide[..., ::2] = x
    for feed in (np.asfortranarray(x), x[:, ::-1].copy()[:, ::-1], wide[..., ::2], x.T.copy().T):
        assert not feed.flags.c_contiguous
        (got,) = k.run(None, {name: feed})
        close(got, want)


def test_exceptions_pickle_and_name_their_module():
    import pickle
    e = pickle.loads(pickle.dumps(kiln.InvalidArgument("input 'x': bad")))
    assert isinstance(e, kiln.InvalidArgument) and "input 'x'" in str(e)
    assert kiln.Fail.__module__ == "kiln._kiln"


def test_switch_in_process(models_dir):
    """After install_as_onnxruntime(), `onnxruntime` and its capi modules are kiln's, and their
    exception classes catch kiln's errors."""
    import subprocess
    import sys
    code = f"""
import kiln
kiln.install_as_onnxruntime()
import onnxruntime
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument, Fail
from onnxruntime.capi import _pybind_state as C
from onnxruntime import InferenceSession, OrtValue, SessionOptions
import numpy as np, sys
assert onnxruntime.InferenceSession is kiln.InferenceSession
assert "CPUExecutionProvider" in C.get_available_providers()
s = InferenceSession({str(models_dir / "light_squeezenet.onnx")!r}, providers=onnxruntime.get_available_providers())
assert s.get_providers()[0] == "CPUExecutionProvider", s.get_providers()
try:
    s.run(None, {{"nope": np.zeros(1, np.float32), "data_0": np.zeros((1, 3, 224, 224), np.float32)}})
    raise SystemExit("no error")
except InvalidArgument:
    pass
import os
real = [k for k, m in sys.modules.items()
        if os.sep + "onnxruntime" + os.sep in (getattr(m, "__file__", None) or "")
        and os.sep + "kiln" + os.sep not in m.__file__]
assert not real, real
print("ok")
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip().endswith("ok"), p.stderr[-3000:]


def test_optional_none_feeds_and_layouts_of_other_types():
    from onnx import TensorProto, helper
    g = helper.make_graph(
        [helper.make_node("Not", ["b"], ["nb"]), helper.make_node("Identity", ["h"], ["ho"]),
         helper.make_node("Identity", ["s"], ["so"])], "g",
        [helper.make_tensor_value_info("b", TensorProto.BOOL, [2, 2]),
         helper.make_tensor_value_info("h", TensorProto.FLOAT16, [3]),
         helper.make_tensor_value_info("s", TensorProto.STRING, [2])],
        [helper.make_tensor_value_info("nb", TensorProto.BOOL, [2, 2]),
         helper.make_tensor_value_info("ho", TensorProto.FLOAT16, [3]),
         helper.make_tensor_value_info("so", TensorProto.STRING, [2])])
    m = helper.make_model(g, ir_version=8, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    feeds = {"b": np.array([[True, False], [False, True]]).T, "h": np.array([1.5, -2, 3], np.float16),
             "s": np.array(["ab", "cde"], dtype=object)}
    want = ort.InferenceSession(m, providers=["CPUExecutionProvider"]).run(None, feeds)
    got = kiln.InferenceSession(m).run(None, dict(feeds, extra=None))
    for g_, w in zip(got, want):
        assert g_.dtype == w.dtype and g_.shape == w.shape and (g_ == w).all(), (g_, w)
