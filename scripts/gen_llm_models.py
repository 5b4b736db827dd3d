"""Makes the small decoder LLMs kiln's generation tests run, offline and from random weights:
a Llama-style Hugging Face folder (4 layers, hidden 512, 8 heads, 2 KV heads, vocab 8192,
seeded random initialization) with a byte-level BPE tokenizer trained here by `tokenizers` on
seeded pseudo-text (no hub download) and a chat template, then onnxruntime-genai's model
builder on it, as a user runs it:

    python -m onnxruntime_genai.models.builder -i HF -o OUT -p fp32|int4 -e cpu

Writes OUT_DIR/hf, OUT_DIR/llama_fp32, OUT_DIR/llama_int4 (model.onnx, genai_config.json and
the tokenizer files each) and OUT_DIR/manifest.json. Run by scripts/gen-llm-models.sh in the
genai tool venv (scripts/genai-tools.sh).
"""
import json
import os
import random
import subprocess
import sys

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

VOCAB = 8192
CONFIG = dict(vocab_size=VOCAB, hidden_size=512, intermediate_size=1408, num_hidden_layers=4,
              num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=1024,
              bos_token_id=1, eos_token_id=2, rms_norm_eps=1e-5, rope_theta=10000.0,
              tie_word_embeddings=False)
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")


def corpus(n_lines, seed=0):
    """Seeded pseudo-English: words made of syllables, enough distinct ones for 8k merges."""
    rng = random.Random(seed)
    onsets = ["", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w",
              "st", "tr", "pl", "gr", "sh", "ch", "th"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "y"]
    codas = ["", "n", "r", "s", "t", "l", "m", "nd", "st", "ng"]
    words = sorted({"".join(rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas)
                            for _ in range(rng.randint(1, 3))) for _ in range(30000)})
    weights = [1.0 / (i + 1) for i in range(len(words))]  # Zipf-like, as text is
    lines = []
    for _ in range(n_lines):
        ws = rng.choices(words, weights, k=rng.randint(6, 20))
        lines.append(" ".join(ws).capitalize() + rng.choice([".", ".", "?", "!", ","]))
    return lines


def make_hf(out):
    os.makedirs(out, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus(60000), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    torch.manual_seed(0)
    cfg = LlamaConfig(**CONFIG)
    model = LlamaForCausalLM(cfg)
    # Random init at the library's std gives near-uniform logits; a larger spread makes greedy
    # decoding pick clear winners, so that two runtimes' tokens can be compared exactly.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.08)
    model.save_pretrained(out, safe_serialization=True)
    return tok.get_vocab_size()


def build(hf, out, precision, cache):
    subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", hf, "-o", out,
                    "-p", precision, "-e", "cpu", "-c", cache], check=True)


def main(out_dir):
    hf = os.path.join(out_dir, "hf")
    vocab = make_hf(hf)
    made = {}
    for precision in ("fp32", "int4"):
        out = os.path.join(out_dir, f"llama_{precision}")
        build(hf, out, precision, os.path.join(out_dir, "cache"))
        made[f"llama_{precision}"] = {"precision": precision, "dir": out}
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump({"config": CONFIG, "tokenizer_vocab": vocab, "models": made}, f, indent=1)
    print(f"gen_llm_models: {sorted(made)} in {out_dir} (tokenizer vocab {vocab})")


if __name__ == "__main__":
    main(sys.argv[1])
