//! Micro-benchmark of the 8-bit integer products at the shapes of quantized ResNet50 (im2col
//! rows × output channels), MobileNetV2's short-K 1×1 layers and BERT-L6 (128 tokens), in
//! GOP/s (two ops per multiply-add), for every integer variant this CPU has.
//!
//! `cargo bench -p kiln-kernels --bench qgemm -- [--threads N] [--ms MS] [FILTER]`.
use kiln_kernels::bench::{time, Args};
use kiln_kernels::qgemm::{qgemm, QInput, QIsa, QOutput, QWeights};

fn main() {
    let args = Args::parse(1);
    let pool = args.pool();
    println!("{} thread(s)", args.threads);
    println!(
        "{:<12} {:<34} {:>9} {:>9}",
        "variant", "case (M x K x N)", "ms", "GOP/s"
    );
    let cases: &[(&str, usize, usize, usize)] = &[
        ("resnet50 1x1 64->256 @56", 3136, 64, 256),
        ("resnet50 3x3 64->64 @56", 3136, 576, 64),
        ("resnet50 3x3 128->128 @28", 784, 1152, 128),
        ("resnet50 3x3 512->512 @7", 49, 4608, 512),
        ("resnet50 1x1 1024->256 @14", 196, 1024, 256),
        ("resnet50 1x1 256->1024 @14", 196, 256, 1024),
        ("mobilenetv2 1x1 16->96 @112", 12544, 16, 96),
        ("mobilenetv2 1x1 32->16 @112", 12544, 32, 16),
        ("mobilenetv2 1x1 24->144 @56", 3136, 24, 144),
        ("mobilenetv2 1x1 32->192 @28", 784, 32, 192),
        ("bert qkv 384->384", 128, 384, 384),
        ("bert ffn 384->1536", 128, 384, 1536),
        ("bert ffn 1536->384", 128, 1536, 384),
    ];
    for isa in QIsa::available().into_iter().rev() {
        for &(name, m, k, n) in cases {
            if !name.contains(&args.filter) {
                continue;
            }
            let a: Vec<u8> = (0..m * k).map(|i| (i * 7919 % 251) as u8).collect();
            let w = QWeights::pack(
                k,
                n,
                true,
                |kk, j| ((kk * 31 + j * 17) % 255) as i32 - 127,
                |_| 0,
                isa,
            )
            .expect("pack");
            let input = QInput {
                data: &a,
                m,
                k,
                lda: k,
                signed: false,
                zero: 3,
            };
            let mut out = vec![0u8; m * n];
            let scale = vec![0.001f32; n];
            let (t, _) = pool.install(|| {
                time(args.ms, None, || {
                    let o = QOutput::Quant {
                        out: &mut out,
                        scale: &scale,
                        zero: 5,
                        signed: false,
                        bias: None,
                        post: Default::default(),
                    };
                    qgemm(&input, &w, o, n, 1).expect("qgemm");
                })
            });
            let gops = 2.0 * (m * k * n) as f64 / t / 1e9;
            println!(
                "{:<12} {:<34} {:>9.3} {:>9.1}",
                isa.name(),
                format!("{name} ({m}x{k}x{n})"),
                t * 1e3,
                gops
            );
        }
    }
}
