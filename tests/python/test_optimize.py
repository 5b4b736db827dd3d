"""kiln's optimized models, saved and run by ONNX Runtime, and compared with ORT's own.

For every real model and level (basic, extended, all): `kiln optimize --json` writes the model;
ONNX Runtime must load it and give the original model's outputs (|d| <= 1e-4 + 1e-3*|ref|,
graph optimizations off so ORT computes exactly what kiln wrote); at extended and above kiln must
write at least as many com.microsoft:FusedConv as ORT writes at ENABLE_EXTENDED. The ddddocr
detector's Focus block must become one SpaceToDepth with no Slice and no Gather left.
`--portable` output must hold standard ONNX ops only. Models optimized for `--ep wgpu,cpu`
(fusions valid for the GPU too) must load in ORT the same way. Prints `optimize: N passed, M failed`.
"""

import collections
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import test_models  # noqa: E402

LEVELS = ("basic", "extended", "all")


def counts(path):
    return collections.Counter(
        (f"{n.domain}:{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type)
        for n in onnx.load(path, load_external_data=False).graph.node)


def run(path, feeds):
    sess = common.ort_session(path)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def check(item):
    path, level, portable, ep = item
    feeds = common.make_inputs(path)
    want = run(path, feeds)
    with tempfile.TemporaryDirectory(prefix="kiln-opt-") as tmp:
        out = os.path.join(tmp, "opt.onnx")
        args = ["optimize", path, "-o", out, "--level", level, "--ep", ep, "--json"]
        if portable:
            args.append("--portable")
        report = common.kiln_json(*args)
        got = run(out, feeds)
        have = counts(out)
    assert not any(k.startswith("ai.kiln:") for k in have), "kiln-only ops were saved"
    for name, ref in want.items():
        g = got[name]
        assert g.shape == ref.shape, f"{name}: shape {g.shape} vs {ref.shape}"
        diff = np.abs(g.astype(np.float64) - ref.astype(np.float64))
        bad = diff > 1e-4 + 1e-3 * np.abs(ref.astype(np.float64))
        assert not bad.any(), f"{name}: {int(bad.sum())} elements off, max diff {diff.max():.3g}"
    fused = have.get("com.microsoft:FusedConv", 0)
    notes = [f"{report['nodes_before']} -> {report['nodes_after']} nodes"]
    if portable:
        foreign = [k for k in have if ":" in k]
        assert not foreign, f"--portable wrote {foreign}"
    elif level != "basic":
        ort = counts(test_models.ort_extended(path)).get("com.microsoft:FusedConv", 0)
        assert fused >= ort, f"{fused} FusedConv, ORT writes {ort}"
        notes.append(f"FusedConv {fused} (ORT {ort})")
    if "common_det" in path:
        assert have.get("SpaceToDepth", 0) == 1, f"SpaceToDepth {have.get('SpaceToDepth', 0)}"
        assert have.get("Slice", 0) == 0 and have.get("Gather", 0) == 0, \
            f"left Slice {have.get('Slice', 0)}, Gather {have.get('Gather', 0)}"
        notes.append("Focus -> 1 SpaceToDepth, no Slice, no Gather")
    return ", ".join(notes)


if __name__ == "__main__":
    common.kiln_bin()
    common.ensure_data()
    items = [(p, lvl, False, "cpu") for p in common.real_models() for lvl in LEVELS]
    items += [(p, "all", True, "cpu") for p in common.real_models()]
    items += [(p, "all", False, "wgpu,cpu") for p in common.real_models()]

    def label(it):
        return (f"--level {it[1]}{' --portable' if it[2] else ''}"
                f"{'' if it[3] == 'cpu' else ' --ep ' + it[3]}")
    common.run_tests("optimize", items, check,
                     name=lambda it: f"{os.path.basename(it[0])} {label(it)}",
                     desc=lambda it: f"{it[0]} {label(it)}")
