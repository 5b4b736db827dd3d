//! The built-in demo model, used when a command is given no model file: a small YOLO-style
//! network with dynamic batch/height/width — a Focus block (four stride-2 Slices and a Concat),
//! Conv+SiLU, Conv+Relu, a residual Conv+Add+Relu, MaxPool, Resize, and a detection-head Reshape
//! whose target is computed at run time with Shape/Gather/Concat. It exercises the same
//! patterns as the real models, and it is built through the IR's mutation API.
use kiln_ir::{
    Attribute, DataType, Dim, Graph, Model, Node, OpsetImport, Tensor, ValueId, ValueType,
};

pub const NAME: &str = "<built-in demo model>";

pub const DESCRIPTION: &str = "a small YOLO-style network: Focus block, Conv+SiLU, Conv+Relu, \
residual Conv+Add+Relu, MaxPool, Resize, detection-head Reshape; dynamic batch/height/width";

struct Builder {
    g: Graph,
    seed: u64,
    n: usize,
}

impl Builder {
    fn weights(&mut self, dims: &[usize]) -> Tensor {
        let len: usize = dims.iter().product();
        let fan_in: usize = dims[1..].iter().product::<usize>().max(1);
        let scale = (2.0 / fan_in as f32).sqrt();
        let v: Vec<f32> = (0..len)
            .map(|_| {
                // A fixed linear congruential sequence: the model is the same on every machine.
                self.seed = self
                    .seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((self.seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
            })
            .collect();
        Tensor::from_f32(dims.to_vec(), &v)
    }

    fn init(&mut self, name: &str, t: Tensor) -> ValueId {
        self.g.add_initializer(name, t).expect("unique demo names")
    }

    fn ints(&mut self, name: &str, v: &[i64]) -> ValueId {
        self.init(name, Tensor::from_i64(vec![v.len()], v))
    }

    fn node(&mut self, op: &str, inputs: &[ValueId], attrs: Vec<Attribute>) -> ValueId {
        self.n += 1;
        let name = format!("{}_{}", op.to_lowercase(), self.n);
        let out = self
            .g
            .add_value(&format!("{name}_out"), None)
            .expect("unique");
        let ins: Vec<Option<ValueId>> = inputs.iter().map(|&v| Some(v)).collect();
        let node = Node::new(&name, op, "")
            .with_inputs(&ins)
            .with_outputs(&[Some(out)])
            .with_attrs(attrs);
        self.g.add_node(node).expect("demo graph is well formed");
        out
    }

    fn conv(&mut self, x: ValueId, cin: usize, cout: usize, k: usize, stride: i64) -> ValueId {
        self.n += 1;
        let w = self.weights(&[cout, cin, k, k]);
        let w = self.init(&format!("conv{}_w", self.n), w);
        let b = self.weights(&[cout, 1]);
        let b =
            Tensor::from_raw(DataType::F32, vec![cout], b.raw().unwrap().to_vec().into()).unwrap();
        let b = self.init(&format!("conv{}_b", self.n), b);
        let p = (k / 2) as i64;
        self.node(
            "Conv",
            &[x, w, b],
            vec![
                Attribute::ints("kernel_shape", &[k as i64, k as i64]),
                Attribute::ints("strides", &[stride, stride]),
                Attribute::ints("pads", &[p, p, p, p]),
            ],
        )
    }
}

pub fn build() -> Model {
    let mut b = Builder {
        g: Graph::new("kiln_demo"),
        seed: 0x6b696c6e,
        n: 0,
    };
    let shape = vec![
        Dim::sym("batch"),
        Dim::Known(3),
        Dim::sym("height"),
        Dim::sym("width"),
    ];
    let images =
        b.g.add_value("images", Some(ValueType::tensor(DataType::F32, shape)))
            .expect("first value");
    let ty = b.g.value(images).ty.clone();
    b.g.value_mut(images).declared = ty;
    b.g.push_input(images);

    // Focus: the four pixel phases of each 2x2 block, stacked on channels.
    let axes = b.ints("focus_axes", &[2, 3]);
    let steps = b.ints("focus_steps", &[2, 2]);
    let ends = b.ints("focus_ends", &[i64::MAX, i64::MAX]);
    let mut phases = Vec::new();
    for (i, (y, x)) in [(0, 0), (1, 0), (0, 1), (1, 1)].into_iter().enumerate() {
        let starts = b.ints(&format!("focus_starts{i}"), &[y, x]);
        phases.push(b.node("Slice", &[images, starts, ends, axes, steps], vec![]));
    }
    let focus = b.node("Concat", &phases, vec![Attribute::int("axis", 1)]);

    // Conv + SiLU, then a strided Conv + Relu.
    let c1 = b.conv(focus, 12, 16, 3, 1);
    let s1 = b.node("Sigmoid", &[c1], vec![]);
    let a1 = b.node("Mul", &[c1, s1], vec![]);
    let c2 = b.conv(a1, 16, 16, 3, 2);
    let a2 = b.node("Relu", &[c2], vec![]);
    // Residual block: Conv + Add + Relu.
    let c3 = b.conv(a2, 16, 16, 1, 1);
    let sum = b.node("Add", &[c3, a2], vec![]);
    let a3 = b.node("Relu", &[sum], vec![]);
    // Down and up again, then merge with the skip connection.
    let pooled = b.node(
        "MaxPool",
        &[a3],
        vec![
            Attribute::ints("kernel_shape", &[2, 2]),
            Attribute::ints("strides", &[2, 2]),
        ],
    );
    let c4 = b.conv(pooled, 16, 16, 3, 1);
    let a4 = b.node("Relu", &[c4], vec![]);
    let roi = b.init("resize_roi", Tensor::from_f32(vec![0], &[]));
    let scales = b.init(
        "resize_scales",
        Tensor::from_f32(vec![4], &[1.0, 1.0, 2.0, 2.0]),
    );
    let up = b.node(
        "Resize",
        &[a4, roi, scales],
        vec![Attribute::string("mode", "nearest")],
    );
    let merged = b.node("Concat", &[up, a3], vec![Attribute::int("axis", 1)]);
    let head = b.conv(merged, 32, 8, 1, 1);

    // Detection head: [batch, 8, h, w] -> [batch, h*w, 8], softmax over the 8 scores.
    let shape = b.node("Shape", &[head], vec![]);
    let zero = b.init("head_batch_index", Tensor::from_i64(vec![1], &[0]));
    let batch = b.node("Gather", &[shape, zero], vec![Attribute::int("axis", 0)]);
    let rest = b.ints("head_rest", &[8, -1]);
    let target = b.node("Concat", &[batch, rest], vec![Attribute::int("axis", 0)]);
    let flat = b.node("Reshape", &[head, target], vec![]);
    let t = b.node(
        "Transpose",
        &[flat],
        vec![Attribute::ints("perm", &[0, 2, 1])],
    );
    let scores = b.node("Softmax", &[t], vec![Attribute::int("axis", -1)]);
    b.g.set_outputs(vec![scores]);
    let out_ty = ValueType::Tensor {
        dtype: Some(DataType::F32),
        shape: Some(vec![Dim::sym("batch"), Dim::Unknown, Dim::Known(8)]),
    };
    b.g.value_mut(scores).declared = Some(out_ty.clone());
    b.g.value_mut(scores).ty = Some(out_ty);
    debug_assert!(b.g.check_consistency().is_ok());
    Model {
        ir_version: 8,
        opsets: vec![OpsetImport {
            domain: String::new(),
            version: 17,
        }],
        producer_name: Some("kiln".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        domain: None,
        model_version: None,
        doc_string: Some("kiln's built-in demo model".into()),
        metadata_props: Vec::new(),
        graph: b.g,
        functions: Vec::new(),
        training_info: Vec::new(),
        configuration: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_model_is_consistent_and_infers_symbolic_shapes() {
        let mut m = build();
        m.graph.check_consistency().unwrap();
        kiln_ops::infer_shapes(&mut m).unwrap();
        let out = m.graph.outputs()[0];
        let shape = m
            .graph
            .value(out)
            .ty
            .as_ref()
            .unwrap()
            .shape()
            .unwrap()
            .to_vec();
        assert_eq!(shape[0], Dim::sym("batch"));
        assert_eq!(shape[2], Dim::Known(8));
        let env = |s: &str| match s {
            "batch" => Some(1),
            "height" => Some(64),
            "width" => Some(48),
            _ => None,
        };
        // 64x48 -> focus 32x24 -> stride 2: 16x12 -> pool 8x6 -> resize 16x12.
        assert_eq!(shape[1].eval(&env), Some(16 * 12));
        // Saved and loaded again, it is the same graph.
        let back = Model::from_proto(&m.to_proto()).unwrap();
        assert_eq!(back.graph.node_count(), m.graph.node_count());
        back.graph.check_consistency().unwrap();
    }
}

#[cfg(test)]
mod session_tests {
    use std::sync::Arc;

    use kiln_ops::{Tensor, Value};
    use kiln_runtime::{Level, Session, SessionOptions};

    /// One session of the conv model (optimized, two kernel threads) run from 8 threads x 50
    /// times: every output bit-identical to the first run.
    #[test]
    fn one_session_eight_threads_fifty_runs_bit_identical() {
        let opts = SessionOptions {
            threads: Some(2),
            level: Level::All,
            providers: vec![],
            memory_limit: None,
            precision: kiln_runtime::Precision::F32,
        };
        let s = Arc::new(Session::from_model(super::build(), opts).unwrap());
        let input = || {
            let v: Vec<f32> = (0..3 * 64 * 48)
                .map(|i| ((i * 31) % 97) as f32 / 97.0)
                .collect();
            vec![(
                "images".to_string(),
                Value::Tensor(Tensor::from_vec(vec![1, 3, 64, 48], v)),
            )]
        };
        let bits = |out: Vec<(String, Value)>| -> Vec<u32> {
            out[0]
                .1
                .tensor()
                .unwrap()
                .as_slice::<f32>()
                .unwrap()
                .iter()
                .map(|x| x.to_bits())
                .collect()
        };
        let reference = bits(s.run(input()).unwrap());
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    (0..50)
                        .map(|_| bits(s.run(input()).unwrap()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in handles {
            for out in h.join().unwrap() {
                assert_eq!(out, reference);
            }
        }
    }
}
