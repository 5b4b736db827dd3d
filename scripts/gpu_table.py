"""The partition story of the wgpu provider, measured: for ORT's ENABLE_EXTENDED save and for
kiln's own `--level all --ep wgpu,cpu` save of each benchmark model, the partitions and nodes on
wgpu with FusedConv claiming off and on (`kiln partition --level disabled`, so the graph is the
saved one), and `kiln bench --ep cpu --ep wgpu,cpu` (interleaved rounds) on the ORT save.
Prints a Markdown table (and --json FILE writes the figures). Every saved kiln model is loaded
by ONNX Runtime as a check.

Usage: .cache/venv/bin/python scripts/gpu_table.py [--models a,b] [--iters N] [--rounds R]
       [--no-bench] [--json FILE]
"""

import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
import common  # noqa: E402
import test_models  # noqa: E402

MODELS = {
    "resnet50": "light_resnet50.onnx",
    "inception_v2": "light_inception_v2.onnx",
    "densenet121": "light_densenet121.onnx",
    "squeezenet": "light_squeezenet.onnx",
    "yolov8n": "yolov8n_320n.onnx",
    "ddddocr": "ddddocr_common_det.onnx",
}
SHAPES = {"yolov8n": "1,3,320,320", "ddddocr": "1,3,416,416"}


def arg(name, default):
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def kiln(*args):
    out = subprocess.run([common.kiln_bin(), *args], capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        sys.exit(f"kiln {' '.join(args)} failed:\n{out.stderr}")
    return out.stdout


def shape_flags(key, path):
    if key not in SHAPES:
        return []
    import onnx
    name = onnx.load(path, load_external_data=False).graph.input[0].name
    return ["--shape", f"{name}={SHAPES[key]}"]


def partition(path, fused, flags):
    j = json.loads(kiln("partition", path, "--level", "disabled", "--json",
                        "--ep", f"wgpu:fused_conv={fused},cpu", *flags))
    return j["num_partitions"], j["nodes_per_ep"]["wgpu"], sum(j["nodes_per_ep"].values()), \
        j["devices"]["wgpu"]


def main():
    keys = arg("--models", ",".join(MODELS)).split(",")
    iters, rounds = arg("--iters", "3"), arg("--rounds", "2")
    rows, device = [], None
    with tempfile.TemporaryDirectory(prefix="kiln-gpu-table-") as tmp:
        for key in keys:
            src = os.path.join(common.CACHE, "models", MODELS[key])
            ort_save = test_models.ort_extended(src)
            kiln_save = os.path.join(tmp, f"{key}.kiln.onnx")
            kiln("optimize", src, "-o", kiln_save, "--level", "all", "--ep", "wgpu,cpu")
            common.ort_session(kiln_save)  # ORT must load what kiln saved for the GPU
            row = {"model": key}
            for label, path in (("ort", ort_save), ("kiln", kiln_save)):
                flags = shape_flags(key, path)
                for fused in ("off", "on"):
                    parts, on_gpu, total, device = partition(path, fused, flags)
                    row[f"{label}_{fused}"] = {"partitions": parts, "wgpu": on_gpu, "nodes": total}
            if "--no-bench" not in sys.argv:
                b = json.loads(kiln("bench", ort_save, "--ep", "cpu", "--ep", "wgpu,cpu",
                                    "--warmup", "1", "--iters", iters, "--rounds", rounds,
                                    "--json", *shape_flags(key, ort_save)))
                row["bench"] = {v["ep"]: {k: v[k] for k in ("first_ms", "mean_ms", "std_ms",
                                                             "p50_ms", "p99_ms", "max_ms")}
                                for v in b["variants"]}
            rows.append(row)
            print(f"done {key}", file=sys.stderr)
    print(f"adapter: {device}\n")
    print("| model | save | FusedConv off: partitions, wgpu/nodes | on: partitions, wgpu/nodes |")
    print("|---|---|---|---|")
    for r in rows:
        for label in ("ort", "kiln"):
            off, on = r[f"{label}_off"], r[f"{label}_on"]
            print(f"| {r['model']} | {'ORT extended' if label == 'ort' else 'kiln all'} | "
                  f"{off['partitions']}, {off['wgpu']}/{off['nodes']} | "
                  f"{on['partitions']}, {on['wgpu']}/{on['nodes']} |")
    if any("bench" in r for r in rows):
        print("\n| model | ep | first ms | mean ms | stddev | p50 | p99 | max |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            for ep, s in r.get("bench", {}).items():
                print(f"| {r['model']} | {ep} | {s['first_ms']:.1f} | {s['mean_ms']:.1f} | "
                      f"{s['std_ms']:.1f} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} | "
                      f"{s['max_ms']:.1f} |")
    out = arg("--json", None)
    if out:
        with open(out, "w") as f:
            json.dump({"adapter": device, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
