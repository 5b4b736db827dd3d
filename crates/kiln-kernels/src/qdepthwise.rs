//! Depthwise 8-bit convolution (one input channel per output channel, as MobileNet's and
//! EfficientNet's 3×3 and 5×5 layers), channels-last, in integer dot-product instructions.
//!
//! A depthwise layer has no reduction over channels for `vpdpbusd` / `vpmaddwd` to run along,
//! so the kernel makes one along the window's columns: each input row becomes a *tuple row*
//! whose 32-bit lane `(px, c)` holds channel `c` of the `G` pixels `px, px + d, …` (`G = 4`
//! bytes for VNNI, `G = 2` i16 for the `vpmaddwd` paths), and each weight lane holds the
//! matching `G` taps of a kernel row (zero past the kernel's width). One dot instruction then
//! sums `G` taps of 16 (or 8) channels: a 3×3 window is 3 `vpdpbusd` per output vector. Tuple
//! rows are built once per task and input row (each from the previous pixel's lane by a shift)
//! and reused by every output row whose window covers them; the image's border is the input's
//! zero point, so nothing is copied into a padded image first.
//!
//! The sums are exact i32 (`Σ x·w'`, `w' = w - zw`), the input's zero point is taken out
//! through each channel's weight sum, then bias and ONNX Runtime's requantization, in the
//! quantized product's epilogue steps. Written once over [`QDot`], compiled per ISA.
use rayon::prelude::*;

use crate::qgemm::dot::{Portable, QDot};
use crate::qgemm::QIsa;

/// Taps whose i32 sums stay exact: `16384 · 255 · 255 < 2^31`.
pub const MAX_TAPS: usize = 1 << 14;

/// The weights of a depthwise layer, laid out for one kernel variant.
pub struct DwWeights {
    c: usize,
    /// Channels rounded up to [`STEP`].
    cp: usize,
    kh: usize,
    kw: usize,
    isa: QIsa,
    /// Taps per lane.
    g: usize,
    /// Lanes per kernel row: `ceil(kw / g)`.
    groups: usize,
    /// `[kh][groups][cp]` lanes of `g` taps `w - zw` (s8 for VNNI, i16 otherwise).
    w: Vec<u32>,
    /// `[c]` `Σ_tap (w - zw)`.
    sum: Vec<i32>,
}

impl DwWeights {
    /// `w(c, tap)` (tap `ky·kw + kx`) and `zero(c)` as integers, for the best variant this
    /// CPU has (capped by `KILN_ISA`).
    pub fn pack(
        c: usize,
        kh: usize,
        kw: usize,
        w: impl Fn(usize, usize) -> i32,
        zero: impl Fn(usize) -> i32,
    ) -> DwWeights {
        DwWeights::pack_for(QIsa::detect(), c, kh, kw, w, zero)
    }

    /// [`pack`](DwWeights::pack) for a given variant (tests run every one the CPU has). VNNI
    /// takes `w - zw` as s8: a layer whose values leave that range gets the AVX512BW path.
    pub fn pack_for(
        isa: QIsa,
        c: usize,
        kh: usize,
        kw: usize,
        w: impl Fn(usize, usize) -> i32,
        zero: impl Fn(usize) -> i32,
    ) -> DwWeights {
        let vals: Vec<i32> = (0..c * kh * kw)
            .map(|i| w(i / (kh * kw), i % (kh * kw)) - zero(i / (kh * kw)))
            .collect();
        // VNNI's weights are signed bytes: others take the i16 pairs of the same width.
        let isa = if isa.u8_by_s8() && vals.iter().any(|&v| !(-128..=127).contains(&v)) {
            if isa == QIsa::AvxVnni {
                QIsa::Avx2
            } else {
                QIsa::Avx512
            }
        } else {
            isa
        };
        let g = if isa.u8_by_s8() { 4 } else { 2 };
        // Whole 16-lane steps for the tuple builders (two vectors on AVX2).
        let (cp, groups) = (c.div_ceil(STEP) * STEP, kw.div_ceil(g));
        let bits = 32 / g;
        let mut wv = vec![0u32; kh * groups * cp];
        let mut sum = vec![0i32; c];
        for ch in 0..c {
            for ky in 0..kh {
                for kx in 0..kw {
                    let v = vals[ch * kh * kw + ky * kw + kx];
                    sum[ch] += v;
                    let field = (v as u32) & (u32::MAX >> (32 - bits));
                    wv[(ky * groups + kx / g) * cp + ch] |= field << ((kx % g) * bits);
                }
            }
        }
        DwWeights {
            c,
            cp,
            kh,
            kw,
            isa,
            g,
            groups,
            w: wv,
            sum,
        }
    }

    pub fn channels(&self) -> usize {
        self.c
    }

    /// Kernel height and width.
    pub fn window(&self) -> (usize, usize) {
        (self.kh, self.kw)
    }

    /// The variant these weights run on.
    pub fn isa(&self) -> QIsa {
        self.isa
    }
}

/// The input image: channels-last `[h, w, C]`, unpadded.
pub struct DwInput<'a> {
    pub x: &'a [u8],
    pub h: usize,
    pub w: usize,
    pub signed: bool,
    pub zero: i32,
}

/// The window rule: output size, strides, dilations, leading pads (the trailing ones follow).
pub struct DwGeom {
    pub oh: usize,
    pub ow: usize,
    pub sh: usize,
    pub sw: usize,
    pub dh: usize,
    pub dw: usize,
    pub pt: usize,
    pub pl: usize,
}

/// Requantization of the sums: `sat(round(f32(acc + bias) · scale[c]) + zero)`.
pub struct DwOut<'a> {
    pub scale: &'a [f32],
    pub bias: Option<&'a [i32]>,
    pub zero: i32,
    pub signed: bool,
}

/// What every task shares.
struct Job<'a> {
    x: &'a DwInput<'a>,
    w: &'a DwWeights,
    g: &'a DwGeom,
    /// Requantized bytes, or i32 sums; bytes per output element.
    quant: bool,
    esize: usize,
    /// Per padded channel: `bias - zx·Σw'` and the scale.
    cb: Vec<i32>,
    scale: Vec<f32>,
    zero: i32,
    lo: f32,
    hi: f32,
    /// The input's zero point and sign flip as unsigned bytes.
    zu: u8,
    flip: u8,
    /// Tuple positions per row; position `k` is padded pixel `k·step`.
    npos: usize,
    step: usize,
    /// Positions from one output pixel to the next, and from one lane group to the next.
    per_ox: usize,
    per_group: usize,
}

/// The layer over one image into `out` `[oh·ow, C]`. Errors name what does not fit.
pub fn qdepthwise(
    x: &DwInput,
    w: &DwWeights,
    g: &DwGeom,
    q: &DwOut,
    out: &mut [u8],
) -> Result<(), String> {
    if q.scale.len() < w.c || q.bias.is_some_and(|b| b.len() < w.c) {
        return Err("the depthwise scale or bias is short".into());
    }
    if out.len() < g.oh * g.ow * w.c {
        return Err("the depthwise output buffer is short".into());
    }
    run(x, w, g, Some(q), out, 1)
}

/// [`qdepthwise`] leaving the exact sums `Σ (x - zx)(w - zw)` as i32 (ConvInteger).
pub fn qdepthwise_i32(
    x: &DwInput,
    w: &DwWeights,
    g: &DwGeom,
    out: &mut [i32],
) -> Result<(), String> {
    if out.len() < g.oh * g.ow * w.c {
        return Err("the depthwise output buffer is short".into());
    }
    // SAFETY: the same memory as bytes (no alignment needed, every pattern valid); the kernel
    // stores whole i32 lanes at multiples of 4 bytes.
    let bytes =
        unsafe { std::slice::from_raw_parts_mut(out.as_mut_ptr() as *mut u8, out.len() * 4) };
    run(x, w, g, None, bytes, 4)
}

/// The layer into `out`, elements of `esize` bytes: requantized bytes with `q`, else i32.
fn run(
    x: &DwInput,
    w: &DwWeights,
    g: &DwGeom,
    q: Option<&DwOut>,
    out: &mut [u8],
    esize: usize,
) -> Result<(), String> {
    let c = w.c;
    if w.kh * w.kw > MAX_TAPS {
        return Err(format!(
            "{} taps: the i32 sums would not be exact",
            w.kh * w.kw
        ));
    }
    if x.x.len() < x.h * x.w * c {
        return Err("the depthwise input buffer is short".into());
    }
    if g.sh == 0 || g.sw == 0 || g.dh == 0 || g.dw == 0 || g.oh == 0 || g.ow == 0 {
        return Ok(());
    }
    let zu = if x.signed { x.zero + 128 } else { x.zero };
    let mut cb = vec![0i32; w.cp];
    let mut scale = vec![0f32; w.cp];
    for ch in 0..c {
        let bias = q.and_then(|q| q.bias).map_or(0, |b| b[ch]);
        cb[ch] = bias.wrapping_sub(w.sum[ch].wrapping_mul(zu));
        scale[ch] = q.map_or(1.0, |q| q.scale[ch]);
    }
    let (signed, zero) = q.map_or((false, 0), |q| (q.signed, q.zero));
    let (lo, hi) = if signed { (-128, 127) } else { (0, 255) };
    // Every pixel's tuple, each from the previous one by one shift and one new element: a
    // strided layer that built only the tuples it reads (two or more new elements each) ran
    // slower in the general builder than this.
    let step = 1;
    let (per_ox, per_group) = (g.sw / step, w.g * g.dw / step);
    let npos = (g.ow - 1) * per_ox + (w.groups - 1) * per_group + 1;
    let job = Job {
        x,
        w,
        g,
        cb,
        scale,
        zero,
        lo: (lo - zero) as f32,
        hi: (hi - zero) as f32,
        quant: q.is_some(),
        esize,
        zu: zu as u8,
        flip: if x.signed { 0x80 } else { 0 },
        npos,
        step,
        per_ox,
        per_group,
    };
    // Runs of output rows per task: long enough that the tuple rows a window shares are
    // built once (at least two windows' height: a run of one or two rows of a 14x14 map built
    // its window's rows again for each), short enough for every thread to get one or more.
    let threads = rayon::current_num_threads();
    let per =
        g.oh.div_ceil(4 * threads)
            .max(2 * w.kh)
            .min(g.oh.div_ceil(threads))
            .max(1);
    let row = g.ow * c * esize;
    let rows = &mut out[..g.oh * row];
    let task = |(t, chunk): (usize, &mut [u8])| {
        let oy0 = t * per;
        dispatch(&job, oy0..oy0 + chunk.len() / row, chunk);
    };
    if g.oh <= per {
        task((0, rows));
    } else {
        rows.par_chunks_mut(per * row).enumerate().for_each(task);
    }
    Ok(())
}

fn dispatch(job: &Job, oys: std::ops::Range<usize>, out: &mut [u8]) {
    match job.w.isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the weights were packed for an ISA that QIsa::hardware() reported.
        QIsa::Avx512Vnni => unsafe { x86::vnni(job, oys, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        QIsa::Avx512 => unsafe { x86::bw(job, oys, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above; the VEX form where the CPU has it, else (QIsa::runs) AVX512-VNNI.
        QIsa::AvxVnni if is_x86_feature_detected!("avxvnni") => unsafe {
            x86::avxvnni(job, oys, out)
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        QIsa::AvxVnni => unsafe { x86::vnni256(job, oys, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        QIsa::Avx2 => unsafe { x86::avx2(job, oys, out) },
        // SAFETY: plain Rust.
        _ => unsafe { task::<Portable>(job, oys, out) },
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{task, Job};
    use crate::qgemm::dot::x86::{Avx2, AvxVnni, Bw512, Vnni256, Vnni512};
    use std::ops::Range;

    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn vnni(job: &Job, oys: Range<usize>, out: &mut [u8]) {
        task::<Vnni512>(job, oys, out)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn bw(job: &Job, oys: Range<usize>, out: &mut [u8]) {
        task::<Bw512>(job, oys, out)
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn avx2(job: &Job, oys: Range<usize>, out: &mut [u8]) {
        task::<Avx2>(job, oys, out)
    }

    #[target_feature(enable = "avx2,avxvnni")]
    pub(super) unsafe fn avxvnni(job: &Job, oys: Range<usize>, out: &mut [u8]) {
        task::<AvxVnni>(job, oys, out)
    }

    #[target_feature(enable = "avx2,avx512f,avx512vl,avx512vnni")]
    pub(super) unsafe fn vnni256(job: &Job, oys: Range<usize>, out: &mut [u8]) {
        task::<Vnni256>(job, oys, out)
    }
}

/// Tuple rows kept by one task: at most one per kernel row, the oldest replaced.
struct Ring {
    rows: Vec<Vec<u32>>,
    /// The padded input row each slot holds.
    held: Vec<Option<usize>>,
}

/// Output rows `oys` into `out`.
#[inline(always)]
unsafe fn task<D: QDot>(job: &Job, oys: std::ops::Range<usize>, out: &mut [u8]) {
    let (w, g) = (job.w, job.g);
    let mut ring = Ring {
        // `build_row` writes a slot's every lane before it is read.
        rows: (0..w.kh)
            .map(|_| crate::vecmath::unfilled(job.npos * w.cp, 0xa5a5_a5a5u32))
            .collect(),
        held: vec![None; w.kh],
    };
    let mut slots = vec![0usize; w.kh];
    for (r, oy) in oys.enumerate() {
        for (ky, slot) in slots.iter_mut().enumerate() {
            let py = oy * g.sh + ky * g.dh;
            *slot = match ring.held.iter().position(|&h| h == Some(py)) {
                Some(s) => s,
                None => {
                    // A slot no kernel row of this output row needs.
                    let need = |h: usize| (0..w.kh).any(|k| oy * g.sh + k * g.dh == h);
                    let s = ring
                        .held
                        .iter()
                        .position(|&h| h.is_none_or(|h| !need(h)))
                        .expect("a free slot");
                    build_row::<D>(job, py, &mut ring.rows[s]);
                    ring.held[s] = Some(py);
                    s
                }
            };
        }
        let rows: Vec<*const u32> = slots.iter().map(|&s| ring.rows[s].as_ptr()).collect();
        let row = g.ow * w.c * job.esize;
        out_row::<D>(job, &rows, &mut out[r * row..][..row]);
    }
}

/// The tuple row of padded input row `py`: lane `(k, c)` holds channel `c` of padded pixels
/// `k·step + i·dw`, `i < G`, the first in the lowest bits. A tuple that shares elements with
/// the previous one (`step` a multiple of `dw`, fewer than `G` elements apart) is that one
/// shifted down with the new elements put in on top.
#[inline(always)]
fn build_row<D: QDot>(job: &Job, py: usize, t: &mut [u32]) {
    let (w, g, x) = (job.w, job.g, job.x);
    let (c, cp, d, step) = (w.c, w.cp, g.dw, job.step);
    debug_assert_eq!(D::G, w.g);
    // Constants once compiled per variant, so that the lane loops below become vector shifts.
    let bits = 32 / D::G as u32;
    let row = py
        .checked_sub(g.pt)
        .filter(|&y| y < x.h)
        .map(|y| &x.x[y * x.w * c..(y + 1) * x.w * c]);
    // Padded pixel `px`'s channels, or None where the border (the zero point) lies.
    let pixel = |px: usize| -> Option<&[u8]> {
        let r = row?;
        px.checked_sub(g.pl)
            .filter(|&i| i < x.w)
            .map(|i| &r[i * c..(i + 1) * c])
    };
    // Elements each tuple shares with the previous one.
    let kept = if step % d == 0 && step / d < D::G {
        D::G - step / d
    } else {
        0
    };
    let mut fresh: [(Option<&[u8]>, u32); 4] = [(None, 0); 4];
    for k in 0..job.npos {
        let px = k * step;
        let (done, cur) = t.split_at_mut(k * cp);
        let cur = &mut cur[..cp];
        let (prev, first_new) = if k > 0 && kept > 0 {
            (Some(&done[(k - 1) * cp..][..cp]), kept)
        } else {
            (None, 0)
        };
        let n = D::G - first_new;
        let shift = (D::G - kept) as u32 * bits;
        match prev {
            // The common case in one expression per lane (vectorized).
            Some(prev) if n == 1 => match pixel(px + (D::G - 1) * d) {
                Some(p) => {
                    shift_in(&prev[..c], p, job.flip, shift, &mut cur[..c]);
                    shift_in_zero(&prev[c..], job.zu as u32, shift, &mut cur[c..]);
                }
                None => shift_in_zero(prev, job.zu as u32, shift, cur),
            },
            _ => {
                for (f, i) in fresh.iter_mut().zip(first_new..D::G) {
                    *f = (pixel(px + i * d), i as u32 * bits);
                }
                put(prev, shift, &fresh[..n], job.flip, job.zu as u32, c, cur);
            }
        }
    }
}

/// Lanes per straight-line step of the tuple builders: whole arrays loaded, combined and
/// stored, which the compiler turns into vector shifts (lane-by-lane loops over two slices of
/// one buffer stayed scalar).
const STEP: usize = 16;

/// `cur[l] = prev[l] >> shift | (bytes[l] ^ flip) << (32 - shift)`.
#[inline(always)]
fn shift_in(prev: &[u32], bytes: &[u8], flip: u8, shift: u32, cur: &mut [u32]) {
    let top = 32 - shift;
    let full = bytes.len() / STEP * STEP;
    for ((o, pv), b) in cur[..full]
        .chunks_exact_mut(STEP)
        .zip(prev.chunks_exact(STEP))
        .zip(bytes.chunks_exact(STEP))
    {
        let pv: &[u32; STEP] = pv.try_into().expect("STEP lanes");
        let b: &[u8; STEP] = b.try_into().expect("STEP bytes");
        let r: [u32; STEP] =
            std::array::from_fn(|l| (pv[l] >> shift) | (((b[l] ^ flip) as u32) << top));
        o.copy_from_slice(&r);
    }
    for i in full..bytes.len() {
        cur[i] = (prev[i] >> shift) | (((bytes[i] ^ flip) as u32) << top);
    }
}

/// [`shift_in`] of one byte value into every lane.
#[inline(always)]
fn shift_in_zero(prev: &[u32], z: u32, shift: u32, cur: &mut [u32]) {
    let top = z << (32 - shift);
    let full = prev.len() / STEP * STEP;
    for (o, pv) in cur[..full]
        .chunks_exact_mut(STEP)
        .zip(prev.chunks_exact(STEP))
    {
        let pv: &[u32; STEP] = pv.try_into().expect("STEP lanes");
        let r: [u32; STEP] = std::array::from_fn(|l| (pv[l] >> shift) | top);
        o.copy_from_slice(&r);
    }
    for i in full..prev.len() {
        cur[i] = (prev[i] >> shift) | top;
    }
}

/// `cur[l] = prev[l] >> shift | Σ (src[l] ^ flip) << pos` over the `(src, pos)` pairs, a
/// source's lanes past `c` (or all of them where it is None) the zero point `z`: a row's
/// first tuple, and every tuple of a dilated layer.
#[inline(always)]
fn put(
    prev: Option<&[u32]>,
    shift: u32,
    fresh: &[(Option<&[u8]>, u32)],
    flip: u8,
    z: u32,
    c: usize,
    cur: &mut [u32],
) {
    match prev {
        Some(p) => {
            for (o, &pv) in cur.iter_mut().zip(p) {
                *o = pv >> shift;
            }
        }
        None => cur.fill(0),
    }
    for &(src, pos) in fresh {
        let from = match src {
            Some(b) => {
                for (o, &v) in cur.iter_mut().zip(b) {
                    *o |= ((v ^ flip) as u32) << pos;
                }
                c
            }
            None => 0,
        };
        for o in &mut cur[from..] {
            *o |= z << pos;
        }
    }
}

/// One output row from its kernel rows' tuple rows: per vector of channels, the window's
/// lanes dotted with the weights held in registers, then the epilogue.
#[inline(always)]
unsafe fn out_row<D: QDot>(job: &Job, rows: &[*const u32], out: &mut [u8]) {
    let w = job.w;
    let nt = w.kh * w.groups;
    // Each (kernel row, lane group): its tuple row and position offset.
    let taps: Vec<(*const u32, usize)> = (0..nt)
        .map(|i| (rows[i / w.groups], (i % w.groups) * job.per_group))
        .collect();
    match nt {
        3 => vectors::<D, 3>(job, &taps, out),
        6 => vectors::<D, 6>(job, &taps, out),
        10 => vectors::<D, 10>(job, &taps, out),
        _ => vectors::<D, 0>(job, &taps, out),
    }
}

/// [`out_row`] with `NT` weight vectors in registers (`NT = 0`: any count, read from memory).
#[inline(always)]
unsafe fn vectors<D: QDot, const NT: usize>(
    job: &Job,
    taps: &[(*const u32, usize)],
    out: &mut [u8],
) {
    let (w, g) = (job.w, job.g);
    let (c, cp) = (w.c, w.cp);
    let step = job.per_ox * cp;
    let mut c0 = 0;
    while c0 < c {
        let n = (c - c0).min(D::W);
        let wp = w.w.as_ptr().add(c0);
        // A loop, not `from_fn`: a closure would compile without the caller's features.
        let mut wv = [D::zero(); NT];
        for (i, x) in wv.iter_mut().enumerate() {
            *x = D::load(wp.add(i * cp) as *const u8);
        }
        let base: Vec<*const u32> = taps.iter().map(|&(r, off)| r.add(off * cp + c0)).collect();
        let cb = D::load(job.cb.as_ptr().add(c0) as *const u8);
        let scale = job.scale.as_ptr().add(c0);
        let dst = out.as_mut_ptr().add(c0 * job.esize);
        for ox in 0..g.ow {
            // The bias and zero-point correction ride in the accumulator from the start.
            let mut acc = cb;
            if NT > 0 {
                for i in 0..NT {
                    acc = D::dot(acc, D::load(base[i].add(ox * step) as *const u8), wv[i]);
                }
            } else {
                for (i, b) in base.iter().enumerate() {
                    let wi = D::load(wp.add(i * cp) as *const u8);
                    acc = D::dot(acc, D::load(b.add(ox * step) as *const u8), wi);
                }
            }
            let s = acc;
            let at = dst.add(ox * c * job.esize);
            if job.quant {
                D::store_quant(s, scale, job.lo, job.hi, job.zero, at, n);
            } else {
                D::store_i32(s, at as *mut i32, n);
            }
        }
        c0 += D::W;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qgemm::requantize;

    /// Against the direct formula on every variant the CPU has: strides, dilations, pads,
    /// 3×3, 5×5 and 2×7, u8 and s8 in and out, extreme bytes, weights outside s8 after their
    /// zero point, ragged channel counts.
    #[test]
    fn matches_direct_sums() {
        let mut seed = 3u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as i32
        };
        // (c, h, w, kh, kw, stride, dilation, pad, signed, weight zero points)
        let cases = [
            (
                17usize, 9usize, 11usize, 3usize, 3usize, 1usize, 1usize, 1usize, false, false,
            ),
            (64, 12, 12, 3, 3, 2, 1, 1, true, false),
            (5, 8, 9, 5, 5, 1, 1, 2, false, true),
            (57, 7, 8, 3, 3, 1, 1, 0, true, true),
            (32, 10, 13, 3, 3, 1, 2, 2, false, false),
            (20, 9, 14, 2, 7, 2, 1, 3, true, false),
            (144, 6, 6, 3, 3, 2, 1, 1, false, false),
        ];
        for isa in QIsa::available() {
            for &(c, h, wd, kh, kw, s, d, p, signed, zw_on) in &cases {
                let x: Vec<u8> = (0..h * wd * c)
                    .map(|i| {
                        if i % 7 == 0 {
                            255
                        } else {
                            (next() & 255) as u8
                        }
                    })
                    .collect();
                let zx = (next() & 255) - if signed { 128 } else { 0 };
                let wt: Vec<i32> = (0..c * kh * kw)
                    .map(|i| {
                        if i % 5 == 0 {
                            -128
                        } else {
                            (next() & 255) - 128
                        }
                    })
                    .collect();
                let zw: Vec<i32> = (0..c)
                    .map(|_| if zw_on { (next() % 20) - 10 } else { 0 })
                    .collect();
                let w =
                    DwWeights::pack_for(isa, c, kh, kw, |ch, t| wt[ch * kh * kw + t], |ch| zw[ch]);
                let oh = (h + 2 * p - (kh - 1) * d - 1) / s + 1;
                let ow = (wd + 2 * p - (kw - 1) * d - 1) / s + 1;
                let scale: Vec<f32> = (0..c).map(|i| 0.001 + i as f32 * 1e-4).collect();
                let bias: Vec<i32> = (0..c).map(|_| next() % 1000).collect();
                let q = DwOut {
                    scale: &scale,
                    bias: Some(&bias),
                    zero: 3,
                    signed,
                };
                let g = DwGeom {
                    oh,
                    ow,
                    sh: s,
                    sw: s,
                    dh: d,
                    dw: d,
                    pt: p,
                    pl: p,
                };
                let input = DwInput {
                    x: &x,
                    h,
                    w: wd,
                    signed,
                    zero: zx,
                };
                let mut out = vec![0xa5u8; oh * ow * c];
                qdepthwise(&input, &w, &g, &q, &mut out).unwrap();
                let mut sums = vec![0x5a5a_5a5ai32; oh * ow * c];
                qdepthwise_i32(&input, &w, &g, &mut sums).unwrap();
                let (lo, hi) = if signed { (-128, 127) } else { (0, 255) };
                let val = |b: u8| if signed { b as i8 as i64 } else { b as i64 };
                for oy in 0..oh {
                    for ox in 0..ow {
                        for ch in 0..c {
                            let mut acc = bias[ch] as i64;
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let (iy, ix) = (
                                        (oy * s + ky * d) as i64 - p as i64,
                                        (ox * s + kx * d) as i64 - p as i64,
                                    );
                                    let xv =
                                        if iy < 0 || ix < 0 || iy >= h as i64 || ix >= wd as i64 {
                                            zx as i64
                                        } else {
                                            val(x[(iy as usize * wd + ix as usize) * c + ch])
                                        };
                                    acc += (xv - zx as i64)
                                        * (wt[(ch * kh + ky) * kw + kx] - zw[ch]) as i64;
                                }
                            }
                            assert_eq!(
                                sums[(oy * ow + ox) * c + ch] as i64,
                                acc - bias[ch] as i64,
                                "{isa:?} i32 sums c{c} k{kh}x{kw} s{s} d{d} p{p} ({oy},{ox},{ch})"
                            );
                            let want = requantize(acc as i32, scale[ch], 3, lo, hi) as u8;
                            assert_eq!(
                                out[(oy * ow + ox) * c + ch],
                                want,
                                "{isa:?} (ran {:?}) c{c} k{kh}x{kw} s{s} d{d} p{p} ({oy},{ox},{ch})",
                                w.isa()
                            );
                        }
                    }
                }
            }
            eprintln!("qdepthwise variant {} ran", isa.describe());
        }
    }
}
