"""`--precision bf16` (matrix products in bfloat16 with f32 sums) on the scripted transformers:
BERT as exported and as ORT's optimizer writes it (MatMul and com.microsoft Attention's
projections), each run once in f32 and once in bfloat16 on the same inputs.

The bound: every output within 2% of the f32 output's largest magnitude, and cosine similarity
at least 0.9999 (measured here on the BERT pair: 0.15% and 0.999999); the outputs must also
differ from f32 somewhere, so that a session that ignored the option would fail. On a CPU
without AVX512-BF16 the option must be refused by name; that case prints NOT RUN for the
accuracy checks. Prints `precision: N passed, M failed`.
"""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import numpy as np  # noqa: E402

MODELS = ["bert_minilm", "bert_minilm.ortopt"]


def generated():
    return common.made_by("gen-models.sh")


def has_bf16():
    with open("/proc/cpuinfo") as f:
        return " avx512_bf16" in f.read()


def run(path, feeds, precision, tmp):
    args = ["run", path, "--threads", "2", "--precision", precision, "--out", os.path.join(tmp, precision)]
    for name, v in feeds.items():
        f = os.path.join(tmp, f"{name}.npy")
        np.save(f, v)
        args += ["--input", f"{name}={f}"]
    common.kiln(*args)
    d = os.path.join(tmp, precision)
    return {f[:-4]: np.load(os.path.join(d, f)) for f in sorted(os.listdir(d))}


def check(item):
    folder, name = item
    path = os.path.join(folder, f"{name}.onnx")
    feeds = dict(np.load(os.path.join(folder, f"{name}.npz")))
    with tempfile.TemporaryDirectory() as tmp:
        if not has_bf16():
            try:
                run(path, feeds, "bf16", tmp)
            except AssertionError as e:
                assert "AVX512-BF16" in str(e), str(e)
                return "NOT RUN: this CPU lacks AVX512-BF16 (the option was refused by name)"
            raise AssertionError("--precision bf16 ran on a CPU without AVX512-BF16")
        want = run(path, feeds, "f32", tmp)
        got = run(path, feeds, "bf16", tmp)
    assert sorted(want) == sorted(got), (sorted(want), sorted(got))
    notes = []
    for k in want:
        w, g = want[k].astype(np.float64), got[k].astype(np.float64)
        assert w.shape == g.shape, (k, w.shape, g.shape)
        rel = np.abs(g - w).max() / max(np.abs(w).max(), 1e-30)
        cos = (w * g).sum() / (np.linalg.norm(w) * np.linalg.norm(g))
        assert rel <= 2e-2 and cos >= 0.9999, f"{k}: max error {rel:.2e} of the largest value, cosine {cos:.7f}"
        assert rel > 0, f"{k}: identical to f32: bfloat16 did not run"
        notes.append(f"{k} max error {rel:.1e} of max, cosine {cos:.7f}")
    return "; ".join(notes)


if __name__ == "__main__":
    folder = generated()
    common.run_tests("precision", [(folder, m) for m in MODELS], check, name=lambda it: it[1])
