"""Makes kiln's quantized model set with ONNX Runtime's own quantization tools, offline:

  resnet50_qdq / resnet50_qop   torchvision's ResNet50 with seeded random weights (resnet50.onnx,
                                exported here), quantize_static, per-channel s8 weights, u8
                                activations, QDQ and QOperator formats
  yolov8n_qdq / yolov8n_qop     nudenet's YOLOv8n at 320, the same two ways
  mobilenetv2_qdq               torchvision's MobileNetV2 (random weights): depthwise layers, QDQ
  mobilenetv2_dynamic           the same through quantize_dynamic: ConvInteger between
                                DynamicQuantizeLinear and Cast, Mul
  bert_qdq                      bert_minilm (scripts/gen_models.py), quantize_static QDQ
  bert_dynamic                  bert_minilm, quantize_dynamic (u8 activations, s8 weights)
  bert_int4                     bert_minilm, MatMulNBitsQuantizer (4-bit, block 32,
                                accuracy_level 4)
  bert_ortopt_dynamic           bert_minilm as ORT's transformer optimizer writes it, then
                                quantize_dynamic: QAttention, QEmbedLayerNormalization

Calibration reads a few seeded random inputs (the weights are what they are; the inputs only set
the activation ranges). Every `<name>.onnx` comes with `<name>.npz` (feeds, a different seed from
calibration) and `manifest.json` maps each name to its float twin (a path, or a file name in
this folder) and its quantized op counts.

Usage: gen_quant_models.py OUT MODELS_DIR GENERATED_DIR
"""
import json
import os
import shutil
import sys
import tempfile
from collections import Counter

import numpy as np
import onnx
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quantize_dynamic, quantize_static)

SEED = 0


def image_feeds(name, shape, seed):
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(np.float32)}


def bert_feeds(seed, batch=1, seq=128):
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, seq), np.int64)
    mask[:, seq - seq // 8:] = 0
    return {"input_ids": rng.integers(0, 30522, (batch, seq), dtype=np.int64),
            "attention_mask": mask,
            "token_type_ids": np.zeros((batch, seq), np.int64)}


class Reader(CalibrationDataReader):
    def __init__(self, make, count):
        self.feeds = iter([make(SEED + 100 + i) for i in range(count)])

    def get_next(self):
        return next(self.feeds, None)


def op_counts(path):
    m = onnx.load(path, load_external_data=False)
    return dict(sorted(Counter(n.op_type for n in m.graph.node).items()))


def static(src, dst, make, fmt, count=4):
    # ORT's recommended preprocessing (shape inference, basic graph optimizations) first: the
    # QOperator quantizer needs Conv biases that are initializers by then.
    from onnxruntime.quantization.shape_inference import quant_pre_process
    pre = dst + ".pre.onnx"
    quant_pre_process(src, pre, skip_symbolic_shape=True)
    quantize_static(pre, dst, Reader(make, count), quant_format=fmt, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    os.remove(pre)


def nbits(src, dst):
    from onnxruntime.quantization.matmul_nbits_quantizer import (DefaultWeightOnlyQuantConfig,
                                                                  MatMulNBitsQuantizer)
    cfg = DefaultWeightOnlyQuantConfig(block_size=32, is_symmetric=False, accuracy_level=4)
    q = MatMulNBitsQuantizer(onnx.load(src), algo_config=cfg)
    q.process()
    q.model.save_model_to_file(dst, use_external_data_format=False)


def torchvision_model(name, dst):
    import torch
    import torchvision
    torch.manual_seed(SEED)
    model = getattr(torchvision.models, name)(weights=None).eval()
    with torch.no_grad():
        torch.onnx.export(model, torch.zeros(1, 3, 224, 224), dst, input_names=["input"],
                          output_names=["logits"], opset_version=17, dynamo=False)


def main():
    out, models_dir, generated = sys.argv[1:4]
    os.makedirs(out, exist_ok=True)
    made = {}
    cnns = []
    for tv in ("resnet50", "mobilenet_v2"):
        path = os.path.join(out, f"{tv.replace('_', '')}.onnx")
        torchvision_model(tv, path)
        np.savez(path.replace(".onnx", ".npz"), **image_feeds("input", [1, 3, 224, 224], SEED))
        cnns.append((tv.replace("_", ""), path, lambda s: image_feeds("input", [1, 3, 224, 224], s)))
    cnns.append(("yolov8n", os.path.join(models_dir, "yolov8n_320n.onnx"),
                 lambda s: image_feeds("images", [1, 3, 320, 320], s)))
    formats = (("qdq", QuantFormat.QDQ), ("qop", QuantFormat.QOperator))
    with tempfile.TemporaryDirectory() as tmp:
        for name, src, make in cnns:
            for suffix, fmt in formats[:1] if name == "mobilenetv2" else formats:
                dst = os.path.join(out, f"{name}_{suffix}.onnx")
                static(src, dst, make, fmt)
                np.savez(os.path.join(out, f"{name}_{suffix}.npz"), **make(SEED))
                # The float twin: a file of this folder by name, else its path.
                twin = os.path.basename(src) if src.startswith(out) else src
                made[f"{name}_{suffix}"] = {"float": twin, "ops": op_counts(dst)}
        # quantize_dynamic on a CNN, as users do: ConvInteger with its quantize and scale ops.
        dst = os.path.join(out, "mobilenetv2_dynamic.onnx")
        quantize_dynamic(os.path.join(out, "mobilenetv2.onnx"), dst, weight_type=QuantType.QInt8)
        np.savez(dst.replace(".onnx", ".npz"), **image_feeds("input", [1, 3, 224, 224], SEED))
        made["mobilenetv2_dynamic"] = {"float": "mobilenetv2.onnx", "ops": op_counts(dst)}
        bert = os.path.join(generated, "bert_minilm.onnx")
        # The exporter leaves value_info that the quantizer's own shape inference trips on.
        src = os.path.join(tmp, "bert.onnx")
        shutil.copy(bert, src)
        ortopt = os.path.join(generated, "bert_minilm.ortopt.onnx")
        jobs = {
            "bert_qdq": (bert, lambda d: static(src, d, bert_feeds, QuantFormat.QDQ)),
            "bert_dynamic": (bert, lambda d: quantize_dynamic(src, d, weight_type=QuantType.QInt8)),
            "bert_int4": (bert, lambda d: nbits(src, d)),
            # The contrib ops defeat the quantizer's shape inference: their outputs are float.
            "bert_ortopt_dynamic": (ortopt, lambda d: quantize_dynamic(
                ortopt, d, weight_type=QuantType.QInt8,
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})),
        }
        for name, (twin, job) in jobs.items():
            dst = os.path.join(out, f"{name}.onnx")
            job(dst)
            np.savez(os.path.join(out, f"{name}.npz"), **bert_feeds(SEED))
            made[name] = {"float": twin, "ops": op_counts(dst)}
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(made, f, indent=1, sort_keys=True)
    for name, info in sorted(made.items()):
        print(f"{name}: {info['ops']}")


if __name__ == "__main__":
    main()
