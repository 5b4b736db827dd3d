//! Every integer path against a plain i64 reference, on shapes that cover the tile edges.
use super::*;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The variants this CPU runs; the others are named as not run.
fn variants() -> Vec<QIsa> {
    let have = QIsa::available();
    for isa in [
        QIsa::Portable,
        QIsa::Avx2,
        QIsa::AvxVnni,
        QIsa::Avx512,
        QIsa::Avx512Vnni,
    ] {
        if !have.contains(&isa) {
            eprintln!("qgemm variant {} NOT RUN: this CPU lacks it", isa.name());
        }
    }
    have
}

fn val(byte: u8, signed: bool) -> i64 {
    if signed {
        byte as i8 as i64
    } else {
        byte as i64
    }
}

#[allow(clippy::too_many_arguments)]
fn reference(
    a: &[u8],
    m: usize,
    k: usize,
    sa: bool,
    za: i64,
    b: &[u8],
    n: usize,
    sb: bool,
    zb: &[i64],
) -> Vec<i64> {
    let mut c = vec![0i64; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k)
                .map(|kk| (val(a[i * k + kk], sa) - za) * (val(b[kk * n + j], sb) - zb[j]))
                .sum();
        }
    }
    c
}

fn case(rng: &mut Rng, isa: QIsa, m: usize, k: usize, n: usize, extreme: bool) {
    let (sa, sb) = (rng.below(2) == 1, rng.below(2) == 1);
    let byte = |rng: &mut Rng| {
        if extreme {
            [0u8, 255, 128, 127][rng.below(4)]
        } else {
            rng.next() as u8
        }
    };
    let a: Vec<u8> = (0..m * k).map(|_| byte(rng)).collect();
    let b: Vec<u8> = (0..k * n).map(|_| byte(rng)).collect();
    let za = val(rng.next() as u8, sa);
    // Symmetric weights (every zero point 0, as ORT's quantizer writes them) take the
    // epilogue that keeps the corrections in the accumulators.
    let mode = rng.below(3);
    let per_col = mode == 1;
    let z0 = if mode == 0 {
        0
    } else {
        val(rng.next() as u8, sb)
    };
    let zb: Vec<i64> = (0..n)
        .map(|_| {
            if per_col {
                val(rng.next() as u8, sb)
            } else {
                z0
            }
        })
        .collect();
    let w = QWeights::pack(
        k,
        n,
        sb,
        |kk, j| val(b[kk * n + j], sb) as i32,
        |j| zb[j] as i32,
        isa,
    )
    .unwrap();
    let want = reference(&a, m, k, sa, za, &b, n, sb, &zb);
    let input = QInput {
        data: &a,
        m,
        k,
        lda: k,
        signed: sa,
        zero: za as i32,
    };
    let label = format!("{} m{m} k{k} n{n} sa{sa} sb{sb}", isa.name());
    // i32, row-major.
    let mut got = vec![0x5a5a_5a5ai32; m * n];
    qgemm(&input, &w, QOutput::I32 { out: &mut got }, n, 1).unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(*g as i64, *w, "{label}");
    }
    // Requantized, channel-first (the scalar epilogue) and row-major (the one in registers),
    // per-column scales and a bias.
    // Every seventh column's product overflows i32 once converted: it must clamp to the top
    // or the bottom of the range, never wrap.
    let scale: Vec<f32> = (0..n)
        .map(|j| {
            if j % 7 == 3 {
                3e9
            } else {
                1.0 / (300.0 + 37.0 * j as f32)
            }
        })
        .collect();
    let bias: Vec<i32> = (0..n).map(|j| j as i32 * 91 - 500).collect();
    let (zero, signed) = (rng.below(256) as i32 - if sa { 128 } else { 0 }, sa);
    let (lo, hi) = if signed { (-128, 127) } else { (0, 255) };
    for transposed in [true, false] {
        let mut q = vec![0xa5u8; m * n];
        let out = QOutput::Quant {
            out: &mut q,
            scale: &scale,
            zero,
            signed,
            bias: Some(&bias),
            post: Default::default(),
        };
        let (rs, cs) = if transposed { (1, m) } else { (n, 1) };
        qgemm(&input, &w, out, rs, cs).unwrap();
        for i in 0..m {
            for j in 0..n {
                let acc = want[i * n + j] as i32 + bias[j];
                let r = requantize(acc, scale[j], zero, lo, hi);
                let g = q[i * rs + j * cs];
                let g = if signed { g as i8 as i32 } else { g as i32 };
                assert_eq!(g, r, "{label} quant ({i},{j}) transposed {transposed}");
            }
        }
        // With a fused QLinearAdd of a residual and a table after it.
        let residual: Vec<u8> = (0..m * n).map(|_| rng.next() as u8).collect();
        let p = crate::qvec::QBinary {
            mul: false,
            signed,
            za: zero,
            zb: rng.below(256) as i32 - if signed { 128 } else { 0 },
            zc: rng.below(256) as i32 - if signed { 128 } else { 0 },
            ra: 0.7,
            rb: 1.3,
        };
        let table: [u8; 256] = std::array::from_fn(|b| (b as u8).wrapping_mul(7) ^ 0x5a);
        let mut q2 = vec![0xa5u8; m * n];
        let out = QOutput::Quant {
            out: &mut q2,
            scale: &scale,
            zero,
            signed,
            bias: Some(&bias),
            post: QPost {
                add: Some((&residual, p)),
                table: Some(&table),
            },
        };
        qgemm(&input, &w, out, rs, cs).unwrap();
        for (pos, (&plain, &got)) in q.iter().zip(&q2).enumerate() {
            let want = table[crate::qvec::binary_one(plain, residual[pos], &p) as usize];
            assert_eq!(got, want, "{label} post at {pos} transposed {transposed}");
        }
    }
    // f32 with one scale.
    let mut f = vec![0f32; m * n];
    let fb: Vec<f32> = (0..n).map(|j| j as f32 * 0.5).collect();
    qgemm(
        &input,
        &w,
        QOutput::F32 {
            out: &mut f,
            scale: &[0.25],
            bias: Some(&fb),
        },
        n,
        1,
    )
    .unwrap();
    for i in 0..m {
        for j in 0..n {
            assert_eq!(
                f[i * n + j],
                want[i * n + j] as i32 as f32 * 0.25 + fb[j],
                "{label}"
            );
        }
    }
}

#[test]
fn every_variant_matches_the_reference() {
    let mut rng = Rng(0x9e3779b97f4a7c15);
    for isa in variants() {
        for &(m, k, n) in &[
            (1, 1, 1),
            (7, 3, 5),
            (8, 4, 32),
            (9, 5, 33),
            (65, 64, 17),
            (130, 147, 70),
            (3, 576, 64),
            (49, 1152, 40),
            // MobileNet's short-K 1×1 layers: whole tiles in both panel widths.
            (64, 16, 96),
            (33, 24, 144),
            (48, 32, 16),
        ] {
            case(&mut rng, isa, m, k, n, false);
        }
        eprintln!("qgemm variant {} ran", isa.describe());
    }
}

/// Extreme bytes (0, 255, 127, 128) everywhere: a u8 × s8 path that sums pairs in 16 bits
/// (`vpmaddubsw`) saturates on these.
#[test]
fn extreme_values_do_not_saturate() {
    let mut rng = Rng(7);
    for isa in variants() {
        for &(m, k, n) in &[(16, 256, 48), (5, 4097, 3), (3, 32_000, 2)] {
            case(&mut rng, isa, m, k, n, true);
        }
    }
}

#[test]
fn strided_rows_and_bad_shapes() {
    let isa = QIsa::detect();
    let (m, k, n) = (5, 6, 3);
    let lda = 11;
    let a: Vec<u8> = (0..m * lda).map(|i| (i * 7) as u8).collect();
    let b: Vec<i8> = (0..k * n).map(|i| (i as i32 * 13 - 100) as i8).collect();
    let w = QWeights::pack(k, n, true, |kk, j| b[kk * n + j] as i32, |_| 0, isa).unwrap();
    let input = QInput {
        data: &a,
        m,
        k,
        lda,
        signed: false,
        zero: 3,
    };
    let mut got = vec![0i32; m * n];
    qgemm(&input, &w, QOutput::I32 { out: &mut got }, n, 1).unwrap();
    for i in 0..m {
        for j in 0..n {
            let want: i32 = (0..k)
                .map(|kk| (a[i * lda + kk] as i32 - 3) * b[kk * n + j] as i32)
                .sum();
            assert_eq!(got[i * n + j], want);
        }
    }
    let mut short = vec![0i32; m * n - 1];
    assert!(qgemm(&input, &w, QOutput::I32 { out: &mut short }, n, 1).is_err());
    assert!(QWeights::pack(MAX_K + 1, 1, true, |_, _| 0, |_| 0, isa).is_err());
}
