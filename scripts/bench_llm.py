"""Prefill and decode tokens/s of `kiln generate` and of onnxruntime-genai's generator on the same
model folders, alternating engines round by round so both see the same machine phases, each
round on a freshly loaded model for both (the prefill is a session's first run); reports each
engine's best round and kiln's ratio. Run by scripts/bench-llm.sh in the onnxruntime-genai
venv. The prompt is text that the model's tokenizer turns into exactly --prompt-tokens tokens;
min_length = max_length keeps EOS from ending a run early, so both make --new-tokens tokens."""
import argparse
import json
import os
import re
import subprocess
import tempfile
import time

import onnxruntime_genai as og

CORPUS = ("the quick brown fox jumps over the lazy dog while seven wise owls watch from an old oak "
          "tree and count the stars that rise above the quiet river near the sleeping town ")


def prompt_of(tok, n):
    """Text of exactly n tokens (the tokenizer's BOS included when it adds one)."""
    words = (CORPUS * (n // 8 + 4)).split()
    for k in range(n, 0, -1):
        text = " ".join(words[:k])
        m = len(tok.encode(text))
        if m == n:
            return text
        if m < n:
            break
    raise SystemExit(f"bench_llm: no prompt of exactly {n} tokens from the corpus")


def og_model(path, threads):
    """onnxruntime-genai's model on `threads` intra-op threads: its config names them, so a
    folder of links to the model's files gets a config that says so."""
    tmp = tempfile.mkdtemp(prefix="bench-llm-")
    for f in os.listdir(path):
        if f != "genai_config.json":
            os.symlink(os.path.join(path, f), os.path.join(tmp, f))
    with open(os.path.join(path, "genai_config.json")) as f:
        cfg = json.load(f)
    cfg["model"]["decoder"].setdefault("session_options", {})["intra_op_num_threads"] = threads
    with open(os.path.join(tmp, "genai_config.json"), "w") as f:
        json.dump(cfg, f)
    c = og.Config(tmp)
    c.clear_providers()
    return og.Model(c)


def og_round(model, tok, text, new, threads):
    ids = tok.encode(text)
    p = og.GeneratorParams(model)
    p.set_search_options(max_length=len(ids) + new, min_length=len(ids) + new, do_sample=False)
    g = og.Generator(model, p)
    t0 = time.perf_counter()
    g.append_tokens(ids)
    t1 = time.perf_counter()
    made = 0
    while not g.is_done():
        g.generate_next_token()
        made += 1
    t2 = time.perf_counter()
    return len(ids) / (t1 - t0), made / (t2 - t1), made


def kiln_round(kiln, path, text, plen, new, threads):
    r = subprocess.run([kiln, "generate", path, "--prompt", text, "--ids", "--greedy", "--threads",
                        str(threads), "--max-length", str(plen + new), "--min-length", str(plen + new)],
                       capture_output=True, text=True, check=True)
    m = re.search(r"prefill: (\d+) tokens at ([\d.]+) tokens/s; decode: (\d+) tokens at ([\d.]+)", r.stderr)
    if not m or int(m.group(1)) != plen:
        raise SystemExit(f"bench_llm: unexpected kiln output: {r.stderr[-500:]}")
    return float(m.group(2)), float(m.group(4)), int(m.group(3))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", required=True)
    ap.add_argument("--kiln", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=128)
    a = ap.parse_args()
    print(f"| model | prefill {a.prompt_tokens} tok/s: kiln | onnxruntime-genai | kiln/og "
          f"| decode {a.new_tokens} tok/s: kiln | onnxruntime-genai | kiln/og |")
    print("|---|---|---|---|---|---|---|")
    for name in sorted(os.listdir(a.models)):
        path = os.path.join(a.models, name)
        if not os.path.isfile(os.path.join(path, "genai_config.json")):
            continue
        text = prompt_of(og.Tokenizer(og_model(path, a.threads)), a.prompt_tokens)
        best = {"kiln": [0.0, 0.0], "og": [0.0, 0.0]}
        for _ in range(a.rounds):
            kp, kd, kn = kiln_round(a.kiln, path, text, a.prompt_tokens, a.new_tokens, a.threads)
            # A model loaded afresh each round, as `kiln generate` loads it: both prefills are
            # a session's first run.
            model = og_model(path, a.threads)
            op, od, on = og_round(model, og.Tokenizer(model), text, a.new_tokens, a.threads)
            del model
            if kn != a.new_tokens or on != a.new_tokens:
                raise SystemExit(f"bench_llm: made {kn} (kiln) and {on} (og) tokens, not {a.new_tokens}")
            best["kiln"] = [max(best["kiln"][0], kp), max(best["kiln"][1], kd)]
            best["og"] = [max(best["og"][0], op), max(best["og"][1], od)]
        (kp, kd), (op, od) = best["kiln"], best["og"]
        print(f"| {name} | {kp:.0f} | {op:.0f} | {kp / op:.2f} | {kd:.0f} | {od:.0f} | {kd / od:.2f} |", flush=True)


if __name__ == "__main__":
    main()
