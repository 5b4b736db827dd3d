//! Operator micro-benchmarks in GB/s of input read: the pools of the benchmark models, run
//! through the same kernel entry a session calls, on a pool of `--threads` workers.
//! `cargo bench -p kiln-ops --bench ops -- [--threads N] [--ms MS] [FILTER]`.
use std::time::Instant;

use kiln_ir::Attribute;
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

fn cases() -> Vec<Case> {
    vec![
        pool(
            "squeezenet max 3x3/2 64 @111",
            "MaxPool",
            [1, 64, 111, 111],
            3,
            2,
            0,
        ),
        pool(
            "squeezenet max 3x3/2 256 @27",
            "MaxPool",
            [1, 256, 27, 27],
            3,
            2,
            0,
        ),
        pool(
            "resnet50 max 3x3/2 64 @112",
            "MaxPool",
            [1, 64, 112, 112],
            3,
            2,
            1,
        ),
        pool(
            "yolov8n max 5x5/1 128 @10",
            "MaxPool",
            [1, 128, 10, 10],
            5,
            1,
            2,
        ),
        pool(
            "inception max 3x3/1 256 @28",
            "MaxPool",
            [1, 256, 28, 28],
            3,
            1,
            1,
        ),
        pool(
            "inception avg 3x3/1 576 @14",
            "AveragePool",
            [1, 576, 14, 14],
            3,
            1,
            1,
        ),
        pool(
            "densenet avg 2x2/2 128 @56",
            "AveragePool",
            [1, 128, 56, 56],
            2,
            2,
            0,
        ),
    ]
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (mut threads, mut ms, mut filter) = (2usize, 300.0f64, String::new());
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--threads" => {
                i += 1;
                threads = args[i].parse().expect("--threads N");
            }
            "--ms" => {
                i += 1;
                ms = args[i].parse().expect("--ms MS");
            }
            other => filter = other.to_string(),
        }
        i += 1;
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("thread pool");
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
        let mut times = Vec::new();
        pool.install(|| {
            let ctx = KernelCtx {
                op_type: case.op,
                domain: "",
                opset: 19,
                attrs: &case.attrs,
                inputs: vec![Some(&x)],
                num_outputs: 1,
                subgraphs: None,
            };
            kernel(&ctx).expect("run");
            let start = Instant::now();
            while start.elapsed().as_secs_f64() * 1e3 < ms || times.len() < 5 {
                let t = Instant::now();
                std::hint::black_box(kernel(&ctx).expect("run"));
                times.push(t.elapsed().as_secs_f64());
            }
        });
        times.sort_by(|a, b| a.total_cmp(b));
        let t = times[times.len() / 2];
        println!(
            "{:<36} {:>10.1} {:>10.1}",
            case.name,
            t * 1e6,
            (len * 4) as f64 / t / 1e9
        );
    }
}
