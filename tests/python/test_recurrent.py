"""RNN, GRU and LSTM in kiln match ONNX Runtime across the spec's options.

Each case is a one-node model (or the node inside an If branch or a Loop body) with random
weights and attributes drawn from a seeded generator: direction (forward, reverse,
bidirectional), layout 0/1, per-row `sequence_lens` (zero-length rows included), initial states,
biases, peepholes, `clip`, `input_forget`, GRU's `linear_before_reset`, and activation lists with
alpha/beta. kiln runs it at `--level disabled` and `--level all`; ORT runs it with its optimizer
off; outputs must agree within 1e-4 + 1e-3*|ort|. Prints `recurrent: N passed, M failed`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import numpy as np  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
NUM_ACTS = {"RNN": 1, "GRU": 2, "LSTM": 3}
# Activations ORT implements for the recurrent ops, with whether they read alpha / beta.
ACTS = {"Relu": (0, 0), "Tanh": (0, 0), "Sigmoid": (0, 0), "Affine": (1, 1), "LeakyRelu": (1, 0),
        "ThresholdedRelu": (1, 0), "ScaledTanh": (1, 1), "HardSigmoid": (1, 1), "Elu": (1, 0),
        "Softsign": (0, 0), "Softplus": (0, 0)}


def make_case(op, seed, layout=0):
    """(model, feeds, description) for one random configuration of `op`; the random draws do
    not depend on `layout`, so layout 1 is the same layer with its batch axis first."""
    rng = np.random.default_rng(seed)
    direction = ["forward", "reverse", "bidirectional"][seed % 3]
    dirs = 2 if direction == "bidirectional" else 1
    seq, batch, inp = int(rng.integers(1, 6)), int(rng.integers(1, 4)), int(rng.integers(1, 7))
    hidden = int(rng.integers(1, 9))
    g = GATES[op]
    attrs = {"hidden_size": hidden, "direction": direction}
    if layout:
        attrs["layout"] = 1
    desc = [f"{op} seed={seed} {direction} layout={layout} seq={seq} batch={batch} in={inp} h={hidden}"]
    if rng.random() < 0.3:
        attrs["clip"] = float(rng.uniform(0.5, 3.0))
        desc.append(f"clip={attrs['clip']:.2f}")
    if op == "LSTM" and rng.random() < 0.3:
        attrs["input_forget"] = 1
        desc.append("input_forget")
    if op == "GRU" and rng.random() < 0.5:
        attrs["linear_before_reset"] = 1
        desc.append("linear_before_reset")
    if rng.random() < 0.4:
        # The first function of each direction gates (LSTM, GRU) or feeds back (RNN); an
        # unbounded one there makes the state explode, and both runtimes then print overflow.
        names, bounded = list(ACTS), ["Tanh", "Sigmoid", "ScaledTanh", "HardSigmoid", "Softsign"]
        acts = [(bounded if i % NUM_ACTS[op] == 0 else names)[int(rng.integers(0, 11 if i % NUM_ACTS[op] else 5))]
                for i in range(NUM_ACTS[op] * dirs)]
        attrs["activations"] = acts
        alphas = [float(rng.uniform(0.1, 1.5)) for a in acts if ACTS[a][0]]
        betas = [float(rng.uniform(0.1, 1.0)) for a in acts if ACTS[a][1]]
        if alphas:
            attrs["activation_alpha"] = alphas
        if betas:
            attrs["activation_beta"] = betas
        desc.append("acts=" + ",".join(acts))
    x_shape = [seq, batch, inp]
    state_shape = [dirs, batch, hidden]
    feeds = {"X": rng.standard_normal(x_shape).astype(np.float32)}
    inits = [
        helper.make_tensor("W", TensorProto.FLOAT, [dirs, g * hidden, inp],
                           (rng.standard_normal(dirs * g * hidden * inp) * 0.5).astype(np.float32)),
        helper.make_tensor("R", TensorProto.FLOAT, [dirs, g * hidden, hidden],
                           (rng.standard_normal(dirs * g * hidden * hidden) * 0.5).astype(np.float32)),
    ]
    ins = ["X", "W", "R"]
    optional = []
    if rng.random() < 0.7:
        inits.append(helper.make_tensor("B", TensorProto.FLOAT, [dirs, 2 * g * hidden],
                                        rng.standard_normal(dirs * 2 * g * hidden).astype(np.float32)))
        optional.append((3, "B"))
    if rng.random() < 0.5:
        lens = rng.integers(0 if rng.random() < 0.3 else 1, seq + 1, batch).astype(np.int32)
        lens[0] = seq  # ORT needs one full-length row for Y's time extent to be `seq`
        feeds["sequence_lens"] = lens
        optional.append((4, "sequence_lens"))
        desc.append(f"lens={lens.tolist()}")
    if rng.random() < 0.6:
        feeds["initial_h"] = rng.standard_normal(state_shape).astype(np.float32)
        optional.append((5, "initial_h"))
    if op == "LSTM" and rng.random() < 0.6:
        feeds["initial_c"] = rng.standard_normal(state_shape).astype(np.float32)
        optional.append((6, "initial_c"))
    if op == "LSTM" and rng.random() < 0.5:
        inits.append(helper.make_tensor("P", TensorProto.FLOAT, [dirs, 3 * hidden],
                                        rng.standard_normal(dirs * 3 * hidden).astype(np.float32)))
        optional.append((7, "P"))
        desc.append("peepholes")
    if layout:
        # Batch first: X and the states swap their first two axes.
        feeds = {n: (np.ascontiguousarray(np.swapaxes(a, 0, 1)) if n != "sequence_lens" else a)
                 for n, a in feeds.items()}
    for pos, name in optional:
        while len(ins) < pos:
            ins.append("")
        ins.append(name)
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    node = helper.make_node(op, ins, outs, **attrs)
    graph_inputs = [helper.make_tensor_value_info(n, TensorProto.INT32 if n == "sequence_lens"
                                                  else TensorProto.FLOAT, list(a.shape))
                    for n, a in feeds.items()]
    graph_outputs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs]
    graph = helper.make_graph([node], "rnn", graph_inputs, graph_outputs, initializer=inits)
    model = helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", 14)])
    return model, feeds, " ".join(desc)


def in_if(model, feeds, desc):
    """The same layer inside the then-branch of an If on a graph input."""
    g = model.graph
    branch_out = [helper.make_tensor_value_info(o.name, TensorProto.FLOAT, None) for o in g.output]
    then_g = helper.make_graph(list(g.node), "then", [], branch_out, initializer=list(g.initializer))
    else_outs = []
    else_nodes = []
    for o in g.output:
        # The else branch returns the input's absolute value, whatever the shapes.
        else_nodes.append(helper.make_node("Abs", ["X"], [o.name + "_e"]))
        else_outs.append(helper.make_tensor_value_info(o.name + "_e", TensorProto.FLOAT, None))
    else_g = helper.make_graph(else_nodes, "else", [], else_outs)
    node = helper.make_node("If", ["cond"], [o.name for o in g.output], then_branch=then_g,
                            else_branch=else_g)
    inputs = list(g.input) + [helper.make_tensor_value_info("cond", TensorProto.BOOL, [])]
    graph = helper.make_graph([node], "if_rnn", inputs, list(g.output))
    m = helper.make_model(graph, ir_version=8, opset_imports=list(model.opset_import))
    f = dict(feeds)
    f["cond"] = np.array(True)
    return m, f, desc + " (inside If)"


def in_loop(model, feeds, desc):
    """The layer inside a 2-trip Loop body whose carried value feeds the next trip's initial
    hidden state is not needed: the body recomputes from X each trip and scans Y_h out."""
    g = model.graph
    node = g.node[0]
    body_nodes = [helper.make_node("Identity", ["cond_in"], ["cond_out"]), node]
    body_in = [helper.make_tensor_value_info("iter", TensorProto.INT64, []),
               helper.make_tensor_value_info("cond_in", TensorProto.BOOL, [])]
    body_out = [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
                helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, None)]
    body = helper.make_graph(body_nodes, "body", body_in, body_out, initializer=list(g.initializer))
    loop = helper.make_node("Loop", ["trips", ""], ["Y_h_scan"], body=body)
    inputs = list(g.input) + [helper.make_tensor_value_info("trips", TensorProto.INT64, [])]
    outputs = [helper.make_tensor_value_info("Y_h_scan", TensorProto.FLOAT, None)]
    graph = helper.make_graph([loop], "loop_rnn", inputs, outputs)
    m = helper.make_model(graph, ir_version=8, opset_imports=list(model.opset_import))
    f = dict(feeds)
    f["trips"] = np.array(2, dtype=np.int64)
    return m, f, desc + " (inside Loop)"


def cases():
    out = []
    for op in ("RNN", "GRU", "LSTM"):
        for seed in range(24):
            out.append(make_case(op, seed) + (0,))
        for seed in range(24, 30):
            out.append(make_case(op, seed, layout=1) + (seed,))
        out.append(in_if(*make_case(op, 100)) + (0,))
        out.append(in_loop(*make_case(op, 101)) + (0,))
    return out


def check(case):
    model, feeds, desc, layout_seed = case
    if not layout_seed:
        worst = common.compare_with_ort(model, feeds)
        return f"worst diff {worst:.3f} of tolerance"
    # ORT runs only layout 0: its outputs for the batch-second twin, moved to batch first.
    op = model.graph.node[0].op_type
    ref_model, ref_feeds, _ = make_case(op, layout_seed)
    sess = common.ort_session(ref_model)
    names = [o.name for o in sess.get_outputs()]
    want = dict(zip(names, sess.run(names, ref_feeds)))
    want = {n: np.transpose(a, (2, 0, 1, 3) if n == "Y" else (1, 0, 2)) for n, a in want.items()}
    worst = 0.0
    for level in ("disabled", "all"):
        got = common.kiln_run_model(model, feeds, level=level)
        for n in names:
            worst = max(worst, common.assert_close(f"{n} (--level {level})", got[n], want[n]))
    return f"layout 1 against ORT's layout 0, worst diff {worst:.3f} of tolerance"


if __name__ == "__main__":
    common.run_tests("recurrent", cases(), check, workers=2, name=lambda c: c[2], desc=lambda c: c[2])
