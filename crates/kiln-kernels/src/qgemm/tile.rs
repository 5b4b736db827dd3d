//! The quantized product's driver: splits `[M, N]` into tasks of row blocks × panel runs over
//! rayon's threads, lays each block's A rows out as its micro-kernel reads them, and runs the
//! register-tiled micro-kernel and the epilogue tile by tile. Written once over [`QDot`],
//! compiled per ISA by the `#[target_feature]` entry points at the bottom.
use rayon::prelude::*;

use super::dot::{Portable, QDot};
use super::{QError, QInput, QIsa, QOutput, QWeights};

/// Rows of A per task: their prepared copy (at most a few hundred KiB) stays in L2 while the
/// task walks its panels.
const MB: usize = 64;

#[derive(Clone, Copy)]
struct Out<T>(*mut T);
// SAFETY: tasks write disjoint (row, column) positions of one output.
unsafe impl<T> Send for Out<T> {}
unsafe impl<T> Sync for Out<T> {}

/// The output's form; per-column arrays padded to whole panels so that the epilogue runs over
/// fixed-length rows the compiler vectorizes.
enum Sink<'a> {
    I32(Out<i32>),
    F32(Out<f32>, Vec<f32>, Vec<f32>),
    Quant(Out<u8>, Vec<f32>, Vec<i32>, i32, bool, super::QPost<'a>),
}

/// Writes row `i` of A (its `K` bytes) into the slice: an im2col window gathered on demand.
pub type Gather<'a> = &'a (dyn Fn(usize, &mut [u8]) + Sync);

/// A convolution's A read where it lies (implicit im2col): output pixel `i`'s window is the
/// runs of `run` bytes at `data[origin(i) + taps[t]]`, tap by tap, in K's order. `data` is the
/// (padded) channels-last input, unsigned.
pub struct ConvRows<'a> {
    pub data: &'a [u8],
    pub origin: &'a (dyn Fn(usize) -> usize + Sync),
    pub taps: &'a [usize],
    /// Bytes per tap: a multiple of 4.
    pub run: usize,
}

struct Job<'a> {
    a: &'a QInput<'a>,
    /// Rows read in place from a convolution's input.
    conv: Option<&'a ConvRows<'a>>,
    /// Rows come from here rather than from `a.data` (which is then unused).
    gather: Option<Gather<'a>>,
    w: &'a QWeights,
    /// Per column: `-za'·colsum[j] + K·za'·zb'[j]`.
    corr: Vec<i32>,
    /// `zb'` per column, padded.
    zb: Vec<i32>,
    sink: Sink<'a>,
    rs: usize,
    cs: usize,
}

/// `C = (A - za)(B - zb)` into `out` at `out[i * rs + j * cs]`.
pub fn qgemm(a: &QInput, w: &QWeights, out: QOutput, rs: usize, cs: usize) -> Result<(), QError> {
    run(a, None, None, w, out, rs, cs)
}

/// Whether [`qgemm_conv`] takes these weights: the VNNI kernel, no weight zero points (their
/// correction needs each row's sum, which reading in place does not make).
pub fn conv_in_place(w: &QWeights) -> bool {
    w.isa.u8_by_s8() && !w.any_zb
}

/// [`qgemm`] with A's rows read in place from a convolution's input (see [`ConvRows`]); `a`
/// gives M, K and the zero point (unsigned). Refused unless [`conv_in_place`] holds and every
/// window lies inside `rows.data`.
pub fn qgemm_conv(
    a: &QInput,
    rows: &ConvRows,
    w: &QWeights,
    out: QOutput,
    rs: usize,
    cs: usize,
) -> Result<(), QError> {
    if !conv_in_place(w) || a.signed {
        return Err(QError(
            "in-place convolution rows need VNNI, unsigned A, no weight zero points".into(),
        ));
    }
    if rows.run == 0
        || !rows.run.is_multiple_of(4)
        || rows.taps.len() * rows.run != a.k
        || w.kp != a.k
    {
        return Err(QError(format!(
            "{} taps of {} bytes do not make K = {}",
            rows.taps.len(),
            rows.run,
            a.k
        )));
    }
    let reach = rows.taps.iter().max().copied().unwrap_or(0) + rows.run;
    if (0..a.m).any(|i| (rows.origin)(i) + reach > rows.data.len()) {
        return Err(QError(
            "a window reaches past the convolution's input".into(),
        ));
    }
    run(a, None, Some(rows), w, out, rs, cs)
}

/// [`qgemm`] with A's rows made by `gather` as each task needs them (a convolution's windows,
/// gathered into a block that stays in cache instead of a whole im2col matrix); `a` gives the
/// shape, sign and zero point, its `data` is not read.
pub fn qgemm_gather(
    a: &QInput,
    gather: Gather,
    w: &QWeights,
    out: QOutput,
    rs: usize,
    cs: usize,
) -> Result<(), QError> {
    run(a, Some(gather), None, w, out, rs, cs)
}

fn run(
    a: &QInput,
    gather: Option<Gather>,
    conv: Option<&ConvRows>,
    w: &QWeights,
    out: QOutput,
    rs: usize,
    cs: usize,
) -> Result<(), QError> {
    if a.k != w.k {
        return Err(QError(format!("A has K = {}, the weights {}", a.k, w.k)));
    }
    if a.m == 0 {
        return Ok(());
    }
    if gather.is_none() && conv.is_none() && (a.lda < a.k || a.data.len() < (a.m - 1) * a.lda + a.k)
    {
        return Err(QError("A's buffer is shorter than its rows".into()));
    }
    let last = (a.m - 1) * rs + (w.n - 1) * cs;
    let nr = w.nr;
    let panels = w.n.div_ceil(nr);
    let padded = panels * nr;
    let per_col = |v: Option<&[f32]>, what: &str, none: f32| -> Result<Vec<f32>, QError> {
        let mut out = match v.map(<[f32]>::len) {
            None => vec![none; w.n],
            Some(1) if what == "scale" => vec![v.unwrap()[0]; w.n],
            Some(l) if l == w.n => v.unwrap().to_vec(),
            Some(l) => return Err(QError(format!("{what} has {l} values for N = {}", w.n))),
        };
        out.resize(padded, none);
        Ok(out)
    };
    let sink = match out {
        QOutput::I32 { out } if out.len() > last => Sink::I32(Out(out.as_mut_ptr())),
        QOutput::F32 { out, scale, bias } if out.len() > last => Sink::F32(
            Out(out.as_mut_ptr()),
            per_col(Some(scale), "scale", 0.0)?,
            per_col(bias, "bias", 0.0)?,
        ),
        QOutput::Quant {
            out,
            scale,
            zero,
            signed,
            bias,
            post,
        } if out.len() > last => {
            if post.add.is_some_and(|(r, _)| r.len() <= last) {
                return Err(QError("the residual is shorter than the output".into()));
            }
            let mut b = match bias {
                None => vec![0; w.n],
                Some(b) if b.len() == w.n => b.to_vec(),
                Some(b) => {
                    return Err(QError(format!(
                        "bias has {} values for N = {}",
                        b.len(),
                        w.n
                    )))
                }
            };
            b.resize(padded, 0);
            Sink::Quant(
                Out(out.as_mut_ptr()),
                per_col(Some(scale), "scale", 0.0)?,
                b,
                zero,
                signed,
                post,
            )
        }
        _ => return Err(QError("output buffer too short".into())),
    };
    // VNNI's A operand is unsigned: s8 activations move up by 128, with their zero point.
    let za = if w.isa.u8_by_s8() && a.signed {
        a.zero + 128
    } else {
        a.zero
    };
    let k = w.k as i32;
    let mut corr: Vec<i32> = (0..w.n)
        .map(|j| {
            (za.wrapping_mul(k).wrapping_mul(w.zb[j])).wrapping_sub(za.wrapping_mul(w.col_sums[j]))
        })
        .collect();
    corr.resize(padded, 0);
    // An integer bias adds to the sums before scaling: fold it into the correction.
    if let Sink::Quant(_, _, bias, _, _, _) = &sink {
        for (c, &b) in corr.iter_mut().zip(bias) {
            *c = c.wrapping_add(b);
        }
    }
    let mut zb = w.zb.clone();
    zb.resize(padded, 0);
    let job = Job {
        a,
        conv,
        gather,
        w,
        corr,
        zb,
        sink,
        rs,
        cs,
    };
    let threads = rayon::current_num_threads();
    // Short M (a deep layer's map, BERT's tokens): all rows in one block and tasks over the
    // columns, so that each task reads its weights once while A (at most 1 MiB) stays in L2.
    let a_bytes = a.m * w.kp * if w.isa.u8_by_s8() { 1 } else { 2 };
    let mb = if a.m <= 1024 && a_bytes <= 1 << 20 && panels >= 2 * threads {
        a.m
    } else {
        MB
    };
    let row_blocks = a.m.div_ceil(mb);
    // Enough tasks for every thread when M is short (BERT's 128 rows, a 7×7 map).
    let want = 4 * threads;
    let col_groups = if row_blocks >= want {
        1
    } else {
        want.div_ceil(row_blocks).min(panels)
    };
    let per_group = panels.div_ceil(col_groups);
    let col_groups = panels.div_ceil(per_group);
    let tasks = row_blocks * col_groups;
    let run = |t: usize| {
        let (rb, cg) = (t / col_groups, t % col_groups);
        let rows = rb * mb..((rb + 1) * mb).min(a.m);
        let pans = cg * per_group..((cg + 1) * per_group).min(panels);
        dispatch(&job, rows, pans);
    };
    if tasks == 1 || threads == 1 {
        (0..tasks).for_each(run);
    } else {
        (0..tasks).into_par_iter().for_each(run);
    }
    Ok(())
}

fn dispatch(job: &Job, rows: std::ops::Range<usize>, pans: std::ops::Range<usize>) {
    match job.w.isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the weights were packed for an ISA that QIsa::hardware() reported.
        QIsa::Avx512Vnni => unsafe { x86::vnni(job, rows, pans) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        QIsa::Avx512 => unsafe { x86::bw(job, rows, pans) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above; the VEX form where the CPU has it, else (QIsa::runs) AVX512-VNNI.
        QIsa::AvxVnni if is_x86_feature_detected!("avxvnni") => unsafe {
            x86::avxvnni(job, rows, pans)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        QIsa::AvxVnni => unsafe { x86::vnni256(job, rows, pans) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        QIsa::Avx2 => unsafe { x86::avx2(job, rows, pans) },
        // SAFETY: plain Rust.
        _ => unsafe { task::<Portable, 4, 1, 8>(job, rows, pans) },
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::super::dot::x86::{Avx2, AvxVnni, Bw512, Vnni256, Vnni512};
    use super::{task, Job};
    use std::ops::Range;

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn vnni(job: &Job, rows: Range<usize>, pans: Range<usize>) {
        // One vector of columns: more rows share each weight load.
        if job.w.nr == 16 {
            task::<Vnni512, 16, 1, 16>(job, rows, pans)
        } else {
            task::<Vnni512, 8, 2, 32>(job, rows, pans)
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn bw(job: &Job, rows: Range<usize>, pans: Range<usize>) {
        if job.w.nr == 16 {
            task::<Bw512, 16, 1, 16>(job, rows, pans)
        } else {
            task::<Bw512, 8, 2, 32>(job, rows, pans)
        }
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn avx2(job: &Job, rows: Range<usize>, pans: Range<usize>) {
        task::<Avx2, 6, 2, 16>(job, rows, pans)
    }

    #[target_feature(enable = "avx2,avxvnni")]
    pub(super) unsafe fn avxvnni(job: &Job, rows: Range<usize>, pans: Range<usize>) {
        task::<AvxVnni, 6, 2, 16>(job, rows, pans)
    }

    #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
    pub(super) unsafe fn vnni256(job: &Job, rows: Range<usize>, pans: Range<usize>) {
        task::<Vnni256, 6, 2, 16>(job, rows, pans)
    }
}

/// One task: rows × a run of panels.
#[inline(always)]
unsafe fn task<D: QDot, const MR: usize, const NV: usize, const NR: usize>(
    job: &Job,
    rows: std::ops::Range<usize>,
    pans: std::ops::Range<usize>,
) {
    let (a, w) = (job.a, job.w);
    let nr = NR;
    debug_assert_eq!(NR, NV * D::W);
    debug_assert_eq!(nr, w.nr);
    let kp = w.kp;
    let steps = kp / D::G;
    let m = rows.len();
    if let Some(cv) = job.conv {
        return conv_task::<D, MR, NV, NR>(job, cv, rows, pans);
    }
    // A's rows as the micro-kernel reads them: K padded to the step (B is zero there), u8 as
    // is (shifted when signed) for VNNI, i16 for the others. Unsigned rows whose padded
    // length lies inside the buffer are read in place.
    let in_place = job.gather.is_none()
        && D::A_BYTES == 1
        && !a.signed
        && a.lda >= kp
        && a.data.len() >= (rows.end - 1) * a.lda + kp;
    let stride = if in_place { a.lda } else { kp * D::A_BYTES };
    let mut buf = vec![0u8; if in_place { 0 } else { m * stride }];
    let mut row_sums = vec![0i32; if w.any_zb { m } else { 0 }];
    let flip = D::A_BYTES == 1 && a.signed;
    if in_place {
        if w.any_zb {
            for (r, sum) in row_sums.iter_mut().enumerate() {
                let src = &a.data[(rows.start + r) * a.lda..][..a.k];
                *sum = src.iter().map(|&b| b as i32).sum();
            }
        }
    } else {
        // Gathered rows land in place when the kernel takes bytes, else in a row of scratch.
        let mut tmp = vec![
            0u8;
            if job.gather.is_some() && D::A_BYTES != 1 {
                a.k
            } else {
                0
            }
        ];
        for (r, dst) in buf.chunks_exact_mut(stride).enumerate() {
            let i = rows.start + r;
            let src: &[u8] = match job.gather {
                Some(g) if D::A_BYTES == 1 => {
                    g(i, &mut dst[..a.k]);
                    &[]
                }
                Some(g) => {
                    g(i, &mut tmp);
                    &tmp
                }
                None => &a.data[i * a.lda..][..a.k],
            };
            let mut sum = 0i32;
            if D::A_BYTES == 1 {
                if src.is_empty() {
                    if !flip && !w.any_zb {
                        continue;
                    }
                    for d in &mut dst[..a.k] {
                        *d ^= if flip { 0x80 } else { 0 };
                        sum += *d as i32;
                    }
                } else {
                    for (d, &s) in dst.iter_mut().zip(src) {
                        *d = if flip { s ^ 0x80 } else { s };
                        sum += *d as i32;
                    }
                }
            } else {
                for (d, &s) in dst.chunks_exact_mut(2).zip(src) {
                    let v = if a.signed { s as i8 as i16 } else { s as i16 };
                    d.copy_from_slice(&v.to_le_bytes());
                    sum += v as i32;
                }
            }
            if w.any_zb {
                row_sums[r] = sum;
            }
        }
    }
    let base = if in_place {
        a.data.as_ptr().add(rows.start * a.lda)
    } else {
        buf.as_ptr()
    };
    let mut tile = [[0i32; 64]; MR];
    for p in pans {
        let bp = w.data.as_ptr().add(p * kp * nr * D::B_BYTES);
        let col0 = p * nr;
        let ncols = nr.min(w.n - col0);
        // Short tiles repeat their last row; its results are not stored.
        let rows_at = |r0: usize, mr: usize| {
            let mut ap = [base; MR];
            for (r, p) in ap.iter_mut().enumerate() {
                *p = base.add((r0 + r.min(mr - 1)) * stride);
            }
            ap
        };
        if let Some(f) = PlainQuant::<D, NV>::new(job, col0) {
            // A loop of its own, so that the accumulators stay in registers through the
            // epilogue; the column corrections ride in them from the start.
            for r0 in (0..m).step_by(MR) {
                let mr = MR.min(m - r0);
                let acc = micro::<D, MR, NV>(rows_at(r0, mr), bp, steps, f.corr);
                f.store(acc, mr, rows.start + r0, ncols);
            }
            continue;
        }
        let mut r0 = 0;
        while r0 < m {
            let mr = MR.min(m - r0);
            let acc = micro::<D, MR, NV>(rows_at(r0, mr), bp, steps, [D::zero(); NV]);
            if job.cs == 1 {
                let rs = &row_sums[if w.any_zb { r0 } else { 0 }..];
                vec_epilogue::<D, MR, NV>(job, &acc, mr, rows.start + r0, rs, col0, ncols);
            } else {
                for (acc, out) in acc.iter().zip(tile.iter_mut()) {
                    for (v, &x) in acc.iter().enumerate() {
                        D::store(x, out.as_mut_ptr().add(v * D::W));
                    }
                }
                epilogue::<NR>(
                    job,
                    &tile[..mr],
                    rows.start + r0,
                    &row_sums[..],
                    r0,
                    col0,
                    ncols,
                );
            }
            r0 += MR;
        }
    }
}

/// [`task`] for in-place convolution rows: each tile's rows point into the input, tap by tap.
#[inline(always)]
unsafe fn conv_task<D: QDot, const MR: usize, const NV: usize, const NR: usize>(
    job: &Job,
    cv: &ConvRows,
    rows: std::ops::Range<usize>,
    pans: std::ops::Range<usize>,
) {
    debug_assert_eq!(D::A_BYTES, 1);
    let w = job.w;
    let per_tap = cv.run / D::G;
    let m = rows.len();
    let base = cv.data.as_ptr();
    let mut tile = [[0i32; 64]; MR];
    for p in pans {
        let bp = w.data.as_ptr().add(p * w.kp * NR * D::B_BYTES);
        let col0 = p * NR;
        let ncols = NR.min(w.n - col0);
        let rows_at = |r0: usize, mr: usize| -> [*const u8; MR] {
            std::array::from_fn(|r| base.add((cv.origin)(rows.start + r0 + r.min(mr - 1))))
        };
        if let Some(f) = PlainQuant::<D, NV>::new(job, col0) {
            // As in [`task`].
            for r0 in (0..m).step_by(MR) {
                let mr = MR.min(m - r0);
                let acc = micro_taps::<D, MR, NV>(rows_at(r0, mr), cv.taps, per_tap, bp, f.corr);
                f.store(acc, mr, rows.start + r0, ncols);
            }
            continue;
        }
        let mut r0 = 0;
        while r0 < m {
            let mr = MR.min(m - r0);
            let start = [D::zero(); NV];
            let acc = micro_taps::<D, MR, NV>(rows_at(r0, mr), cv.taps, per_tap, bp, start);
            if job.cs == 1 {
                vec_epilogue::<D, MR, NV>(job, &acc, mr, rows.start + r0, &[], col0, ncols);
            } else {
                for (acc, out) in acc.iter().zip(tile.iter_mut()) {
                    for (v, &x) in acc.iter().enumerate() {
                        D::store(x, out.as_mut_ptr().add(v * D::W));
                    }
                }
                epilogue::<NR>(job, &tile[..mr], rows.start + r0, &[], r0, col0, ncols);
            }
            r0 += MR;
        }
    }
}

/// [`micro`] over a convolution's taps: A's rows continue at each tap's offset.
#[inline(always)]
unsafe fn micro_taps<D: QDot, const MR: usize, const NV: usize>(
    a: [*const u8; MR],
    taps: &[usize],
    per_tap: usize,
    b: *const u8,
    start: [D::V; NV],
) -> [[D::V; NV]; MR] {
    let mut acc = [start; MR];
    let vb = D::W * D::G * D::B_BYTES;
    let sb = NV * vb;
    let sa = D::G * D::A_BYTES;
    let mut bp = b;
    for &t in taps {
        for s in 0..per_tap {
            let mut bv = [D::zero(); NV];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = D::load(bp.add(s * sb + v * vb));
            }
            for r in 0..MR {
                let av = D::bcast(a[r].add(t + s * sa));
                for v in 0..NV {
                    acc[r][v] = D::dot(acc[r][v], av, bv[v]);
                }
            }
        }
        bp = bp.add(per_tap * sb);
    }
    acc
}

#[inline(always)]
unsafe fn micro<D: QDot, const MR: usize, const NV: usize>(
    a: [*const u8; MR],
    b: *const u8,
    steps: usize,
    start: [D::V; NV],
) -> [[D::V; NV]; MR] {
    let mut acc = [start; MR];
    let vb = D::W * D::G * D::B_BYTES;
    let sb = NV * vb;
    let sa = D::G * D::A_BYTES;
    for s in 0..steps {
        let mut bv = [D::zero(); NV];
        for (v, x) in bv.iter_mut().enumerate() {
            *x = D::load(b.add(s * sb + v * vb));
        }
        for r in 0..MR {
            let av = D::bcast(a[r].add(s * sa));
            for v in 0..NV {
                acc[r][v] = D::dot(acc[r][v], av, bv[v]);
            }
        }
    }
    acc
}

/// The epilogue of the commonest output, 8-bit row-major with nothing fused after the
/// requantization, with a panel's per-column vectors and the constants loaded once: a short-K
/// product (MobileNet's 16-deep 1×1 layers) spends more time here than in its dot products.
struct PlainQuant<D: QDot, const NV: usize> {
    out: *mut u8,
    rs: usize,
    col0: usize,
    /// The column corrections (bias and zero points): the accumulators' starting values.
    corr: [D::V; NV],
    scale: [*const f32; NV],
    lo: f32,
    hi: f32,
    zero: i32,
    signed: bool,
}

impl<D: QDot, const NV: usize> PlainQuant<D, NV> {
    #[inline(always)]
    unsafe fn new(job: &Job, col0: usize) -> Option<Self> {
        let Sink::Quant(o, scale, _, zero, signed, post) = &job.sink else {
            return None;
        };
        if job.cs != 1 || job.w.any_zb || post.add.is_some() || post.table.is_some() {
            return None;
        }
        let (lo, hi) = if *signed { (-128, 127) } else { (0, 255) };
        let corr = job.corr.as_ptr().add(col0);
        Some(PlainQuant {
            out: o.0,
            rs: job.rs,
            col0,
            corr: {
                let mut c = [D::zero(); NV];
                for (v, c) in c.iter_mut().enumerate() {
                    *c = D::load(corr.add(v * D::W) as *const u8);
                }
                c
            },
            scale: std::array::from_fn(|v| scale.as_ptr().add(col0 + v * D::W)),
            lo: (lo - zero) as f32,
            hi: (hi - zero) as f32,
            zero: *zero,
            signed: *signed,
        })
    }

    /// Rows `row0..row0 + mr` of the tile, `ncols` columns real.
    #[inline(always)]
    unsafe fn store<const MR: usize>(
        &self,
        acc: [[D::V; NV]; MR],
        mr: usize,
        row0: usize,
        ncols: usize,
    ) {
        // A whole tile, the common case, with every index constant: the accumulators stay in
        // registers and no store tests its width.
        if mr == MR && ncols >= NV * D::W && (MR * NV).is_multiple_of(4) {
            // Four vectors at a time, in row-major order of the tile.
            for i in (0..MR * NV).step_by(4) {
                let mut v = [D::zero(); 4];
                let mut scale = [self.scale[0]; 4];
                let mut dst = [self.out; 4];
                for j in 0..4 {
                    let (r, c) = ((i + j) / NV, (i + j) % NV);
                    v[j] = acc[r][c];
                    scale[j] = self.scale[c];
                    dst[j] = self.out.add((row0 + r) * self.rs + self.col0 + c * D::W);
                }
                D::store_quant4(v, scale, self.lo, self.hi, self.zero, self.signed, dst);
            }
            return;
        }
        let lanes: [usize; NV] = std::array::from_fn(|v| ncols.saturating_sub(v * D::W).min(D::W));
        for (r, acc) in acc.iter().enumerate().take(mr) {
            let dst = self.out.add((row0 + r) * self.rs + self.col0);
            for v in 0..NV {
                let x = acc[v];
                D::store_quant(
                    x,
                    self.scale[v],
                    self.lo,
                    self.hi,
                    self.zero,
                    dst.add(v * D::W),
                    lanes[v],
                );
            }
        }
    }
}

/// The epilogue in registers, for row-major outputs: zero-point corrections and the output's
/// form applied to each accumulator vector, stored with the ragged edge masked.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn vec_epilogue<D: QDot, const MR: usize, const NV: usize>(
    job: &Job,
    acc: &[[D::V; NV]; MR],
    mr: usize,
    row0: usize,
    row_sums: &[i32],
    col0: usize,
    ncols: usize,
) {
    let corr = job.corr.as_ptr().add(col0);
    let zb = job.zb.as_ptr().add(col0);
    // No closures over vector code here: they would compile without the caller's features.
    let mut cv = [D::zero(); NV];
    let mut zv = [D::zero(); NV];
    for v in 0..NV {
        cv[v] = D::load(corr.add(v * D::W) as *const u8);
        zv[v] = D::load(zb.add(v * D::W) as *const u8);
    }
    let lanes = |v: usize| ncols.saturating_sub(v * D::W).min(D::W);
    // The sums of the tile: bias and A's zero point in `corr`, B's zero point times the row.
    let mut sums = *acc;
    for r in 0..mr {
        let rsum = if job.w.any_zb {
            D::set1(row_sums[r].wrapping_neg())
        } else {
            D::zero()
        };
        for v in 0..NV {
            let x = D::add(acc[r][v], cv[v]);
            sums[r][v] = if job.w.any_zb {
                D::add(x, D::mullo(zv[v], rsum))
            } else {
                x
            };
        }
    }
    let sum = |r: usize, v: usize| sums[r][v];
    match &job.sink {
        Sink::I32(o) => {
            for r in 0..mr {
                let dst = o.0.add((row0 + r) * job.rs + col0);
                for v in 0..NV {
                    D::store_i32(sum(r, v), dst.add(v * D::W), lanes(v));
                }
            }
        }
        Sink::F32(o, scale, bias) => {
            let (scale, bias) = (scale.as_ptr().add(col0), bias.as_ptr().add(col0));
            for r in 0..mr {
                let dst = o.0.add((row0 + r) * job.rs + col0);
                for v in 0..NV {
                    let (s, b) = (scale.add(v * D::W), bias.add(v * D::W));
                    D::store_f32(sum(r, v), s, b, dst.add(v * D::W), lanes(v));
                }
            }
        }
        Sink::Quant(o, scale, _, zero, signed, post) => {
            let scale = scale.as_ptr().add(col0);
            let (lo, hi) = if *signed { (-128, 127) } else { (0, 255) };
            let (flo, fhi) = ((lo - zero) as f32, (hi - zero) as f32);
            for r in 0..mr {
                let at = (row0 + r) * job.rs + col0;
                let dst = o.0.add(at);
                for v in 0..NV {
                    let (s, d) = (scale.add(v * D::W), dst.add(v * D::W));
                    match &post.add {
                        Some((res, p)) => {
                            let rp = res.as_ptr().add(at + v * D::W);
                            D::store_quant_add(sum(r, v), s, flo, fhi, *zero, rp, p, d, lanes(v))
                        }
                        None => D::store_quant(sum(r, v), s, flo, fhi, *zero, d, lanes(v)),
                    }
                }
                if post.table.is_some() {
                    // The row's bytes, still in L1: this task's alone.
                    let row = std::slice::from_raw_parts_mut(dst, ncols);
                    if let Some(t) = post.table {
                        crate::qvec::lookup_in_place(row, t);
                    }
                }
            }
        }
    }
}

/// Zero-point corrections and the output's form, for one tile (`NR` columns computed, `ncols`
/// of them real).
#[inline(always)]
unsafe fn epilogue<const NR: usize>(
    job: &Job,
    tile: &[[i32; 64]],
    row0: usize,
    row_sums: &[i32],
    local0: usize,
    col0: usize,
    ncols: usize,
) {
    let corr = &job.corr[col0..col0 + NR];
    let zb = &job.zb[col0..col0 + NR];
    for (r, t) in tile.iter().enumerate() {
        let i = row0 + r;
        let rsum = if job.w.any_zb {
            row_sums[local0 + r]
        } else {
            0
        };
        let base = i * job.rs + col0 * job.cs;
        let mut vals = [0i32; NR];
        for c in 0..NR {
            vals[c] = t[c]
                .wrapping_add(corr[c])
                .wrapping_sub(zb[c].wrapping_mul(rsum));
        }
        match &job.sink {
            Sink::I32(o) => store(o.0.add(base), job.cs, &vals[..ncols]),
            Sink::F32(o, scale, bias) => {
                let (scale, bias) = (&scale[col0..col0 + NR], &bias[col0..col0 + NR]);
                let mut f = [0f32; NR];
                for c in 0..NR {
                    f[c] = vals[c] as f32 * scale[c] + bias[c];
                }
                store(o.0.add(base), job.cs, &f[..ncols]);
            }
            Sink::Quant(o, scale, _, zero, signed, post) => {
                // The bias is in `corr` already.
                let scale = &scale[col0..col0 + NR];
                let (lo, hi) = if *signed { (-128, 127) } else { (0, 255) };
                let (flo, fhi) = ((lo - zero) as f32, (hi - zero) as f32);
                let mut q = [0u8; NR];
                for c in 0..NR {
                    let v = (vals[c] as f32 * scale[c]).clamp(flo, fhi);
                    // In range after the clamp, so the conversion is exact.
                    q[c] = (v.round_ties_even().to_int_unchecked::<i32>() + zero) as u8;
                }
                for (c, b) in q.iter_mut().enumerate().take(ncols) {
                    if let Some((res, p)) = &post.add {
                        *b = crate::qvec::binary_one(*b, res[base + c * job.cs], p);
                    }
                    if let Some(t) = post.table {
                        *b = t[*b as usize];
                    }
                }
                store(o.0.add(base), job.cs, &q[..ncols]);
            }
        }
    }
}

#[inline(always)]
unsafe fn store<T: Copy>(dst: *mut T, stride: usize, vals: &[T]) {
    if stride == 1 {
        std::ptr::copy_nonoverlapping(vals.as_ptr(), dst, vals.len());
    } else {
        for (c, &v) in vals.iter().enumerate() {
            *dst.add(c * stride) = v;
        }
    }
}
