"""Python-call overhead of one `run` on a tiny model (an Add of two 1x4 float tensors): kiln's
InferenceSession next to onnxruntime's, same process, interleaved rounds. Prints the median
microseconds per call of each and their ratio.

    ~/.cache/kiln/pkg-venv/bin/python scripts/bench_python_overhead.py [--calls N] [--rounds R]

(the virtualenv scripts/python-pkg.sh makes, with kiln installed).
"""
import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

import kiln


def tiny_model():
    g = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])], "tiny",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1, 4]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    return helper.make_model(g, ir_version=8, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def per_call(sess, feeds, calls):
    start = time.perf_counter()
    for _ in range(calls):
        sess.run(None, feeds)
    return (time.perf_counter() - start) / calls * 1e6


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=7)
    a = p.parse_args()
    m = tiny_model()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    ks = kiln.SessionOptions()
    ks.intra_op_num_threads = 1
    sessions = {"onnxruntime": ort.InferenceSession(m, so, providers=["CPUExecutionProvider"]),
                "kiln": kiln.InferenceSession(m, ks)}
    feeds = {"a": np.ones((1, 4), np.float32), "b": np.ones((1, 4), np.float32)}
    times = {k: [] for k in sessions}
    for s in sessions.values():
        per_call(s, feeds, 1000)
    for _ in range(a.rounds):
        for name, s in sessions.items():
            times[name].append(per_call(s, feeds, a.calls))
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"{k:12s} {v:7.2f} us per run() (median of {a.rounds} rounds of {a.calls} calls)")
    print(f"kiln/onnxruntime {med['kiln'] / med['onnxruntime']:.2f}")


if __name__ == "__main__":
    main()
