"""The ai.onnx.ml operators kiln implements match ONNX Runtime on hand-made one-node models:
Binarizer, Scaler, Normalizer (MAX, L1, L2), ArrayFeatureExtractor, LabelEncoder (integer keys
through tensor attributes; string keys are in the node suite, as `kiln run` reads no string
.npy) and TreeEnsemble (each comparison mode, NaN
routing, membership sets, every aggregate, and post transforms NONE, LOGISTIC, SOFTMAX, SOFTMAX_ZERO in ONNX
Runtime's numbering), and the rest on their edge cases: OneHotEncoder, CategoryMapper, Imputer,
FeatureVectorizer, ZipMap, LinearClassifier/Regressor, SVMClassifier/Regressor,
TreeEnsembleClassifier/Regressor (legacy ids, base values, binary forms). Models that skl2onnx and
onnxmltools write are in test_scripted_models.py. Prints `ml-ops: N passed, M failed`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import numpy as np  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def model(node, inputs, outputs, ml=5):
    g = helper.make_graph([node], "ml", inputs, outputs)
    return helper.make_model(g, ir_version=10, opset_imports=[helper.make_opsetid("", 21),
                                                              helper.make_opsetid("ai.onnx.ml", ml)])


def ml_node(op, inputs, outputs, **attrs):
    return helper.make_node(op, inputs, outputs, domain="ai.onnx.ml", **attrs)


def legacy(node, feeds, outputs, ml=3):
    """A one-node model of an older ai.onnx.ml op; inputs typed from the feeds."""
    ins = [vi(n, helper.np_dtype_to_tensor_dtype(a.dtype) if a.dtype.kind != "U" else TensorProto.STRING,
              list(a.shape)) for n, a in feeds.items()]
    return model(node, ins, outputs, ml=ml)


def encoder_and_linear_cases(rng):
    """The column encoders and the linear / SVM / legacy tree models, on edge cases the scripted
    skl2onnx models do not reach (scripts/gen_ml_models.py covers the common ones)."""
    out = []
    f = TensorProto.FLOAT
    anyf = [vi("Y", f, None)]
    a = rng.standard_normal((4, 3)).astype(np.float32)
    b = rng.integers(-3, 3, (4, 2)).astype(np.float32)
    c = rng.standard_normal((4, 1)).astype(np.float32)
    out.append(("FeatureVectorizer cut and pad", legacy(
        ml_node("FeatureVectorizer", ["A", "B", "C"], ["Y"], inputdimensions=[2, 3, 1]),
        {"A": a, "B": b, "C": c}, anyf, ml=1), {"A": a, "B": b, "C": c}))
    s = np.array([["red", "blue"], ["teal", "green"]])
    out.append(("CategoryMapper string->int", legacy(
        ml_node("CategoryMapper", ["X"], ["Y"], cats_strings=["red", "green", "blue"], cats_int64s=[7, 8, 9],
                default_int64=-5), {"X": s}, [vi("Y", TensorProto.INT64, None)], ml=1), {"X": s}))
    i = np.array([9, 1, 7, 8], dtype=np.int64)
    out.append(("CategoryMapper int->string", legacy(
        ml_node("CategoryMapper", ["X"], ["Y"], cats_strings=["red", "green", "blue"], cats_int64s=[7, 8, 9],
                default_string="none"), {"X": i}, [vi("Y", TensorProto.STRING, None)], ml=1), {"X": i}))
    oi = np.array([[1, 5], [3, 4], [5, 1]], dtype=np.int64)
    out.append(("OneHotEncoder int64 (unknown is zeros)", legacy(
        ml_node("OneHotEncoder", ["X"], ["Y"], cats_int64s=[1, 3, 5]), {"X": oi}, anyf, ml=1), {"X": oi}))
    of = np.array([[2.7, -1.5], [0.2, 3.0]], dtype=np.float32)
    out.append(("OneHotEncoder float truncates", legacy(
        ml_node("OneHotEncoder", ["X"], ["Y"], cats_int64s=[2, -1, 0, 3]), {"X": of}, anyf, ml=1), {"X": of}))
    od = np.array([[3, 1, 5]], dtype=np.int64)
    out.append(("OneHotEncoder duplicate category (last wins)", legacy(
        ml_node("OneHotEncoder", ["X"], ["Y"], cats_int64s=[1, 3, 5, 3]), {"X": od}, anyf, ml=1), {"X": od}))
    sd = np.array(["red", "blue"])
    out.append(("CategoryMapper duplicate key (last wins)", legacy(
        ml_node("CategoryMapper", ["X"], ["Y"], cats_strings=["red", "blue", "red"], cats_int64s=[1, 2, 3]),
        {"X": sd}, [vi("Y", TensorProto.INT64, None)], ml=1), {"X": sd}))
    os_ = np.array([["b", "zz", "a"]])
    out.append(("OneHotEncoder strings", legacy(
        ml_node("OneHotEncoder", ["X"], ["Y"], cats_strings=["a", "b", "c"]), {"X": os_}, anyf, ml=1), {"X": os_}))
    xn = rng.standard_normal((5, 3)).astype(np.float32)
    xn[[0, 2, 4], [1, 0, 2]] = np.nan
    out.append(("Imputer NaN per column", legacy(
        ml_node("Imputer", ["X"], ["Y"], imputed_value_floats=[10.0, 20.0, 30.0], replaced_value_float=float("nan")),
        {"X": xn}, anyf, ml=1), {"X": xn}))
    xi = np.array([[1, -1, 3], [-1, 2, -1]], dtype=np.int64)
    out.append(("Imputer int64 one value", legacy(
        ml_node("Imputer", ["X"], ["Y"], imputed_value_int64s=[99], replaced_value_int64=-1),
        {"X": xi}, [vi("Y", TensorProto.INT64, None)], ml=1), {"X": xi}))
    z = rng.random((3, 4)).astype(np.float32)
    out.append(("ZipMap int64 labels", legacy(
        ml_node("ZipMap", ["X"], ["Y"], classlabels_int64s=[10, 20, 30, 40]), {"X": z},
        [helper.make_value_info("Y", helper.make_sequence_type_proto(helper.make_map_type_proto(
            TensorProto.INT64, helper.make_tensor_type_proto(f, None))))], ml=1), {"X": z}))
    x = rng.standard_normal((6, 3)).astype(np.float32)
    w6 = rng.standard_normal(6).astype(np.float32).tolist()
    w9 = rng.standard_normal(9).astype(np.float32).tolist()
    labels = [vi("L", TensorProto.INT64, None), vi("Z", f, None)]
    slabels = [vi("L", TensorProto.STRING, None), vi("Z", f, None)]
    for post in ("NONE", "SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO"):
        out.append((f"LinearRegressor 2 targets {post}", legacy(
            ml_node("LinearRegressor", ["X"], ["Y"], coefficients=w6, intercepts=[0.5, -0.5], targets=2,
                    post_transform=post), {"X": x}, anyf, ml=1), {"X": x}))
        out.append((f"LinearClassifier 3 classes {post}", legacy(
            ml_node("LinearClassifier", ["X"], ["L", "Z"], coefficients=w9, intercepts=[0.1, 0.0, -0.2],
                    classlabels_ints=[4, 5, 6], post_transform=post), {"X": x}, labels, ml=1), {"X": x}))
        out.append((f"LinearClassifier one score, two labels {post}", legacy(
            ml_node("LinearClassifier", ["X"], ["L", "Z"], coefficients=w9[:3], intercepts=[0.05],
                    classlabels_strings=["no", "yes"], post_transform=post), {"X": x}, slabels, ml=1), {"X": x}))
        out.append((f"SVMClassifier liblinear 3 classes {post}", legacy(
            ml_node("SVMClassifier", ["X"], ["L", "Z"], coefficients=w9, rho=[0.3], kernel_params=[0.0, 0.0, 0.0],
                    classlabels_ints=[0, 1, 2], post_transform=post), {"X": x}, labels, ml=1), {"X": x}))
    out.append(("SVMRegressor one_class", legacy(
        ml_node("SVMRegressor", ["X"], ["Y"], kernel_type="RBF", kernel_params=[0.5, 0.0, 3.0], n_supports=2,
                support_vectors=w6, coefficients=[1.0, -0.7], rho=[0.1], one_class=1), {"X": x}, anyf, ml=1),
        {"X": x}))
    # Legacy trees: two trees of per-tree node ids, leaves weighted on two targets / three classes.
    tree = dict(nodes_treeids=[0, 0, 0, 1, 1, 1, 1, 1], nodes_nodeids=[0, 1, 2, 0, 1, 2, 3, 4],
                nodes_featureids=[0, 0, 0, 2, 1, 0, 0, 0],
                nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF", "BRANCH_GT", "BRANCH_LT", "LEAF", "LEAF", "LEAF"],
                nodes_values=[0.1, 0, 0, -0.2, 0.4, 0, 0, 0],
                nodes_truenodeids=[1, 0, 0, 1, 3, 0, 0, 0], nodes_falsenodeids=[2, 0, 0, 2, 4, 0, 0, 0],
                nodes_missing_value_tracks_true=[0, 0, 0, 1, 0, 0, 0, 0])
    xt = x.copy()
    xt[1, 2] = np.nan
    leaves = dict(treeids=[0, 0, 1, 1, 1, 1], nodeids=[1, 2, 2, 3, 4, 4], ids=[0, 1, 0, 1, 0, 1],
                  weights=[0.5, -1.0, 2.0, 0.25, -0.75, 1.5])
    for agg in ("SUM", "AVERAGE", "MIN", "MAX"):
        out.append((f"TreeEnsembleRegressor {agg} with base values", legacy(
            ml_node("TreeEnsembleRegressor", ["X"], ["Y"], n_targets=2, aggregate_function=agg,
                    base_values=[0.25, -0.5], **tree, **{f"target_{k}": v for k, v in leaves.items()}),
            {"X": xt}, anyf), {"X": xt}))
    for post in ("NONE", "SOFTMAX", "LOGISTIC"):
        out.append((f"TreeEnsembleClassifier 3 classes {post}", legacy(
            ml_node("TreeEnsembleClassifier", ["X"], ["L", "Z"], classlabels_int64s=[0, 1, 2], post_transform=post,
                    base_values=[0.1, 0.2, -0.3], **tree,
                    **{f"class_{k}": (v if k != "ids" else [0, 2, 0, 1, 2, 1]) for k, v in leaves.items()}),
            {"X": xt}, labels), {"X": xt}))
        out.append((f"TreeEnsembleClassifier binary, one class id {post}", legacy(
            ml_node("TreeEnsembleClassifier", ["X"], ["L", "Z"], classlabels_strings=["a", "b"], post_transform=post,
                    **tree, **{f"class_{k}": (v if k != "ids" else [0] * 6) for k, v in leaves.items()}),
            {"X": xt}, slabels), {"X": xt}))
    return out


def vi(name, elem, shape):
    return helper.make_tensor_value_info(name, elem, shape)


def cases():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 4)).astype(np.float32)
    out = encoder_and_linear_cases(rng)
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
    # One target: ORT applies only PROBIT to a single column.
    node = helper.make_node(
        "TreeEnsemble", ["X"], ["Y"], domain="ai.onnx.ml", n_targets=1, aggregate_function=1, post_transform=1,
        tree_roots=[0], nodes_featureids=[0], nodes_modes=numpy_helper.from_array(np.array([0], dtype=np.uint8)),
        nodes_splits=numpy_helper.from_array(np.array([0.0], dtype=np.float32)),
        nodes_truenodeids=[0], nodes_trueleafs=[1], nodes_falsenodeids=[1], nodes_falseleafs=[1],
        leaf_targetids=[0, 0], leaf_weights=numpy_helper.from_array(np.array([2.5, -1.5], dtype=np.float32)))
    out.append(("TreeEnsemble one target LOGISTIC", model(
        node, [vi("X", TensorProto.FLOAT, [6, 4])], [vi("Y", TensorProto.FLOAT, None)]), {"X": x}))
    return out


if __name__ == "__main__":
    common.run_ort_cases("ml-ops", cases())
