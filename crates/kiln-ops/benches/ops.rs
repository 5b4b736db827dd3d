//! Operator micro-benchmarks in GB/s of input read: the pools and softmax of the benchmark models, run
//! through the same kernel entry a session calls, on a pool of `--threads` workers.
//! `cargo bench -p kiln-ops --bench ops -- [--threads N] [--ms MS] [--ab VAR] [FILTER]` (see
//! `kiln_kernels::bench`; with `--ab` both medians of one interleaved run are printed).
use kiln_ir::Attribute;
use kiln_kernels::bench::{time, Args};
use kiln_ops::{kernel_fn, Data, KernelCtx, Tensor, Value};

struct Case {
    name: &'static str,
    op: &'static str,
    input: [usize; 4],
    attrs: Vec<Attribute>,
}

fn pool(name: &'static str, op: &'static str, input: [usize; 4], k: i64, s: i64, p: i64) -> Case {
    let mut attrs = vec![
        Attribute::ints("kernel_shape", &[k, k]),
        Attribute::ints("strides", &[s, s]),
        Attribute::ints("pads", &[p; 4]),
    ];
    if op == "AveragePool" {
        attrs.push(Attribute::int("count_include_pad", 0));
    }
    Case {
        name,
        op,
        input,
        attrs,
    }
}

/// The pools of the benchmark models: name, op, input, kernel, stride, pad.
type Row = (&'static str, &'static str, [usize; 4], i64, i64, i64);
#[rustfmt::skip]
const POOLS: &[Row] = &[
    ("squeezenet max 3x3/2 64 @111", "MaxPool", [1, 64, 111, 111], 3, 2, 0),
    ("squeezenet max 3x3/2 256 @27", "MaxPool", [1, 256, 27, 27], 3, 2, 0),
    ("resnet50 max 3x3/2 64 @112", "MaxPool", [1, 64, 112, 112], 3, 2, 1),
    ("yolov8n max 5x5/1 128 @10", "MaxPool", [1, 128, 10, 10], 5, 1, 2),
    ("inception max 3x3/1 256 @28", "MaxPool", [1, 256, 28, 28], 3, 1, 1),
    ("inception max 3x3/1 1024 @7", "MaxPool", [1, 1024, 7, 7], 3, 1, 1),
    ("inception avg 3x3/1 576 @14", "AveragePool", [1, 576, 14, 14], 3, 1, 1),
    ("densenet avg 2x2/2 128 @56", "AveragePool", [1, 128, 56, 56], 2, 2, 0),
];

fn cases() -> Vec<Case> {
    let mut out: Vec<Case> = POOLS
        .iter()
        .map(|&(name, op, input, k, s, p)| pool(name, op, input, k, s, p))
        .collect();
    out.push(Case {
        name: "bert softmax 12x128x128",
        op: "Softmax",
        input: [1, 12, 128, 128],
        attrs: vec![Attribute::int("axis", -1)],
    });
    out
}

fn main() {
    let args = Args::parse(2);
    let (threads, ms, ab, filter) = (args.threads, args.ms, args.ab.clone(), args.filter.clone());
    let pool = args.pool();
    println!("{threads} thread(s)");
    println!("{:<36} {:>10} {:>10}", "case", "us", "GB/s");
    for case in cases() {
        if !case.name.contains(&filter) {
            continue;
        }
        let len: usize = case.input.iter().product();
        let data: Vec<f32> = (0..len)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0)
            .collect();
        let x = Value::Tensor(Tensor::new(case.input.to_vec(), Data::F32(data)));
        let kernel = kernel_fn("", case.op).expect("a kernel");
        let (t, tb) = pool.install(|| {
            let ctx = KernelCtx {
                op_type: case.op,
                domain: "",
                opset: 19,
                attrs: &case.attrs,
                inputs: vec![Some(&x)],
                num_outputs: 1,
                subgraphs: None,
                donated: Default::default(),
            };
            time(ms, ab.as_deref(), || {
                std::hint::black_box(kernel(&ctx).expect("run"));
            })
        });
        let gbs = |t: f64| (len * 4) as f64 / t / 1e9;
        print!("{:<36} {:>10.1} {:>10.1}", case.name, t * 1e6, gbs(t));
        if let Some(tb) = tb {
            print!(
                "  set: {:>10.1} GB/s  unset/set time {:.3}",
                gbs(tb),
                t / tb
            );
        }
        println!();
    }
}
