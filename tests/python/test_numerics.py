"""Precision next to the speed work: normalizations over rows far from zero against their
spread (offset 10^4, deviations near 1: the mean's rounding in float32 shifts every output),
kiln at least as near the float64 answer as ONNX Runtime. LayerNormalization,
SimplifiedLayerNormalization, SkipLayerNormalization, SkipSimplifiedLayerNormalization,
GroupNormalization and InstanceNormalization, at `--level disabled` and `all`. Prints
`numerics: N passed, M failed`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import numpy as np  # noqa: E402
from onnx import helper  # noqa: E402

MS = "com.microsoft"
OFFSET = 1e4


def exact(name, feeds, eps):
    """The float64 answer on the float32 inputs."""
    x = feeds["x"].astype(np.float64)
    if "skip" in feeds:
        x = x + feeds["skip"].astype(np.float64)
    if name in ("GroupNormalization", "InstanceNormalization"):
        n, c = x.shape[:2]
        groups = feeds.get("groups", c)
        g = x.reshape(n, groups, -1)
        mean = g.mean(-1, keepdims=True)
        var = ((g - mean) ** 2).mean(-1, keepdims=True)
        y = ((g - mean) / np.sqrt(var + eps)).reshape(x.shape)
        shape = (1, c) + (1,) * (x.ndim - 2)
        return y * feeds["scale"].astype(np.float64).reshape(shape) + feeds["bias"].astype(np.float64).reshape(shape)
    simplified = "Simplified" in name
    mean = 0.0 if simplified else x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps) * feeds["gamma"].astype(np.float64)
    if "beta" in feeds:
        y = y + feeds["beta"].astype(np.float64)
    return y


def cases():
    rng = np.random.default_rng(3)
    out = []
    h = 384
    x = (OFFSET + rng.standard_normal((4, 16, h))).astype(np.float32)
    skip = rng.standard_normal((4, 16, h)).astype(np.float32)
    gamma = (1.0 + 0.1 * rng.standard_normal(h)).astype(np.float32)
    beta = (0.1 * rng.standard_normal(h)).astype(np.float32)
    eps = 1e-5
    for name, domain, ins in [
        ("LayerNormalization", "", ["x", "gamma", "beta"]),
        ("SimplifiedLayerNormalization", "", ["x", "gamma"]),
        ("SkipLayerNormalization", MS, ["x", "skip", "gamma", "beta"]),
        ("SkipSimplifiedLayerNormalization", MS, ["x", "skip", "gamma"]),
    ]:
        feeds = {k: v for k, v in dict(x=x, skip=skip, gamma=gamma, beta=beta).items() if k in ins}
        attrs = {"epsilon": eps}
        if domain == "":
            attrs["axis"] = -1
        node = helper.make_node(name, ins, ["y"], domain=domain, **attrs)
        m = common.one_node_model(node, feeds, {"": 17, MS: 1})
        out.append((name, m, feeds, exact(name, feeds, eps)))
    xi = (OFFSET + rng.standard_normal((2, 6, 20, 20))).astype(np.float32)
    scale = (1.0 + 0.1 * rng.standard_normal(6)).astype(np.float32)
    bias = (0.1 * rng.standard_normal(6)).astype(np.float32)
    feeds = {"x": xi, "scale": scale, "bias": bias}
    node = helper.make_node("InstanceNormalization", ["x", "scale", "bias"], ["y"], epsilon=eps)
    out.append(("InstanceNormalization", common.one_node_model(node, feeds, {"": 17}), feeds,
                exact("InstanceNormalization", feeds, eps)))
    # GroupNormalization (opset 21: scale and bias per channel), 3 groups of 2 channels.
    node = helper.make_node("GroupNormalization", ["x", "scale", "bias"], ["y"], epsilon=eps, num_groups=3)
    want = exact("GroupNormalization", dict(feeds, groups=3), eps)
    out.append(("GroupNormalization", common.one_node_model(node, feeds, {"": 21}), feeds, want))
    return out


def check(case):
    name, m, feeds, want = case
    ort = common.ort_session(m).run(None, feeds)[0].astype(np.float64)
    # ORT's GroupNormalization (a function of E[x^2] - E[x]^2) turns negative variances of
    # such rows into NaN: as far from the answer as it gets.
    ort_err = float("inf") if np.isnan(ort).any() else float(np.abs(ort - want).max())
    notes = []
    for level in ("disabled", "all"):
        got = common.kiln_run_model(m, feeds, level=level)["y"].astype(np.float64)
        assert not np.isnan(got).any(), f"{name} --level {level}: NaN in kiln's output"
        err = float(np.abs(got - want).max())
        assert err <= ort_err + 1e-6, (
            f"{name} --level {level}: kiln {err:.3g} from the float64 answer, ORT {ort_err:.3g}")
        notes.append(f"{level} {err:.2g}")
    return f"max error kiln {', '.join(notes)}; ORT {ort_err:.2g}"


if __name__ == "__main__":
    common.ensure_data()
    common.run_tests("numerics", cases(), check, name=lambda c: c[0], desc=lambda c: c[0])
