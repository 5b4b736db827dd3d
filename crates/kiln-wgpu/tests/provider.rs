//! The provider as a whole: what it declines and why (nothing on wgpu, outputs still right),
//! FusedConv claiming switched off, a graph split into two GPU partitions around a node only
//! the CPU runs, partitions with several inputs and outputs, dynamic shapes, and one session
//! run from several threads.
mod common;

use std::sync::Arc;

use common::*;
use kiln_ir::{Attribute, DataType, Dim, Graph, Node, ValueType};
use kiln_ops::{Tensor, Value};
use kiln_runtime::Level;
use kiln_wgpu::{WgpuOptions, WgpuProvider};

fn fused(act: &str, params: &[f32]) -> Op {
    let mut attrs = vec![Attribute::string("activation", act)];
    if !params.is_empty() {
        attrs.push(Attribute::floats("activation_params", params));
    }
    op(
        "FusedConv",
        vec![
            In::Data(vec![1, 3, 5, 5]),
            In::Weight(vec![4, 3, 3, 3]),
            In::Weight(vec![4]),
        ],
    )
    .domain("com.microsoft")
    .attrs(attrs)
}

fn reason(o: &Op, opts: WgpuOptions, dtype: DataType) -> Result<(), String> {
    let (m, _) = build(o, 17, dtype, &mut Rng::new(1));
    let p = WgpuProvider::new(opts).expect("adapter");
    let (_, node) = m.graph.nodes().next().unwrap();
    p.support(&m, node)
}

#[test]
fn declines_with_reasons() {
    let d = WgpuOptions::default();
    let r = reason(&fused("Elu", &[1.0]), d.clone(), DataType::F32).unwrap_err();
    assert!(r.contains("Elu"), "{r}");
    let r = reason(&fused("LeakyRelu", &[0.1, 0.2]), d.clone(), DataType::F32).unwrap_err();
    assert!(r.contains("needs 1 activation_params, got 2"), "{r}");
    let r = reason(&fused("Relu", &[0.1]), d.clone(), DataType::F32).unwrap_err();
    assert!(r.contains("needs 0 activation_params"), "{r}");
    let r = reason(&fused("Clip", &[0.1]), d.clone(), DataType::F32).unwrap_err();
    assert!(r.contains("needs 2 activation_params"), "{r}");
    let r = reason(
        &fused("Relu", &[]),
        WgpuOptions { fused_conv: false },
        DataType::F32,
    )
    .unwrap_err();
    assert!(r.contains("fused_conv=off"), "{r}");
    assert!(reason(&fused("Relu", &[]), d.clone(), DataType::F32).is_ok());
    let conv3d = op(
        "Conv",
        vec![
            In::Data(vec![1, 2, 3, 4, 5]),
            In::Weight(vec![2, 2, 1, 1, 1]),
        ],
    );
    let r = reason(&conv3d, d.clone(), DataType::F32).unwrap_err();
    assert!(r.contains("3-D convolution"), "{r}");
    let pad = op(
        "Pad",
        vec![In::Data(vec![2, 3]), In::Ints(vec![1, 1, 1, 1])],
    )
    .attrs(vec![Attribute::string("mode", "reflect")]);
    let r = reason(&pad, d.clone(), DataType::F32).unwrap_err();
    assert!(r.contains("reflect"), "{r}");
    let lrn = op("LRN", vec![In::Data(vec![1, 3, 4, 4])]).attrs(vec![Attribute::int("size", 3)]);
    let r = reason(&lrn, d, DataType::F32).unwrap_err();
    assert!(r.contains("no kernel for LRN"), "{r}");
}

/// A node the GPU declines but the CPU accepts (Relu given a parameter) runs on the CPU, and
/// the results stay right.
#[test]
fn declined_fused_conv_runs_on_the_cpu() {
    let (m, feeds) = build(&fused("Relu", &[0.1]), 17, DataType::F32, &mut Rng::new(5));
    let s = session(&m, vec![wgpu(WgpuOptions::default())], Level::Disabled);
    assert_eq!(s.assignment().nodes_per_ep(2), vec![0, 1]);
    let cpu = session(&m, vec![], Level::Disabled);
    assert_close(
        "declined FusedConv",
        &s.run(feeds.clone()).unwrap(),
        &cpu.run(feeds).unwrap(),
    );
}

/// A double Conv runs on the CPU (ORT's review of the CoreML work asked for exactly this).
#[test]
fn double_goes_to_the_cpu_and_stays_right() {
    let o = op(
        "Conv",
        vec![In::Data(vec![1, 2, 5, 5]), In::Data(vec![3, 2, 3, 3])],
    );
    let (m, feeds) = build(&o, 17, DataType::F64, &mut Rng::new(2));
    let s = session(&m, vec![wgpu(WgpuOptions::default())], Level::Disabled);
    assert_eq!(s.assignment().nodes_per_ep(2), vec![0, 1]);
    let r = &s.assignment().rejected[0].reason;
    assert!(r.contains("float64") && r.contains("float32 only"), "{r}");
    let cpu = session(&m, vec![], Level::Disabled);
    assert_close(
        "double conv",
        &s.run(feeds.clone()).unwrap(),
        &cpu.run(feeds).unwrap(),
    );
}

/// Conv -> Relu -> LRN (CPU only) -> Conv -> Sigmoid, with x also read after the LRN: two
/// GPU partitions, the second reading a value the first produced.
fn split_model() -> kiln_ir::Model {
    let mut g = Graph::new("split");
    let ty = ValueType::tensor(
        DataType::F32,
        vec![
            Dim::sym("batch"),
            Dim::Known(3),
            Dim::sym("h"),
            Dim::sym("w"),
        ],
    );
    let x = g.add_value("x", Some(ty.clone())).unwrap();
    g.value_mut(x).declared = Some(ty);
    g.push_input(x);
    let mut rng = Rng::new(3);
    let w1 = g
        .add_initializer(
            "w1",
            kiln_ir::Tensor::from_f32(vec![3, 3, 3, 3], &rng.vec(81)),
        )
        .unwrap();
    let w2 = g
        .add_initializer(
            "w2",
            kiln_ir::Tensor::from_f32(vec![3, 3, 1, 1], &rng.vec(9)),
        )
        .unwrap();
    let v: Vec<_> = (0..6)
        .map(|i| g.add_value(&format!("v{i}"), None).unwrap())
        .collect();
    let pads = Attribute::ints("pads", &[1, 1, 1, 1]);
    let nodes = [
        Node::new("conv1", "Conv", "")
            .with_inputs(&[Some(x), Some(w1)])
            .with_outputs(&[Some(v[0])])
            .with_attrs(vec![pads]),
        Node::new("relu", "Relu", "")
            .with_inputs(&[Some(v[0])])
            .with_outputs(&[Some(v[1])]),
        Node::new("lrn", "LRN", "")
            .with_inputs(&[Some(v[1])])
            .with_outputs(&[Some(v[2])])
            .with_attrs(vec![Attribute::int("size", 3)]),
        Node::new("conv2", "Conv", "")
            .with_inputs(&[Some(v[2]), Some(w2)])
            .with_outputs(&[Some(v[3])]),
        Node::new("add", "Add", "")
            .with_inputs(&[Some(v[3]), Some(v[1])])
            .with_outputs(&[Some(v[4])]),
        Node::new("sig", "Sigmoid", "")
            .with_inputs(&[Some(v[4])])
            .with_outputs(&[Some(v[5])]),
    ];
    for n in nodes {
        g.add_node(n).unwrap();
    }
    g.set_outputs(vec![v[5], v[1]]);
    let mut m = model_of(g, 17);
    kiln_ops::infer_shapes(&mut m).unwrap();
    m
}

fn feed(shape: Vec<usize>, seed: u64) -> Vec<(String, Value)> {
    let n = shape.iter().product();
    vec![(
        "x".into(),
        Value::Tensor(Tensor::from_vec(shape, Rng::new(seed).vec(n))),
    )]
}

#[test]
fn a_cpu_node_in_the_middle_makes_two_gpu_partitions() {
    let m = split_model();
    let gpu = session(&m, vec![wgpu(WgpuOptions::default())], Level::Disabled);
    let a = gpu.assignment();
    let eps: Vec<&str> = a
        .partitions
        .iter()
        .map(|p| gpu.providers()[p.ep].name())
        .collect();
    assert_eq!(eps, ["wgpu", "cpu", "wgpu"]);
    assert_eq!(a.nodes_per_ep(2), vec![5, 1]);
    let cpu = session(&m, vec![], Level::Disabled);
    // Dynamic shapes: each new input shape plans the partitions anew.
    for (shape, seed) in [
        (vec![1, 3, 6, 7], 1),
        (vec![2, 3, 5, 4], 2),
        (vec![1, 3, 6, 7], 3),
    ] {
        let f = feed(shape, seed);
        assert_close(
            "split model",
            &gpu.run(f.clone()).unwrap(),
            &cpu.run(f).unwrap(),
        );
    }
}

#[test]
fn one_session_from_several_threads() {
    let m = split_model();
    let gpu = Arc::new(session(&m, vec![wgpu(WgpuOptions::default())], Level::All));
    let cpu = session(&m, vec![], Level::All);
    let want: Vec<_> = (0..4)
        .map(|t| cpu.run(feed(vec![1, 3, 5 + t, 6], t as u64)).unwrap())
        .collect();
    let want = Arc::new(want.iter().map(|o| values(o)).collect::<Vec<_>>());
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let (gpu, want) = (gpu.clone(), want.clone());
            std::thread::spawn(move || {
                for _ in 0..5 {
                    let got = gpu.run(feed(vec![1, 3, 5 + t, 6], t as u64)).unwrap();
                    let got = values(&got);
                    for ((gs, gv), (ws, wv)) in got.iter().zip(&want[t]) {
                        assert_eq!(gs, ws);
                        for (a, b) in gv.iter().zip(wv) {
                            assert!(
                                (a - b).abs() <= 1e-4 + 1e-3 * b.abs(),
                                "thread {t}: {a} vs {b}"
                            );
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// With the extended passes, Conv+Relu fuse for the GPU too (the fusion is valid for wgpu);
/// with FusedConv claiming off, the fused node falls back to the CPU.
#[test]
fn fusions_for_the_gpu_and_claiming_off() {
    let m = split_model();
    let on = session(&m, vec![wgpu(WgpuOptions::default())], Level::All);
    let ops: Vec<String> = on
        .model()
        .graph
        .nodes()
        .map(|(_, n)| n.op_type.clone())
        .collect();
    assert!(ops.iter().any(|o| o == "FusedConv"), "{ops:?}");
    let per_ep = on.assignment().nodes_per_ep(2);
    assert_eq!(per_ep[1], 1, "only LRN on the CPU: {ops:?}");
    let off = session(
        &m,
        vec![wgpu(WgpuOptions { fused_conv: false })],
        Level::All,
    );
    let fused_on_cpu = off
        .model()
        .graph
        .nodes()
        .filter(|(id, n)| {
            // On the CPU it runs in the blocked layout at this level.
            ["FusedConv", "NchwcConv"].contains(&n.op_type.as_str())
                && off.assignment().ep(*id) == Some(1)
        })
        .count();
    assert!(fused_on_cpu >= 1);
    let f = feed(vec![1, 3, 6, 5], 9);
    assert_close(
        "claiming off",
        &off.run(f.clone()).unwrap(),
        &on.run(f).unwrap(),
    );
}

/// x -> Conv a; Relu(a) = b; x -> Conv c; y = Concat(a, b, c) on channels, also reshaped into a
/// second output; a is read again after the Concat. a and c are written straight into y
/// (b's producer reads a, its sibling, so b is copied); results match the CPU either way.
#[test]
fn concat_inputs_written_in_place() {
    let mut g = Graph::new("cat");
    let ty = ValueType::tensor(
        DataType::F32,
        vec![Dim::Known(1), Dim::Known(3), Dim::Known(4), Dim::Known(4)],
    );
    let x = g.add_value("x", Some(ty.clone())).unwrap();
    g.value_mut(x).declared = Some(ty);
    g.push_input(x);
    let mut rng = Rng::new(11);
    let w1 = g
        .add_initializer(
            "w1",
            kiln_ir::Tensor::from_f32(vec![16, 3, 1, 1], &rng.vec(48)),
        )
        .unwrap();
    let w2 = g
        .add_initializer(
            "w2",
            kiln_ir::Tensor::from_f32(vec![16, 3, 3, 3], &rng.vec(432)),
        )
        .unwrap();
    let shape = g
        .add_initializer("shape", kiln_ir::Tensor::from_i64(vec![2], &[48, 16]))
        .unwrap();
    let v: Vec<_> = ["a", "b", "c", "y", "flat", "again"]
        .iter()
        .map(|n| g.add_value(n, None).unwrap())
        .collect();
    let nodes = [
        Node::new("conv_a", "Conv", "")
            .with_inputs(&[Some(x), Some(w1)])
            .with_outputs(&[Some(v[0])]),
        Node::new("relu_b", "Relu", "")
            .with_inputs(&[Some(v[0])])
            .with_outputs(&[Some(v[1])]),
        Node::new("conv_c", "Conv", "")
            .with_inputs(&[Some(x), Some(w2)])
            .with_outputs(&[Some(v[2])])
            .with_attrs(vec![Attribute::ints("pads", &[1, 1, 1, 1])]),
        Node::new("cat", "Concat", "")
            .with_inputs(&[Some(v[0]), Some(v[1]), Some(v[2])])
            .with_outputs(&[Some(v[3])])
            .with_attrs(vec![Attribute::int("axis", 1)]),
        Node::new("flat", "Reshape", "")
            .with_inputs(&[Some(v[3]), Some(shape)])
            .with_outputs(&[Some(v[4])]),
        Node::new("again", "Sigmoid", "")
            .with_inputs(&[Some(v[0])])
            .with_outputs(&[Some(v[5])]),
    ];
    for n in nodes {
        g.add_node(n).unwrap();
    }
    g.set_outputs(vec![v[3], v[4], v[5]]);
    let mut m = model_of(g, 17);
    kiln_ops::infer_shapes(&mut m).unwrap();
    let f = feed(vec![1, 3, 4, 4], 12);
    let gpu = session(&m, vec![wgpu(WgpuOptions::default())], Level::Disabled);
    assert_eq!(gpu.assignment().nodes_per_ep(2), vec![6, 0]);
    let cpu = session(&m, vec![], Level::Disabled);
    assert_close(
        "in-place concat",
        &gpu.run(f.clone()).unwrap(),
        &cpu.run(f.clone()).unwrap(),
    );
    // The plan itself: the same partition compiled directly.
    let order = &gpu.assignment().partitions[0].nodes;
    let spec = kiln_runtime::partition_spec(&m.graph, order);
    let provider = WgpuProvider::new(WgpuOptions::default()).unwrap();
    let program = kiln_wgpu::program::Program::new(provider.gpu().clone(), &m, &spec).unwrap();
    let x = f[0].1.tensor().unwrap();
    let align = provider.gpu().limits.min_storage_buffer_offset_alignment as usize;
    // a sits at offset 0; c at 32 planes of 16 floats = 2048 bytes, aligned on any device.
    let expect = if 2048 % align == 0 { 2 } else { 1 };
    assert_eq!(program.in_place_concat_inputs(&[x]).unwrap(), expect);
}
