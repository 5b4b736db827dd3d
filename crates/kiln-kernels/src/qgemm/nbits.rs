//! 4-bit weights times 8-bit activations (MatMulNBits at accuracy level 4, as ONNX Runtime's
//! int8 compute path): each row of A is quantized per K block to int8 (symmetric, scale
//! `max|a| / 127`), each block's product `Σ a·(q - z)` is taken in integers with `vpdpbusd`
//! (A moved up by 128 to the unsigned operand, the 4-bit values `q` as the signed one), then
//! corrected exactly — `Σ (a + 128)·q - 128·Σq - z·Σa`, the middle term known per column and
//! block when packing, `Σa` per row and block when quantizing A — and scaled into an f32
//! accumulator by `sa[block] · sw[col, block]`. The weights stay 4-bit in memory (two K steps
//! per byte, split in registers), as decoding one token at a time reads every weight once and
//! is bound by how many bytes that is. AVX512-VNNI only; other machines take the kernel that
//! dequantizes inside ([`super::nbits_f32`]).
use rayon::prelude::*;

use super::QIsa;

/// Columns per panel (two vectors) and rows per tile.
const NR: usize = 32;
const MR: usize = 4;

/// 4-bit weights `[N, K]` (stored per column, as MatMulNBits does) ready for the kernel.
pub struct Q4Weights {
    n: usize,
    k: usize,
    block: usize,
    blocks: usize,
    /// `[panel][block][step pair][NR cols][4]` bytes: step `2i`'s value in the low nibble,
    /// step `2i + 1`'s in the high one (a step is 4 consecutive K).
    data: super::Aligned,
    /// `[panel][block][NR]` scales, zero points, and `128·Σq` over the block.
    scales: Vec<f32>,
    zeros: Vec<f32>,
    corr: Vec<i32>,
}

impl Q4Weights {
    /// Whether this CPU has the kernel.
    pub fn available() -> bool {
        QIsa::detect() == QIsa::Avx512Vnni
    }

    /// `q(col, k)` in 0..15, `scale(col, block)`, `zero(col, block)` in 0..15; `block` a
    /// multiple of 16.
    pub fn pack(
        n: usize,
        k: usize,
        block: usize,
        q: impl Fn(usize, usize) -> u8,
        scale: impl Fn(usize, usize) -> f32,
        zero: impl Fn(usize, usize) -> i32,
    ) -> Option<Q4Weights> {
        // Blocks up to 4096 keep every partial sum below 2^24 (exact in f32).
        if n == 0
            || k == 0
            || block == 0
            || !block.is_multiple_of(16)
            || block > 4096
            || !Self::available()
        {
            return None;
        }
        let blocks = k.div_ceil(block);
        let panels = n.div_ceil(NR);
        let mut store = super::Aligned::zeroed(panels * blocks * block * NR / 2);
        let data = store.as_mut_slice();
        let mut scales = vec![0f32; panels * blocks * NR];
        let mut zeros = vec![0f32; panels * blocks * NR];
        let mut corr = vec![0i32; panels * blocks * NR];
        for col in 0..n {
            let (p, c) = (col / NR, col % NR);
            for b in 0..blocks {
                let at = (p * blocks + b) * NR + c;
                scales[at] = scale(col, b);
                let z = zero(col, b);
                if !(0..16).contains(&z) {
                    return None;
                }
                zeros[at] = z as f32;
                let base = (p * blocks + b) * block * NR / 2;
                let mut sum = 0;
                for i in 0..block.min(k - b * block) {
                    let v = q(col, b * block + i) & 15;
                    let step = i / 4;
                    let byte = base + (step / 2) * NR * 4 + c * 4 + i % 4;
                    data[byte] |= v << (4 * (step % 2));
                    sum += v as i32;
                }
                corr[at] = 128 * sum;
            }
        }
        Some(Q4Weights {
            n,
            k,
            block,
            blocks,
            data: store,
            scales,
            zeros,
            corr,
        })
    }

    pub fn n(&self) -> usize {
        self.n
    }

    pub fn k(&self) -> usize {
        self.k
    }
}

crate::isa_dispatch! {
    /// One row of A to `a + 128` per block of `block` values, symmetric int8 (`max|a| / 127`),
    /// with the blocks' scales and sums of the int8 values.
    fn quantize_row(row: &[f32], block: usize, q: &mut [u8], s: &mut [f32], sums: &mut [f32]) {
        for (b, (part, sb)) in row.chunks(block).zip(s.iter_mut()).enumerate() {
            let amax = part.iter().fold(0f32, |m, &v| m.max(v.abs()));
            let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
            let mut sum = 0i32;
            for (d, &v) in q[b * block..].iter_mut().zip(part) {
                let x = (v * inv).round_ties_even().clamp(-127.0, 127.0) as i32;
                sum += x;
                *d = (x + 128) as u8;
            }
            *sb = amax / 127.0;
            sums[b] = sum as f32;
        }
    }
}

/// `out [M, N] = A [M, K] · Wᵀ (+ bias)` with A quantized per block as above.
pub fn q4_matmul(a: &[f32], m: usize, w: &Q4Weights, bias: Option<&[f32]>, out: &mut [f32]) {
    let (k, n, block, blocks) = (w.k, w.n, w.block, w.blocks);
    assert!(a.len() >= m * k && out.len() >= m * n);
    let kp = blocks * block;
    // A per row: int8 values moved up by 128 (K padded with the zero's 128, the weights are 0
    // there), a scale and a sum per block.
    let mut aq = vec![128u8; m * kp];
    let mut sa = vec![0f32; m * blocks];
    let mut suma = vec![0f32; m * blocks];
    aq.par_chunks_mut(kp)
        .zip(sa.par_chunks_mut(blocks))
        .zip(suma.par_chunks_mut(blocks))
        .enumerate()
        .for_each(|(r, ((q, s), sums))| quantize_row(&a[r * k..(r + 1) * k], block, q, s, sums));
    let panels = n.div_ceil(NR);
    let rows_per = MR;
    let row_tasks = m.div_ceil(rows_per);
    let o = super::TileOut::new(out, n);
    let o = &o;
    (0..panels * row_tasks).into_par_iter().for_each(|t| {
        let (p, rt) = (t % panels, t / panels);
        let r0 = rt * rows_per;
        let rows = rows_per.min(m - r0);
        let mut tile = [[0f32; NR]; MR];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the weights exist only where QIsa::detect() saw AVX512-VNNI.
        unsafe {
            x86::panel(
                w,
                p,
                x86::RowsQ {
                    aq: &aq[r0 * kp..],
                    kp,
                    sa: &sa[r0 * blocks..],
                    sums: &suma[r0 * blocks..],
                },
                rows,
                &mut tile,
            )
        };
        let cols = NR.min(n - p * NR);
        // SAFETY: this task's (rows, panel) tile alone.
        unsafe { o.store(&tile, (r0, rows), (p * NR, cols), bias) };
    });
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Q4Weights, MR, NR};
    use std::arch::x86_64::*;

    /// Quantized rows of A: `a + 128` (rows `kp` apart), and per row and block the scale and
    /// the sum of the int8 values.
    #[derive(Clone, Copy)]
    pub(super) struct RowsQ<'a> {
        pub aq: &'a [u8],
        pub kp: usize,
        pub sa: &'a [f32],
        pub sums: &'a [f32],
    }

    impl RowsQ<'_> {
        fn skip(&self, r: usize, blocks: usize) -> Self {
            RowsQ {
                aq: &self.aq[r * self.kp..],
                kp: self.kp,
                sa: &self.sa[r * blocks..],
                sums: &self.sums[r * blocks..],
            }
        }
    }

    /// Up to `MR` rows × one panel of two column vectors: four rows at once, or one row at a
    /// time (its step pairs feed two accumulators, so a lone row does not wait on the
    /// `vpdpbusd` latency: token-by-token decoding).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn panel(
        w: &Q4Weights,
        p: usize,
        a: RowsQ,
        rows: usize,
        out: &mut [[f32; NR]; MR],
    ) {
        if rows == MR {
            tile::<MR>(w, p, a, out);
        } else {
            for r in 0..rows {
                tile::<1>(w, p, a.skip(r, w.blocks), &mut out[r..]);
            }
        }
    }

    /// `R` rows; each step pair's low nibbles go to one accumulator set, high ones to another.
    #[inline(always)]
    unsafe fn tile<const R: usize>(w: &Q4Weights, p: usize, a: RowsQ, out: &mut [[f32; NR]]) {
        let (block, blocks) = (w.block, w.blocks);
        let nib = _mm512_set1_epi8(15);
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        for b in 0..blocks {
            let wp = w.data.as_ptr().add((p * blocks + b) * block * NR / 2);
            let mut dot = [[[_mm512_setzero_si512(); 2]; R]; 2];
            for pair in 0..block / 8 {
                let p0 = _mm512_loadu_si512(wp.add(pair * NR * 4) as *const _);
                let p1 = _mm512_loadu_si512(wp.add(pair * NR * 4 + 64) as *const _);
                let ws = [
                    [_mm512_and_si512(p0, nib), _mm512_and_si512(p1, nib)],
                    [
                        _mm512_and_si512(_mm512_srli_epi16(p0, 4), nib),
                        _mm512_and_si512(_mm512_srli_epi16(p1, 4), nib),
                    ],
                ];
                for (h, dh) in dot.iter_mut().enumerate() {
                    for (r, d) in dh.iter_mut().enumerate() {
                        let at = a.aq.as_ptr().add(r * a.kp + b * block + (2 * pair + h) * 4);
                        let av = _mm512_set1_epi32(std::ptr::read_unaligned(at as *const i32));
                        d[0] = _mm512_dpbusd_epi32(d[0], av, ws[h][0]);
                        d[1] = _mm512_dpbusd_epi32(d[1], av, ws[h][1]);
                    }
                }
            }
            let pb = (p * blocks + b) * NR;
            let ld = |v: &[f32], at: usize| _mm512_loadu_ps(v.as_ptr().add(at));
            let sw = [ld(&w.scales, pb), ld(&w.scales, pb + 16)];
            let zw = [ld(&w.zeros, pb), ld(&w.zeros, pb + 16)];
            let cw = [
                _mm512_loadu_si512(w.corr.as_ptr().add(pb) as *const _),
                _mm512_loadu_si512(w.corr.as_ptr().add(pb + 16) as *const _),
            ];
            for r in 0..R {
                let s = _mm512_set1_ps(a.sa[r * blocks + b]);
                let sum = _mm512_set1_ps(a.sums[r * blocks + b]);
                for v in 0..2 {
                    let dq = _mm512_sub_epi32(_mm512_add_epi32(dot[0][r][v], dot[1][r][v]), cw[v]);
                    // Integers below 2^24: exact in f32, the product and difference too.
                    let d = _mm512_fnmadd_ps(zw[v], sum, _mm512_cvtepi32_ps(dq));
                    acc[r][v] = _mm512_fmadd_ps(d, _mm512_mul_ps(sw[v], s), acc[r][v]);
                }
            }
        }
        for r in 0..R {
            _mm512_storeu_ps(out[r].as_mut_ptr(), acc[r][0]);
            _mm512_storeu_ps(out[r].as_mut_ptr().add(16), acc[r][1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the same arithmetic in f64: the int8 A per block, the 4-bit weights.
    #[test]
    fn matches_blockwise_reference() {
        if !Q4Weights::available() {
            eprintln!("q4 (avx512-vnni) NOT RUN: this CPU lacks AVX512-VNNI");
            return;
        }
        let mut seed = 12345u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as u32
        };
        let shapes: [(usize, usize, usize, usize); 4] = [
            (1, 64, 20, 32),
            (5, 100, 33, 16),
            (9, 256, 48, 64),
            (2, 40, 5, 32),
        ];
        for &(m, k, n, block) in &shapes {
            let q: Vec<u8> = (0..n * k).map(|_| (next() % 16) as u8).collect();
            let blocks = k.div_ceil(block);
            let sc: Vec<f32> = (0..n * blocks)
                .map(|_| (next() % 100) as f32 / 1000.0 + 0.01)
                .collect();
            let zp: Vec<i32> = (0..n * blocks).map(|_| (next() % 16) as i32).collect();
            let a: Vec<f32> = (0..m * k)
                .map(|_| (next() % 2001) as f32 / 1000.0 - 1.0)
                .collect();
            let w = Q4Weights::pack(
                n,
                k,
                block,
                |c, kk| q[c * k + kk],
                |c, b| sc[c * blocks + b],
                |c, b| zp[c * blocks + b],
            )
            .unwrap();
            let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.1).collect();
            let mut out = vec![0f32; m * n];
            q4_matmul(&a, m, &w, Some(&bias), &mut out);
            for r in 0..m {
                for c in 0..n {
                    let mut want = bias[c] as f64;
                    for b in 0..blocks {
                        let part = &a[r * k + b * block..r * k + ((b + 1) * block).min(k)];
                        let amax = part.iter().fold(0f32, |m, &v| m.max(v.abs()));
                        let inv = if amax > 0.0 { 127.0 / amax } else { 0.0 };
                        let mut dot = 0i64;
                        for (i, &v) in part.iter().enumerate() {
                            let x = (v * inv).round_ties_even().clamp(-127.0, 127.0) as i64;
                            dot +=
                                x * (q[c * k + b * block + i] as i64 - zp[c * blocks + b] as i64);
                        }
                        want += dot as f64 * (amax / 127.0) as f64 * sc[c * blocks + b] as f64;
                    }
                    let got = out[r * n + c] as f64;
                    assert!(
                        (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "m{m} k{k} n{n} ({r},{c}): {got} vs {want}"
                    );
                }
            }
        }
    }
}
