"""kiln's opt-in bfloat16 products from Python: `SessionOptions.precision = "bf16"` (or the
config entry `kiln.precision`) runs MatMul with bfloat16 operands and f32 sums, within
bfloat16's rounding of the f32 session; a CPU without AVX512-BF16 refuses it by name."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import kiln


def has_bf16():
    with open("/proc/cpuinfo") as f:
        return " avx512_bf16" in f.read()


def matmul_model(k=384, n=96, seed=0):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])],
        [numpy_helper.from_array(w, "w")],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def session(model, **config):
    so = kiln.SessionOptions()
    for k, v in config.items():
        if k == "precision":
            so.precision = v
        else:
            so.add_session_config_entry(k, v)
    return kiln.InferenceSession(model, so)


def test_bf16_matmul_within_rounding_of_f32():
    model = matmul_model()
    x = np.random.default_rng(1).standard_normal((128, 384)).astype(np.float32)
    want = session(model).run(None, {"x": x})[0]
    if not has_bf16():
        with pytest.raises(kiln.KilnError, match="AVX512-BF16"):
            session(model, precision="bf16")
        pytest.skip("NOT RUN: this CPU lacks AVX512-BF16 (the refusal was checked)")
    for cfg in ({"precision": "bf16"}, {"kiln.precision": "bf16"}):
        got = session(model, **cfg).run(None, {"x": x})[0]
        err = np.abs(got - want).max() / np.abs(want).max()
        # Two 8-bit mantissas per product: about 2^-8 relative, averaged down over K.
        assert 1e-5 < err < 1e-2, (cfg, err)


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision 'fp8'"):
        session(matmul_model(), precision="fp8")
