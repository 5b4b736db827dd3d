"""Checks `kiln inspect MODEL --json` against the onnx Python package.

For every real model in the cache and every node conformance case, compares kiln's reported
opsets, graph inputs (excluding initializers), graph outputs (name, dtype string, shape list),
top-level node count and per-op counts with what onnx reads from the same file. Run as
`python tests/python/test_inspect.py`; prints each mismatch with the model path and key, then
`inspect: N passed, M failed`.
"""

import collections
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import onnx  # noqa: E402


def value_entry(vi):
    return {"name": vi.name, "dtype": common.type_string(vi.type), "shape": common.shape_list(vi.type)}


def expected(model):
    ops = collections.Counter(
        n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}:{n.op_type}" for n in model.graph.node)
    return {
        "opsets": {("" if o.domain == "ai.onnx" else o.domain): o.version for o in model.opset_import},
        "inputs": [value_entry(vi) for vi in common.graph_inputs(model)],
        "outputs": [value_entry(vi) for vi in model.graph.output],
        "nodes": len(model.graph.node),
        "op_counts": dict(ops),
    }


def check(path):
    want = expected(onnx.load(path, load_external_data=False))
    got = common.kiln_json("inspect", path, "--json")
    bad = []
    for key, value in want.items():
        if key not in got:
            bad.append(f"{key}: missing")
        elif got[key] != value:
            bad.append(f"{key}: kiln={got[key]!r:.800} onnx={value!r:.800}")
    assert not bad, "\n    ".join(bad)


if __name__ == "__main__":
    common.kiln_bin()
    common.ensure_data()
    common.run_tests("inspect", common.real_models() + common.conformance_cases(), check, workers=2)
