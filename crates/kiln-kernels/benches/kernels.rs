//! Micro-benchmarks of the convolution and GEMM shapes of ResNet50 (224×224) and YOLOv8n
//! (320×320), in GFLOP/s, so kernel work can be judged without whole models.
//!
//! `cargo bench -p kiln-kernels -- [--threads N] [--ms MS] [--ab VAR] [FILTER]`: each case runs
//! for about MS milliseconds (default 300) after a warm-up; the median run time gives the rate
//! (see `kiln_kernels::bench`).
use kiln_kernels::bench::{time, Args};
use kiln_kernels::nchwc::{self, Input, NchwcConv};
use kiln_kernels::{gemm, Activation, Conv2d, Isa, PackedConv, Precision};

struct Case {
    name: &'static str,
    /// n, c_in, h, w
    input: [usize; 4],
    conv: Conv2d,
}

fn conv(c_in: usize, c_out: usize, groups: usize, k: usize, s: usize, p: usize) -> Conv2d {
    Conv2d {
        c_in,
        c_out,
        groups,
        kernel: [k, k],
        strides: [s, s],
        dilations: [1, 1],
        pads: [p; 4],
    }
}

fn cases() -> Vec<Case> {
    let c = |name, c_in, hw: usize, c_out, k, s, p| Case {
        name,
        input: [1, c_in, hw, hw],
        conv: conv(c_in, c_out, 1, k, s, p),
    };
    vec![
        c("resnet50 conv1 7x7/2 3->64 @224", 3, 224, 64, 7, 2, 3),
        c("resnet50 1x1 64->64 @56", 64, 56, 64, 1, 1, 0),
        c("resnet50 3x3 64->64 @56", 64, 56, 64, 3, 1, 1),
        c("resnet50 1x1 64->256 @56", 64, 56, 256, 1, 1, 0),
        c("resnet50 1x1 256->64 @56", 256, 56, 64, 1, 1, 0),
        c("resnet50 3x3/2 128->128 @56", 128, 56, 128, 3, 2, 1),
        c("resnet50 1x1 512->128 @28", 512, 28, 128, 1, 1, 0),
        c("resnet50 3x3 256->256 @14", 256, 14, 256, 3, 1, 1),
        c("resnet50 1x1 1024->256 @14", 1024, 14, 256, 1, 1, 0),
        c("resnet50 3x3 512->512 @7", 512, 7, 512, 3, 1, 1),
        c("resnet50 1x1/2 256->512 @56", 256, 56, 512, 1, 2, 0),
        c("resnet50 1x1/2 512->1024 @28", 512, 28, 1024, 1, 2, 0),
        c("resnet50 1x1/2 1024->2048 @14", 1024, 14, 2048, 1, 2, 0),
        c("resnet50 1x1 512->2048 @7", 512, 7, 2048, 1, 1, 0),
        c("inception 3x3 64->96 @28", 64, 28, 96, 3, 1, 1),
        c("inception 3x3 96->96 @28", 96, 28, 96, 3, 1, 1),
        c("inception 3x3 192->192 @14", 192, 14, 192, 3, 1, 1),
        c("inception 3x3 192->320 @7", 192, 7, 320, 3, 1, 1),
        c("squeezenet 3x3/2 3->64 @224", 3, 224, 64, 3, 2, 0),
        c("squeezenet 3x3 16->64 @55", 16, 55, 64, 3, 1, 1),
        c("squeezenet 3x3 32->128 @27", 32, 27, 128, 3, 1, 1),
        c("squeezenet 3x3 64->256 @13", 64, 13, 256, 3, 1, 1),
        c("squeezenet 3x3 48->192 @13", 48, 13, 192, 3, 1, 1),
        c("squeezenet 1x1 512->1000 @13", 512, 13, 1000, 1, 1, 0),
        c("squeezenet 1x1 384->64 @13", 384, 13, 64, 1, 1, 0),
        c("yolov8n 3x3/2 3->16 @320", 3, 320, 16, 3, 2, 1),
        c("yolov8n 3x3/2 16->32 @160", 16, 160, 32, 3, 2, 1),
        c("yolov8n 1x1 32->32 @80", 32, 80, 32, 1, 1, 0),
        c("yolov8n 3x3 16->16 @80", 16, 80, 16, 3, 1, 1),
        c("yolov8n 3x3 32->32 @40", 32, 40, 32, 3, 1, 1),
        c("yolov8n 3x3 64->64 @20", 64, 20, 64, 3, 1, 1),
        c("yolov8n 1x1 256->128 @10", 256, 10, 128, 1, 1, 0),
        c("yolov8n 3x3 128->128 @10", 128, 10, 128, 3, 1, 1),
        Case {
            name: "depthwise 3x3 96 @56",
            input: [1, 96, 56, 56],
            conv: conv(96, 96, 96, 3, 1, 1),
        },
    ]
}

fn report(name: &str, flops: f64, (t, tb): (f64, Option<f64>)) {
    print!("{:<36} {:>10.4} {:>10.1}", name, t * 1e3, flops / t / 1e9);
    if let Some(tb) = tb {
        print!(
            "  set: {:>10.1}  unset/set time {:.3}",
            flops / tb / 1e9,
            t / tb
        );
    }
    println!();
}

fn main() {
    let args = Args::parse(1);
    let (threads, ms, ab, filter) = (args.threads, args.ms, args.ab.clone(), args.filter.clone());
    let pool = args.pool();
    println!("isa {}, {threads} thread(s)", Isa::detect().name());
    println!("{:<36} {:>10} {:>10}", "case", "ms", "GFLOP/s");
    let val = |len: usize| {
        (0..len)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect::<Vec<_>>()
    };
    for case in cases() {
        if !case.name.contains(&filter) {
            continue;
        }
        let [n, c, h, w] = case.input;
        let g = case.conv;
        let (oh, ow) = g.output_hw(h, w).expect("shape");
        let k = c / g.groups * g.kernel[0] * g.kernel[1];
        let x = val(n * c * h * w);
        let wt = val(g.c_out * k);
        let bias = val(g.c_out);
        let pc = PackedConv::new(g, &wt, Some(&bias)).expect("pack");
        let mut out = vec![0f32; n * g.c_out * oh * ow];
        // The activation each model fuses.
        let act = if case.name.starts_with("yolov8n") {
            Activation::Silu(1.0)
        } else {
            Activation::Relu
        };
        let t = pool.install(|| {
            time(ms, ab.as_deref(), || {
                pc.run(&x, [n, h, w], None, act, &mut out).expect("run")
            })
        });
        let flops = 2.0 * (n * g.c_out * oh * ow * k) as f64;
        report(case.name, flops, t);
        // The same convolution in the blocked layout (the input already blocked, as inside
        // a blocked region; a first layer reads its plain input).
        if g.groups == 1 || (g.groups == c && c == g.c_out) {
            let b = nchwc::block();
            let input = if c % b == 0 {
                Input::Blocked
            } else {
                Input::Plain
            };
            let nc = NchwcConv::new(g, &wt, Some(&bias), input).expect("pack");
            let xb = match input {
                Input::Plain => x.clone(),
                Input::Blocked => val(n * nchwc::padded(c) * h * w),
            };
            let mut yb = vec![0f32; n * nchwc::padded(g.c_out) * oh * ow];
            let t = pool.install(|| {
                time(ms, ab.as_deref(), || {
                    nc.run(&g, &xb, [n, h, w], None, act, &mut yb).expect("run")
                })
            });
            report("  nchwc", flops, t);
        }
    }
    for &(name, m, nn, k) in &[
        (
            "gemm resnet50 fc 1x2048 -> 1000",
            1000usize,
            1usize,
            2048usize,
        ),
        ("gemm 256x3136x576", 256, 3136, 576),
        ("gemm 512x512x512", 512, 512, 512),
    ] {
        if !name.contains(&filter) {
            continue;
        }
        let a = val(m * k);
        let b = val(k * nn);
        let mut cc = vec![0f32; m * nn];
        let t = pool.install(|| {
            time(ms, ab.as_deref(), || {
                gemm::sgemm(m, nn, k, &a, k, &b, nn, &mut cc, nn, &gemm::Epilogue::NONE)
            })
        });
        let flops = 2.0 * (m * nn * k) as f64;
        report(name, flops, t);
    }
    // A transformer's MatMuls: activations (rows = tokens) times weights packed once, and
    // the attention products of one head with B read through a view (Kᵀ transposed).
    for &(name, m, nn, k, packed, bt) in &[
        (
            "matmul bert 128x384 . 384x1536 packed",
            128usize,
            1536usize,
            384usize,
            true,
            false,
        ),
        (
            "matmul bert 128x1536 . 1536x384 packed",
            128,
            384,
            1536,
            true,
            false,
        ),
        (
            "matmul bert 128x384 . 384x384 packed",
            128,
            384,
            384,
            true,
            false,
        ),
        (
            "matmul bert 128x384 . 384x1152 packed",
            128,
            1152,
            384,
            true,
            false,
        ),
        (
            "matmul bert 128x384 . 384x1536 view",
            128,
            1536,
            384,
            false,
            false,
        ),
        // A small Llama's decode step (one token: streams the weights) and prompt.
        (
            "matmul llama 1x512 . 512x1408 packed",
            1,
            1408,
            512,
            true,
            false,
        ),
        (
            "matmul llama 1x1408 . 1408x512 packed",
            1,
            512,
            1408,
            true,
            false,
        ),
        (
            "matmul llama 1x512 . 512x8192 packed",
            1,
            8192,
            512,
            true,
            false,
        ),
        (
            "matmul llama 128x512 . 512x1408 packed",
            128,
            1408,
            512,
            true,
            false,
        ),
        (
            "matmul llama 128x1408 . 1408x512 packed",
            128,
            512,
            1408,
            true,
            false,
        ),
        (
            "matmul llama 128x512 . 512x768 packed",
            128,
            768,
            512,
            true,
            false,
        ),
        (
            "matmul llama 128x512 . 512x8192 packed",
            128,
            8192,
            512,
            true,
            false,
        ),
        ("matmul head 128x32 . (128x32)T", 128, 128, 32, false, true),
        ("matmul head 128x128 . 128x32", 128, 32, 128, false, false),
    ] {
        if !name.contains(&filter) {
            continue;
        }
        let a = val(m * k);
        let b = val(k * nn);
        let bv = if bt {
            gemm::View::new(&b, k, nn, 1, k)
        } else {
            gemm::View::new(&b, k, nn, nn, 1)
        };
        let av = gemm::View::new(&a, m, k, k, 1);
        // Weights as a model has them: a different matrix each call, cold in cache (24
        // copies of 2.4 MB outgrow a 32 MB L3).
        let pbs: Vec<gemm::PackedB> = (0..24)
            .map(|_| gemm::PackedB::new(Isa::detect(), bv))
            .collect();
        let bs: Vec<Vec<f32>> = (0..24).map(|_| b.clone()).collect();
        let mut cc = vec![0f32; m * nn];
        let mut turn = 0;
        let t = pool.install(|| {
            time(ms, ab.as_deref(), || {
                turn = (turn + 1) % 24;
                if packed {
                    gemm::sgemm_view(1.0, av, &pbs[turn], 0.0, &mut cc, nn)
                } else {
                    let bv = gemm::View {
                        data: &bs[turn],
                        ..bv
                    };
                    gemm::sgemm_view(1.0, av, &bv, 0.0, &mut cc, nn)
                }
            })
        });
        let flops = 2.0 * (m * nn * k) as f64;
        report(name, flops, t);
        // The same weights in bfloat16 (a session at `--precision bf16`), where the CPU can.
        if packed && kiln_kernels::bf16::available() {
            let pbs: Vec<gemm::PackedB> = (0..24)
                .map(|_| gemm::PackedB::with_precision(Isa::detect(), bv, Precision::Bf16))
                .collect();
            let t = pool.install(|| {
                time(ms, ab.as_deref(), || {
                    turn = (turn + 1) % 24;
                    gemm::sgemm_view(1.0, av, &pbs[turn], 0.0, &mut cc, nn)
                })
            });
            report(&format!("{name} bf16"), flops, t);
        }
    }
    bench_attention(&pool, ms, ab.as_deref(), &filter);
}

/// Attention over the heads of a BERT layer's `[S, 3·D]` QKV projection, written into
/// `[S, D]`: both products, the mask and the softmax.
fn bench_attention(pool: &rayon::ThreadPool, ms: f64, ab: Option<&str>, filter: &str) {
    use kiln_kernels::attention::{Sdpa, Strided4};
    for &(name, n, s, h) in &[
        ("attention bert 12 heads 128x32", 12, 128, 32),
        ("attention vit 6 heads 197x64", 6, 197, 64),
    ] {
        if !name.contains(filter) {
            continue;
        }
        let d = n * h;
        let qkv: Vec<f32> = (0..s * 3 * d)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let mask: Vec<f32> = (0..s)
            .map(|j| if j < s * 7 / 8 { 0.0 } else { -1e4 })
            .collect();
        let view = |off: usize| {
            Strided4::new(&qkv[off..], [1, n, s, h], [s * 3 * d, h, 3 * d, 1]).unwrap()
        };
        let a = Sdpa {
            isa: Isa::detect(),
            q: view(0),
            k: view(d),
            v: view(2 * d),
            bias: Some(Strided4::dense(&mask, [1, 1, 1, s]).unwrap()),
            scale: 1.0 / (h as f32).sqrt(),
            causal: None,
        };
        let mut y = vec![0f32; s * d];
        let t = pool.install(|| time(ms, ab, || a.run(&mut y, [s * d, h, d, 1]).unwrap()));
        report(name, 4.0 * (n * s * s * h) as f64, t);
    }
}
