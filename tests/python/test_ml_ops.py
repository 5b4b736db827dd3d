"""The ai.onnx.ml operators kiln implements match ONNX Runtime on hand-made one-node models:
Binarizer, Scaler, Normalizer (MAX, L1, L2), ArrayFeatureExtractor, LabelEncoder (integer keys
through tensor attributes; string keys are in the node suite, as `kiln run` reads no string
.npy) and TreeEnsemble (each comparison mode, NaN
routing, membership sets, every aggregate, and post transforms NONE, LOGISTIC, SOFTMAX, SOFTMAX_ZERO in ONNX
Runtime's numbering). Prints `ml-ops: N passed, M
failed`. (Models that skl2onnx and onnxmltools write come with the rest of the ai.onnx.ml set.)
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import numpy as np  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def model(node, inputs, outputs):
    g = helper.make_graph([node], "ml", inputs, outputs)
    return helper.make_model(g, ir_version=10, opset_imports=[helper.make_opsetid("", 21),
                                                              helper.make_opsetid("ai.onnx.ml", 5)])


def vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def cases():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    out = []
    out.append(("Binarizer", model(helper.make_node("Binarizer", ["X"], ["Y"], domain="ai.onnx.ml", threshold=0.2),
                                   [vi("X", TensorProto.FLOAT, [6, 4])], [vi("Y", TensorProto.FLOAT, None)]), {"X": x}))
    out.append(("Scaler", model(helper.make_node("Scaler", ["X"], ["Y"], domain="ai.onnx.ml",
                                                 offset=[0.1, -0.2, 0.3, 0.0], scale=[2.0, 0.5, 1.5, -1.0]),
                                [vi("X", TensorProto.FLOAT, [6, 4])], [vi("Y", TensorProto.FLOAT, None)]), {"X": x}))
    for norm in ("MAX", "L1", "L2"):
        out.append((f"Normalizer {norm}", model(
            helper.make_node("Normalizer", ["X"], ["Y"], domain="ai.onnx.ml", norm=norm),
            [vi("X", TensorProto.FLOAT, [6, 4])], [vi("Y", TensorProto.FLOAT, None)]), {"X": x}))
    out.append(("ArrayFeatureExtractor", model(
        helper.make_node("ArrayFeatureExtractor", ["X", "I"], ["Y"], domain="ai.onnx.ml"),
        [vi("X", TensorProto.FLOAT, [6, 4]), vi("I", TensorProto.INT64, [3])],
        [vi("Y", TensorProto.FLOAT, None)]), {"X": x, "I": np.array([3, 0, 3], dtype=np.int64)}))
    out.append(("LabelEncoder int tensor->float tensor", model(
        helper.make_node("LabelEncoder", ["X"], ["Y"], domain="ai.onnx.ml",
                         keys_tensor=numpy_helper.from_array(np.array([1, 2, 3], dtype=np.int64)),
                         values_tensor=numpy_helper.from_array(np.array([0.1, 0.2, 0.3], dtype=np.float32)),
                         default_tensor=numpy_helper.from_array(np.array([9.0], dtype=np.float32))),
        [vi("X", TensorProto.INT64, [5])], [vi("Y", TensorProto.FLOAT, None)]),
        {"X": np.array([3, 1, 4, 2, 0], dtype=np.int64)}))
    # Two trees over 3 features, 2 targets: every mode, a NaN-routed node and a membership set.
    for agg in (0, 1, 2, 3):
        for post in (0, 1, 2, 3):
            node = helper.make_node(
                "TreeEnsemble", ["X"], ["Y"], domain="ai.onnx.ml",
                n_targets=2, aggregate_function=agg, post_transform=post, tree_roots=[0, 3],
                nodes_featureids=[0, 1, 2, 2, 0, 1],
                nodes_modes=numpy_helper.from_array(np.array([0, 6, 3, 1, 4, 5], dtype=np.uint8)),
                nodes_splits=numpy_helper.from_array(np.array([0.0, np.nan, 0.5, 0.2, 1.0, -0.3], dtype=np.float32)),
                nodes_truenodeids=[1, 0, 2, 4, 4, 5], nodes_trueleafs=[0, 1, 1, 0, 1, 1],
                nodes_falsenodeids=[2, 1, 3, 5, 5, 6], nodes_falseleafs=[0, 1, 1, 0, 1, 1],
                nodes_missing_value_tracks_true=[1, 0, 0, 1, 0, 0],
                membership_values=numpy_helper.from_array(np.array([1.0, 2.0, np.nan], dtype=np.float32)),
                leaf_targetids=[0, 1, 0, 1, 0, 1, 0],
                leaf_weights=numpy_helper.from_array(np.array([0.5, -1.0, 2.0, 0.25, -0.75, 1.5, 3.0], dtype=np.float32)))
            xt = np.array([[-1, 1, 0], [-1, 3, 0.7], [0.5, 0, 0.1], [np.nan, 2, 0.9], [1.0, -0.3, np.nan],
                           [2, 1, 0.3]], dtype=np.float32)
            out.append((f"TreeEnsemble agg={agg} post={post}", model(
                node, [vi("X", TensorProto.FLOAT, [6, 3])], [vi("Y", TensorProto.FLOAT, None)]), {"X": xt}))
    return out


if __name__ == "__main__":
    common.run_ort_cases("ml-ops", cases())
