//! Sessions: partitioning across providers (assignment asserted like ONNX Runtime's
//! ExpectedEPNodeAssignment All/Some/None), identical outputs whatever the assignment, input
//! checks naming the input, memory freed as values die, and concurrent runs.
use std::sync::Arc;

use kiln_ir::{Attribute, DataType, Dim, Graph, Model, Node, ValueType};
use kiln_ops::{Tensor, Value};
use kiln_runtime::{
    CpuProvider, ExecutionProvider, Level, OpTypeProvider, RuntimeError, Session, SessionOptions,
};

/// x[batch, 8] -> Add(x, x) -> Relu -> Mul(., x) -> Sigmoid -> LeakyRelu -> Add(., x) -> y,
/// a chain long enough that freeing dead values matters.
fn chain_model() -> Model {
    let mut g = Graph::new("chain");
    let ty = ValueType::tensor(DataType::F32, vec![Dim::sym("batch"), Dim::Known(8)]);
    let x = g.add_value("x", Some(ty.clone())).unwrap();
    g.value_mut(x).declared = Some(ty);
    g.push_input(x);
    let mut prev = x;
    let steps: [(&str, bool, Vec<Attribute>); 6] = [
        ("Add", true, vec![]),
        ("Relu", false, vec![]),
        ("Mul", true, vec![]),
        ("Sigmoid", false, vec![]),
        ("LeakyRelu", false, vec![Attribute::float("alpha", 0.2)]),
        ("Add", true, vec![]),
    ];
    for (i, (op, binary, attrs)) in steps.into_iter().enumerate() {
        let out = g.add_value(&format!("v{i}"), None).unwrap();
        let inputs = if binary {
            vec![Some(prev), Some(x)]
        } else {
            vec![Some(prev)]
        };
        g.add_node(
            Node::new(&format!("n{i}"), op, "")
                .with_inputs(&inputs)
                .with_outputs(&[Some(out)])
                .with_attrs(attrs),
        )
        .unwrap();
        prev = out;
    }
    g.set_outputs(vec![prev]);
    g.check_consistency().unwrap();
    Model::new(g, &[("", 17)])
}

fn input(batch: usize) -> Vec<(String, Value)> {
    let v: Vec<f32> = (0..batch * 8).map(|i| (i as f32 * 0.37).sin()).collect();
    vec![(
        "x".into(),
        Value::Tensor(Tensor::from_vec(vec![batch, 8], v)),
    )]
}

fn session(providers: Vec<Arc<dyn ExecutionProvider>>) -> Session {
    let opts = SessionOptions {
        threads: Some(1),
        level: Level::Disabled,
        providers,
        memory_limit: None,
        precision: kiln_runtime::Precision::F32,
    };
    Session::from_model(chain_model(), opts).unwrap()
}

fn output(s: &Session, batch: usize) -> Vec<f32> {
    let out = s.run(input(batch)).unwrap();
    out[0]
        .1
        .tensor()
        .unwrap()
        .as_slice::<f32>()
        .unwrap()
        .to_vec()
}

#[test]
fn assignment_all_some_none() {
    let cpu_only = session(vec![]);
    let reference = output(&cpu_only, 3);
    let a = cpu_only.assignment();
    assert_eq!(a.partitions.len(), 1);
    assert_eq!(a.nodes_per_ep(1), vec![6]);

    // All: a provider that takes every op of the graph leaves nothing to the CPU.
    let all = session(vec![Arc::new(OpTypeProvider::new(
        "test",
        &["Add", "Relu", "Mul", "Sigmoid", "LeakyRelu"],
    ))]);
    assert_eq!(all.assignment().nodes_per_ep(2), vec![6, 0]);
    assert_eq!(all.assignment().partitions.len(), 1);
    assert_eq!(output(&all, 3), reference);

    // Some: Relu and Sigmoid only -> test, cpu, test, cpu (Add | Relu | Mul | Sigmoid | ...).
    let some = session(vec![Arc::new(OpTypeProvider::new(
        "test",
        &["Relu", "Sigmoid"],
    ))]);
    let a = some.assignment();
    assert_eq!(a.nodes_per_ep(2), vec![2, 4]);
    let eps: Vec<usize> = a.partitions.iter().map(|p| p.ep).collect();
    assert_eq!(eps, vec![1, 0, 1, 0, 1]);
    // The declines say why.
    let declined_add = a.rejected.iter().find(|r| r.ep == 0).unwrap();
    assert!(
        declined_add.reason.contains("not among its op types"),
        "{}",
        declined_add.reason
    );
    assert_eq!(output(&some, 3), reference);

    // None: a provider that claims nothing of this graph.
    let none = session(vec![Arc::new(OpTypeProvider::new("test", &["Conv"]))]);
    assert_eq!(none.assignment().nodes_per_ep(2), vec![0, 6]);
    assert_eq!(output(&none, 3), reference);

    // A provider listed after the CPU gets nothing: assigned nodes are never taken.
    let after = session(vec![
        Arc::new(CpuProvider),
        Arc::new(OpTypeProvider::new("test", &["Relu"])),
    ]);
    assert_eq!(after.assignment().nodes_per_ep(2), vec![6, 0]);
}

#[test]
fn unsupported_nodes_are_reported_with_reasons() {
    let mut m = chain_model();
    let id = m.graph.order()[1];
    m.graph.node_mut(id).op_type = "NoSuchOp".into();
    let err = Session::from_model(m, SessionOptions::default())
        .err()
        .unwrap();
    let RuntimeError::Unassigned { node, reasons } = &err else {
        panic!("{err}")
    };
    assert!(node.contains("'n1' (NoSuchOp)"), "{node}");
    assert!(reasons.contains("cpu:"), "{reasons}");
}

#[test]
fn inputs_are_checked_by_name() {
    let s = session(vec![]);
    let bad = |v: Value| s.run(vec![("x".into(), v)]).unwrap_err().to_string();
    let e = bad(Value::Tensor(Tensor::from_vec(vec![2, 8], vec![1i64; 16])));
    assert!(e.contains("input 'x'") && e.contains("float32"), "{e}");
    let e = bad(Value::Tensor(Tensor::from_vec(vec![16], vec![1f32; 16])));
    assert!(e.contains("input 'x'") && e.contains("rank"), "{e}");
    let e = bad(Value::Tensor(Tensor::from_vec(vec![2, 4], vec![1f32; 8])));
    assert!(
        e.contains("input 'x'") && e.contains("dimension 1 must be 8"),
        "{e}"
    );
    let e = s.run(vec![]).unwrap_err().to_string();
    assert!(e.contains("input 'x'") && e.contains("missing"), "{e}");
    let mut extra = input(1);
    extra.push(("y".into(), extra[0].1.clone()));
    let e = s.run(extra).unwrap_err().to_string();
    assert!(e.contains("input 'y'"), "{e}");
    // Symbolic dims resolve per run.
    assert_eq!(output(&s, 1).len(), 8);
    assert_eq!(output(&s, 5).len(), 40);
}

#[test]
fn dead_values_are_freed() {
    let s = session(vec![]);
    let (_, stats) = s.run_with_stats(input(1000)).unwrap();
    // Six intermediates of 32 KB each; at most three are alive at once (the one being read, the
    // one being written, and the graph output at the end).
    assert_eq!(stats.total_bytes, 6 * 1000 * 8 * 4);
    assert!(
        stats.peak_bytes <= 2 * 1000 * 8 * 4,
        "peak {} bytes",
        stats.peak_bytes
    );
}

#[test]
fn one_session_many_threads_identical_outputs() {
    let s = Arc::new(session(vec![]));
    let reference = output(&s, 4);
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || (0..50).map(|_| output(&s, 4)).collect::<Vec<_>>())
        })
        .collect();
    for h in handles {
        for out in h.join().unwrap() {
            assert_eq!(
                out.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                reference.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            );
        }
    }
    fn is_send_sync<T: Send + Sync>() {}
    is_send_sync::<Session>();
}

/// x[1, 2, 3, 3] -> Conv(W, B) -> y, W and B initializers that the graph also lists as
/// inputs, in a model of IR version `ir`.
fn conv_with_listed_initializers(ir: i64) -> Model {
    let mut g = Graph::new("conv");
    let ty = ValueType::tensor(
        DataType::F32,
        vec![Dim::Known(1), Dim::Known(2), Dim::Known(3), Dim::Known(3)],
    );
    let x = g.add_value("x", Some(ty.clone())).unwrap();
    g.value_mut(x).declared = Some(ty);
    g.push_input(x);
    let wv: Vec<f32> = (0..4 * 2 * 9).map(|i| (i as f32 * 0.11).cos()).collect();
    let w = g
        .add_initializer("W", kiln_ir::Tensor::from_f32(vec![4, 2, 3, 3], &wv))
        .unwrap();
    let b = g
        .add_initializer(
            "B",
            kiln_ir::Tensor::from_f32(vec![4], &[0.5, -1.0, 2.0, 0.25]),
        )
        .unwrap();
    g.push_input(w);
    g.push_input(b);
    let y = g.add_value("y", None).unwrap();
    g.add_node(
        Node::new("conv", "Conv", "")
            .with_inputs(&[Some(x), Some(w), Some(b)])
            .with_outputs(&[Some(y)])
            .with_attrs(vec![Attribute::ints("pads", &[1, 1, 1, 1])]),
    )
    .unwrap();
    g.set_outputs(vec![y]);
    if ir >= 4 {
        g.make_inputs_overridable();
    }
    let mut m = chain_model();
    m.ir_version = ir;
    m.graph = g;
    m
}

#[test]
fn listed_initializers_are_constants_before_ir4_and_overridable_after() {
    let opts = || SessionOptions {
        threads: Some(1),
        level: Level::Disabled,
        providers: vec![],
        memory_limit: None,
        precision: kiln_runtime::Precision::F32,
    };
    let x = || {
        let v: Vec<f32> = (0..18).map(|i| i as f32 * 0.1).collect();
        (
            "x".to_string(),
            Value::Tensor(Tensor::from_vec(vec![1, 2, 3, 3], v)),
        )
    };
    // Before IR version 4 every initializer is listed as an input; they are still constants,
    // so the Conv is prepared once (weights packed) and no feed may replace them.
    let old = Session::from_model(conv_with_listed_initializers(3), opts()).unwrap();
    assert_eq!(old.prepared_nodes().len(), 1);
    assert_eq!(old.overridable_inputs().count(), 0);
    let b = (
        "B".to_string(),
        Value::Tensor(Tensor::from_vec(vec![4], vec![0f32; 4])),
    );
    let err = old.run(vec![x(), b.clone()]).unwrap_err().to_string();
    assert!(err.contains("B") && err.contains("no such input"), "{err}");
    // From IR version 4 they are inputs with defaults: nothing bakes them in, and a feed of
    // B changes the output by exactly the bias.
    let new = Session::from_model(conv_with_listed_initializers(4), opts()).unwrap();
    assert!(new.prepared_nodes().is_empty());
    assert_eq!(new.overridable_inputs().count(), 2);
    let y = |s: &Session, feeds| -> Vec<f32> {
        s.run(feeds).unwrap()[0]
            .1
            .tensor()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .to_vec()
    };
    let (with_default, zero_bias) = (y(&new, vec![x()]), y(&new, vec![x(), b]));
    assert_eq!(with_default, y(&old, vec![x()]));
    for (i, (a, z)) in with_default.iter().zip(&zero_bias).enumerate() {
        let bias = [0.5, -1.0, 2.0, 0.25][i / 9];
        assert!((a - z - bias).abs() < 1e-5, "y[{i}]: {a} vs {z}");
    }
}

#[test]
fn an_empty_bias_slot_still_prepares() {
    // Conv(x, W, "") as exporters write a bias-less convolution: the empty slot is no input
    // computed at run time, so the weights are packed once.
    let mut m = conv_with_listed_initializers(8);
    let g = &mut m.graph;
    let conv = g.nodes().map(|(id, _)| id).next().unwrap();
    g.set_input(conv, 2, None).unwrap();
    let w = g
        .inputs()
        .iter()
        .copied()
        .find(|&v| g.value(v).name == "W")
        .unwrap();
    let wt = g.value_mut(w).default.take().unwrap();
    g.value_mut(w).initializer = Some(wt);
    let keep: Vec<_> = g
        .inputs()
        .iter()
        .copied()
        .filter(|&v| g.value(v).name == "x")
        .collect();
    g.set_inputs(keep);
    g.remove_dead();
    let opts = SessionOptions {
        threads: Some(1),
        level: Level::Disabled,
        providers: vec![],
        memory_limit: None,
        precision: kiln_runtime::Precision::F32,
    };
    let s = Session::from_model(m, opts).unwrap();
    assert_eq!(s.prepared_nodes().len(), 1);
}
