//! bfloat16 products with f32 sums, for sessions that ask for them (`Precision::Bf16`): the
//! weights are rounded to bfloat16 once, when packed; each run rounds the other operand; the
//! products are summed in f32 by AVX512-BF16's `vdpbf16ps`, two K steps per instruction, so
//! a tile does twice the multiply-adds of the f32 kernel per instruction. Everything around
//! the product (the epilogue, the ops between products) stays f32.
//!
//! Layout: a K step pair `(2q, 2q + 1)` of one column is one 32-bit word, low half the even
//! step, as `vdpbf16ps` pairs them; the weights are `[column panel][pair][32 columns]`, the
//! activations `[row panel][pair][8 rows]`. An odd K pads its last pair with a zero.
use rayon::prelude::*;

use crate::act::Tile;
use crate::gemm::{Epilogue, PackedA};
use crate::hugepages::Buffer;

/// Columns per weight panel (two vectors of 16 words).
pub const NR: usize = 32;
/// Rows per activation panel.
const MR: usize = 8;

/// Whether this CPU has a bfloat16 product (AVX512-BF16; AMX tiles are not used yet).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `x` rounded to bfloat16, nearest with ties to even (what `vcvtneps2bf16` does); NaN stays
/// a quiet NaN.
pub fn bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    let round = 0x7fff + ((b >> 16) & 1);
    (b.wrapping_add(round) >> 16) as u16
}

/// The f32 a bfloat16 stands for.
pub fn f32_of(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

fn pair(lo: f32, hi: f32) -> u32 {
    bf16(lo) as u32 | (bf16(hi) as u32) << 16
}

/// A constant B (K×N weights) rounded to bfloat16 and packed once.
#[derive(Clone, Debug)]
pub struct PackedB16 {
    k: usize,
    n: usize,
    pairs: usize,
    data: Buffer<u32>,
}

impl PackedB16 {
    /// `b(k, j)` for `k < k_len`, `j < n`.
    pub fn new(k: usize, n: usize, b: impl Fn(usize, usize) -> f32) -> PackedB16 {
        let pairs = k.div_ceil(2);
        let panels = n.div_ceil(NR);
        let mut data = Buffer::<u32>::zeroed(panels * pairs * NR);
        for p in 0..panels {
            for q in 0..pairs {
                let row = &mut data[(p * pairs + q) * NR..][..NR];
                for (c, w) in row.iter_mut().enumerate() {
                    let j = p * NR + c;
                    if j < n {
                        let hi = if 2 * q + 1 < k { b(2 * q + 1, j) } else { 0.0 };
                        *w = pair(b(2 * q, j), hi);
                    }
                }
            }
        }
        PackedB16 { k, n, pairs, data }
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn n(&self) -> usize {
        self.n
    }

    pub fn bytes(&self) -> usize {
        self.data.len() * 4
    }

    /// Rows `k0..k0 + kc` of columns `panel·nr..` back in f32 (`kc × nr`, zero past the last
    /// column): for a product that does not take the bfloat16 kernel.
    pub(crate) fn unpack(&self, k0: usize, kc: usize, panel: usize, nr: usize, out: &mut [f32]) {
        for (kk, dst) in out[..kc * nr].chunks_exact_mut(nr).enumerate() {
            let k = k0 + kk;
            for (j, d) in dst.iter_mut().enumerate() {
                let col = panel * nr + j;
                *d = if col < self.n {
                    let w = self.data[((col / NR) * self.pairs + k / 2) * NR + col % NR];
                    f32_of((w >> (16 * (k % 2))) as u16)
                } else {
                    0.0
                };
            }
        }
    }
}

/// A (`m × k`, f32, any strides) times `alpha`, rounded to bfloat16 rows of `⌈k/2⌉` pair
/// words (an odd K's last word has a zero high half): a row in bfloat16 read as 32-bit words
/// is exactly its step pairs, so no interleaving is needed.
pub(crate) fn rows_of_view(a: crate::View, alpha: f32) -> Vec<u32> {
    let (m, k) = (a.rows, a.cols);
    let pairs = k.div_ceil(2);
    let mut out = vec![0u32; m * pairs];
    out.par_chunks_mut(pairs.max(1))
        .enumerate()
        .take(m)
        .for_each(|(r, dst)| {
            if a.cs == 1 {
                let row = &a.data[r * a.rs..r * a.rs + k];
                convert_row(row, alpha, dst);
            } else {
                for (q, w) in dst.iter_mut().enumerate() {
                    let at = |kk: usize| alpha * a.data[r * a.rs + kk * a.cs];
                    let hi = if 2 * q + 1 < k { at(2 * q + 1) } else { 0.0 };
                    *w = pair(at(2 * q), hi);
                }
            }
        });
    out
}

/// As [`rows_of_view`] from A packed in f32 panels.
pub(crate) fn rows_of_packed(a: &PackedA) -> Vec<u32> {
    let (m, k) = (a.m(), a.k());
    let pairs = k.div_ceil(2);
    let (src, amr) = a.panels();
    let mut out = vec![0u32; m * pairs];
    out.par_chunks_mut(pairs.max(1))
        .enumerate()
        .take(m)
        .for_each(|(r, dst)| {
            // Row r's K values lie `amr` apart in its panel.
            let row = &src[(r / amr) * amr * k + r % amr..];
            for (q, w) in dst.iter_mut().enumerate() {
                let hi = if 2 * q + 1 < k {
                    row[(2 * q + 1) * amr]
                } else {
                    0.0
                };
                *w = pair(row[2 * q * amr], hi);
            }
        });
    out
}

/// One contiguous row `alpha · row` into pair words.
fn convert_row(row: &[f32], alpha: f32, dst: &mut [u32]) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if available() {
        // SAFETY: AVX512-BF16 is there; 16 floats in, 8 words out per step, in bounds.
        done = unsafe { x86::convert(row, alpha, dst) };
    }
    let k = row.len();
    for q in done / 2..dst.len() {
        let hi = if 2 * q + 1 < k {
            alpha * row[2 * q + 1]
        } else {
            0.0
        };
        dst[q] = pair(alpha * row[2 * q], hi);
    }
}

/// `C = epilogue(C·[acc] + A·B)`, A given as bfloat16 pair rows (`m` rows of B's pair
/// count, from [`rows_of_view`] or [`rows_of_packed`]).
pub(crate) fn run(
    aw: &[u32],
    m: usize,
    b: &PackedB16,
    c: &mut [f32],
    ldc: usize,
    epi: &Epilogue,
    acc: bool,
) {
    let (k, n, pairs) = (b.k, b.n, b.pairs);
    assert!(aw.len() >= m * pairs, "A holds too few rows");
    assert!(available(), "bfloat16 products need AVX512-BF16");
    let m_panels = m.div_ceil(MR);
    let n_panels = n.div_ceil(NR);
    let threads = rayon::current_num_threads();
    // Column blocks first (each reads its weights once), then row blocks, up to 4 tasks a
    // thread.
    let want = if 2 * m * n * k < 1 << 19 {
        1
    } else {
        4 * threads
    };
    let npp = n_panels.div_ceil(n_panels.min(want).max(1));
    let nb = n_panels.div_ceil(npp);
    let mpp = m_panels.div_ceil(m_panels.min(want.div_ceil(nb)).max(1));
    let mb = m_panels.div_ceil(mpp);
    let cp = crate::gemm::SendPtr(c.as_mut_ptr());
    let task = |t: usize| {
        let (bi, bj) = (t / nb, t % nb);
        let mut scratch = [0f32; MR * NR];
        // A short last panel repeats its last row (results discarded).
        let mut rows_at = [std::ptr::null::<u32>(); MR];
        for np in bj * npp..((bj + 1) * npp).min(n_panels) {
            let bp = b.data[np * pairs * NR..].as_ptr();
            for mp in bi * mpp..((bi + 1) * mpp).min(m_panels) {
                let (r0, c0) = (mp * MR, np * NR);
                let (rows, cols) = (MR.min(m - r0), NR.min(n - c0));
                for (i, p) in rows_at.iter_mut().enumerate() {
                    *p = aw[(r0 + i.min(rows - 1)) * pairs..].as_ptr();
                }
                // SAFETY: `available()` held; every row and the panel hold `pairs` words; the
                // tile's part of C is inside C (checked by the caller) and this task's alone.
                unsafe {
                    kernel(pairs, &rows_at, bp, scratch.as_mut_ptr());
                    for i in 0..rows {
                        let dst = cp.at((r0 + i) * ldc + c0);
                        let src = &scratch[i * NR..i * NR + cols];
                        if acc {
                            for (j, &v) in src.iter().enumerate() {
                                *dst.add(j) += v;
                            }
                        } else {
                            std::ptr::copy_nonoverlapping(src.as_ptr(), dst, cols);
                        }
                    }
                }
                if !epi.is_none() {
                    let off = r0 * ldc + c0;
                    let span = (rows - 1) * ldc + cols;
                    // SAFETY: as above.
                    let cs = unsafe { std::slice::from_raw_parts_mut(cp.at(off), span) };
                    epi.act.tile(Tile {
                        c: cs,
                        ld: ldc,
                        rows,
                        cols,
                        bias: epi.bias,
                        r0,
                        residual: epi.residual.map(|z| &z[off..off + span]),
                    });
                }
            }
        }
    };
    let tasks = nb * mb;
    if tasks == 1 {
        task(0);
    } else {
        (0..tasks).into_par_iter().for_each(task);
    }
}

/// One MR×NR tile over `pairs` K step pairs, row `i` of A at `a[i]`, stored to `c`
/// (row-major, NR wide).
///
/// # Safety
/// The CPU must have AVX512-BF16; each `a[i]` must hold `pairs` words, `b` `pairs·NR`, `c`
/// MR·NR floats.
unsafe fn kernel(pairs: usize, a: &[*const u32; MR], b: *const u32, c: *mut f32) {
    #[cfg(target_arch = "x86_64")]
    return x86::tile(pairs, a, b, c);
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (pairs, a, b, c);
        unreachable!("no bfloat16 kernel on this architecture")
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{MR, NR};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn tile(pairs: usize, a: &[*const u32; MR], b: *const u32, c: *mut f32) {
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        for q in 0..pairs {
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(q * NR) as *const _));
            let b1: __m512bh =
                std::mem::transmute(_mm512_loadu_si512(b.add(q * NR + 16) as *const _));
            for (i, row) in acc.iter_mut().enumerate() {
                let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(*a[i].add(q) as i32));
                row[0] = _mm512_dpbf16_ps(row[0], av, b0);
                row[1] = _mm512_dpbf16_ps(row[1], av, b1);
            }
        }
        for (i, row) in acc.iter().enumerate() {
            _mm512_storeu_ps(c.add(i * NR), row[0]);
            _mm512_storeu_ps(c.add(i * NR + 16), row[1]);
        }
    }

    /// `alpha · row` rounded (nearest even) 16 floats at a time into `dst`'s pair words;
    /// returns how many floats it did (a multiple of 16).
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn convert(row: &[f32], alpha: f32, dst: &mut [u32]) -> usize {
        let al = _mm512_set1_ps(alpha);
        let mut i = 0;
        while i + 16 <= row.len() && i / 2 + 8 <= dst.len() {
            let x = _mm512_mul_ps(_mm512_loadu_ps(row.as_ptr().add(i)), al);
            let h: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(x));
            _mm256_storeu_si256(dst.as_mut_ptr().add(i / 2) as *mut _, h);
            i += 16;
        }
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::{gemm_packed, tests::data, Epilogue, PackedA};

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(bf16(1.0), 0x3f80);
        // 1 + 2^-8 lies halfway between 1 and 1 + 2^-7: ties go to the even one, 1.
        assert_eq!(bf16(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert_eq!(f32_of(bf16(-2.5)), -2.5);
        assert!(f32_of(bf16(f32::NAN)).is_nan());
        assert_eq!(f32_of(bf16(f32::INFINITY)), f32::INFINITY);
    }

    /// Against the same rounding in f64: both operands rounded to bfloat16, products summed
    /// exactly; the kernel's f32 sums stay within a few f32 roundings of that.
    #[test]
    fn matches_rounded_reference() {
        if !available() {
            eprintln!("bf16 GEMM NOT RUN: this CPU lacks AVX512-BF16");
            return;
        }
        for &(m, n, k) in &[
            (1, 1, 1),
            (8, 32, 2),
            (13, 70, 301),
            (128, 96, 384),
            (3, 33, 7),
        ] {
            let (a, bm) = (data(m * k, 3), data(k * n, 4));
            let b = PackedB16::new(k, n, |kk, j| bm[kk * n + j]);
            let pa = PackedA::new(&a, m, k, k);
            let bias: Vec<f32> = (0..m).map(|i| i as f32 * 0.25).collect();
            let epi = Epilogue {
                bias: Some(&bias),
                residual: None,
                act: crate::Activation::Relu,
            };
            let mut c = vec![f32::NAN; m * n];
            run(&rows_of_packed(&pa), m, &b, &mut c, n, &epi, false);
            let mut cv = vec![f32::NAN; m * n];
            let aw = rows_of_view(crate::View::new(&a, m, k, k, 1), 1.0);
            run(&aw, m, &b, &mut cv, n, &epi, false);
            assert_eq!(c, cv, "A from a view and from panels");
            for i in 0..m {
                for j in 0..n {
                    let mut want = 0f64;
                    let mut mag = 0f64;
                    for kk in 0..k {
                        let p = f32_of(bf16(a[i * k + kk])) as f64
                            * f32_of(bf16(bm[kk * n + j])) as f64;
                        want += p;
                        mag += p.abs();
                    }
                    let want = (want + bias[i] as f64).max(0.0);
                    let got = c[i * n + j] as f64;
                    assert!(
                        (got - want).abs() <= 1e-6 * (1.0 + mag),
                        "{m}x{n}x{k} ({i},{j}): {got} vs {want}"
                    );
                }
            }
            // And near the f32 product: bfloat16 keeps 8 bits.
            let mut f = vec![0f32; m * n];
            gemm_packed(
                &pa,
                &crate::gemm::RowMajor { b: &bm, n, ld: n },
                &mut f,
                n,
                &epi,
            );
            for (x, y) in c.iter().zip(&f) {
                assert!(
                    (x - y).abs() <= 2e-2 * (1.0 + y.abs()) * (k as f32).sqrt(),
                    "{x} vs {y}"
                );
            }
        }
    }
}
