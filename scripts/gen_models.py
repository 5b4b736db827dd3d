"""Makes kiln's scripted test models offline, with random weights, into one folder:

  transformers (torch.onnx.export, opset 17, dynamic batch and sequence), each also as
  onnxruntime.transformers.optimizer writes it (`*.ortopt.onnx`):
    bert_minilm   BertModel in all-MiniLM-L6-v2's shape (6 layers, hidden 384, 12 heads, FFN 1536)
    gpt2_small    GPT2Model, a decoder (causal self-attention), 2 layers, hidden 128
    vit_small     ViTModel, a vision encoder, 2 layers, hidden 96, 32x32 images
    bert_f16      bert_minilm's optimizer output converted to float16 (inputs/outputs kept f32)
    cnn_lstm      a CNN with a bidirectional LSTM head, and cnn_lstm_f16, its float16 conversion
  classical ML (skl2onnx / onnxmltools): see gen_ml_models.py.

Run with the tools venv (scripts/model-tools.sh); scripts/gen-models.sh calls it with the output
folder. Every `<name>.onnx` comes with `<name>.npz`, its feeds, and `manifest.json` lists the
models (with the fused ops of the optimizer outputs, the op types of the ML models), so the tests
need no knowledge of the generator. A model whose name has `f16` computes in float16; its f32
twin is the name without `_f16` (bert_f16's is bert_minilm.ortopt).
"""
import json
import os
import sys

import numpy as np

SEED = 0


def save_feeds(out, name, feeds):
    np.savez(os.path.join(out, f"{name}.npz"), **feeds)


def export(model, args, names, dynamic, path, outputs):
    import torch
    model.eval()
    with torch.no_grad():
        torch.onnx.export(model, args, path, input_names=names, output_names=outputs,
                          dynamic_axes=dynamic, opset_version=17, do_constant_folding=True,
                          dynamo=False)


def ort_optimize(src, dst, model_type, num_heads, hidden, f16=None):
    from onnxruntime.transformers import optimizer
    m = optimizer.optimize_model(src, model_type=model_type, num_heads=num_heads,
                                 hidden_size=hidden, opt_level=0, use_gpu=False)
    m.save_model_to_file(dst)
    counts = m.get_fused_operator_statistics()
    if f16:
        m.convert_float_to_float16(keep_io_types=True)
        m.save_model_to_file(f16)
    return {k: v for k, v in counts.items() if v}


def transformers_models(out):
    import torch
    from transformers import BertConfig, BertModel, GPT2Config, GPT2Model, ViTConfig, ViTModel
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    made = {}

    # BERT in all-MiniLM-L6-v2's shape.
    cfg = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                     intermediate_size=1536, max_position_embeddings=512)
    bert = BertModel(cfg)
    b, s = 2, 16
    ids = torch.tensor(rng.integers(0, cfg.vocab_size, (b, s)), dtype=torch.int64)
    mask = torch.ones((b, s), dtype=torch.int64)
    mask[1, 11:] = 0
    types = torch.zeros((b, s), dtype=torch.int64)
    types[:, 8:] = 1
    names = ["input_ids", "attention_mask", "token_type_ids"]
    dyn = {n: {0: "batch", 1: "sequence"} for n in names}
    dyn.update({"last_hidden_state": {0: "batch", 1: "sequence"}, "pooler_output": {0: "batch"}})
    path = os.path.join(out, "bert_minilm.onnx")
    export(bert, (ids, mask, types), names, dyn, path, ["last_hidden_state", "pooler_output"])
    feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": types.numpy()}
    save_feeds(out, "bert_minilm", feeds)
    made["bert_minilm"] = {}
    fused = ort_optimize(path, os.path.join(out, "bert_minilm.ortopt.onnx"), "bert", 12, 384,
                         f16=os.path.join(out, "bert_f16.onnx"))
    save_feeds(out, "bert_minilm.ortopt", feeds)
    save_feeds(out, "bert_f16", feeds)
    made["bert_minilm.ortopt"] = fused
    made["bert_f16"] = fused

    # GPT-2: a decoder with causal self-attention.
    cfg = GPT2Config(vocab_size=1000, n_positions=128, n_embd=128, n_layer=2, n_head=4)
    cfg._attn_implementation = "eager"
    gpt = GPT2Model(cfg)
    gpt.config.use_cache = False
    ids = torch.tensor(rng.integers(0, cfg.vocab_size, (2, 12)), dtype=torch.int64)
    mask = torch.ones((2, 12), dtype=torch.int64)
    mask[0, :3] = 0  # left padding
    names = ["input_ids", "attention_mask"]
    dyn = {n: {0: "batch", 1: "sequence"} for n in names}
    dyn["last_hidden_state"] = {0: "batch", 1: "sequence"}

    class Gpt(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask):
            return self.m(input_ids=input_ids, attention_mask=attention_mask,
                          use_cache=False).last_hidden_state

    path = os.path.join(out, "gpt2_small.onnx")
    export(Gpt(gpt), (ids, mask), names, dyn, path, ["last_hidden_state"])
    feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
    save_feeds(out, "gpt2_small", feeds)
    made["gpt2_small"] = {}
    made["gpt2_small.ortopt"] = ort_optimize(path, os.path.join(out, "gpt2_small.ortopt.onnx"),
                                             "gpt2", 4, 128)
    save_feeds(out, "gpt2_small.ortopt", feeds)

    # ViT: a vision encoder.
    cfg = ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=96, num_hidden_layers=2,
                    num_attention_heads=4, intermediate_size=192)
    cfg._attn_implementation = "eager"
    vit = ViTModel(cfg, add_pooling_layer=True)
    pix = torch.tensor(rng.standard_normal((2, 3, 32, 32)), dtype=torch.float32)
    path = os.path.join(out, "vit_small.onnx")
    export(vit, (pix,), ["pixel_values"], {"pixel_values": {0: "batch"},
                                           "last_hidden_state": {0: "batch"},
                                           "pooler_output": {0: "batch"}},
           path, ["last_hidden_state", "pooler_output"])
    feeds = {"pixel_values": pix.numpy()}
    save_feeds(out, "vit_small", feeds)
    made["vit_small"] = {}
    made["vit_small.ortopt"] = ort_optimize(path, os.path.join(out, "vit_small.ortopt.onnx"),
                                            "vit", 4, 96)
    save_feeds(out, "vit_small.ortopt", feeds)

    # float16: a CNN + bidirectional LSTM head, converted to f16 with Casts at the inputs and
    # outputs (as onnxconverter-common writes it); the f32 original is the accuracy reference.
    class CnnLstm(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(8)
            self.c2 = torch.nn.Conv2d(8, 16, 3, stride=2, groups=2)
            self.lstm = torch.nn.LSTM(16, 12, batch_first=True, bidirectional=True)
            self.fc = torch.nn.Linear(24, 5)

        def forward(self, x):
            y = torch.nn.functional.max_pool2d(torch.relu(self.bn(self.c1(x))), 2)
            y = torch.sigmoid(self.c2(y)) * 1.5 + 0.25
            y, _ = self.lstm(y.mean(dim=2).transpose(1, 2))
            return torch.softmax(self.fc(y), -1)

    net = CnnLstm()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
    pix = torch.tensor(rng.standard_normal((2, 3, 24, 24)), dtype=torch.float32)
    path = os.path.join(out, "cnn_lstm.onnx")
    export(net, (pix,), ["x"], {"x": {0: "batch"}, "y": {0: "batch"}}, path, ["y"])
    import onnx
    from onnxconverter_common import float16
    onnx.save(float16.convert_float_to_float16(onnx.load(path), keep_io_types=True),
              os.path.join(out, "cnn_lstm_f16.onnx"))
    for name in ("cnn_lstm", "cnn_lstm_f16"):
        save_feeds(out, name, {"x": pix.numpy()})
        made[name] = {}
    return made


def main():
    out = sys.argv[1]
    parts = sys.argv[2:] or ["transformers", "ml"]
    os.makedirs(out, exist_ok=True)
    made = {}
    if "transformers" in parts:
        made.update(transformers_models(out))
    if "ml" in parts:
        import gen_ml_models
        made.update(gen_ml_models.ml_models(out))
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(made, f, indent=1, sort_keys=True)
    for name, fused in sorted(made.items()):
        print(f"{name}: {fused}" if fused else name)


if __name__ == "__main__":
    main()
