//! Test helpers: one-node (or few-node) models built in memory, sessions on the wgpu provider
//! and on the CPU alone, and the comparison of their outputs.
#![allow(dead_code)]
use std::sync::Arc;

use kiln_ir::{Attribute, DataType, Dim, Graph, Model, Node, ValueType};
use kiln_ops::{Tensor, Value};
use kiln_runtime::{ExecutionProvider, Level, Session, SessionOptions};
use kiln_wgpu::{WgpuOptions, WgpuProvider};

/// A small deterministic generator (xorshift), so failures reproduce.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [lo, hi].
    pub fn int(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }

    pub fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }

    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f32()).collect()
    }

    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.int(0, v.len() - 1)]
    }
}

pub enum In {
    /// A graph input fed with random data of this shape.
    Data(Vec<usize>),
    /// A float initializer.
    Weight(Vec<usize>),
    /// An int64 initializer.
    Ints(Vec<i64>),
    /// A float initializer with given values.
    Floats(Vec<usize>, Vec<f32>),
    Absent,
}

pub struct Op {
    pub op: &'static str,
    pub domain: &'static str,
    pub attrs: Vec<Attribute>,
    pub inputs: Vec<In>,
    pub outputs: usize,
}

pub fn op(op: &'static str, inputs: Vec<In>) -> Op {
    Op {
        op,
        domain: "",
        attrs: vec![],
        inputs,
        outputs: 1,
    }
}

impl Op {
    pub fn attrs(mut self, a: Vec<Attribute>) -> Op {
        self.attrs = a;
        self
    }

    pub fn domain(mut self, d: &'static str) -> Op {
        self.domain = d;
        self
    }

    pub fn outputs(mut self, n: usize) -> Op {
        self.outputs = n;
        self
    }
}

pub fn model_of(g: Graph, opset: i64) -> Model {
    g.check_consistency().unwrap();
    Model::new(
        g,
        &[
            ("", opset),
            ("com.microsoft", 1),
            (kiln_ops::ops_domain::KILN, 1),
        ],
    )
}

/// The one-node model of `o`, and random feeds for its data inputs.
pub fn build(o: &Op, opset: i64, dtype: DataType, rng: &mut Rng) -> (Model, Vec<(String, Value)>) {
    let mut g = Graph::new("t");
    let mut ins = Vec::new();
    let mut feeds = Vec::new();
    for (i, inp) in o.inputs.iter().enumerate() {
        let name = format!("in{i}");
        let id = match inp {
            In::Absent => {
                ins.push(None);
                continue;
            }
            In::Data(shape) => {
                let ty =
                    ValueType::tensor(dtype, shape.iter().map(|&d| Dim::Known(d as i64)).collect());
                let v = g.add_value(&name, Some(ty.clone())).unwrap();
                g.value_mut(v).declared = Some(ty);
                g.push_input(v);
                let n: usize = shape.iter().product();
                let data = rng.vec(n);
                let t = Tensor::from_vec(shape.clone(), data);
                let t = if dtype == DataType::F64 {
                    Tensor::from_vec(
                        shape.clone(),
                        t.as_slice::<f32>()
                            .unwrap()
                            .iter()
                            .map(|&x| x as f64)
                            .collect::<Vec<f64>>(),
                    )
                } else {
                    t
                };
                feeds.push((name, Value::Tensor(t)));
                v
            }
            In::Weight(shape) => {
                let n: usize = shape.iter().product();
                let v = rng.vec(n);
                g.add_initializer(&name, kiln_ir::Tensor::from_f32(shape.clone(), &v))
                    .unwrap()
            }
            In::Floats(shape, v) => g
                .add_initializer(&name, kiln_ir::Tensor::from_f32(shape.clone(), v))
                .unwrap(),
            In::Ints(v) => g
                .add_initializer(&name, kiln_ir::Tensor::from_i64(vec![v.len()], v))
                .unwrap(),
        };
        ins.push(Some(id));
    }
    let outs: Vec<_> = (0..o.outputs)
        .map(|i| g.add_value(&format!("out{i}"), None).unwrap())
        .collect();
    g.add_node(
        Node::new("node", o.op, o.domain)
            .with_inputs(&ins)
            .with_outputs(&outs.iter().map(|&v| Some(v)).collect::<Vec<_>>())
            .with_attrs(o.attrs.clone()),
    )
    .unwrap();
    g.set_outputs(outs);
    let mut m = model_of(g, opset);
    kiln_ops::infer_shapes(&mut m).unwrap();
    (m, feeds)
}

pub fn wgpu(opts: WgpuOptions) -> Arc<dyn ExecutionProvider> {
    Arc::new(
        WgpuProvider::new(opts)
            .expect("a wgpu adapter (lavapipe: apt-get install mesa-vulkan-drivers)"),
    )
}

pub fn session(m: &Model, providers: Vec<Arc<dyn ExecutionProvider>>, level: Level) -> Session {
    Session::from_model(
        m.clone(),
        SessionOptions {
            threads: Some(2),
            level,
            providers,
            memory_limit: None,
            precision: kiln_runtime::Precision::F32,
        },
    )
    .unwrap()
}

pub fn values(out: &[(String, Value)]) -> Vec<(Vec<usize>, Vec<f64>)> {
    out.iter()
        .map(|(_, v)| {
            let t = v.tensor().unwrap();
            (t.shape.clone(), t.to_f64s().unwrap())
        })
        .collect()
}

/// Outputs agree within 1e-4 + 1e-3·|cpu| (NaN matches NaN).
pub fn assert_close(what: &str, gpu: &[(String, Value)], cpu: &[(String, Value)]) {
    assert_close_within(what, gpu, cpu, 0.0)
}

/// As [`assert_close`], with `slack` more absolute error allowed (long sums of mixed signs,
/// whose rounding depends on the order of summation).
pub fn assert_close_within(
    what: &str,
    gpu: &[(String, Value)],
    cpu: &[(String, Value)],
    slack: f64,
) {
    let (g, c) = (values(gpu), values(cpu));
    assert_eq!(g.len(), c.len(), "{what}: output count");
    for (k, ((gs, gv), (cs, cv))) in g.iter().zip(&c).enumerate() {
        assert_eq!(gs, cs, "{what}: output {k} shape");
        for (i, (a, b)) in gv.iter().zip(cv).enumerate() {
            let ok = (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-4 + 1e-3 * b.abs() + slack;
            assert!(
                ok,
                "{what}: output {k}[{i}] is {a} on the GPU, {b} on the CPU"
            );
        }
    }
}

/// Runs `o` on the GPU and the CPU; asserts every node ran on wgpu and the outputs agree.
pub fn check_all_on_gpu(what: &str, o: &Op, opset: i64, rng: &mut Rng) {
    check_all_on_gpu_within(what, o, opset, rng, 0.0)
}

/// As [`check_all_on_gpu`], with `slack` more absolute error allowed.
pub fn check_all_on_gpu_within(what: &str, o: &Op, opset: i64, rng: &mut Rng, slack: f64) {
    let (m, feeds) = build(o, opset, DataType::F32, rng);
    let gpu = session(&m, vec![wgpu(WgpuOptions::default())], Level::Disabled);
    let per_ep = gpu.assignment().nodes_per_ep(gpu.providers().len());
    let rejected: Vec<&str> = gpu
        .assignment()
        .rejected
        .iter()
        .map(|r| r.reason.as_str())
        .collect();
    assert_eq!(per_ep, vec![1, 0], "{what}: not on wgpu: {rejected:?}");
    let cpu = session(&m, vec![], Level::Disabled);
    let want = cpu.run(feeds.clone()).unwrap();
    let got = gpu
        .run(feeds)
        .unwrap_or_else(|e| panic!("{what}: GPU run failed: {e}"));
    assert_close_within(what, &got, &want, slack);
}
