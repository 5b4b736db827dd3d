#!/usr/bin/env python3
"""Side-by-side latency of kiln, ONNX Runtime (ENABLE_ALL and ENABLE_BASIC) and tract on the
benchmark models, in one run on one machine.

Every runtime gets the same input and the same thread count. Rounds are interleaved (kiln, ORT
all, ORT basic, tract, then again), so a noisy neighbour slows all of them alike; each round
times `--iters` runs after a warm-up, and the figure reported per runtime is the median of its
per-round medians. kiln runs through `kiln bench --json` (one process per round; only the timed
runs count, not session creation).
"""
import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("KILN_CACHE", os.path.join(ROOT, ".cache"))
MODELS_DIR = os.path.join(CACHE, "models")

# name, file, input name, input shape
MODELS = [
    ("resnet50", "light_resnet50.onnx", "gpu_0/data_0", [1, 3, 224, 224]),
    ("inception_v2", "light_inception_v2.onnx", "data_0", [1, 3, 224, 224]),
    ("densenet121", "light_densenet121.onnx", "data_0", [1, 3, 224, 224]),
    ("squeezenet", "light_squeezenet.onnx", "data_0", [1, 3, 224, 224]),
    ("yolov8n", "yolov8n_320n.onnx", "images", [1, 3, 320, 320]),
    ("ddddocr", "ddddocr_common_det.onnx", "images", [1, 3, 416, 416]),
]


def machine_name():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
            f.seek(0)
            flags = next((l for l in f if l.startswith("flags")), "")
        isa = [x for x in ("avx512f", "avx2", "fma", "amx_tile") if f" {x}" in flags]
    except OSError:
        isa = []
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.machine()}, {'/'.join(isa)}"


def median_of(times):
    return statistics.median(times) * 1e3


class Ort:
    def __init__(self, path, level, threads):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = level
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])

    def round(self, name, x, warmup, iters):
        feed = {name: x}
        for _ in range(warmup):
            self.s.run(None, feed)
        t = []
        for _ in range(iters):
            a = time.perf_counter()
            self.s.run(None, feed)
            t.append(time.perf_counter() - a)
        return median_of(t)


class Tract:
    def __init__(self, path, shape, tmp):
        import onnx
        import tract

        # tract rejects YOLOv8n's symbolic value_info once the input is fixed; the shapes it
        # needs it infers itself, so it gets a copy without them.
        model = onnx.load(path)
        del model.graph.value_info[:]
        for o in model.graph.output:
            o.type.tensor_type.ClearField("shape")
        stripped = os.path.join(tmp, "tract-" + os.path.basename(path))
        onnx.save(model, stripped)
        m = tract.onnx().load(stripped)
        m.set_input_fact(0, ",".join(str(d) for d in shape) + ",f32")
        self.r = m.into_model().into_runnable()

    def round(self, name, x, warmup, iters):
        for _ in range(warmup):
            self.r.run([x])
        t = []
        for _ in range(iters):
            a = time.perf_counter()
            self.r.run([x])
            t.append(time.perf_counter() - a)
        return median_of(t)


class Kiln:
    def __init__(self, kiln, path, name, npy, threads, level):
        self.cmd = [kiln, "bench", path, "--input", f"{name}={npy}", "--threads", str(threads),
                    "--level", level, "--json"]

    def round(self, name, x, warmup, iters):
        out = subprocess.run(self.cmd + ["--warmup", str(warmup), "--iters", str(iters)],
                             check=True, capture_output=True, text=True).stdout
        return json.loads(out)["p50_ms"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--models", default="", help="comma-separated subset of: "
                    + ",".join(m[0] for m in MODELS))
    ap.add_argument("--no-tract", action="store_true")
    ap.add_argument("--level", default="all", help="kiln's optimization level")
    ap.add_argument("--kiln", default=os.path.join(ROOT, "target", "release", "kiln"))
    ap.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = ap.parse_args()

    import onnxruntime as ort

    want = [m for m in args.models.split(",") if m]
    unknown = [m for m in want if m not in [x[0] for x in MODELS]]
    if unknown:
        sys.exit(f"error: unknown model(s) {unknown}")
    models = [m for m in MODELS if not want or m[0] in want]
    runtimes = ["kiln", "ort_all", "ort_basic"] + ([] if args.no_tract else ["tract"])
    rows = []
    tmp = tempfile.mkdtemp(prefix="kiln-bench-")
    for key, file, name, shape in models:
        path = os.path.join(MODELS_DIR, file)
        if not os.path.exists(path):
            sys.exit(f"error: {path} is missing; run scripts/fetch-data.sh")
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        npy = os.path.join(tmp, f"{key}.npy")
        np.save(npy, x)
        runners = {
            "kiln": Kiln(args.kiln, path, name, npy, args.threads, args.level),
            "ort_all": Ort(path, ort.GraphOptimizationLevel.ORT_ENABLE_ALL, args.threads),
            "ort_basic": Ort(path, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, args.threads),
        }
        if "tract" in runtimes:
            runners["tract"] = Tract(path, shape, tmp)
        per = {r: [] for r in runtimes}
        for rnd in range(args.rounds):
            for r in runtimes:
                per[r].append(runners[r].round(name, x, args.warmup, args.iters))
            print(f"  {key} round {rnd + 1}/{args.rounds}: "
                  + " ".join(f"{r}={per[r][-1]:.2f}" for r in runtimes), file=sys.stderr)
        row = {"model": key, "shape": shape}
        for r in runtimes:
            row[f"{r}_ms"] = statistics.median(per[r])
            row[f"{r}_rounds_ms"] = per[r]
        row["kiln_vs_ort_all"] = row["kiln_ms"] / row["ort_all_ms"]
        row["kiln_vs_ort_basic"] = row["kiln_ms"] / row["ort_basic_ms"]
        if "tract" in runtimes:
            row["kiln_vs_tract"] = row["kiln_ms"] / row["tract_ms"]
        rows.append(row)
        del runners

    def geomean(k):
        return math.exp(sum(math.log(r[k]) for r in rows) / len(rows))

    ratios = ["kiln_vs_ort_all", "kiln_vs_ort_basic"] + (["kiln_vs_tract"] if "tract" in runtimes else [])
    summary = {k: geomean(k) for k in ratios}
    head = ["model"] + [f"{r} ms" for r in runtimes] + [k.replace("kiln_vs_", "kiln/") for k in ratios]
    print(f"machine: {machine_name()}")
    print(f"threads {args.threads}, {args.rounds} interleaved rounds x {args.iters} runs, "
          f"median of round medians; kiln --level {args.level}")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [r["model"]] + [f"{r[f'{x}_ms']:.2f}" for x in runtimes] + [f"{r[k]:.2f}" for k in ratios]
        print("| " + " | ".join(cells) + " |")
    print("| geomean | " + " | ".join("" for _ in runtimes) + " | "
          + " | ".join(f"{summary[k]:.2f}" for k in ratios) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine_name(), "threads": args.threads, "rounds": args.rounds,
                       "iters": args.iters, "kiln_level": args.level, "models": rows,
                       "geomean": summary}, f, indent=1)


if __name__ == "__main__":
    main()
