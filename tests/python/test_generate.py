"""`kiln generate` on the decoder LLMs onnxruntime-genai's builder writes
(scripts/gen-llm-models.sh) against onnxruntime-genai's own generator: greedy search gives the
same tokens (64 new ones from the fp32 model; from the int4 one, whose int8 activations may
round one value the other way after a last-bit difference upstream, the same tokens up to a
place where ORT's top two logits nearly tie, if any); a batch
of prompts of different lengths gives each prompt's tokens as it alone does; a seed repeats a
sampled run and another seed changes it; bad options are refused. Prints
`generate: N passed, M failed`.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import test_llm_models  # noqa: E402

PROMPTS = ["Ta shou mend pla stai. Grea tol ving", "Chou plea"]


def genai_python():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return subprocess.run(["bash", os.path.join(root, "scripts", "genai-tools.sh")], capture_output=True,
                          text=True, check=True).stdout.strip().splitlines()[-1]


OG = r'''
import sys, onnxruntime_genai as og
path, new = sys.argv[1], int(sys.argv[2])
cfg = og.Config(path); cfg.clear_providers()
m = og.Model(cfg); tok = og.Tokenizer(m)
for prompt in sys.argv[3:]:
    ids = tok.encode(prompt)
    p = og.GeneratorParams(m); p.set_search_options(max_length=len(ids) + new, do_sample=False)
    g = og.Generator(m, p); g.append_tokens(ids)
    while not g.is_done():
        g.generate_next_token()
    print(" ".join(map(str, list(g.get_sequence(0))[len(ids):])))
'''


def og_tokens(path, new, prompts):
    r = subprocess.run([genai_python(), "-c", OG, path, str(new), *prompts], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return [list(map(int, line.split())) for line in r.stdout.strip().splitlines()]


def kiln_tokens(path, max_length, prompts, *extra):
    args = ["generate", path, "--ids", "--max-length", str(max_length), "--threads", "2"]
    for p in prompts:
        args += ["--prompt", p]
    out = common.kiln(*args, *extra)
    return [list(map(int, line.split())) for line in out.strip().splitlines()]


def prompt_len(path, prompt):
    """The prompt's token count, by onnxruntime-genai's tokenizer (in its tool venv)."""
    code = "import sys, onnxruntime_genai as og; print(len(og.Tokenizer(og.Model(sys.argv[1])).encode(sys.argv[2])))"
    r = subprocess.run([genai_python(), "-c", code, path, prompt], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return int(r.stdout.strip())


# Logits this close are a tie for the int4 model. At accuracy level 4 both engines quantize
# activations to int8, and a last-bit difference upstream moves a quantized value by a whole
# step: on an AVX2 Zen 3, kiln's and ORT's int4 logits for one prompt position differed by up
# to 0.09-0.14 (median 0-0.017) over four random prompts, so two logits moving opposite ways
# can swap a pair 0.02 apart (seen: 0.0214). The int4 logits themselves are held to the fp32
# model's answer in tests/python/test_llm_models.py; fp32 greedy text must match exactly.
TIE = 0.25


def og_ids(path, prompt):
    code = "import sys, onnxruntime_genai as og; print(*og.Tokenizer(og.Model(sys.argv[1])).encode(sys.argv[2]))"
    r = subprocess.run([genai_python(), "-c", code, path, prompt], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    return list(map(int, r.stdout.split()))


def ort_top_two_gap(path, ids):
    """How far apart ORT's two highest next-token logits are after `ids` (one prompt run)."""
    import json
    import numpy as np
    import onnxruntime as ort
    dec = json.load(open(os.path.join(path, "genai_config.json")))["model"]["decoder"]
    sess = ort.InferenceSession(os.path.join(path, "model.onnx"), providers=["CPUExecutionProvider"])
    x = np.asarray([ids], np.int64)
    feeds = {"input_ids": x, "attention_mask": np.ones_like(x)}
    for i in range(dec["num_hidden_layers"]):
        for kv in ("key", "value"):
            feeds[dec["inputs"][f"past_{kv}_names"] % i] = np.zeros((1, dec["num_key_value_heads"], 0, dec["head_size"]), np.float32)
    top = np.sort(sess.run(["logits"], feeds)[0][0, -1])[::-1]
    return float(top[0] - top[1])


def check(item):
    kind, path = item
    if kind.startswith("greedy"):
        new, prompt = 64, PROMPTS[int(kind[6:] or 0)]
        want = og_tokens(path, new, [prompt])[0]
        got = kiln_tokens(path, prompt_len(path, prompt) + new, [prompt])[0]
        same = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        if "fp32" in path or same == len(want):
            assert len(got) == len(want), f"kiln made {len(got)} tokens, genai {len(want)}"
            assert same == len(want), f"first difference at token {same}: kiln {got[:same + 3]}, genai {want[:same + 3]}"
            return f"{same} of {len(want)} tokens equal to onnxruntime-genai's"
        # int4 at accuracy level 4 quantizes activations to int8, so a last-bit difference in a
        # sum upstream can move a value by a step: the sequences may part where ORT's top two
        # logits nearly tie, and only there.
        gap = ort_top_two_gap(path, og_ids(path, prompt) + want[:same])
        assert gap < TIE, (f"first difference at token {same} (kiln {got[same]}, genai {want[same]}), "
                           f"where ORT's top two logits are {gap:.4f} apart, not a near-tie (< {TIE})")
        return f"{same} of {len(want)} tokens equal to onnxruntime-genai's, then a near-tie (ORT's top two {gap:.4f} apart)"
    if kind == "batch":
        lens = [prompt_len(path, p) for p in PROMPTS]
        m = max(lens) + 24
        batch = kiln_tokens(path, m, PROMPTS)
        alone = [kiln_tokens(path, m, [p])[0] for p in PROMPTS]
        for i, (b, a) in enumerate(zip(batch, alone)):
            assert b == a, f"prompt {i} in a batch: {b[:12]}..., alone: {a[:12]}..."
        return f"batch of {len(PROMPTS)} (prompt lengths {lens}) equals each alone"
    if kind == "seeded":
        m = prompt_len(path, PROMPTS[0]) + 32
        run = lambda seed: kiln_tokens(path, m, PROMPTS[:1], "--seed", str(seed), "--top-k", "40",  # noqa: E731
                                       "--top-p", "0.95", "--temperature", "1.2")[0]
        a, b, c = run(7), run(7), run(8)
        assert a == b, f"seed 7 twice differs: {a[:8]} vs {b[:8]}"
        assert a != c, "seeds 7 and 8 gave the same 32 tokens"
        greedy = kiln_tokens(path, m, PROMPTS[:1])[0]
        assert a != greedy, "sampling gave the greedy tokens"
        return "seed repeats, another seed differs"
    if kind == "json":
        import json
        m = prompt_len(path, PROMPTS[0]) + 8
        ids = kiln_tokens(path, m, PROMPTS[:1])[0]
        out = json.loads(common.kiln("generate", path, "--prompt", PROMPTS[0], "--max-length", str(m), "--json",
                                     "--threads", "2"))
        assert out["tokens"] == ids and isinstance(out["text"], str) and out["text"], out
        assert out["prefill_tokens_per_s"] > 0 and out["decode_tokens_per_s"] > 0, out
        # --repeat: the same tokens again on the loaded model, each earlier run's speeds first.
        r = subprocess.run([common.kiln_bin(), "generate", path, "--prompt", PROMPTS[0], "--max-length", str(m),
                            "--json", "--threads", "2", "--repeat", "3"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        assert json.loads(r.stdout)["tokens"] == ids
        assert [line.split(":")[0] for line in r.stderr.splitlines() if line.startswith("run ")] == ["run 1", "run 2"], r.stderr
        # No prompt: the start token alone.
        empty = json.loads(common.kiln("generate", path, "--max-length", "10", "--json"))
        assert len(empty["tokens"]) == 9 and empty["prefill_tokens"] == 1, empty
        return "--json gives the tokens, text and speeds; --repeat; no prompt starts from the start token"
    if kind == "errors":
        for extra, want in [(["--temperature", "0"], "--temperature"), (["--top-p", "1.5"], "--top-p"),
                            (["--repeat", "0"], "--repeat")]:
            r = subprocess.run([common.kiln_bin(), "generate", path, "--prompt", "x", *extra], capture_output=True, text=True)
            assert r.returncode != 0 and want in r.stderr, f"{extra}: exit {r.returncode}, {r.stderr[-300:]}"
        r = subprocess.run([common.kiln_bin(), "generate", "/nonexistent", "--prompt", "x"], capture_output=True, text=True)
        assert r.returncode != 0 and "genai_config.json" in r.stderr, r.stderr[-300:]
        return "bad options refused"
    raise AssertionError(kind)


def items():
    base = test_llm_models.llm_dir()
    fp32, int4 = os.path.join(base, "llama_fp32"), os.path.join(base, "llama_int4")
    return [("greedy", fp32), ("greedy", int4), ("greedy1", int4), ("batch", fp32), ("batch", int4), ("seeded", fp32), ("json", fp32), ("errors", fp32)]


if __name__ == "__main__":
    common.run_tests("generate", items(), check, workers=1, name=lambda c: f"{c[0]} {os.path.basename(c[1])}",
                     desc=lambda c: f"{c[0]} {os.path.basename(c[1])}")
