"""Models made offline by scripts (scripts/gen-models.sh: random weights, no hub) run in kiln as in
ONNX Runtime (CPU, optimizer off), at --level disabled and all:

- transformers exported by torch.onnx.export (opset 17, dynamic batch and sequence): BERT in
  all-MiniLM-L6-v2's shape, a GPT-2 decoder and a ViT encoder, each also as
  onnxruntime.transformers.optimizer writes it (com.microsoft Attention, EmbedLayerNormalization,
  SkipLayerNormalization, BiasGelu, FastGelu); BERT also at a second batch/sequence size;
- float16 models (ORT's float16 conversion of the optimized BERT, and a CNN + LSTM converted by
  onnxconverter-common): within f16 tolerance of ORT, and no further from the f32 twin than
  twice ORT's own f16 error (plus one f16 step);
- the exported BERT and ViT after `kiln optimize --level all` (GELU and its bias fused into
  com.microsoft:BiasGelu), loaded by ORT: the original's outputs;
- scikit-learn pipelines (skl2onnx) and LightGBM models (onnxmltools): labels exact, scores and
  ZipMap's sequences of maps within 1e-4 + 1e-3·|ort|.

The tolerance is 1e-4 + 1e-3·|ort| (f16: 1e-2 + 1e-2·|ort|). Prints `scripted-models: N passed,
M failed`.
"""
import collections
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402

# The fused ops ORT's transformer optimizer must have written, so that the test covers them.
FUSED = {
    "bert_minilm.ortopt": {"Attention": 6, "EmbedLayerNormalization": 1, "SkipLayerNormalization": 12,
                           "BiasGelu": 6},
    "vit_small.ortopt": {"Attention": 2, "SkipLayerNormalization": 4, "BiasGelu": 2},
    "gpt2_small.ortopt": {"SkipLayerNormalization": 4, "FastGelu": 2},
}
F16_TWIN = {"bert_f16": "bert_minilm.ortopt", "cnn_lstm_f16": "cnn_lstm"}
# The contrib ops `kiln optimize --level all` must write into the exported transformers; the saved
# model must load in ORT and give the original's outputs.
KILN_FUSED = {"bert_minilm": {"com.microsoft:BiasGelu": 6}, "vit_small": {"com.microsoft:BiasGelu": 2}}


def generated():
    return common.made_by("gen-models.sh")


def cases(folder):
    with open(os.path.join(folder, "manifest.json")) as f:
        manifest = json.load(f)
    for name, fused in sorted(FUSED.items()):
        for op, n in fused.items():
            assert manifest[name].get(op, 0) >= n, f"{name}: ORT's optimizer wrote {manifest[name]}"
    out = []
    for name in sorted(manifest):
        feeds = dict(np.load(os.path.join(folder, f"{name}.npz")))
        out.append((name, feeds))
        if "input_ids" in feeds and name.startswith("bert"):
            # The dynamic axes: one row, a shorter sequence.
            out.append((f"{name}@1x7", {k: v[1:, :7] for k, v in feeds.items()}))
    return out


def main():
    folder = generated()
    items = cases(folder)
    # `--ep wgpu,cpu`: the same models through the GPU provider (lavapipe without a GPU).
    ep = sys.argv[sys.argv.index("--ep") + 1] if "--ep" in sys.argv else "cpu"

    def check(item):
        label, feeds = item
        name = label.split("@")[0]
        path = os.path.join(folder, f"{name}.onnx")
        sess = common.ort_session(path)
        names = [o.name for o in sess.get_outputs()]
        want = dict(zip(names, sess.run(names, feeds)))
        f16 = name in F16_TWIN
        atol, rtol = (1e-2, 1e-2) if f16 else (1e-4, 1e-3)
        worst = 0.0
        for level in ("disabled", "all"):
            got = common.kiln_run_model(path, feeds, level=level, ep=ep)
            assert sorted(got) == sorted(want), f"outputs {sorted(got)} vs ORT {sorted(want)}"
            for n in names:
                what = f"{n} (--level {level})"
                if isinstance(want[n], list):
                    worst = max(worst, common.assert_maps_close(what, got[n], want[n], atol, rtol))
                else:
                    worst = max(worst, common.assert_close(what, got[n], want[n], atol, rtol))
                if f16 and level == "disabled":
                    twin = common.ort_session(os.path.join(folder, f"{F16_TWIN[name]}.onnx"))
                    ref = twin.run([n], feeds)[0].astype(np.float64)
                    ort_err = np.abs(want[n] - ref).max()
                    kiln_err = np.abs(got[n] - ref).max()
                    step = 2.0 ** -10 * max(1.0, np.abs(ref).max())
                    assert kiln_err <= 2 * ort_err + step, (
                        f"{n}: kiln's f16 error {kiln_err:.3g} vs f32, ORT's {ort_err:.3g}")
        if name in KILN_FUSED and "@" not in label:
            with tempfile.TemporaryDirectory(prefix="kiln-scripted-") as tmp:
                out = os.path.join(tmp, "opt.onnx")
                common.kiln_json("optimize", path, "-o", out, "--level", "all", "--json")
                have = collections.Counter(
                    f"{n.domain}:{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type
                    for n in onnx.load(out).graph.node)
                for op, count in KILN_FUSED[name].items():
                    assert have[op] >= count, f"kiln optimize wrote {have[op]} {op}, want {count}"
                saved = common.ort_session(out)
                got = dict(zip(names, saved.run(names, feeds)))
                for n in names:
                    worst = max(worst, common.assert_close(f"{n} (saved, in ORT)", got[n], want[n],
                                                           atol, rtol))
        return f"worst {worst:.3f} of tolerance"

    common.run_tests("scripted-models" if ep == "cpu" else f"scripted-models ({ep})", items, check,
                     name=lambda i: i[0], desc=lambda i: i[0])


if __name__ == "__main__":
    main()
