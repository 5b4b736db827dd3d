"""Prefill and decode tokens/s of `kiln generate` and of onnxruntime-genai's generator on the same
model folders, alternating engines round by round so both see the same machine phases. Each
round starts a fresh process for each engine, loads the model and generates twice: "cold" is
the first generation (the prefill is the session's first run), "warm" the second. Reports
each engine's best round of each and kiln's ratios. Run by scripts/bench-llm.sh in the onnxruntime-genai
venv. The prompt is text that the model's tokenizer turns into exactly --prompt-tokens tokens;
min_length = max_length keeps EOS from ending a run early, so both make --new-tokens tokens."""
import argparse
import json
import os
import re
import subprocess
import sys
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
    """kiln's (cold, warm) figures: the first generation after loading, then a second one."""
    r = subprocess.run([kiln, "generate", path, "--prompt", text, "--ids", "--greedy", "--threads",
                        str(threads), "--max-length", str(plen + new), "--min-length", str(plen + new),
                        "--repeat", "2"], capture_output=True, text=True, check=True)
    runs = re.findall(r"prefill: (\d+) tokens at ([\d.]+) tokens/s; decode: (\d+) tokens at ([\d.]+)", r.stderr)
    if len(runs) != 2 or any(int(m[0]) != plen for m in runs):
        raise SystemExit(f"bench_llm: unexpected kiln output: {r.stderr[-500:]}")
    return [(float(m[1]), float(m[3]), int(m[2])) for m in runs]


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--og-once":
        path, text, new, threads = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        model = og_model(path, threads)
        tok = og.Tokenizer(model)
        print(json.dumps([og_round(model, tok, text, new, threads) for _ in range(2)]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", required=True)
    ap.add_argument("--kiln", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=128)
    a = ap.parse_args()
    rows = {"cold": [], "warm": []}
    for name in sorted(os.listdir(a.models)):
        path = os.path.join(a.models, name)
        if not os.path.isfile(os.path.join(path, "genai_config.json")):
            continue
        text = prompt_of(og.Tokenizer(og_model(path, a.threads)), a.prompt_tokens)
        best = {(e, w): [0.0, 0.0] for e in ("kiln", "og") for w in ("cold", "warm")}
        for _ in range(a.rounds):
            k = kiln_round(a.kiln, path, text, a.prompt_tokens, a.new_tokens, a.threads)
            # onnxruntime-genai in a process of its own each round too, as `kiln generate` runs.
            r = subprocess.run([sys.executable, __file__, "--og-once", path, text, str(a.new_tokens),
                                str(a.threads)], capture_output=True, text=True, check=True)
            o = json.loads(r.stdout)
            for engine, runs in (("kiln", k), ("og", o)):
                for when, (p, d, n) in zip(("cold", "warm"), runs):
                    if n != a.new_tokens:
                        raise SystemExit(f"bench_llm: {engine} made {n} tokens, not {a.new_tokens}")
                    b = best[(engine, when)]
                    best[(engine, when)] = [max(b[0], p), max(b[1], d)]
        for when in ("cold", "warm"):
            (kp, kd), (op, od) = best[("kiln", when)], best[("og", when)]
            rows[when].append(f"| {name} | {kp:.0f} | {op:.0f} | {kp / op:.2f} | {kd:.0f} | {od:.0f} | {kd / od:.2f} |")
    for when, what in (("cold", "the first generation after loading, in a fresh process"),
                       ("warm", "a second generation on the loaded model")):
        print(f"\n{when}: {what}\n")
        print(f"| model | prefill {a.prompt_tokens} tok/s: kiln | onnxruntime-genai | kiln/og "
              f"| decode {a.new_tokens} tok/s: kiln | onnxruntime-genai | kiln/og |")
        print("|---|---|---|---|---|---|---|")
        for row in rows[when]:
            print(row, flush=True)


if __name__ == "__main__":
    main()
