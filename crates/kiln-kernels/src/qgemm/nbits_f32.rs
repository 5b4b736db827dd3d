//! Blockwise-quantized weights (MatMulNBits' 2-8 bits, any block size) multiplied in f32, the
//! weights dequantized inside the kernel: ONNX Runtime's accuracy levels 0-3, and level 4 where
//! the CPU has no 8-bit kernel for it. The weights stay as compact as the model has them —
//! values of up to 4 bits two to a byte, 8-bit ones a byte each — in panels of [`NR`] columns,
//! K-major, with per column and block the scale `s` and `-z·s`; the kernel turns one K step of
//! a panel into f32 (`q·s - z·s`, ONNX Runtime's `(q - z)·s` to a rounding) and multiplies it
//! into up to eight rows of A. Decoding one token reads every weight once, so its speed is the
//! bytes read; no f32 copy of the whole weight matrix ever exists (a task that reuses a panel
//! over many rows dequantizes that panel once).
//!
//! Written once as plain loops over fixed-size arrays and compiled per ISA; one row uses four
//! interleaved K accumulators so the FMA latency chain does not bind.
use rayon::prelude::*;

/// Columns per panel: one AVX-512 vector, two AVX2 ones.
pub const NR: usize = 16;
const MR: usize = 8;

/// The packed values `q`.
enum Store {
    /// `[panel][k / 2][NR]`: step `2i` in the low nibble, `2i + 1` in the high one.
    Nibbles(crate::hugepages::Buffer<u8>),
    /// `[panel][k][NR]`.
    Bytes(crate::hugepages::Buffer<u8>),
}

/// Weights `[N, K]` (per column, as MatMulNBits stores them) ready for [`dq_matmul`].
pub struct DqWeights {
    n: usize,
    k: usize,
    block: usize,
    blocks: usize,
    data: Store,
    /// `[panel][block][NR]` scales and `-z·s`; columns past N are zero.
    scales: Vec<f32>,
    shifts: Vec<f32>,
}

impl DqWeights {
    /// `q(col, k)` in `0..2^bits`, `scale(col, block)`, `zero(col, block)`; None when a size
    /// is zero or `bits` above 8.
    pub fn pack(
        n: usize,
        k: usize,
        block: usize,
        bits: usize,
        q: impl Fn(usize, usize) -> u8,
        scale: impl Fn(usize, usize) -> f32,
        zero: impl Fn(usize, usize) -> f32,
    ) -> Option<DqWeights> {
        if n == 0 || k == 0 || block == 0 || bits == 0 || bits > 8 {
            return None;
        }
        let blocks = k.div_ceil(block);
        let panels = n.div_ceil(NR);
        let nibbles = bits <= 4;
        let steps = if nibbles { k.div_ceil(2) } else { k };
        let mut data = crate::hugepages::Buffer::zeroed(panels * steps * NR);
        let mut scales = vec![0f32; panels * blocks * NR];
        let mut shifts = vec![0f32; panels * blocks * NR];
        for col in 0..n {
            let (p, c) = (col / NR, col % NR);
            for b in 0..blocks {
                let s = scale(col, b);
                scales[(p * blocks + b) * NR + c] = s;
                shifts[(p * blocks + b) * NR + c] = -zero(col, b) * s;
            }
            for kk in 0..k {
                let v = q(col, kk);
                if nibbles {
                    data[(p * steps + kk / 2) * NR + c] |= (v & 15) << (4 * (kk % 2));
                } else {
                    data[(p * steps + kk) * NR + c] = v;
                }
            }
        }
        Some(DqWeights {
            n,
            k,
            block,
            blocks,
            data: if nibbles {
                Store::Nibbles(data)
            } else {
                Store::Bytes(data)
            },
            scales,
            shifts,
        })
    }

    pub fn n(&self) -> usize {
        self.n
    }

    pub fn k(&self) -> usize {
        self.k
    }

    /// Bytes the packed values hold.
    pub fn bytes(&self) -> usize {
        match &self.data {
            Store::Nibbles(v) | Store::Bytes(v) => v.len(),
        }
    }
}

/// `x·y + z`: one rounding where the variant has FMA (`FUSED`), else two (the baseline
/// variant would call a software fma).
#[inline(always)]
fn madd<const FUSED: bool>(x: f32, y: f32, z: f32) -> f32 {
    if FUSED {
        x.mul_add(y, z)
    } else {
        x * y + z
    }
}

/// One panel's K steps as f32 weights.
trait Steps: Copy {
    /// Step `kk`'s `NR` weights, given its block's scales and shifts.
    ///
    /// # Safety
    /// `kk` is below the panel's K.
    unsafe fn step<const FUSED: bool>(self, kk: usize, s: &[f32; NR], z: &[f32; NR]) -> [f32; NR];

    /// Steps `kk` (even) and `kk + 1`.
    ///
    /// # Safety
    /// `kk + 1` is below the panel's K.
    #[inline(always)]
    unsafe fn pair<const FUSED: bool>(
        self,
        kk: usize,
        s: &[f32; NR],
        z: &[f32; NR],
    ) -> [[f32; NR]; 2] {
        [
            self.step::<FUSED>(kk, s, z),
            self.step::<FUSED>(kk + 1, s, z),
        ]
    }
}

#[derive(Clone, Copy)]
struct NibbleSteps(*const u8);

impl Steps for NibbleSteps {
    #[inline(always)]
    unsafe fn step<const FUSED: bool>(self, kk: usize, s: &[f32; NR], z: &[f32; NR]) -> [f32; NR] {
        let row = &*(self.0.add((kk / 2) * NR) as *const [u8; NR]);
        let shift = 4 * (kk % 2) as u32;
        let mut w = [0f32; NR];
        for c in 0..NR {
            w[c] = madd::<FUSED>(((row[c] >> shift) & 15) as f32, s[c], z[c]);
        }
        w
    }

    #[inline(always)]
    unsafe fn pair<const FUSED: bool>(
        self,
        kk: usize,
        s: &[f32; NR],
        z: &[f32; NR],
    ) -> [[f32; NR]; 2] {
        let row = &*(self.0.add((kk / 2) * NR) as *const [u8; NR]);
        let mut w = [[0f32; NR]; 2];
        for c in 0..NR {
            w[0][c] = madd::<FUSED>((row[c] & 15) as f32, s[c], z[c]);
            w[1][c] = madd::<FUSED>((row[c] >> 4) as f32, s[c], z[c]);
        }
        w
    }
}

#[derive(Clone, Copy)]
struct ByteSteps(*const u8);

impl Steps for ByteSteps {
    #[inline(always)]
    unsafe fn step<const FUSED: bool>(self, kk: usize, s: &[f32; NR], z: &[f32; NR]) -> [f32; NR] {
        let row = &*(self.0.add(kk * NR) as *const [u8; NR]);
        let mut w = [0f32; NR];
        for c in 0..NR {
            w[c] = madd::<FUSED>(row[c] as f32, s[c], z[c]);
        }
        w
    }
}

/// A panel dequantized once (`[k][NR]`, scales applied).
#[derive(Clone, Copy)]
struct F32Steps(*const f32);

impl Steps for F32Steps {
    #[inline(always)]
    unsafe fn step<const FUSED: bool>(self, kk: usize, _: &[f32; NR], _: &[f32; NR]) -> [f32; NR] {
        *(self.0.add(kk * NR) as *const [f32; NR])
    }
}

/// The A rows and panel parameters a tile reads.
#[derive(Clone, Copy)]
struct Job<'a> {
    /// Rows `k` apart.
    a: &'a [f32],
    k: usize,
    block: usize,
    /// `NR` per block of K.
    scales: &'a [f32],
    shifts: &'a [f32],
}

/// `R` rows of one panel, `L` interleaved K accumulators per row.
///
/// # Safety
/// `job.a` holds `R` rows, `w` the panel's `k` steps.
#[inline(always)]
unsafe fn tile<W: Steps, const R: usize, const L: usize, const FUSED: bool>(
    job: Job,
    w: W,
    out: &mut [[f32; NR]],
) {
    let Job { a, k, block, .. } = job;
    debug_assert!(a.len() >= R * k && out.len() >= R);
    let a = a.as_ptr();
    let mut acc = [[[0f32; NR]; R]; L];
    let blocks = job.scales.chunks_exact(NR).zip(job.shifts.chunks_exact(NR));
    for (b, (s, z)) in blocks.enumerate() {
        let s: &[f32; NR] = s.try_into().expect("NR scales");
        let z: &[f32; NR] = z.try_into().expect("NR shifts");
        let (k0, k1) = (b * block, (b * block + block).min(k));
        // Whole pairs of steps (blocks start at even K), dealt round-robin over the L sets.
        let unit = L.max(2);
        let mut kk = k0;
        while kk + unit <= k1 {
            for p in 0..unit / 2 {
                let wf = w.pair::<FUSED>(kk + 2 * p, s, z);
                for (h, wh) in wf.iter().enumerate() {
                    let j = (2 * p + h) % L;
                    for r in 0..R {
                        let av = *a.add(r * k + kk + 2 * p + h);
                        for c in 0..NR {
                            acc[j][r][c] = madd::<FUSED>(av, wh[c], acc[j][r][c]);
                        }
                    }
                }
            }
            kk += unit;
        }
        while kk < k1 {
            let wf = w.step::<FUSED>(kk, s, z);
            for r in 0..R {
                let av = *a.add(r * k + kk);
                for c in 0..NR {
                    acc[0][r][c] = madd::<FUSED>(av, wf[c], acc[0][r][c]);
                }
            }
            kk += 1;
        }
    }
    for r in 0..R {
        let mut v = acc[0][r];
        for accj in &acc[1..] {
            for c in 0..NR {
                v[c] += accj[r][c];
            }
        }
        out[r] = v;
    }
}

/// `rows` rows of A (1..=MR), one panel: eight rows at once where the vector registers hold
/// eight accumulators (`eight`: AVX-512, one register per row), else fours, then single rows
/// with split K.
#[inline(always)]
unsafe fn panel_rows<W: Steps, const FUSED: bool>(
    job: Job,
    rows: usize,
    w: W,
    eight: bool,
    out: &mut [[f32; NR]; MR],
) {
    if eight && rows == MR {
        return tile::<W, MR, 1, FUSED>(job, w, out);
    }
    let mut r = 0;
    while r + 4 <= rows {
        let j = Job {
            a: &job.a[r * job.k..],
            ..job
        };
        tile::<W, 4, 1, FUSED>(j, w, &mut out[r..]);
        r += 4;
    }
    while r < rows {
        let j = Job {
            a: &job.a[r * job.k..],
            ..job
        };
        tile::<W, 1, 4, FUSED>(j, w, &mut out[r..]);
        r += 1;
    }
}

/// [`panel_rows`] compiled for AVX-512, AVX2+FMA and the baseline, run in the one
/// [`crate::Isa::detect`] picks.
///
/// # Safety
/// `w` holds the panel's `job.k` steps.
unsafe fn panel<W: Steps>(job: Job, rows: usize, w: W, out: &mut [[f32; NR]; MR]) {
    assert!((1..=MR).contains(&rows) && job.a.len() >= rows * job.k);
    let blocks = job.k.div_ceil(job.block) * NR;
    assert!(job.scales.len() >= blocks && job.shifts.len() >= blocks);
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,fma")]
    unsafe fn wide<W: Steps>(job: Job, rows: usize, w: W, out: &mut [[f32; NR]; MR]) {
        panel_rows::<W, true>(job, rows, w, true, out)
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn narrow<W: Steps>(job: Job, rows: usize, w: W, out: &mut [[f32; NR]; MR]) {
        panel_rows::<W, true>(job, rows, w, false, out)
    }
    // SAFETY: detect() reports only what the CPU has.
    match crate::Isa::detect() {
        #[cfg(target_arch = "x86_64")]
        crate::Isa::Avx512 => wide(job, rows, w, out),
        #[cfg(target_arch = "x86_64")]
        crate::Isa::Avx2 => narrow(job, rows, w, out),
        _ => panel_rows::<W, false>(job, rows, w, false, out),
    }
}

/// One panel's `k` steps as scaled f32, for a task that reuses them over many rows.
///
/// # Safety
/// `w` holds `out.len() / NR` steps.
unsafe fn dequantize<W: Steps>(
    w: W,
    scales: &[f32],
    shifts: &[f32],
    block: usize,
    out: &mut [f32],
) {
    #[inline(always)]
    unsafe fn body<W: Steps, const FUSED: bool>(
        w: W,
        scales: &[f32],
        shifts: &[f32],
        block: usize,
        out: &mut [f32],
    ) {
        for (kk, o) in out.chunks_exact_mut(NR).enumerate() {
            let b = (kk / block) * NR;
            let s: &[f32; NR] = scales[b..b + NR].try_into().expect("NR");
            let z: &[f32; NR] = shifts[b..b + NR].try_into().expect("NR");
            o.copy_from_slice(&w.step::<FUSED>(kk, s, z));
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn narrow<W: Steps>(
        w: W,
        scales: &[f32],
        shifts: &[f32],
        block: usize,
        out: &mut [f32],
    ) {
        body::<W, true>(w, scales, shifts, block, out)
    }
    match crate::Isa::detect() {
        #[cfg(target_arch = "x86_64")]
        crate::Isa::Avx512 | crate::Isa::Avx2 => narrow(w, scales, shifts, block, out),
        _ => body::<W, false>(w, scales, shifts, block, out),
    }
}

/// Rows of A from which a task dequantizes its panel once rather than in every tile.
const PREPARED_ROWS: usize = 16;

/// `out [M, N] = A [M, K] · Wᵀ (+ bias)`, A in f32.
pub fn dq_matmul(a: &[f32], m: usize, w: &DqWeights, bias: Option<&[f32]>, out: &mut [f32]) {
    let (k, n, blocks) = (w.k, w.n, w.blocks);
    assert!(a.len() >= m * k && out.len() >= m * n);
    assert!(bias.is_none_or(|b| b.len() >= n));
    let panels = n.div_ceil(NR);
    let row_tiles = m.div_ceil(MR);
    // Tasks: a panel and a run of row tiles that reuse it from cache.
    let threads = rayon::current_num_threads().max(1);
    let tiles_per = row_tiles.div_ceil((4 * threads).div_ceil(panels)).max(1);
    let runs = row_tiles.div_ceil(tiles_per);
    let o = super::TileOut::new(out, n);
    let o = &o;
    (0..panels * runs).into_par_iter().for_each(|t| {
        let (p, run) = (t % panels, t / panels);
        let pb = p * blocks * NR..(p + 1) * blocks * NR;
        let (scales, shifts) = (&w.scales[pb.clone()], &w.shifts[pb]);
        let cols = NR.min(n - p * NR);
        let (t0, t1) = (run * tiles_per, ((run + 1) * tiles_per).min(row_tiles));
        // SAFETY: panel p's values are `steps · NR` bytes at `p · steps · NR`.
        let (nib, byte) = match &w.data {
            Store::Nibbles(d) => (
                Some(NibbleSteps(d[p * k.div_ceil(2) * NR..].as_ptr())),
                None,
            ),
            Store::Bytes(d) => (None, Some(ByteSteps(d[p * k * NR..].as_ptr()))),
        };
        let prepared = ((t1 - t0) * MR >= PREPARED_ROWS).then(|| {
            let mut f = vec![0f32; k * NR];
            // SAFETY: as above; f holds k steps.
            unsafe {
                match (nib, byte) {
                    (Some(s), _) => dequantize(s, scales, shifts, w.block, &mut f),
                    (_, Some(s)) => dequantize(s, scales, shifts, w.block, &mut f),
                    _ => unreachable!(),
                }
            }
            f
        });
        for rt in t0..t1 {
            let r0 = rt * MR;
            let rows = MR.min(m - r0);
            let mut tile = [[0f32; NR]; MR];
            let job = Job {
                a: &a[r0 * k..(r0 + rows) * k],
                k,
                block: w.block,
                scales,
                shifts,
            };
            // SAFETY: each source holds the panel's k steps.
            unsafe {
                match (&prepared, nib, byte) {
                    (Some(f), _, _) => panel(job, rows, F32Steps(f.as_ptr()), &mut tile),
                    (None, Some(s), _) => panel(job, rows, s, &mut tile),
                    (None, _, Some(s)) => panel(job, rows, s, &mut tile),
                    _ => unreachable!(),
                }
            }
            // SAFETY: this task's (rows, panel) tile alone.
            unsafe { o.store(&tile, (r0, rows), (p * NR, cols), bias) };
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> u32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (*seed >> 33) as u32
    }

    /// Against `Σ a · (q - z) · s` in f64, for shapes with partial blocks, panels and row tiles,
    /// 4- and 8-bit values with zero points (the i16 store) and without.
    #[test]
    fn matches_dequantized_product() {
        let mut seed = 7u64;
        for &(m, k, n, block, bits, zp) in &[
            (1usize, 64usize, 16usize, 16usize, 4u32, true),
            (3, 100, 37, 32, 4, true),
            (4, 256, 16, 128, 4, false),
            (9, 77, 33, 16, 8, true),
            (5, 300, 20, 256, 8, false),
            (1, 1000, 50, 64, 2, true),
            (17, 130, 40, 32, 4, true),
            (24, 64, 16, 16, 8, true),
            (8, 48, 20, 16, 4, false),
        ] {
            let levels = 1u32 << bits;
            let blocks = k.div_ceil(block);
            let q: Vec<i32> = (0..n * k)
                .map(|_| (lcg(&mut seed) % levels) as i32)
                .collect();
            let s: Vec<f32> = (0..n * blocks)
                .map(|_| (lcg(&mut seed) % 1000) as f32 * 1e-4 + 1e-3)
                .collect();
            let z: Vec<i32> = (0..n * blocks)
                .map(|_| {
                    if zp {
                        (lcg(&mut seed) % levels) as i32
                    } else {
                        (levels / 2) as i32
                    }
                })
                .collect();
            let a: Vec<f32> = (0..m * k)
                .map(|_| (lcg(&mut seed) % 2001) as f32 * 1e-3 - 1.0)
                .collect();
            let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.5).collect();
            let w = DqWeights::pack(
                n,
                k,
                block,
                bits as usize,
                |c, kk| q[c * k + kk] as u8,
                |c, b| s[c * blocks + b],
                |c, b| z[c * blocks + b] as f32,
            )
            .unwrap();
            assert_eq!(
                matches!(w.data, Store::Nibbles(_)),
                bits <= 4,
                "store for {bits} bits"
            );
            let mut out = vec![0f32; m * n];
            dq_matmul(&a, m, &w, Some(&bias), &mut out);
            for i in 0..m {
                for j in 0..n {
                    let mut e = bias[j] as f64;
                    let mut mag = 0f64;
                    for kk in 0..k {
                        let wv = (q[j * k + kk] - z[j * blocks + kk / block]) as f64
                            * s[j * blocks + kk / block] as f64;
                        e += a[i * k + kk] as f64 * wv;
                        mag += (a[i * k + kk] as f64 * wv).abs();
                    }
                    let g = out[i * n + j] as f64;
                    assert!(
                        (g - e).abs() <= 1e-6 * mag + 1e-6,
                        "{m}x{k}x{n} b{block} {bits}bit ({i},{j}): {g} vs {e}"
                    );
                }
            }
        }
    }
}
