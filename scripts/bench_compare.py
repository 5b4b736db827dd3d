#!/usr/bin/env python3
"""Side-by-side latency of kiln, ONNX Runtime (ENABLE_ALL and ENABLE_BASIC) and tract on the
benchmark models, in one run on one machine, plus session-creation time and peak memory of kiln
and ORT.

Every runtime gets the same inputs and the same thread count. Rounds are interleaved (kiln, ORT
all, ORT basic, tract, then again), so a noisy neighbour slows all of them alike; each round
times `--iters` runs after a warm-up, and the figure reported per runtime is the median of its
per-round medians; a ratio is the median over rounds of that round's ratio. kiln runs through `kiln bench --json` (one process per round; only the timed
runs count, not session creation). Creation time and peak memory come from one fresh process
per runtime and model (load + create a session + three runs; peak RSS from the kernel).
The float set is the six CNNs (scripts/fetch-data.sh) and a BERT encoder as exported and as ORT's
transformer optimizer writes it (scripts/gen-models.sh; `--generated DIR`); the quantized set is
what ORT's quantizers make of ResNet50, YOLOv8n and that BERT (scripts/gen-quant-models.sh;
`--quantized DIR`). Each set gets its own geomean (`--set` runs one).
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


def image(name, shape):
    return lambda: {name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}


def bert_feeds(batch=1, seq=128):
    """Token ids, a mask with the last eighth padded, one segment."""
    def make():
        rng = np.random.default_rng(0)
        mask = np.ones((batch, seq), np.int64)
        mask[:, seq - seq // 8:] = 0
        return {"input_ids": rng.integers(0, 30522, (batch, seq), dtype=np.int64),
                "attention_mask": mask,
                "token_type_ids": np.zeros((batch, seq), np.int64)}
    return make


# name, folder ("models", "generated" or "quantized"), file, feeds
MODELS = [
    ("resnet50", "models", "light_resnet50.onnx", image("gpu_0/data_0", [1, 3, 224, 224])),
    ("inception_v2", "models", "light_inception_v2.onnx", image("data_0", [1, 3, 224, 224])),
    ("densenet121", "models", "light_densenet121.onnx", image("data_0", [1, 3, 224, 224])),
    ("squeezenet", "models", "light_squeezenet.onnx", image("data_0", [1, 3, 224, 224])),
    ("yolov8n", "models", "yolov8n_320n.onnx", image("images", [1, 3, 320, 320])),
    ("ddddocr", "models", "ddddocr_common_det.onnx", image("images", [1, 3, 416, 416])),
    ("bert", "generated", "bert_minilm.onnx", bert_feeds()),
    ("bert_ortopt", "generated", "bert_minilm.ortopt.onnx", bert_feeds()),
    # The quantized set (scripts/gen-quant-models.sh, ORT's own quantizers).
    ("resnet50_qdq", "quantized", "resnet50_qdq.onnx", image("input", [1, 3, 224, 224])),
    ("resnet50_qop", "quantized", "resnet50_qop.onnx", image("input", [1, 3, 224, 224])),
    ("yolov8n_qdq", "quantized", "yolov8n_qdq.onnx", image("images", [1, 3, 320, 320])),
    ("yolov8n_qop", "quantized", "yolov8n_qop.onnx", image("images", [1, 3, 320, 320])),
    ("mobilenetv2_qdq", "quantized", "mobilenetv2_qdq.onnx", image("input", [1, 3, 224, 224])),
    ("mobilenetv2_dynamic", "quantized", "mobilenetv2_dynamic.onnx", image("input", [1, 3, 224, 224])),
    ("bert_qdq", "quantized", "bert_qdq.onnx", bert_feeds()),
    ("bert_dynamic", "quantized", "bert_dynamic.onnx", bert_feeds()),
    ("bert_ortopt_dynamic", "quantized", "bert_ortopt_dynamic.onnx", bert_feeds()),
    ("bert_int4", "quantized", "bert_int4.onnx", bert_feeds()),
]


def model_set(folder):
    return "quantized" if folder == "quantized" else "float"


def int_variant(flags):
    """The integer kernel family kiln picks (kiln_kernels::qgemm::QIsa::detect)."""
    cap = os.environ.get("KILN_ISA", "")
    have = ("avx512-vnni" if {"avx512f", "avx512bw", "avx512_vnni"} <= flags else
            "avx512bw" if {"avx512f", "avx512bw"} <= flags else
            "avx2" if "avx2" in flags else "portable")
    order = ["portable", "avx2", "avx512bw", "avx512-vnni"]
    caps = {"portable": "portable", "avx2": "avx2", "avx512": "avx512bw"}
    if cap in caps:
        have = order[min(order.index(have), order.index(caps[cap]))]
    return have


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
        fl = set(flags.split())
        isa = [x for x in ("avx512f", "avx512_vnni", "avx_vnni", "avx2", "fma", "amx_tile",
                           "amx_int8") if x in fl]
    except OSError:
        isa, fl = [], set()
    return (f"{cpu}, {os.cpu_count()} logical CPUs, {platform.machine()}, {'/'.join(isa)}; "
            f"kiln's integer kernels: {int_variant(fl)}")


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

    def round(self, feeds, warmup, iters):
        for _ in range(warmup):
            self.s.run(None, feeds)
        t = []
        for _ in range(iters):
            a = time.perf_counter()
            self.s.run(None, feeds)
            t.append(time.perf_counter() - a)
        return median_of(t)


class Tract:
    def __init__(self, path, feeds, tmp):
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
        names = [i.name for i in model.graph.input]
        self.order = [n for n in names if n in feeds]
        for i, n in enumerate(self.order):
            x = feeds[n]
            kind = {np.dtype(np.float32): "f32", np.dtype(np.int64): "i64"}[x.dtype]
            m.set_input_fact(i, ",".join(str(d) for d in x.shape) + "," + kind)
        self.r = m.into_model().into_runnable()

    def round(self, feeds, warmup, iters):
        xs = [feeds[n] for n in self.order]
        for _ in range(warmup):
            self.r.run(xs)
        t = []
        for _ in range(iters):
            a = time.perf_counter()
            self.r.run(xs)
            t.append(time.perf_counter() - a)
        return median_of(t)


class Kiln:
    def __init__(self, kiln, path, npys, threads, level):
        self.cmd = [kiln, "bench", path, "--threads", str(threads), "--level", level, "--json"]
        for name, npy in npys.items():
            self.cmd += ["--input", f"{name}={npy}"]

    def round(self, feeds, warmup, iters):
        out = subprocess.run(self.cmd + ["--warmup", str(warmup), "--iters", str(iters)],
                             check=True, capture_output=True, text=True).stdout
        return json.loads(out)["p50_ms"]


ORT_CREATE = """
import json, sys, time, numpy as np, onnxruntime as ort
path, threads, npz = sys.argv[1], int(sys.argv[2]), sys.argv[3]
feeds = dict(np.load(npz))
t = time.perf_counter()
so = ort.SessionOptions()
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
so.intra_op_num_threads = threads
so.inter_op_num_threads = 1
s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
created = (time.perf_counter() - t) * 1e3
for _ in range(3):
    s.run(None, feeds)
print(json.dumps({"session_ms": created}))
"""


# Runs a command and reports its stdout (JSON) and its peak RSS. Through this small process so
# that the peak is the command's own: Linux carries the high-water mark of a forked process
# across exec, so a child forked from this (large) benchmark process would inherit ours.
MEASURE = """
import json, resource, subprocess, sys
out = subprocess.run(sys.argv[1:], check=True, capture_output=True, text=True).stdout
print(json.dumps({"out": json.loads(out),
                  "peak_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def measured(cmd):
    r = subprocess.run([sys.executable, "-c", MEASURE] + cmd, check=True, capture_output=True,
                       text=True)
    return json.loads(r.stdout)


def creation_and_memory(kiln, path, npys, npz, threads, level):
    """kiln's load + session time and ORT's InferenceSession time (ms), and each process's
    peak RSS (MB) over creation and three runs (ORT's includes the Python interpreter and
    numpy, about 40 MB)."""
    cmd = [kiln, "bench", path, "--threads", str(threads), "--level", level, "--json",
           "--warmup", "1", "--iters", "2", "--rounds", "1"]
    for name, npy in npys.items():
        cmd += ["--input", f"{name}={npy}"]
    k = measured(cmd)
    o = measured([sys.executable, "-c", ORT_CREATE, path, str(threads), npz])
    return {"kiln_create_ms": k["out"]["load_ms"] + k["out"]["session_ms"],
            "kiln_peak_mb": k["peak_kb"] / 1024,
            "ort_create_ms": o["out"]["session_ms"],
            "ort_peak_mb": o["peak_kb"] / 1024}


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
    ap.add_argument("--generated", metavar="DIR",
                    help="the folder scripts/gen-models.sh prints (needed for the BERT models)")
    ap.add_argument("--quantized", metavar="DIR",
                    help="the folder scripts/gen-quant-models.sh prints (the quantized set)")
    ap.add_argument("--set", choices=["float", "quantized", "all"], default="all",
                    help="which model set to run (default: both)")
    args = ap.parse_args()

    import onnxruntime as ort

    want = [m for m in args.models.split(",") if m]
    unknown = [m for m in want if m not in [x[0] for x in MODELS]]
    if unknown:
        sys.exit(f"error: unknown model(s) {unknown}")
    models = [m for m in MODELS if (not want or m[0] in want)
              and args.set in ("all", model_set(m[1]))]
    runtimes = ["kiln", "ort_all", "ort_basic"] + ([] if args.no_tract else ["tract"])
    rows = []
    tmp = tempfile.mkdtemp(prefix="kiln-bench-")
    for key, folder, file, make_feeds in models:
        if folder == "generated":
            if not args.generated:
                sys.exit(f"error: {key} needs --generated DIR (from scripts/gen-models.sh)")
            path = os.path.join(args.generated, file)
        elif folder == "quantized":
            if not args.quantized:
                sys.exit(f"error: {key} needs --quantized DIR (from scripts/gen-quant-models.sh)")
            path = os.path.join(args.quantized, file)
        else:
            path = os.path.join(MODELS_DIR, file)
        if not os.path.exists(path):
            sys.exit(f"error: {path} is missing; run scripts/fetch-data.sh / scripts/gen-models.sh")
        feeds = make_feeds()
        npys = {}
        for i, (name, x) in enumerate(feeds.items()):
            npys[name] = os.path.join(tmp, f"{key}.{i}.npy")
            np.save(npys[name], x)
        npz = os.path.join(tmp, f"{key}.npz")
        np.savez(npz, **feeds)
        runners = {
            "kiln": Kiln(args.kiln, path, npys, args.threads, args.level),
            "ort_all": Ort(path, ort.GraphOptimizationLevel.ORT_ENABLE_ALL, args.threads),
            "ort_basic": Ort(path, ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, args.threads),
        }
        active = list(runtimes)
        if "tract" in runtimes:
            try:
                runners["tract"] = Tract(path, feeds, tmp)
            except Exception as e:  # tract cannot load every model (contrib ops)
                print(f"  {key}: tract cannot run it ({str(e).splitlines()[0][:120]})",
                      file=sys.stderr)
                active.remove("tract")
        per = {r: [] for r in active}
        for rnd in range(args.rounds):
            for r in active:
                per[r].append(runners[r].round(feeds, args.warmup, args.iters))
            print(f"  {key} round {rnd + 1}/{args.rounds}: "
                  + " ".join(f"{r}={per[r][-1]:.2f}" for r in active), file=sys.stderr)
        del runners
        row = {"model": key, "set": model_set(folder)}
        for r in active:
            row[f"{r}_ms"] = statistics.median(per[r])
            row[f"{r}_rounds_ms"] = per[r]
        # Ratios pair each round's figures, taken seconds apart: on a shared machine whose
        # speed drifts by half over tens of seconds, the ratio of whole-run medians can pair
        # a fast phase with a slow one.
        paired = lambda other: statistics.median(k / o for k, o in zip(per["kiln"], per[other]))
        row["kiln_vs_ort_all"] = paired("ort_all")
        row["kiln_vs_ort_basic"] = paired("ort_basic")
        if "tract_ms" in row:
            row["kiln_vs_tract"] = paired("tract")
        row.update(creation_and_memory(args.kiln, path, npys, npz, args.threads, args.level))
        rows.append(row)

    def geomean(k, which=None):
        vals = [r[k] for r in rows if k in r and which in (None, r["set"])]
        return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else float("nan")

    ratios = ["kiln_vs_ort_all", "kiln_vs_ort_basic"] + (["kiln_vs_tract"] if "tract" in runtimes else [])
    summary = {k: geomean(k) for k in ratios}
    sets = sorted({r["set"] for r in rows})
    per_set = {w: {k: geomean(k, w) for k in ratios} for w in sets}
    head = ["model"] + [f"{r} ms" for r in runtimes] + [k.replace("kiln_vs_", "kiln/") for k in ratios]
    cell = lambda r, k, f: f.format(r[k]) if k in r else "n/a"
    print(f"machine: {machine_name()}")
    print(f"threads {args.threads}, {args.rounds} interleaved rounds x {args.iters} runs, "
          f"median of round medians, ratios the median of per-round ratios; kiln --level {args.level}")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = ([r["model"]] + [cell(r, f"{x}_ms", "{:.2f}") for x in runtimes]
                 + [cell(r, k, "{:.2f}") for k in ratios])
        print("| " + " | ".join(cells) + " |")
    for w in sets if len(sets) > 1 else []:
        print(f"| geomean ({w}) | " + " | ".join("" for _ in runtimes) + " | "
              + " | ".join(f"{per_set[w][k]:.2f}" for k in ratios) + " |")
    print("| geomean | " + " | ".join("" for _ in runtimes) + " | "
          + " | ".join(f"{summary[k]:.2f}" for k in ratios) + " |")
    print()
    print("session creation (load + optimize + prepare, ms) and peak RSS (MB, creation + 3 runs)")
    print("| model | kiln create | ORT create | kiln peak MB | ORT peak MB |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['kiln_create_ms']:.0f} | {r['ort_create_ms']:.0f} | "
              f"{r['kiln_peak_mb']:.0f} | {r['ort_peak_mb']:.0f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine_name(), "threads": args.threads, "rounds": args.rounds,
                       "iters": args.iters, "kiln_level": args.level, "models": rows,
                       "geomean": summary, "geomean_by_set": per_set}, f, indent=1)


if __name__ == "__main__":
    main()
