"""Classical-ML test models: scikit-learn pipelines through skl2onnx and LightGBM through
onnxmltools, trained on seeded synthetic data. Imported by gen_models.py (tools venv)."""
import os

import numpy as np

SEED = 0
OPSETS = {"": 17, "ai.onnx.ml": 3}


def _data(rng, n=60, f=5, classes=3):
    x = rng.standard_normal((n, f)).astype(np.float32)
    w = rng.standard_normal((f, classes))
    y = np.argmax(x @ w + 0.3 * rng.standard_normal((n, classes)), axis=1)
    return x, y


def ml_models(out):
    from lightgbm import LGBMClassifier, LGBMRegressor
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType as MltFloat
    from skl2onnx import to_onnx
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import (GradientBoostingClassifier, GradientBoostingRegressor,
                                  RandomForestClassifier, RandomForestRegressor)
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import MinMaxScaler, Normalizer, OneHotEncoder, StandardScaler
    from sklearn.svm import SVC, SVR, LinearSVC
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(SEED)
    made = {}

    def save(name, onx, feeds):
        with open(os.path.join(out, f"{name}.onnx"), "wb") as f:
            f.write(onx.SerializeToString())
        np.savez(os.path.join(out, f"{name}.npz"), **feeds)
        made[name] = sorted({n.op_type for n in onx.graph.node})

    def skl(name, model, x, **kw):
        onx = to_onnx(model, x[:1], target_opset=OPSETS, **kw)
        save(name, onx, {onx.graph.input[0].name: x})

    x, y = _data(rng)
    x2, y2 = _data(rng, classes=2)
    names = np.array(["cat", "dog", "emu"])
    reg = x @ rng.standard_normal(5).astype(np.float32) + 0.1 * rng.standard_normal(60).astype(np.float32)
    xt = x[:17]

    def fit(model, xs, ys):
        model.fit(xs, ys)
        return model

    # Linear models, with the preprocessing skl2onnx writes as Scaler / Normalizer.
    skl("scaler_logreg", fit(make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)), x, y), xt)
    skl("scaler_logreg_binary", fit(make_pipeline(MinMaxScaler(), LogisticRegression()), x2, y2), xt)
    skl("logreg_strings", fit(LogisticRegression(max_iter=500), x, names[y]), xt)
    skl("logreg_nozipmap", fit(LogisticRegression(max_iter=500), x, y), xt,
        options={"zipmap": False})
    skl("linear_svc", fit(LinearSVC(), x, y), xt)
    skl("linear_svc_binary", fit(LinearSVC(), x2, y2), xt)
    skl("normalizer_ridge", fit(make_pipeline(Normalizer(), Ridge()), x, reg), xt)
    skl("linreg", fit(LinearRegression(), x, reg), xt)

    # Trees and ensembles.
    skl("decision_tree", fit(DecisionTreeClassifier(max_depth=4, random_state=0), x, y), xt)
    skl("random_forest", fit(RandomForestClassifier(n_estimators=8, max_depth=5, random_state=0), x, y), xt)
    skl("random_forest_strings",
        fit(RandomForestClassifier(n_estimators=4, max_depth=3, random_state=0), x2, names[y2]), xt)
    skl("random_forest_reg", fit(RandomForestRegressor(n_estimators=6, max_depth=4, random_state=0), x, reg), xt)
    skl("gboost", fit(GradientBoostingClassifier(n_estimators=10, max_depth=3, random_state=0), x, y), xt)
    skl("gboost_binary", fit(GradientBoostingClassifier(n_estimators=10, max_depth=3, random_state=0), x2, y2), xt)
    skl("gboost_reg", fit(GradientBoostingRegressor(n_estimators=10, max_depth=3, random_state=0), x, reg), xt)

    # Support vector machines.
    skl("svc_rbf_proba", fit(SVC(probability=True, random_state=0), x, y), xt)
    skl("svc_rbf_proba_binary", fit(SVC(probability=True, random_state=0), x2, y2), xt)
    skl("svc_poly", fit(SVC(kernel="poly", degree=2), x, y), xt)
    skl("svc_linear_binary", fit(SVC(kernel="linear"), x2, y2), xt)
    skl("svc_sigmoid", fit(SVC(kernel="sigmoid", gamma=0.05), x, y), xt)
    skl("svr_rbf", fit(SVR(), x, reg), xt)
    skl("svr_linear", fit(SVR(kernel="linear"), x, reg), xt)

    # Categorical columns: one-hot encoding of a string and an int column, an imputed numeric
    # block, then a classifier (skl2onnx writes OneHotEncoder, Imputer, Concat / FeatureVectorizer).
    n = 60
    num = rng.standard_normal((n, 3)).astype(np.float32)
    num[rng.random((n, 3)) < 0.1] = np.nan
    color = rng.choice(np.array(["red", "green", "blue"]), (n, 1))
    size = rng.integers(0, 4, (n, 1)).astype(np.int64)
    target = ((np.nan_to_num(num[:, 0]) > 0) ^ (color[:, 0] == "red")).astype(np.int64)
    import pandas as pd  # skl2onnx needs a DataFrame for mixed column types
    frame = pd.DataFrame({"a": num[:, 0], "b": num[:, 1], "c": num[:, 2], "color": color[:, 0],
                          "size": size[:, 0]})
    pre = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), ["a", "b", "c"]),
        ("color", OneHotEncoder(handle_unknown="ignore"), ["color"]),
        ("size", OneHotEncoder(handle_unknown="ignore"), ["size"]),
    ])
    pipe = fit(make_pipeline(pre, LogisticRegression(max_iter=500)), frame, target)
    from skl2onnx.common.data_types import FloatTensorType, Int64TensorType, StringTensorType
    types = [("a", FloatTensorType([None, 1])), ("b", FloatTensorType([None, 1])),
             ("c", FloatTensorType([None, 1])), ("color", StringTensorType([None, 1])),
             ("size", Int64TensorType([None, 1]))]
    onx = to_onnx(pipe, initial_types=types, target_opset=OPSETS)
    feeds = {"a": num[:, :1], "b": num[:, 1:2], "c": num[:, 2:3], "color": color, "size": size}
    feeds["color"] = feeds["color"].copy()
    feeds["color"][5, 0] = "purple"  # unknown category: all zeros, as handle_unknown="ignore"
    save("onehot_impute_logreg", onx, feeds)

    # LightGBM through onnxmltools.
    lgb_opsets = 15
    for name, model, xs, ys in [
        ("lgbm_multiclass", LGBMClassifier(n_estimators=8, num_leaves=7, min_child_samples=5, verbose=-1), x, y),
        ("lgbm_binary", LGBMClassifier(n_estimators=8, num_leaves=7, min_child_samples=5, verbose=-1), x2, y2),
        ("lgbm_regressor", LGBMRegressor(n_estimators=8, num_leaves=7, min_child_samples=5, verbose=-1), x, reg),
    ]:
        model.fit(xs, ys)
        onx = convert_lightgbm(model, initial_types=[("input", MltFloat([None, 5]))],
                               target_opset=lgb_opsets, zipmap=True)
        save(name, onx, {"input": xt})
    return made
