//! The optimizer's fusions on small graphs: each fires where it should (and writes exactly the
//! attributes ONNX Runtime writes), declines with a reason where it must not, and never changes
//! what the graph computes (optimized and unoptimized sessions give the same outputs).
use std::sync::Arc;

use kiln_ir::{
    AttrList, AttrValue, Attribute, DataType, Dim, Graph, Model, Node, Tensor, ValueId, ValueType,
};
use kiln_ops::{Tensor as RtTensor, Value};
use kiln_runtime::{
    CpuProvider, ExecutionProvider, Level, OpTypeProvider, Session, SessionOptions,
};

/// Builds small graphs through the IR's mutation API.
struct B {
    g: Graph,
    seed: u64,
    n: usize,
}

impl B {
    fn new() -> B {
        B {
            g: Graph::new("test"),
            seed: 7,
            n: 0,
        }
    }

    fn input(&mut self, name: &str, dtype: DataType, dims: &[i64]) -> ValueId {
        let ty = ValueType::tensor(dtype, dims.iter().map(|&d| Dim::Known(d)).collect());
        let v = self.g.add_value(name, Some(ty.clone())).unwrap();
        self.g.value_mut(v).declared = Some(ty);
        self.g.push_input(v);
        v
    }

    fn random(&mut self, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.seed = self
                    .seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((self.seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    fn weights(&mut self, name: &str, dims: &[usize]) -> ValueId {
        let v = self.random(dims.iter().product());
        let name = self.g.unique_name(name);
        self.g
            .add_initializer(&name, Tensor::from_f32(dims.to_vec(), &v))
            .unwrap()
    }

    fn consts(&mut self, name: &str, dims: &[usize], v: &[f32]) -> ValueId {
        let name = self.g.unique_name(name);
        self.g
            .add_initializer(&name, Tensor::from_f32(dims.to_vec(), v))
            .unwrap()
    }

    fn ints(&mut self, name: &str, v: &[i64]) -> ValueId {
        let name = self.g.unique_name(name);
        self.g
            .add_initializer(&name, Tensor::from_i64(vec![v.len()], v))
            .unwrap()
    }

    fn node(&mut self, op: &str, inputs: &[Option<ValueId>], attrs: Vec<Attribute>) -> ValueId {
        self.n += 1;
        let name = format!("{}{}", op.to_lowercase(), self.n);
        let out = self.g.add_value(&format!("{name}_out"), None).unwrap();
        self.g
            .add_node(
                Node::new(&name, op, "")
                    .with_inputs(inputs)
                    .with_outputs(&[Some(out)])
                    .with_attrs(attrs),
            )
            .unwrap();
        out
    }

    fn conv(&mut self, x: ValueId, cin: usize, cout: usize) -> ValueId {
        let w = self.weights("w", &[cout, cin, 3, 3]);
        let b = self.weights("b", &[cout]);
        self.node(
            "Conv",
            &[Some(x), Some(w), Some(b)],
            vec![Attribute::ints("pads", &[1, 1, 1, 1])],
        )
    }

    fn finish(mut self, outputs: &[ValueId]) -> Model {
        self.g.set_outputs(outputs.to_vec());
        self.g.check_consistency().unwrap();
        Model::new(self.g, &[("", 17)])
    }
}

fn session(m: &Model, level: Level, providers: Vec<Arc<dyn ExecutionProvider>>) -> Session {
    let opts = SessionOptions {
        threads: Some(1),
        level,
        providers,
        memory_limit: None,
        precision: kiln_runtime::Precision::F32,
    };
    Session::from_model(m.clone(), opts).unwrap()
}

fn feeds(m: &Model) -> Vec<(String, Value)> {
    let g = &m.graph;
    g.real_inputs()
        .enumerate()
        .map(|(i, v)| {
            let val = g.value(v);
            let shape: Vec<usize> = val
                .declared
                .as_ref()
                .unwrap()
                .known_shape()
                .unwrap()
                .iter()
                .map(|&d| d as usize)
                .collect();
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n)
                .map(|k| ((k * 7 + i * 13) % 17) as f32 / 8.0 - 1.0)
                .collect();
            let t = match val.declared.as_ref().unwrap().dtype().unwrap() {
                DataType::F64 => {
                    RtTensor::from_vec(shape, data.iter().map(|&x| x as f64).collect::<Vec<_>>())
                }
                DataType::F16 => RtTensor::from_vec(
                    shape,
                    data.iter()
                        .map(|&x| half::f16::from_f32(x))
                        .collect::<Vec<_>>(),
                ),
                _ => RtTensor::from_vec(shape, data),
            };
            (val.name.clone(), Value::Tensor(t))
        })
        .collect()
}

/// Runs the model unoptimized and at `level`; asserts equal outputs; returns the optimized
/// session for inspection.
fn equivalent(m: &Model, level: Level) -> Session {
    let plain = session(m, Level::Disabled, vec![]);
    let opt = session(m, level, vec![]);
    let a = plain.run(feeds(m)).unwrap();
    let b = opt.run(feeds(m)).unwrap();
    for ((na, va), (_, vb)) in a.iter().zip(&b) {
        let (x, y) = (
            va.tensor().unwrap().to_f64s().unwrap(),
            vb.tensor().unwrap().to_f64s().unwrap(),
        );
        assert_eq!(
            va.tensor().unwrap().shape,
            vb.tensor().unwrap().shape,
            "{na}"
        );
        for (p, q) in x.iter().zip(&y) {
            assert!((p - q).abs() <= 1e-5 + 1e-4 * q.abs(), "{na}: {p} vs {q}");
        }
    }
    opt
}

fn ops(s: &Session) -> Vec<String> {
    s.model().graph.nodes().map(|(_, n)| n.op_key()).collect()
}

fn declines(s: &Session, pass: &str) -> Vec<String> {
    s.optimize_report()
        .passes
        .iter()
        .filter(|p| p.name == pass)
        .flat_map(|p| p.declined.iter().map(|(_, r)| r.clone()))
        .collect()
}

fn conv_then(act: &str, attrs: Vec<Attribute>, extra: &[Option<f32>]) -> Model {
    let mut b = B::new();
    let x = b.input("x", DataType::F32, &[1, 3, 6, 6]);
    let c = b.conv(x, 3, 4);
    let mut inputs = vec![Some(c)];
    for (i, e) in extra.iter().enumerate() {
        inputs.push(e.map(|v| b.consts(&format!("bound{i}"), &[], &[v])));
    }
    let y = b.node(act, &inputs, attrs);
    b.finish(&[y])
}

#[test]
fn conv_activation_fuses_with_ort_attributes() {
    let cases: Vec<(&str, Vec<Attribute>, Vec<Option<f32>>, Vec<f32>)> = vec![
        ("Relu", vec![], vec![], vec![]),
        ("Sigmoid", vec![], vec![], vec![]),
        ("Tanh", vec![], vec![], vec![]),
        (
            "LeakyRelu",
            vec![Attribute::float("alpha", 0.3)],
            vec![],
            vec![0.3],
        ),
        (
            "HardSigmoid",
            vec![
                Attribute::float("alpha", 0.25),
                Attribute::float("beta", 0.4),
            ],
            vec![],
            vec![0.25, 0.4],
        ),
        ("Clip", vec![], vec![Some(-0.5), Some(0.5)], vec![-0.5, 0.5]),
        ("Clip", vec![], vec![None, Some(0.25)], vec![f32::MIN, 0.25]),
    ];
    for (act, attrs, extra, params) in cases {
        let m = conv_then(act, attrs, &extra);
        let s = equivalent(&m, Level::Extended);
        assert_eq!(ops(&s), vec!["com.microsoft:FusedConv"], "{act}");
        let (_, n) = s.model().graph.nodes().next().unwrap();
        assert_eq!(n.attrs.get_str("activation"), Some(act));
        match n.attrs.attr("activation_params") {
            None => assert!(params.is_empty(), "{act}: missing params"),
            Some(AttrValue::Floats(p)) => assert_eq!(p, &params, "{act}"),
            other => panic!("{act}: {other:?}"),
        }
        assert_eq!(s.model().opset("com.microsoft"), Some(1));
    }
}

#[test]
fn conv_activation_declines_with_reasons() {
    // The Conv output is read twice.
    let mut b = B::new();
    let x = b.input("x", DataType::F32, &[1, 3, 6, 6]);
    let c = b.conv(x, 3, 4);
    let r = b.node("Relu", &[Some(c)], vec![]);
    let y = b.node("Add", &[Some(r), Some(c)], vec![]);
    let s = equivalent(&b.finish(&[y]), Level::Extended);
    assert!(ops(&s).contains(&"Conv".to_string()));
    assert!(declines(&s, "conv_activation_fusion")
        .iter()
        .any(|r| r.contains("has 2 consumers")));

    // The Conv output is a graph output.
    let mut b = B::new();
    let x = b.input("x", DataType::F32, &[1, 3, 6, 6]);
    let c = b.conv(x, 3, 4);
    let y = b.node("Relu", &[Some(c)], vec![]);
    let s = equivalent(&b.finish(&[y, c]), Level::Extended);
    assert!(declines(&s, "conv_activation_fusion")
        .iter()
        .any(|r| r.contains("graph output")));

    // An activation FusedConv does not have.
    let s = equivalent(&conv_then("Elu", vec![], &[]), Level::Extended);
    assert_eq!(ops(&s), vec!["Conv", "Elu"]);
    assert!(declines(&s, "conv_activation_fusion")
        .iter()
        .any(|r| r.contains("no Elu")));

    // Clip with a bound computed at run time.
    let mut b = B::new();
    let x = b.input("x", DataType::F32, &[1, 3, 6, 6]);
    let lo = b.input("lo", DataType::F32, &[]);
    let c = b.conv(x, 3, 4);
    let y = b.node("Clip", &[Some(c), Some(lo)], vec![]);
    let s = equivalent(&b.finish(&[y]), Level::Extended);
    assert!(declines(&s, "conv_activation_fusion")
        .iter()
        .any(|r| r.contains("not constant")));

    // float64 Conv: ONNX Runtime's FusedConv is float32 only.
    let mut b = B::new();
    let x = b.input("x", DataType::F64, &[1, 2, 4, 4]);
    let w =
        b.g.add_initializer(
            "w64",
            Tensor::from_raw(DataType::F64, vec![2, 2, 1, 1], vec![0u8; 32].into()).unwrap(),
        )
        .unwrap();
    let c = b.node("Conv", &[Some(x), Some(w)], vec![]);
    let y = b.node("Relu", &[Some(c)], vec![]);
    let s = equivalent(&b.finish(&[y]), Level::Extended);
    assert!(declines(&s, "conv_activation_fusion")
        .iter()
        .any(|r| r.contains("float32 only")));

    // Nodes on another provider are not rewritten.
    let m = conv_then("Relu", vec![], &[]);
    let s = session(
        &m,
        Level::Extended,
        vec![
            Arc::new(OpTypeProvider::new("other", &["Relu"])),
            Arc::new(CpuProvider),
        ],
    );
    assert_eq!(ops(&s), vec!["Conv", "Relu"]);
    assert!(declines(&s, "conv_activation_fusion")
        .iter()
        .any(|r| r.contains("provider other")));

    // Basic level does not fuse.
    let s = equivalent(&conv_then("Relu", vec![], &[]), Level::Basic);
    assert_eq!(ops(&s), vec!["Conv", "Relu"]);
}

#[test]
fn conv_add_relu_uses_the_residual_input() {
    let mut b = B::new();
    let x = b.input("x", DataType::F32, &[1, 4, 5, 5]);
    let c = b.conv(x, 4, 4);
    let sum = b.node("Add", &[Some(c), Some(x)], vec![]);
    let y = b.node("Relu", &[Some(sum)], vec![]);
    let s = equivalent(&b.finish(&[y]), Level::Extended);
    assert_eq!(ops(&s), vec!["com.microsoft:FusedConv"]);
    let (_, n) = s.model().graph.nodes().next().unwrap();
    assert_eq!(n.inputs().len(), 4, "X, W, B, Z");
    assert_eq!(n.attrs.get_str("activation"), Some("Relu"));

    // Without an activation, and with a Sum.
    let mut b = B::new();
    let x = b.input("x", DataType::F32, &[1, 4, 5, 5]);
    let c = b.conv(x, 4, 4);
    let y = b.node("Sum", &[Some(x), Some(c)], vec![]);
    let s = equivalent(&b.finish(&[y]), Level::Extended);
    assert_eq!(ops(&s), vec!["com.microsoft:FusedConv"]);
    assert!(s
        .model()
        .graph
        .nodes()
        .next()
        .unwrap()
        .1
        .attrs
        .get_str("activation")
        .is_none());

    // A residual that broadcasts is declined.
    let mut b = B::new();
    let x = b.input("x", DataType::F32, &[1, 4, 5, 5]);
    let z = b.input("z", DataType::F32, &[1, 4, 1, 1]);
    let c = b.conv(x, 4, 4);
    let y = b.node("Add", &[Some(c), Some(z)], vec![]);
    let s = equivalent(&b.finish(&[y]), Level::Extended);
    assert!(declines(&s, "conv_add_activation_fusion")
        .iter()
        .any(|r| r.contains("shape")));
}

#[test]
fn batchnorm_folds_into_conv() {
    let mut b = B::new();
    let x = b.input("x", DataType::F32, &[1, 3, 5, 5]);
    let c = b.conv(x, 3, 4);
    let scale = b.consts("scale", &[4], &[1.5, 0.5, 2.0, 1.0]);
    let shift = b.consts("shift", &[4], &[0.1, -0.2, 0.3, 0.0]);
    let mean = b.consts("mean", &[4], &[0.05, 0.1, -0.1, 0.2]);
    let var = b.consts("var", &[4], &[1.0, 0.5, 2.0, 0.25]);
    let y = b.node(
        "BatchNormalization",
        &[Some(c), Some(scale), Some(shift), Some(mean), Some(var)],
        vec![],
    );
    let s = equivalent(&b.finish(&[y]), Level::Basic);
    assert_eq!(ops(&s), vec!["Conv"]);

    // Statistics that arrive at run time are not folded.
    let mut b = B::new();
    let x = b.input("x", DataType::F32, &[1, 3, 5, 5]);
    let mean = b.input("mean", DataType::F32, &[4]);
    let c = b.conv(x, 3, 4);
    let scale = b.consts("scale", &[4], &[1.0; 4]);
    let shift = b.consts("shift", &[4], &[0.0; 4]);
    let var = b.consts("var", &[4], &[1.0; 4]);
    let y = b.node(
        "BatchNormalization",
        &[Some(c), Some(scale), Some(shift), Some(mean), Some(var)],
        vec![],
    );
    let s = equivalent(&b.finish(&[y]), Level::Basic);
    assert!(ops(&s).contains(&"BatchNormalization".to_string()));
    assert!(declines(&s, "batchnorm_into_conv")
        .iter()
        .any(|r| r.contains("mean is not a constant")));
}

/// Focus: four phases of x in `order` ((row, col) offsets), chained or single Slices, then
/// Concat and a reader (`Conv` or `Relu`).
fn focus(order: [(i64, i64); 4], chained: bool, reader: &str, h: i64, dtype: DataType) -> Model {
    let mut b = B::new();
    let x = b.input("x", dtype, &[1, 3, h, 8]);
    let ends = b.ints("ends", &[i64::MAX]);
    let two = b.ints("steps", &[2]);
    let ax_h = b.ints("axes_h", &[2]);
    let ax_w = b.ints("axes_w", &[-1]);
    let mut phases = Vec::new();
    for (r, c) in order {
        if chained {
            let sr = b.ints("start", &[r]);
            let rows = b.node(
                "Slice",
                &[Some(x), Some(sr), Some(ends), Some(ax_h), Some(two)],
                vec![],
            );
            let sc = b.ints("start", &[c]);
            phases.push(b.node(
                "Slice",
                &[Some(rows), Some(sc), Some(ends), Some(ax_w), Some(two)],
                vec![],
            ));
        } else {
            let starts = b.ints("starts", &[r, c]);
            let ends2 = b.ints("ends2", &[i64::MAX, i64::MAX]);
            let axes = b.ints("axes", &[2, 3]);
            let steps = b.ints("steps2", &[2, 2]);
            phases.push(b.node(
                "Slice",
                &[Some(x), Some(starts), Some(ends2), Some(axes), Some(steps)],
                vec![],
            ));
        }
    }
    let cat = b.node(
        "Concat",
        &phases.iter().map(|&p| Some(p)).collect::<Vec<_>>(),
        vec![Attribute::int("axis", 1)],
    );
    let y = if reader == "Conv" {
        b.conv(cat, 12, 4)
    } else {
        b.node(reader, &[Some(cat)], vec![])
    };
    b.finish(&[y])
}

const CANONICAL: [(i64, i64); 4] = [(0, 0), (0, 1), (1, 0), (1, 1)];
const YOLO: [(i64, i64); 4] = [(0, 0), (1, 0), (0, 1), (1, 1)];

#[test]
fn slices_and_concat_become_space_to_depth() {
    let s = equivalent(
        &focus(CANONICAL, false, "Relu", 6, DataType::F32),
        Level::Basic,
    );
    assert_eq!(ops(&s), vec!["SpaceToDepth", "Relu"]);
    // YOLO's order read by a Conv: the permutation goes into the weights, no Gather.
    for chained in [false, true] {
        let s = equivalent(
            &focus(YOLO, chained, "Conv", 6, DataType::F32),
            Level::Basic,
        );
        assert_eq!(ops(&s), vec!["SpaceToDepth", "Conv"], "chained {chained}");
    }
    // ... read by anything else: a Gather on channels.
    let s = equivalent(&focus(YOLO, true, "Relu", 6, DataType::F32), Level::Basic);
    assert_eq!(ops(&s), vec!["SpaceToDepth", "Gather", "Relu"]);
    // float16 too.
    let s = equivalent(&focus(YOLO, true, "Relu", 6, DataType::F16), Level::Basic);
    assert_eq!(ops(&s), vec!["SpaceToDepth", "Gather", "Relu"]);
}

#[test]
fn space_to_depth_declines_with_reasons() {
    let reason = |m: &Model| -> (Vec<String>, Vec<String>) {
        let s = equivalent(m, Level::Basic);
        (ops(&s), declines(&s, "slice_concat_to_space_to_depth"))
    };
    // Odd height: the phases differ in height, so the model is invalid and refused before any
    // pass runs, naming the Concat.
    let opts = SessionOptions {
        threads: Some(1),
        level: Level::Basic,
        providers: vec![],
        memory_limit: None,
        precision: kiln_runtime::Precision::F32,
    };
    let odd = Session::from_model(focus(CANONICAL, false, "Relu", 7, DataType::F32), opts);
    let e = odd.err().expect("an invalid model is refused").to_string();
    assert!(e.contains("(Concat)") && e.contains("dimension 2"), "{e}");
    // Two phases the same: not the four offsets.
    let (_, d) = reason(&focus(
        [(0, 0), (0, 1), (1, 0), (0, 0)],
        false,
        "Relu",
        6,
        DataType::F32,
    ));
    assert!(d.iter().any(|r| r.contains("four offsets")), "{d:?}");

    // Step 3, a different input, a Slice output read elsewhere, integer data.
    let build = |variant: &str| -> Model {
        let mut b = B::new();
        let dt = if variant == "int" {
            DataType::I32
        } else {
            DataType::F32
        };
        let x = b.input("x", dt, &[1, 3, 6, 6]);
        let x2 = b.input("x2", dt, &[1, 3, 6, 6]);
        let mut phases = Vec::new();
        for (i, (r, c)) in CANONICAL.into_iter().enumerate() {
            let step = if variant == "step" { 3 } else { 2 };
            let src = if variant == "inputs" && i == 3 { x2 } else { x };
            let starts = b.ints("starts", &[r, c]);
            let ends = b.ints("ends", &[i64::MAX, i64::MAX]);
            let axes = b.ints("axes", &[2, 3]);
            let steps = b.ints("steps", &[step, step]);
            phases.push(b.node(
                "Slice",
                &[Some(src), Some(starts), Some(ends), Some(axes), Some(steps)],
                vec![],
            ));
        }
        let cat = b.node(
            "Concat",
            &phases.iter().map(|&p| Some(p)).collect::<Vec<_>>(),
            vec![Attribute::int("axis", 1)],
        );
        let mut outs = vec![cat];
        if variant == "shared" {
            outs.push(b.node("Neg", &[Some(phases[0])], vec![]));
        }
        if variant == "graph_output" {
            outs.push(phases[1]);
        }
        b.finish(&outs)
    };
    for (variant, want) in [
        ("step", "step is 3"),
        ("inputs", "different inputs"),
        ("shared", "used outside the pattern"),
        ("graph_output", "graph output"),
        ("int", "float32 and float16"),
    ] {
        let m = build(variant);
        let plain = session(&m, Level::Disabled, vec![]);
        let opt = session(&m, Level::Basic, vec![]);
        let d = declines(&opt, "slice_concat_to_space_to_depth");
        assert!(d.iter().any(|r| r.contains(want)), "{variant}: {d:?}");
        assert!(ops(&opt).contains(&"Slice".to_string()), "{variant}");
        if variant != "int" {
            assert_eq!(
                plain.run(feeds(&m)).unwrap(),
                opt.run(feeds(&m)).unwrap(),
                "{variant}"
            );
        }
    }
}

#[test]
fn silu_becomes_quick_gelu_and_gemm_fuses() {
    let mut b = B::new();
    let x = b.input("x", DataType::F32, &[2, 8]);
    let s = b.node("Sigmoid", &[Some(x)], vec![]);
    let y = b.node("Mul", &[Some(x), Some(s)], vec![]);
    let w = b.weights("w", &[8, 4]);
    let g = b.node("Gemm", &[Some(y), Some(w)], vec![]);
    let z = b.node(
        "LeakyRelu",
        &[Some(g)],
        vec![Attribute::float("alpha", 0.2)],
    );
    let sess = equivalent(&b.finish(&[z]), Level::Extended);
    assert_eq!(
        ops(&sess),
        vec!["com.microsoft:QuickGelu", "com.microsoft:FusedGemm"]
    );
    let (_, gemm) = sess.model().graph.nodes().nth(1).unwrap();
    assert_eq!(gemm.attrs.get_str("activation"), Some("LeakyRelu"));
    assert_eq!(gemm.attrs.get_float("activation_alpha"), Some(0.2));
}

#[test]
fn basic_cleanups() {
    let mut b = B::new();
    let x = b.input("x", DataType::F32, &[2, 3]);
    let i = b.node("Identity", &[Some(x)], vec![]);
    let shape = b.node("Shape", &[Some(i)], vec![]);
    let ones = b.node("ConstantOfShape", &[Some(shape)], vec![]);
    let a = b.node("Relu", &[Some(i)], vec![]);
    let a2 = b.node("Relu", &[Some(i)], vec![]);
    let s = b.node("Add", &[Some(a), Some(a2)], vec![]);
    let y = b.node("Add", &[Some(s), Some(ones)], vec![]);
    let sess = equivalent(&b.finish(&[y]), Level::Basic);
    // Identity gone, Shape/ConstantOfShape folded, the two Relus merged.
    assert_eq!(ops(&sess), vec!["Relu", "Add", "Add"]);
}

#[test]
fn conv_silu_fuses_in_sessions_only() {
    let mut b = B::new();
    let x = b.input("x", DataType::F32, &[1, 3, 6, 6]);
    let c = b.conv(x, 3, 4);
    let s = b.node("Sigmoid", &[Some(c)], vec![]);
    let y = b.node("Mul", &[Some(c), Some(s)], vec![]);
    let m = b.finish(&[y]);
    let sess = equivalent(&m, Level::Extended);
    assert_eq!(ops(&sess), vec!["ai.kiln:FusedConv"]);
    // For a model that will be saved: ORT's QuickGelu, and kiln's own op declined.
    let providers: Vec<Arc<dyn ExecutionProvider>> = vec![Arc::new(CpuProvider)];
    let (saved, _, report) =
        kiln_runtime::prepare(m, &providers, Level::All, false, false, false).unwrap();
    let kinds: Vec<String> = saved.graph.nodes().map(|(_, n)| n.op_key()).collect();
    assert_eq!(kinds, vec!["Conv", "com.microsoft:QuickGelu"]);
    let d: Vec<_> = report
        .passes
        .iter()
        .filter(|p| p.name == "conv_silu_fusion")
        .flat_map(|p| p.declined.clone())
        .collect();
    assert!(
        d.iter()
            .any(|(_, r)| r.contains("never written to a saved model")),
        "{d:?}"
    );
}

/// `x · 0.5 · (1 + erf(x / √2))` in the orders exporters write, over `x`; returns the output.
fn gelu_chain(b: &mut B, x: ValueId, form: &str) -> ValueId {
    let (op, c) = if form == "mul_inv_sqrt2" {
        ("Mul", std::f32::consts::FRAC_1_SQRT_2)
    } else {
        ("Div", std::f32::consts::SQRT_2)
    };
    let c = b.consts("c", &[], &[c]);
    let d = b.node(op, &[Some(x), Some(c)], vec![]);
    let e = b.node("Erf", &[Some(d)], vec![]);
    let one = b.consts("one", &[], &[1.0]);
    let a = b.node("Add", &[Some(one), Some(e)], vec![]);
    let half = b.consts("half", &[], &[0.5]);
    match form {
        "half_first" => {
            let h = b.node("Mul", &[Some(x), Some(half)], vec![]);
            b.node("Mul", &[Some(h), Some(a)], vec![])
        }
        "half_on_erf" => {
            let h = b.node("Mul", &[Some(a), Some(half)], vec![]);
            b.node("Mul", &[Some(x), Some(h)], vec![])
        }
        _ => {
            let m = b.node("Mul", &[Some(x), Some(a)], vec![]);
            b.node("Mul", &[Some(m), Some(half)], vec![])
        }
    }
}

#[test]
fn erf_gelu_becomes_gelu_and_takes_the_bias() {
    for form in ["half_last", "half_first", "half_on_erf", "mul_inv_sqrt2"] {
        let mut b = B::new();
        let x = b.input("x", DataType::F32, &[2, 3, 8]);
        let y = gelu_chain(&mut b, x, form);
        let sess = equivalent(&b.finish(&[y]), Level::Extended);
        assert_eq!(ops(&sess), vec!["com.microsoft:Gelu"], "{form}");
    }
    // A linear layer's bias: MatMul, Add(bias) and the GELU become MatMul + BiasGelu.
    let mut b = B::new();
    let x = b.input("x", DataType::F32, &[2, 3, 8]);
    let w = b.weights("w", &[8, 16]);
    let h = b.node("MatMul", &[Some(x), Some(w)], vec![]);
    let bias = b.weights("bias", &[16]);
    let a = b.node("Add", &[Some(h), Some(bias)], vec![]);
    let y = gelu_chain(&mut b, a, "half_last");
    let m = b.finish(&[y]);
    let sess = equivalent(&m, Level::Extended);
    assert_eq!(ops(&sess), vec!["MatMul", "com.microsoft:BiasGelu"]);
    // Saved for ORT: the same contrib ops; portable output keeps the plain ONNX chain.
    let providers: Vec<Arc<dyn ExecutionProvider>> = vec![Arc::new(CpuProvider)];
    let (saved, _, _) =
        kiln_runtime::prepare(m.clone(), &providers, Level::All, false, false, false).unwrap();
    saved.graph.check_consistency().unwrap();
    let kinds: Vec<String> = saved.graph.nodes().map(|(_, n)| n.op_key()).collect();
    assert_eq!(kinds, vec!["MatMul", "com.microsoft:BiasGelu"]);
    let (portable, _, _) =
        kiln_runtime::prepare(m, &providers, Level::All, true, false, false).unwrap();
    assert!(portable
        .graph
        .nodes()
        .all(|(_, n)| n.domain.is_empty() || n.domain == "ai.onnx"));
}

#[test]
fn gelu_fusion_declines_with_reasons() {
    // Not GELU's constants: nothing fires.
    let mut b = B::new();
    let x = b.input("x", DataType::F32, &[2, 8]);
    let two = b.consts("two", &[], &[2.0]);
    let d = b.node("Div", &[Some(x), Some(two)], vec![]);
    let e = b.node("Erf", &[Some(d)], vec![]);
    let one = b.consts("one", &[], &[1.0]);
    let a = b.node("Add", &[Some(e), Some(one)], vec![]);
    let m = b.node("Mul", &[Some(x), Some(a)], vec![]);
    let half = b.consts("half", &[], &[0.5]);
    let y = b.node("Mul", &[Some(m), Some(half)], vec![]);
    let sess = equivalent(&b.finish(&[y]), Level::Extended);
    assert!(ops(&sess).contains(&"Erf".to_string()), "{:?}", ops(&sess));
    // An intermediate that is also a graph output.
    let mut b = B::new();
    let x = b.input("x", DataType::F32, &[2, 8]);
    let y = gelu_chain(&mut b, x, "half_last");
    let erf_out =
        b.g.nodes()
            .find(|(_, n)| n.op_type == "Erf")
            .and_then(|(_, n)| n.output(0))
            .unwrap();
    let sess = equivalent(&b.finish(&[y, erf_out]), Level::Extended);
    assert!(ops(&sess).contains(&"Erf".to_string()));
    let d = declines(&sess, "gelu_fusion");
    assert!(d.iter().any(|r| r.contains("graph output")), "{d:?}");
    // float64: ORT's Gelu is float32 only.
    let mut b = B::new();
    let x = b.input("x", DataType::F64, &[2, 8]);
    let f64c = |b: &mut B, name: &str, v: f64| {
        let t = Tensor::from_raw(DataType::F64, vec![], v.to_le_bytes().to_vec().into()).unwrap();
        b.g.add_initializer(name, t).unwrap()
    };
    let c = f64c(&mut b, "c", std::f64::consts::SQRT_2);
    let d = b.node("Div", &[Some(x), Some(c)], vec![]);
    let e = b.node("Erf", &[Some(d)], vec![]);
    let one = f64c(&mut b, "one", 1.0);
    let a = b.node("Add", &[Some(e), Some(one)], vec![]);
    let m = b.node("Mul", &[Some(x), Some(a)], vec![]);
    let half = f64c(&mut b, "half", 0.5);
    let y = b.node("Mul", &[Some(m), Some(half)], vec![]);
    let sess = equivalent(&b.finish(&[y]), Level::Extended);
    let d = declines(&sess, "gelu_fusion");
    assert!(d.iter().any(|r| r.contains("float32")), "{d:?}");
    // A bias that is not 1-D: Gelu fuses, BiasGelu declines.
    let mut b = B::new();
    let x = b.input("x", DataType::F32, &[2, 16]);
    let bias = b.weights("bias", &[2, 16]);
    let a = b.node("Add", &[Some(x), Some(bias)], vec![]);
    let y = gelu_chain(&mut b, a, "half_last");
    let sess = equivalent(&b.finish(&[y]), Level::Extended);
    assert_eq!(ops(&sess), vec!["Add", "com.microsoft:Gelu"]);
    let d = declines(&sess, "bias_gelu_fusion");
    assert!(d.iter().any(|r| r.contains("1-D bias")), "{d:?}");
    // Below the extended level nothing fuses.
    let mut b = B::new();
    let x = b.input("x", DataType::F32, &[2, 8]);
    let y = gelu_chain(&mut b, x, "half_last");
    let sess = equivalent(&b.finish(&[y]), Level::Basic);
    assert!(ops(&sess).contains(&"Erf".to_string()));
}

/// `LayerNormalization(Add(a, b))` over the last axis of `[2, 3, 8]`.
fn add_then_ln(b: &mut B, a: ValueId, r: ValueId, attrs: Vec<Attribute>) -> ValueId {
    let s = b.node("Add", &[Some(a), Some(r)], vec![]);
    let gamma = b.weights("gamma", &[8]);
    let beta = b.weights("beta", &[8]);
    b.node(
        "LayerNormalization",
        &[Some(s), Some(gamma), Some(beta)],
        attrs,
    )
}

#[test]
fn residual_add_and_layer_norm_become_skip_layer_norm() {
    let mut b = B::new();
    let x = b.input("x", DataType::F32, &[2, 3, 8]);
    let r = b.input("r", DataType::F32, &[2, 3, 8]);
    let y = add_then_ln(&mut b, x, r, vec![Attribute::float("epsilon", 1e-3)]);
    let sess = equivalent(&b.finish(&[y]), Level::Extended);
    assert_eq!(ops(&sess), vec!["com.microsoft:SkipLayerNormalization"]);
    let (_, n) = sess.model().graph.nodes().next().unwrap();
    assert_eq!(n.attrs.get_float("epsilon"), Some(1e-3));
    // With the linear layer's bias folded in: (y, skip, gamma, beta, bias).
    let mut b = B::new();
    let x = b.input("x", DataType::F32, &[2, 3, 8]);
    let r = b.input("r", DataType::F32, &[2, 3, 8]);
    let w = b.weights("w", &[8, 8]);
    let h = b.node("MatMul", &[Some(x), Some(w)], vec![]);
    let bias = b.weights("bias", &[8]);
    let hb = b.node("Add", &[Some(bias), Some(h)], vec![]);
    let y = add_then_ln(&mut b, r, hb, vec![]);
    let sess = equivalent(&b.finish(&[y]), Level::Extended);
    assert_eq!(
        ops(&sess),
        vec!["MatMul", "com.microsoft:SkipLayerNormalization"]
    );
    let (_, n) = sess.model().graph.nodes().nth(1).unwrap();
    assert_eq!(n.inputs().len(), 5);
    assert_eq!(n.input(0), Some(h));
    assert_eq!(n.input(1), Some(r));
    assert_eq!(
        n.attrs.get_float("epsilon"),
        Some(1e-5),
        "ONNX's default, written out"
    );
}

#[test]
fn skip_layer_norm_declines_with_reasons() {
    let cases: Vec<(&[i64], &[i64], Vec<Attribute>, &str)> = vec![
        (&[2, 3, 8], &[1, 3, 8], vec![], "one shape"),
        (&[6, 8], &[6, 8], vec![], "3-D"),
        (
            &[2, 3, 8],
            &[2, 3, 8],
            vec![Attribute::int("axis", 1)],
            "not the last axis",
        ),
    ];
    for (xs, rs, attrs, why) in cases {
        let mut b = B::new();
        let x = b.input("x", DataType::F32, xs);
        let r = b.input("r", DataType::F32, rs);
        let s = b.node("Add", &[Some(x), Some(r)], vec![]);
        let gamma = if why == "not the last axis" {
            b.weights("gamma", &[3, 8])
        } else {
            b.weights("gamma", &[8])
        };
        let y = b.node("LayerNormalization", &[Some(s), Some(gamma)], attrs);
        let sess = equivalent(&b.finish(&[y]), Level::Extended);
        assert!(
            ops(&sess).contains(&"LayerNormalization".to_string()),
            "{why}"
        );
        let d = declines(&sess, "skip_layer_norm_fusion");
        assert!(d.iter().any(|r| r.contains(why)), "{why}: {d:?}");
    }
}

/// x → Relu → BatchNormalization → `op`(constant of `dims`), Caffe2's pre-activation form.
fn bn_then(op: &str, dims: &[usize], x_dims: &[i64]) -> (B, ValueId) {
    let mut b = B::new();
    let x = b.input("x", DataType::F32, x_dims);
    let r = b.node("Relu", &[Some(x)], vec![]);
    let scale = b.consts("scale", &[4], &[1.5, 0.5, 2.0, 1.0]);
    let shift = b.consts("shift", &[4], &[0.1, -0.2, 0.3, 0.0]);
    let mean = b.consts("mean", &[4], &[0.05, 0.1, -0.1, 0.2]);
    let var = b.consts("var", &[4], &[1.0, 0.5, 2.0, 0.25]);
    let bn = b.node(
        "BatchNormalization",
        &[Some(r), Some(scale), Some(shift), Some(mean), Some(var)],
        vec![Attribute::float("epsilon", 1e-3)],
    );
    let n: usize = dims.iter().product();
    let k: Vec<f32> = (0..n).map(|i| 0.75 - 0.3 * i as f32).collect();
    let k = b.consts("k", dims, &k);
    let y = b.node(op, &[Some(bn), Some(k)], vec![]);
    (b, y)
}

#[test]
fn batchnorm_takes_the_following_mul_and_add() {
    let (mut b, y) = bn_then("Mul", &[4, 1, 1], &[1, 4, 5, 5]);
    let k = b.consts("bias", &[1, 4, 1, 1], &[0.5, -1.0, 0.25, 2.0]);
    let z = b.node("Add", &[Some(k), Some(y)], vec![]);
    let s = equivalent(&b.finish(&[z]), Level::Basic);
    assert_eq!(ops(&s), vec!["Relu", "BatchNormalization"]);
    // A single value scales every channel.
    let (b, y) = bn_then("Mul", &[1], &[2, 4, 3, 3]);
    let s = equivalent(&b.finish(&[y]), Level::Basic);
    assert_eq!(ops(&s), vec!["Relu", "BatchNormalization"]);
}

#[test]
fn batchnorm_affine_fold_declines_with_reasons() {
    // [4] lines up with the width, not the channels.
    let (b, y) = bn_then("Mul", &[4], &[1, 4, 4, 4]);
    let s = equivalent(&b.finish(&[y]), Level::Basic);
    assert!(ops(&s).contains(&"Mul".to_string()));
    assert!(declines(&s, "batchnorm_mul_fold")
        .iter()
        .any(|r| r.contains("not one value per channel")));
    // The BatchNormalization's output is also a graph output: it must stay.
    let (b, y) = bn_then("Add", &[4, 1, 1], &[1, 4, 5, 5]);
    let bn = b.g.find_value("batchnormalization2_out").unwrap();
    let m = b.finish(&[y, bn]);
    let s = equivalent(&m, Level::Basic);
    assert!(ops(&s).contains(&"Add".to_string()));
    // An operand that arrives at run time is not folded.
    let mut b = B::new();
    let x = b.input("x", DataType::F32, &[1, 4, 2, 2]);
    let k = b.input("k", DataType::F32, &[4, 1, 1]);
    let p: Vec<ValueId> = (0..4)
        .map(|i| b.consts(&format!("p{i}"), &[4], &[1.0; 4]))
        .collect();
    let bn = b.node(
        "BatchNormalization",
        &[Some(x), Some(p[0]), Some(p[1]), Some(p[2]), Some(p[3])],
        vec![],
    );
    let y = b.node("Mul", &[Some(bn), Some(k)], vec![]);
    let s = equivalent(&b.finish(&[y]), Level::Basic);
    assert_eq!(ops(&s), vec!["BatchNormalization", "Mul"]);
}

fn count_in(m: &Model, op: &str) -> usize {
    m.graph.nodes().filter(|(_, n)| n.op_key() == op).count()
}

fn count(s: &Session, op: &str) -> usize {
    ops(s).iter().filter(|o| *o == op).count()
}

fn conv_k(b: &mut B, x: ValueId, cin: usize, cout: usize, attrs: Vec<Attribute>) -> ValueId {
    let w = b.weights("w", &[cout, cin, 3, 3]);
    let bias = b.weights("b", &[cout]);
    let mut a = vec![Attribute::ints("pads", &[1, 1, 1, 1])];
    a.extend(attrs);
    b.node("Conv", &[Some(x), Some(w), Some(bias)], a)
}

/// A small CNN with a first layer over RGB, a pool, a channel Concat, a residual Add, a
/// BatchNormalization, a depthwise layer and a global pool, and one value read by an op with no blocked form.
fn small_cnn() -> Model {
    let mut b = B::new();
    let x = b.input("x", DataType::F32, &[2, 3, 12, 13]);
    let c0 = conv_k(&mut b, x, 3, 16, vec![]);
    let c1 = conv_k(&mut b, c0, 16, 32, vec![]);
    let r = b.node("Relu", &[Some(c1)], vec![]);
    let p = b.node(
        "MaxPool",
        &[Some(r)],
        vec![
            Attribute::ints("kernel_shape", &[2, 2]),
            Attribute::ints("strides", &[2, 2]),
        ],
    );
    let c2 = conv_k(&mut b, p, 32, 16, vec![]);
    let c3 = conv_k(&mut b, p, 32, 16, vec![]);
    let cat = b.node(
        "Concat",
        &[Some(c2), Some(c3)],
        vec![Attribute::int("axis", 1)],
    );
    let a = b.node("Add", &[Some(cat), Some(p)], vec![]);
    let gamma = b.weights("gamma", &[32]);
    let beta = b.weights("beta", &[32]);
    let mean = b.weights("mean", &[32]);
    let var: Vec<f32> = (0..32).map(|i| 0.5 + i as f32 / 16.0).collect();
    let var = b.consts("var", &[32], &var);
    let bn = b.node(
        "BatchNormalization",
        &[Some(a), Some(gamma), Some(beta), Some(mean), Some(var)],
        vec![],
    );
    let dw = conv_k(&mut b, bn, 1, 32, vec![Attribute::int("group", 32)]);
    let g = b.node("GlobalAveragePool", &[Some(dw)], vec![]);
    let e = b.node("Exp", &[Some(c3)], vec![]);
    b.finish(&[g, e])
}

#[test]
fn nchwc_layout_keeps_blocks_between_the_edges() {
    let m = small_cnn();
    let s = equivalent(&m, Level::All);
    s.model().graph.check_consistency().unwrap();
    // Five convolutions and the BatchNormalization as a depthwise 1×1 one.
    assert_eq!(count(&s, "ai.kiln:NchwcConv"), 6, "{:?}", ops(&s));
    assert_eq!(count(&s, "ai.kiln:NchwcMaxPool"), 1, "{:?}", ops(&s));
    assert_eq!(
        count(&s, "ai.kiln:NchwcGlobalAveragePool"),
        1,
        "{:?}",
        ops(&s)
    );
    // The first layer reads RGB as it is; only Exp's input goes back to NCHW.
    assert_eq!(count(&s, "ai.kiln:ReorderInput"), 0, "{:?}", ops(&s));
    assert_eq!(count(&s, "ai.kiln:ReorderOutput"), 1, "{:?}", ops(&s));
    for op in [
        "Conv",
        "MaxPool",
        "GlobalAveragePool",
        "com.microsoft:FusedConv",
    ] {
        assert_eq!(count(&s, op), 0, "{op} left: {:?}", ops(&s));
    }
    // Concat and Add work on the blocked values as they are.
    assert_eq!(count(&s, "Concat") + count(&s, "Add"), 2, "{:?}", ops(&s));
}

#[test]
fn nchwc_layout_is_never_saved_and_declines_with_reasons() {
    let providers: Vec<Arc<dyn ExecutionProvider>> = vec![Arc::new(CpuProvider)];
    let (saved, _, _) =
        kiln_runtime::prepare(small_cnn(), &providers, Level::All, false, false, false).unwrap();
    assert!(
        saved.graph.nodes().all(|(_, n)| n.domain != "ai.kiln"),
        "a saved model got kiln's layout"
    );
    // Grouped (not depthwise), weights fed at run time, and a Conv on another provider.
    let mut b = B::new();
    let x = b.input("x", DataType::F32, &[1, 16, 8, 8]);
    let grouped = conv_k(&mut b, x, 8, 16, vec![Attribute::int("group", 2)]);
    let w = b.input("w_fed", DataType::F32, &[16, 16, 3, 3]);
    let fed = b.node(
        "Conv",
        &[Some(grouped), Some(w)],
        vec![Attribute::ints("pads", &[1, 1, 1, 1])],
    );
    let m = b.finish(&[fed]);
    let s = equivalent(&m, Level::All);
    assert_eq!(count(&s, "ai.kiln:NchwcConv"), 0, "{:?}", ops(&s));
    let d = declines(&s, "nchwc_layout");
    assert!(
        d.iter().any(|r| r.contains("neither 1 nor depthwise")),
        "{d:?}"
    );
    assert!(d.iter().any(|r| r.contains("W is not a constant")), "{d:?}");
    let s = session(
        &small_cnn(),
        Level::All,
        vec![
            Arc::new(OpTypeProvider::new("other", &["Conv"])),
            Arc::new(CpuProvider),
        ],
    );
    assert_eq!(count(&s, "ai.kiln:NchwcConv"), 0, "{:?}", ops(&s));
}

/// x -> Conv -> BatchNormalization -> `act` -> Conv: DenseNet's pre-activation; with `tap`,
/// the BatchNormalization's output is also read by an Exp.
fn bn_then_act(act: &str, attrs: Vec<Attribute>, tap: bool) -> Model {
    let mut b = B::new();
    let x = b.input("x", DataType::F32, &[1, 16, 6, 7]);
    let c = conv_k(&mut b, x, 16, 32, vec![]);
    let p: Vec<ValueId> = ["gamma", "beta", "mean"]
        .iter()
        .map(|n| b.weights(n, &[32]))
        .collect();
    let var: Vec<f32> = (0..32).map(|i| 0.5 + i as f32 / 16.0).collect();
    let var = b.consts("var", &[32], &var);
    let bn = b.node(
        "BatchNormalization",
        &[Some(c), Some(p[0]), Some(p[1]), Some(p[2]), Some(var)],
        vec![],
    );
    let a = b.node(act, &[Some(bn)], attrs);
    let y = conv_k(&mut b, a, 32, 16, vec![]);
    if tap {
        let e = b.node("Exp", &[Some(bn)], vec![]);
        b.finish(&[y, e])
    } else {
        b.finish(&[y])
    }
}

#[test]
fn nchwc_layout_folds_an_activation_into_the_blocked_batchnorm() {
    for (act, attrs, want) in [
        ("Relu", vec![], "Relu"),
        (
            "LeakyRelu",
            vec![Attribute::float("alpha", 0.3)],
            "LeakyRelu",
        ),
    ] {
        let s = equivalent(&bn_then_act(act, attrs, false), Level::All);
        s.model().graph.check_consistency().unwrap();
        assert_eq!(count(&s, act), 0, "{:?}", ops(&s));
        let acts: Vec<String> = s
            .model()
            .graph
            .nodes()
            .filter(|(_, n)| n.op_type == "NchwcConv")
            .filter_map(|(_, n)| n.attrs.get_str("activation").map(str::to_string))
            .collect();
        assert_eq!(acts, vec![want.to_string()], "{:?}", ops(&s));
    }
    // Must not fire: the BatchNormalization's output has another reader, or the activation
    // has no fused form.
    let s = equivalent(&bn_then_act("Relu", vec![], true), Level::All);
    assert_eq!(count(&s, "Relu"), 1, "{:?}", ops(&s));
    let s = equivalent(&bn_then_act("HardSwish", vec![], false), Level::All);
    assert_eq!(count(&s, "HardSwish"), 1, "{:?}", ops(&s));
}

/// x[1, 3, 9, 10] -> Conv (to `2b` channels) -> Split(`parts`) -> a Conv on each part ->
/// Concat -> y: YOLOv8's C2f shape, `b` the blocked layout's block.
fn conv_split_concat(parts: [usize; 2]) -> Model {
    let mut b = B::new();
    let x = b.input("x", DataType::F32, &[1, 3, 9, 10]);
    let total = parts[0] + parts[1];
    let c = conv_k(&mut b, x, 3, total, vec![]);
    let sizes = b.ints("split", &[parts[0] as i64, parts[1] as i64]);
    let (s0, s1) = (
        b.g.add_value("part0", None).unwrap(),
        b.g.add_value("part1", None).unwrap(),
    );
    b.g.add_node(
        Node::new("split", "Split", "")
            .with_inputs(&[Some(c), Some(sizes)])
            .with_outputs(&[Some(s0), Some(s1)])
            .with_attrs(vec![Attribute::int("axis", 1)]),
    )
    .unwrap();
    let a0 = conv_k(&mut b, s0, parts[0], 16, vec![]);
    let a1 = conv_k(&mut b, s1, parts[1], 16, vec![]);
    let cat = b.node(
        "Concat",
        &[Some(a0), Some(a1), Some(s1)],
        vec![Attribute::int("axis", 1)],
    );
    b.finish(&[cat])
}

#[test]
fn nchwc_layout_splits_whole_blocks_in_place() {
    let blk = kiln_kernels::nchwc::block();
    let s = equivalent(&conv_split_concat([blk, blk]), Level::All);
    s.model().graph.check_consistency().unwrap();
    assert_eq!(count(&s, "Split"), 1, "{:?}", ops(&s));
    // Blocked from the first layer (which reads RGB as it is) to the output.
    assert_eq!(count(&s, "ai.kiln:ReorderInput"), 0, "{:?}", ops(&s));
    assert_eq!(count(&s, "ai.kiln:ReorderOutput"), 1, "{:?}", ops(&s));
    // Must not fire: parts that are not whole blocks go back to NCHW for the Split.
    let s = equivalent(&conv_split_concat([blk / 2, blk + blk / 2]), Level::All);
    assert!(count(&s, "ai.kiln:ReorderOutput") >= 2, "{:?}", ops(&s));
}

/// x[1, 3, 5, 6] -> Conv (to 32 channels) -> Resize(nearest, `ctm`, `scales`) -> Conv -> y.
fn conv_resize_conv(ctm: &str, scales: [f32; 4]) -> Model {
    let mut b = B::new();
    let x = b.input("x", DataType::F32, &[1, 3, 5, 6]);
    let c = conv_k(&mut b, x, 3, 32, vec![]);
    let sc = b.consts("scales", &[4], &scales);
    let r = b.node(
        "Resize",
        &[Some(c), None, Some(sc)],
        vec![
            Attribute::string("mode", "nearest"),
            Attribute::string("coordinate_transformation_mode", ctm),
            Attribute::string("nearest_mode", "floor"),
        ],
    );
    let y = conv_k(&mut b, r, 32, 16, vec![]);
    b.finish(&[y])
}

#[test]
fn nchwc_layout_upsamples_blocked_values() {
    for scales in [[1.0, 1.0, 2.0, 2.0], [1.0, 1.0, 3.0, 1.0]] {
        let s = equivalent(&conv_resize_conv("asymmetric", scales), Level::All);
        s.model().graph.check_consistency().unwrap();
        assert_eq!(count(&s, "ai.kiln:NchwcUpsample"), 1, "{:?}", ops(&s));
        assert_eq!(count(&s, "Resize"), 0, "{:?}", ops(&s));
        assert_eq!(count(&s, "ai.kiln:ReorderOutput"), 1, "{:?}", ops(&s));
    }
    // Must not fire: other sample positions, or a scale that only rounds to the size.
    for (ctm, scales) in [
        ("half_pixel", [1.0, 1.0, 2.0, 2.0]),
        ("asymmetric", [1.0, 1.0, 2.0001, 2.0]),
        ("asymmetric", [1.0, 1.0, 1.5, 2.0]),
    ] {
        let s = equivalent(&conv_resize_conv(ctm, scales), Level::All);
        assert_eq!(
            count(&s, "ai.kiln:NchwcUpsample"),
            0,
            "{ctm} {scales:?}: {:?}",
            ops(&s)
        );
        assert_eq!(count(&s, "Resize"), 1, "{:?}", ops(&s));
    }
}

/// How the attention block's scale is written.
#[derive(Clone, Copy, PartialEq)]
enum Scale {
    /// `Div(MatMul(Q, Kᵀ), √H)`, as transformers' eager BERT.
    DivScores,
    /// `MatMul(Q · √c, Kᵀ · √c)`, as torch's scaled_dot_product_attention export.
    MulInputs,
}

/// An exported self-attention over `x` `[1, 6, 8]` with 2 heads of 4: projections, head
/// reshapes and transposes, the scores, an optional additive mask input `[1, 1, 1, 6]`,
/// Softmax(`axis`), the weighted sum and the heads merged back to `[1, 6, 8]`.
fn attention_block(scale: Scale, mask: bool, axis: i64) -> (B, ValueId, ValueId) {
    let mut b = B::new();
    let x = b.input("x", DataType::F32, &[1, 6, 8]);
    let heads = b.ints("heads", &[1, 6, 2, 4]);
    let mut proj = |b: &mut B, perm: &[i64]| {
        let w = b.weights("w", &[8, 8]);
        let h = b.node("MatMul", &[Some(x), Some(w)], vec![]);
        let r = b.node("Reshape", &[Some(h), Some(heads)], vec![]);
        b.node("Transpose", &[Some(r)], vec![Attribute::ints("perm", perm)])
    };
    let mut q = proj(&mut b, &[0, 2, 1, 3]);
    let mut k = proj(&mut b, &[0, 2, 3, 1]);
    let v = proj(&mut b, &[0, 2, 1, 3]);
    if scale == Scale::MulInputs {
        let c = b.consts("c", &[1], &[0.5f32.sqrt()]);
        q = b.node("Mul", &[Some(q), Some(c)], vec![]);
        k = b.node("Mul", &[Some(c), Some(k)], vec![]);
    }
    let mut s = b.node("MatMul", &[Some(q), Some(k)], vec![]);
    if scale == Scale::DivScores {
        let c = b.consts("c", &[], &[2.0]);
        s = b.node("Div", &[Some(s), Some(c)], vec![]);
    }
    if mask {
        let m = b.input("mask", DataType::F32, &[1, 1, 1, 6]);
        s = b.node("Add", &[Some(m), Some(s)], vec![]);
    }
    let p = b.node("Softmax", &[Some(s)], vec![Attribute::int("axis", axis)]);
    let o = b.node("MatMul", &[Some(p), Some(v)], vec![]);
    let t = b.node(
        "Transpose",
        &[Some(o)],
        vec![Attribute::ints("perm", &[0, 2, 1, 3])],
    );
    let merged = b.ints("merged", &[1, 6, 8]);
    let y = b.node("Reshape", &[Some(t), Some(merged)], vec![]);
    (b, y, s)
}

#[test]
fn attention_block_becomes_one_sdpa_with_the_transposes_as_strides() {
    for (scale, mask) in [
        (Scale::DivScores, true),
        (Scale::MulInputs, true),
        (Scale::DivScores, false),
    ] {
        let (b, y, _) = attention_block(scale, mask, -1);
        let s = equivalent(&b.finish(&[y]), Level::All);
        assert_eq!(count(&s, "ai.kiln:Sdpa"), 1, "{:?}", ops(&s));
        for gone in ["Softmax", "Transpose", "Div", "Mul", "Add"] {
            assert_eq!(count(&s, gone), 0, "{gone} left: {:?}", ops(&s));
        }
        let (_, n) = s
            .model()
            .graph
            .nodes()
            .find(|(_, n)| n.op_type == "Sdpa")
            .unwrap();
        let scale = n.attrs.get_float("scale").unwrap();
        assert!((scale - 0.5).abs() < 1e-6, "{scale}");
        assert_eq!(n.attrs.get_ints("k_perm"), Some(&[0, 2, 3, 1][..]));
        assert_eq!(n.attrs.get_ints("out_perm"), Some(&[0, 2, 1, 3][..]));
        assert_eq!(n.inputs().len(), if mask { 4 } else { 3 });
    }
}

#[test]
fn attention_fusion_declines_with_reasons() {
    // Softmax over another axis: not attention.
    let (b, y, _) = attention_block(Scale::DivScores, true, 2);
    let s = equivalent(&b.finish(&[y]), Level::All);
    assert_eq!(count(&s, "ai.kiln:Sdpa"), 0, "{:?}", ops(&s));
    // The masked scores are also a graph output.
    let (b, y, scores) = attention_block(Scale::DivScores, true, -1);
    let s = equivalent(&b.finish(&[y, scores]), Level::All);
    assert_eq!(count(&s, "ai.kiln:Sdpa"), 0, "{:?}", ops(&s));
    let d = declines(&s, "attention_fusion");
    assert!(d.iter().any(|r| r.contains("graph output")), "{d:?}");
    // Below the all level, and in a saved model: the plain ops.
    let (b, y, _) = attention_block(Scale::MulInputs, true, -1);
    let m = b.finish(&[y]);
    let s = equivalent(&m, Level::Extended);
    assert_eq!(count(&s, "Softmax"), 1, "{:?}", ops(&s));
    let providers: Vec<Arc<dyn ExecutionProvider>> = vec![Arc::new(CpuProvider)];
    let (saved, _, _) =
        kiln_runtime::prepare(m.clone(), &providers, Level::All, false, false, false).unwrap();
    saved.graph.check_consistency().unwrap();
    assert!(saved.graph.nodes().all(|(_, n)| n.op_type != "Sdpa"));
    assert_eq!(count_in(&saved, "Softmax"), 1);
    // The MatMuls on another provider.
    let s = session(
        &m,
        Level::All,
        vec![
            Arc::new(OpTypeProvider::new("other", &["MatMul"])),
            Arc::new(CpuProvider),
        ],
    );
    assert_eq!(count(&s, "ai.kiln:Sdpa"), 0, "{:?}", ops(&s));
    let d = declines(&s, "attention_fusion");
    assert!(d.iter().any(|r| r.contains("provider other")), "{d:?}");
}
