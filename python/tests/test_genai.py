"""kiln.genai against onnxruntime-genai (its own venv, scripts/genai-tools.sh) on the builder's
models (scripts/gen-llm-models.sh): the same script gives the same tokens under
`kiln.install_as_onnxruntime_genai()`, and the tokenizer, its stream and the chat template
answer as onnxruntime-genai's do."""
import json
import subprocess
import sys

import numpy as np
import pytest

import kiln
import kiln.genai as kg
from conftest import ROOT


def _script_out(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.strip()


@pytest.fixture(scope="module")
def llm():
    return _script_out(["bash", str(ROOT / "scripts" / "gen-llm-models.sh")]).splitlines()[-1]


@pytest.fixture(scope="module")
def og_python():
    return _script_out(["bash", str(ROOT / "scripts" / "genai-tools.sh")]).splitlines()[-1]


# Written for onnxruntime_genai; run as is by it and by kiln (which installs itself first).
SCRIPT = r'''
import json, sys
import onnxruntime_genai as og
path, prompts = sys.argv[1], json.loads(sys.argv[2])
model = og.Model(path)
tok = og.Tokenizer(model)
out = {"tokens": [], "streamed": [], "decoded": [], "encoded": [], "chat": None}
for p in prompts:
    ids = tok.encode(p)
    out["encoded"].append([int(t) for t in ids])
    params = og.GeneratorParams(model)
    params.set_search_options(max_length=len(ids) + 48, do_sample=False)
    gen = og.Generator(model, params)
    gen.append_tokens(ids)
    stream = tok.create_stream()
    text = ""
    while not gen.is_done():
        gen.generate_next_token()
        text += stream.decode(gen.get_next_tokens()[0])
    seq = gen.get_sequence(0)
    new = [int(t) for t in seq[len(ids):]]
    out["tokens"].append(new)
    out["streamed"].append(text)
    out["decoded"].append(tok.decode(new))
msgs = json.dumps([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Grea tol"}])
out["chat"] = tok.apply_chat_template(msgs, add_generation_prompt=True)
print(json.dumps(out))
'''

PROMPTS = ["Ta shou mend pla stai. Grea tol ving", "Chou plea", "ünïcödé ✓ text"]


def test_onnxruntime_genai_script_runs_unchanged(llm, og_python):
    path = f"{llm}/llama_fp32"
    want = json.loads(_script_out([og_python, "-c", SCRIPT, path, json.dumps(PROMPTS)]))
    shim = "import kiln; kiln.install_as_onnxruntime_genai()\n" + SCRIPT
    got = json.loads(_script_out([sys.executable, "-c", shim, path, json.dumps(PROMPTS)]))
    assert got["encoded"] == want["encoded"]
    assert got["tokens"] == want["tokens"]
    for g, w, gs, ws in zip(got["decoded"], want["decoded"], got["streamed"], want["streamed"]):
        if "\ufffd" in w:
            # A byte-level token that is no valid UTF-8 where it stands: onnxruntime-genai's
            # decode ends there; kiln's (the tokenizers crate's) writes U+FFFD and goes on.
            assert g.startswith(w), (g, w)
        else:
            assert g == w and gs == ws, (g, w, gs, ws)
            assert gs == g
    assert got["chat"] == want["chat"]


def test_batch_equals_each_alone(llm):
    m = kg.Model(f"{llm}/llama_fp32")
    tok = kg.Tokenizer(m)

    def run(ids):
        p = kg.GeneratorParams(m)
        p.set_search_options(max_length=40, do_sample=False)
        g = kg.Generator(m, p)
        g.append_tokens(ids)
        while not g.is_done():
            g.generate_next_token()
        return g

    batch = run(tok.encode_batch(PROMPTS[:2]))
    for i, prompt in enumerate(PROMPTS[:2]):
        alone = run(tok.encode(prompt)).get_sequence(0)
        assert list(batch.get_sequence(i)) == list(alone)
    assert batch.get_next_tokens().shape == (2,)


def test_sampling_seeds_and_bad_options(llm):
    m = kg.Model(kg.Config(f"{llm}/llama_fp32"))
    ids = kg.Tokenizer(m).encode(PROMPTS[0])

    def sample(seed):
        p = kg.GeneratorParams(m)
        p.set_search_options(max_length=len(ids) + 24, do_sample=True, top_k=40, temperature=1.3, random_seed=seed)
        g = kg.Generator(m, p)
        g.append_tokens(ids)
        while not g.is_done():
            g.generate_next_token()
        return list(g.get_sequence(0))

    assert sample(3) == sample(3)
    assert sample(3) != sample(4)
    p = kg.GeneratorParams(m)
    with pytest.raises(RuntimeError, match="num_beams"):
        p.set_search_options(num_beams=4)
    with pytest.raises(RuntimeError, match="unknown search option"):
        p.set_search_options(beam_width=4)
    p.set_search_options(temperature=-1.0, do_sample=True)
    with pytest.raises(kiln.InvalidArgument, match="temperature"):
        kg.Generator(m, p)
    g = kg.Generator(m, kg.GeneratorParams(m))
    with pytest.raises(kiln.KilnError, match="before append_tokens"):
        g.generate_next_token()
    with pytest.raises(ValueError):
        g.append_tokens(np.asarray([[[1]]]))
    with pytest.raises(kiln.KilnError, match="nonexistent"):
        kg.Model("/nonexistent/model")
