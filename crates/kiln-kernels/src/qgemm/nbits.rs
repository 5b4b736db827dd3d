//! 4-bit weights times 8-bit activations (MatMulNBits at accuracy level 4, as ONNX Runtime's
//! int8 compute path): each row of A is quantized per K block to int8 (symmetric, scale
//! `max|a| / 127`), each block's product `Σ a·(q - z)` is taken in integers with `vpdpbusd`
//! (A moved up by 128 to the unsigned operand, the 4-bit values `q` as the signed one), then
//! corrected exactly — `Σ (a + 128)·q - 128·Σq - z·Σa`, the middle term known per column and
//! block when packing, `Σa` per row and block when quantizing A — and scaled into an f32
//! accumulator by `sa[block] · sw[col, block]`. The weights stay 4-bit in memory (two K steps
//! per byte, split in registers), as decoding one token at a time reads every weight once and
//! is bound by how many bytes that is.
//!
//! The tile is written once over a `Q4Dot` step and compiled per ISA: `vpdpbusd` on 512-bit
//! (AVX512-VNNI) or 256-bit vectors (AVX-VNNI, or its AVX512-VL encoding), and on AVX2
//! `vpmaddubsw` then `vpmaddwd` by ones — exact here, unlike for 8-bit weights, since a pair of
//! products `(a + 128)·q` is at most 2·255·15 = 7650 and cannot saturate i16. Machines without
//! AVX2 take the kernel that dequantizes inside ([`super::nbits_f32`]).
use rayon::prelude::*;

use super::QIsa;

/// Columns per panel (two vectors) and rows per tile.
const NR: usize = 32;
const MR: usize = 4;

/// 4-bit weights `[N, K]` (stored per column, as MatMulNBits does) ready for the kernel.
pub struct Q4Weights {
    /// The kernel variant the weights were packed for (the layout suits every variant).
    isa: QIsa,
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
        QIsa::detect() >= QIsa::Avx2
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
        Self::pack_for(QIsa::detect(), n, k, block, q, scale, zero)
    }

    /// As [`Q4Weights::pack`] for the kernel variant `isa` (one the CPU runs, AVX2 or better).
    pub(crate) fn pack_for(
        isa: QIsa,
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
            || isa < QIsa::Avx2
            || !isa.runs()
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
            isa,
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
        // SAFETY: the weights exist only where QIsa::detect() saw the ISA they name.
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
    use super::{Q4Weights, QIsa, MR, NR};
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

    /// One vector width's steps of the tile: `W` columns per vector, four K steps per lane.
    pub(super) trait Q4Dot {
        const W: usize;
        type I: Copy;
        type F: Copy;
        unsafe fn zero_i() -> Self::I;
        unsafe fn zero_f() -> Self::F;
        /// The `W·4` packed bytes at `p` split into (low nibbles, high nibbles).
        unsafe fn nibbles(p: *const u8) -> (Self::I, Self::I);
        /// Four A bytes at `p`, broadcast to every lane.
        unsafe fn bcast(p: *const u8) -> Self::I;
        /// `acc + Σ_g a[g]·w[lane, g]`, `a` unsigned and `w` in 0..15.
        unsafe fn dot(acc: Self::I, a: Self::I, w: Self::I) -> Self::I;
        /// `acc + (f32(d0 + d1 - corr) - zw·sum)·(sw·s)`, the per-column terms read at
        /// `corr`, `zw` and `sw`.
        #[allow(clippy::too_many_arguments)]
        unsafe fn finish(
            acc: Self::F,
            d0: Self::I,
            d1: Self::I,
            corr: *const i32,
            zw: *const f32,
            sw: *const f32,
            s: f32,
            sum: f32,
        ) -> Self::F;
        unsafe fn store(p: *mut f32, v: Self::F);
    }

    pub(super) struct Vnni512;
    /// 256-bit `vpdpbusd`, VEX (AVX-VNNI) or EVEX (AVX512-VL) as `VEX` says.
    pub(super) struct Vnni256<const VEX: bool>;
    pub(super) struct Avx2;

    impl Q4Dot for Vnni512 {
        const W: usize = 16;
        type I = __m512i;
        type F = __m512;
        #[inline(always)]
        unsafe fn zero_i() -> __m512i {
            _mm512_setzero_si512()
        }
        #[inline(always)]
        unsafe fn zero_f() -> __m512 {
            _mm512_setzero_ps()
        }
        #[inline(always)]
        unsafe fn nibbles(p: *const u8) -> (__m512i, __m512i) {
            let (v, nib) = (_mm512_loadu_si512(p as *const _), _mm512_set1_epi8(15));
            (
                _mm512_and_si512(v, nib),
                _mm512_and_si512(_mm512_srli_epi16(v, 4), nib),
            )
        }
        #[inline(always)]
        unsafe fn bcast(p: *const u8) -> __m512i {
            _mm512_set1_epi32(std::ptr::read_unaligned(p as *const i32))
        }
        #[inline(always)]
        unsafe fn dot(acc: __m512i, a: __m512i, w: __m512i) -> __m512i {
            _mm512_dpbusd_epi32(acc, a, w)
        }
        #[inline(always)]
        unsafe fn finish(
            acc: __m512,
            d0: __m512i,
            d1: __m512i,
            corr: *const i32,
            zw: *const f32,
            sw: *const f32,
            s: f32,
            sum: f32,
        ) -> __m512 {
            let c = _mm512_loadu_si512(corr as *const _);
            let dq = _mm512_sub_epi32(_mm512_add_epi32(d0, d1), c);
            // Integers below 2^24: exact in f32, the product and difference too.
            let d = _mm512_fnmadd_ps(
                _mm512_loadu_ps(zw),
                _mm512_set1_ps(sum),
                _mm512_cvtepi32_ps(dq),
            );
            let k = _mm512_mul_ps(_mm512_loadu_ps(sw), _mm512_set1_ps(s));
            _mm512_fmadd_ps(d, k, acc)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512) {
            _mm512_storeu_ps(p, v)
        }
    }

    /// The 256-bit variants: one shape, the dot product step as given.
    macro_rules! q4dot256 {
        ($name:ty, |$acc:ident, $a:ident, $w:ident| $dot:expr) => {
            impl Q4Dot for $name {
                const W: usize = 8;
                type I = __m256i;
                type F = __m256;
                #[inline(always)]
                unsafe fn zero_i() -> __m256i {
                    _mm256_setzero_si256()
                }
                #[inline(always)]
                unsafe fn zero_f() -> __m256 {
                    _mm256_setzero_ps()
                }
                #[inline(always)]
                unsafe fn nibbles(p: *const u8) -> (__m256i, __m256i) {
                    let (v, nib) = (_mm256_loadu_si256(p as *const _), _mm256_set1_epi8(15));
                    (
                        _mm256_and_si256(v, nib),
                        _mm256_and_si256(_mm256_srli_epi16(v, 4), nib),
                    )
                }
                #[inline(always)]
                unsafe fn bcast(p: *const u8) -> __m256i {
                    _mm256_set1_epi32(std::ptr::read_unaligned(p as *const i32))
                }
                #[inline(always)]
                unsafe fn dot($acc: __m256i, $a: __m256i, $w: __m256i) -> __m256i {
                    $dot
                }
                #[inline(always)]
                unsafe fn finish(
                    acc: __m256,
                    d0: __m256i,
                    d1: __m256i,
                    corr: *const i32,
                    zw: *const f32,
                    sw: *const f32,
                    s: f32,
                    sum: f32,
                ) -> __m256 {
                    let c = _mm256_loadu_si256(corr as *const _);
                    let dq = _mm256_sub_epi32(_mm256_add_epi32(d0, d1), c);
                    let d = _mm256_fnmadd_ps(
                        _mm256_loadu_ps(zw),
                        _mm256_set1_ps(sum),
                        _mm256_cvtepi32_ps(dq),
                    );
                    let k = _mm256_mul_ps(_mm256_loadu_ps(sw), _mm256_set1_ps(s));
                    _mm256_fmadd_ps(d, k, acc)
                }
                #[inline(always)]
                unsafe fn store(p: *mut f32, v: __m256) {
                    _mm256_storeu_ps(p, v)
                }
            }
        };
    }

    q4dot256!(Vnni256<true>, |acc, a, w| _mm256_dpbusd_avx_epi32(
        acc, a, w
    ));
    q4dot256!(Vnni256<false>, |acc, a, w| _mm256_dpbusd_epi32(acc, a, w));
    q4dot256!(Avx2, |acc, a, w| _mm256_add_epi32(
        acc,
        _mm256_madd_epi16(_mm256_maddubs_epi16(a, w), _mm256_set1_epi16(1))
    ));

    /// Up to `MR` rows × one panel, by the variant the weights were packed for.
    ///
    /// # Safety
    /// The CPU must run `w`'s variant (it was [`QIsa::detect`]ed when packing).
    pub(super) unsafe fn panel(
        w: &Q4Weights,
        p: usize,
        a: RowsQ,
        rows: usize,
        out: &mut [[f32; NR]; MR],
    ) {
        match w.isa {
            QIsa::Avx512Vnni => vnni512(w, p, a, rows, out),
            QIsa::AvxVnni if is_x86_feature_detected!("avxvnni") => avxvnni(w, p, a, rows, out),
            QIsa::AvxVnni => vnni256(w, p, a, rows, out),
            _ => avx2(w, p, a, rows, out),
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn vnni512(w: &Q4Weights, p: usize, a: RowsQ, rows: usize, out: &mut [[f32; NR]; MR]) {
        rows_of::<Vnni512, MR, 2>(w, p, a, rows, out)
    }

    #[target_feature(enable = "avx2,fma,avxvnni")]
    unsafe fn avxvnni(w: &Q4Weights, p: usize, a: RowsQ, rows: usize, out: &mut [[f32; NR]; MR]) {
        rows_of::<Vnni256<true>, 2, 4>(w, p, a, rows, out)
    }

    #[target_feature(enable = "avx2,fma,avx512f,avx512vl,avx512vnni")]
    unsafe fn vnni256(w: &Q4Weights, p: usize, a: RowsQ, rows: usize, out: &mut [[f32; NR]; MR]) {
        rows_of::<Vnni256<false>, 2, 4>(w, p, a, rows, out)
    }

    #[target_feature(enable = "avx2,fma")]
    unsafe fn avx2(w: &Q4Weights, p: usize, a: RowsQ, rows: usize, out: &mut [[f32; NR]; MR]) {
        rows_of::<Avx2, 2, 4>(w, p, a, rows, out)
    }

    /// `rows` rows in tiles of `T` (what the registers hold: 4 rows of 2 vectors on AVX-512,
    /// 2 of 4 on 256-bit vectors), then lone rows.
    #[inline(always)]
    unsafe fn rows_of<D: Q4Dot, const T: usize, const NV: usize>(
        w: &Q4Weights,
        p: usize,
        a: RowsQ,
        rows: usize,
        out: &mut [[f32; NR]; MR],
    ) {
        let mut r = 0;
        while r + T <= rows {
            tile::<D, T, NV>(w, p, a.skip(r, w.blocks), &mut out[r..]);
            r += T;
        }
        while r < rows {
            tile::<D, 1, NV>(w, p, a.skip(r, w.blocks), &mut out[r..]);
            r += 1;
        }
    }

    /// `R` rows × `NV` vectors of columns; each step pair's low nibbles go to one accumulator
    /// set, high ones to another, so a lone row does not wait on the dot product's latency
    /// (token-by-token decoding).
    #[inline(always)]
    unsafe fn tile<D: Q4Dot, const R: usize, const NV: usize>(
        w: &Q4Weights,
        p: usize,
        a: RowsQ,
        out: &mut [[f32; NR]],
    ) {
        debug_assert_eq!(NV * D::W, NR);
        let (block, blocks) = (w.block, w.blocks);
        let mut acc = [[D::zero_f(); NV]; R];
        for b in 0..blocks {
            let wp = w.data.as_ptr().add((p * blocks + b) * block * NR / 2);
            let mut dot = [[[D::zero_i(); NV]; R]; 2];
            for pair in 0..block / 8 {
                let mut ws = [[D::zero_i(); NV]; 2];
                for v in 0..NV {
                    let (lo, hi) = D::nibbles(wp.add(pair * NR * 4 + v * D::W * 4));
                    ws[0][v] = lo;
                    ws[1][v] = hi;
                }
                for (h, dh) in dot.iter_mut().enumerate() {
                    for (r, d) in dh.iter_mut().enumerate() {
                        let at = a.aq.as_ptr().add(r * a.kp + b * block + (2 * pair + h) * 4);
                        let av = D::bcast(at);
                        for (dv, wv) in d.iter_mut().zip(&ws[h]) {
                            *dv = D::dot(*dv, av, *wv);
                        }
                    }
                }
            }
            let pb = (p * blocks + b) * NR;
            for (r, ar) in acc.iter_mut().enumerate() {
                let (s, sum) = (a.sa[r * blocks + b], a.sums[r * blocks + b]);
                for (v, av) in ar.iter_mut().enumerate() {
                    let at = pb + v * D::W;
                    *av = D::finish(
                        *av,
                        dot[0][r][v],
                        dot[1][r][v],
                        w.corr.as_ptr().add(at),
                        w.zeros.as_ptr().add(at),
                        w.scales.as_ptr().add(at),
                        s,
                        sum,
                    );
                }
            }
        }
        for (r, ar) in acc.iter().enumerate() {
            for (v, av) in ar.iter().enumerate() {
                D::store(out[r].as_mut_ptr().add(v * D::W), *av);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the same arithmetic in f64: the int8 A per block, the 4-bit weights.
    #[test]
    fn matches_blockwise_reference() {
        let isas: Vec<QIsa> = QIsa::available()
            .into_iter()
            .filter(|&i| i >= QIsa::Avx2)
            .collect();
        if isas.is_empty() {
            eprintln!("q4 NOT RUN: this CPU lacks AVX2");
            return;
        }
        for isa in isas {
            eprintln!("q4 {}", isa.name());
            check_variant(isa);
        }
    }

    fn check_variant(isa: QIsa) {
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
            let w = Q4Weights::pack_for(
                isa,
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
                        "{} m{m} k{k} n{n} ({r},{c}): {got} vs {want}",
                        isa.name()
                    );
                }
            }
        }
    }
}
