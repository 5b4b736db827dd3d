#!/usr/bin/env bash
# Generation speed, kiln against onnxruntime-genai on the same model folders in one run
# (scripts/gen-llm-models.sh: the builder's fp32 and int4 Llama-style models): prefill tokens/s
# for a prompt of 128 tokens and decode tokens/s for 128 new ones, 2 threads; each round a fresh
# process per engine generates twice ("cold": the first generation after loading; "warm": the
# second); best of ROUNDS. Arguments go to scripts/bench_llm.py (--rounds N, --threads N,
# --prompt-tokens N, --new-tokens N).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
llm="$(bash scripts/gen-llm-models.sh)"
og_python="$(bash scripts/genai-tools.sh)"
cargo build --release --quiet --bin kiln
exec "$og_python" scripts/bench_llm.py --models "$llm" --kiln "$root/target/release/kiln" "$@"
