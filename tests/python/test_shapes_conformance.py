"""kiln's shape inference against the ONNX node conformance suite's expected outputs.

For every case whose op kiln has an inference rule for: the model is stripped of everything it
declares about its outputs and intermediate values (so only inference can supply them), then
`kiln inspect stripped.onnx --json --shapes` must succeed (no inference error on a valid model),
and every graph output whose inferred type is fully known must have the dtype and shape of the
case's expected `output_*.pb`. Outputs kiln
leaves partly unknown are counted, not failed. Prints `shapes-conformance: N passed, M failed`.
"""

import glob
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import onnx  # noqa: E402

partly_unknown = []
checked = []


def expected_output(path):
    t = onnx.TensorProto()
    try:
        t.ParseFromString(open(path, "rb").read())
    except Exception:
        return None
    if not t.data_type:
        return None  # a sequence or optional output
    return common.DTYPES[t.data_type - 1], list(t.dims)


def check(model_path):
    case = os.path.dirname(model_path)
    m = onnx.load(model_path)
    del m.graph.value_info[:]
    for o in m.graph.output:
        o.ClearField("type")
    with tempfile.TemporaryDirectory(prefix="kiln-sc-") as tmp:
        stripped = os.path.join(tmp, "model.onnx")
        onnx.save(m, stripped)
        info = common.kiln_json("inspect", stripped, "--json", "--shapes")
    if info["ops_without_inference"]:
        return None
    values = {v["name"]: v for v in info["values"]}
    files = sorted(glob.glob(os.path.join(case, "test_data_set_0", "output_*.pb")),
                   key=lambda p: int(p.rsplit("_", 1)[1].split(".")[0]))
    for out, f in zip(info["outputs"], files):
        want = expected_output(f)
        got = values.get(out["name"])
        if want is None or got is None:
            continue
        shape = got["shape"]
        if shape is None or any(not isinstance(d, int) for d in shape) or got["dtype"] == "unknown":
            partly_unknown.append(f"{os.path.basename(case)}:{out['name']}")
            continue
        assert got["dtype"] == want[0], f"output {out['name']}: dtype {got['dtype']}, expected {want[0]}"
        assert shape == want[1], f"output {out['name']}: shape {shape}, expected {want[1]}"
        checked.append(out["name"])
    return None


if __name__ == "__main__":
    common.kiln_bin()
    common.ensure_data()
    import atexit
    if os.environ.get("KILN_SHOW_UNKNOWN"):
        atexit.register(lambda: print("partly unknown:", " ".join(partly_unknown)))
    atexit.register(lambda: print(f"shapes-conformance: {len(checked)} outputs checked, "
                                  f"{len(partly_unknown)} left partly unknown"))
    common.run_tests("shapes-conformance", common.conformance_cases(), check, workers=2,
                     name=lambda p: os.path.basename(os.path.dirname(p)),
                     desc=lambda p: os.path.basename(os.path.dirname(p)))
