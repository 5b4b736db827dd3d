//! MaxPool (without indices) and AveragePool over f32 NCHW with two spatial dims, vectorized.
//! With AVX-512 and a column stride of 1 or 2, each output row is pooled in registers: the
//! window's input rows reduced once per 16 columns, then the taps along the row taken as lane
//! shifts (`plane_avx512`). With AVX2, each block of 8 outputs loads its taps straight from
//! the input rows, masked at the borders (`direct_avx2`). Otherwise the pool is separable:
//! each plane is copied once into a padded plane (padding that never wins a max and adds
//! nothing to a sum), reduced along the width, then along the height, all taps of a block of
//! lanes at a time. Divisors come from the reference kernel's window tables, so results match
//! it; other cases run the reference kernel in `pool.rs`.
use rayon::prelude::*;

use super::pool::Taps;
use crate::value::{Data, Tensor};

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Max,
    Sum,
}

fn pool(x: &Tensor, t: &Taps, kind: Kind) -> Option<Vec<f32>> {
    let Data::F32(xv) = &x.data else { return None };
    let w = &t.win;
    if x.rank() != 4 || w.output.contains(&0) || w.input.contains(&0) {
        return None;
    }
    let ([h, wi], [oh, ow]) = ([w.input[0], w.input[1]], [w.output[0], w.output[1]]);
    let ([kh, kw], [sh, sw], [dh, dw]) = (
        [w.kernel[0], w.kernel[1]],
        [w.strides[0], w.strides[1]],
        [w.dilations[0], w.dilations[1]],
    );
    let (hp, wp) = (
        (oh - 1) * sh + (kh - 1) * dh + 1,
        (ow - 1) * sw + (kw - 1) * dw + 1,
    );
    if hp.checked_mul(wp)? > 1 << 28 {
        return None;
    }
    let fill = if kind == Kind::Max { f32::MIN } else { 0.0 };
    let (in_sp, out_sp) = (h * wi, oh * ow);
    let planes = x.shape[0] * x.shape[1];
    let mut y = vec![fill; planes * out_sp];
    let geo = Geo {
        h,
        wi,
        hp,
        wp,
        ow,
        pads: [w.pads[0], w.pads[1]],
        k: [kh, kw],
        s: [sh, sw],
        d: [dh, dw],
    };
    // Several planes per task, sharing one set of buffers: small planes (7×7, 14×14) would
    // otherwise spend more time allocating than pooling.
    let per = planes.div_ceil(4 * rayon::current_num_threads()).max(1);
    let isa = kiln_kernels::Isa::detect();
    let by_rows = isa == kiln_kernels::Isa::Avx512 && by_rows_fits(&geo);
    let direct = !by_rows && isa >= kiln_kernels::Isa::Avx2 && sw <= 2;
    let cols = if direct {
        col_table(&geo, 8)
    } else {
        Vec::new()
    };
    y.par_chunks_mut(out_sp * per)
        .enumerate()
        .for_each(|(task, ys)| {
            #[cfg(target_arch = "x86_64")]
            if by_rows {
                for (i, yp) in ys.chunks_exact_mut(out_sp).enumerate() {
                    let p = task * per + i;
                    let xp = &xv[p * in_sp..(p + 1) * in_sp];
                    let max = kind == Kind::Max;
                    let kw = if geo.d[1] == 1 { geo.k[1] } else { 0 };
                    // SAFETY: Isa::detect() found AVX-512F on the CPU.
                    unsafe {
                        match (max, kw) {
                            (true, 2) => plane_avx512::<true, 2>(xp, yp, &geo, fill),
                            (true, 3) => plane_avx512::<true, 3>(xp, yp, &geo, fill),
                            (true, 5) => plane_avx512::<true, 5>(xp, yp, &geo, fill),
                            (true, _) => plane_avx512::<true, 0>(xp, yp, &geo, fill),
                            (false, 2) => plane_avx512::<false, 2>(xp, yp, &geo, fill),
                            (false, 3) => plane_avx512::<false, 3>(xp, yp, &geo, fill),
                            (false, _) => plane_avx512::<false, 0>(xp, yp, &geo, fill),
                        }
                    };
                }
                return;
            }
            let mut bufs = Bufs::new(&geo, fill);
            for (i, yp) in ys.chunks_exact_mut(out_sp).enumerate() {
                let p = task * per + i;
                let xp = &xv[p * in_sp..(p + 1) * in_sp];
                #[cfg(target_arch = "x86_64")]
                if direct {
                    // SAFETY: Isa::detect() found AVX2 on the CPU.
                    unsafe { direct_avx2(xp, yp, &geo, kind, fill, &cols) };
                    continue;
                }
                #[cfg(target_arch = "x86_64")]
                if is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2.
                    unsafe { plane_avx2(xp, yp, &geo, kind, fill, &mut bufs) };
                    continue;
                }
                plane(xp, yp, &geo, kind, fill, &mut bufs)
            }
        });
    Some(y)
}

struct Geo {
    h: usize,
    wi: usize,
    hp: usize,
    wp: usize,
    ow: usize,
    pads: [usize; 2],
    k: [usize; 2],
    s: [usize; 2],
    d: [usize; 2],
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn plane_avx2(xp: &[f32], yp: &mut [f32], g: &Geo, kind: Kind, fill: f32, b: &mut Bufs) {
    plane(xp, yp, g, kind, fill, b)
}

/// `[v0 v1][s..s + 16]`: lanes `s..` of the 32 lanes of two consecutive blocks.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn lanes_from(
    v0: std::arch::x86_64::__m512,
    v1: std::arch::x86_64::__m512,
    s: usize,
) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let (a, b) = (_mm512_castps_si512(v0), _mm512_castps_si512(v1));
    macro_rules! by {
        ($($n:literal)*) => {
            match s {
                $($n => _mm512_castsi512_ps(_mm512_alignr_epi32::<$n>(b, a)),)*
                _ => v1,
            }
        };
    }
    by!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15)
}

/// Whether [`plane_avx512`] takes a window: its taps along a row span at most 17 columns.
fn by_rows_fits(g: &Geo) -> bool {
    g.k[0] <= MAX_TAPS && (g.k[1] - 1) * g.d[1] <= 16 && g.s[1] <= 2
}

/// One plane, a row of outputs at a time, all in registers: each block of 16 columns of
/// the padded row is reduced vertically over the window's input rows once (masked loads
/// give `fill` in the padding), and each block of 16 outputs takes its taps as lane shifts
/// of two consecutive such blocks (`valignd`). A stride-2 block reduces 32 columns per tap
/// and keeps the even lanes once: lane `2t` is the window of output `t`. Nothing is stored
/// and read back (a row buffer made every load wait on the partial stores before it).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn plane_avx512<const MAX: bool, const KW: usize>(
    xp: &[f32],
    yp: &mut [f32],
    g: &Geo,
    fill: f32,
) {
    use std::arch::x86_64::*;
    let (ow, wi, pl) = (g.ow, g.wi as isize, g.pads[1] as isize);
    let kh = g.k[0];
    // KW > 0: a window KW wide without dilation, whose lane shifts compile to immediates.
    let (kw, dw) = if KW > 0 { (KW, 1) } else { (g.k[1], g.d[1]) };
    let sw = g.s[1];
    let fv = _mm512_set1_ps(fill);
    let even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    let op = |a: __m512, b: __m512| {
        if MAX {
            // vmaxps keeps its second operand when either is NaN: `b > a ? b : a`.
            _mm512_max_ps(b, a)
        } else {
            _mm512_add_ps(a, b)
        }
    };
    let mut rows = [std::ptr::null::<f32>(); MAX_TAPS];
    for (oy, yrow) in yp.chunks_exact_mut(ow).enumerate() {
        let mut n = 0;
        for i in 0..kh {
            let iy = (oy * g.s[0] + i * g.d[0]) as isize - g.pads[0] as isize;
            if (0..g.h as isize).contains(&iy) {
                rows[n] = xp.as_ptr().add(iy as usize * g.wi);
                n += 1;
            }
        }
        // A square KW window's rows inside the map: a loop the compiler unrolls.
        let full = KW > 0 && n == KW;
        let rows = &rows[..n];
        let reduce = |acc: __m512, load: &dyn Fn(*const f32) -> __m512| {
            let mut acc = acc;
            if full {
                for r in &rows[..KW] {
                    acc = op(acc, load(*r));
                }
            } else {
                for r in rows {
                    acc = op(acc, load(*r));
                }
            }
            acc
        };
        // Padded column t0.. (input column t0 - pl..), reduced over the rows.
        let vblock = |t0: usize| {
            let c0 = t0 as isize - pl;
            let (lo, hi) = ((-c0).clamp(0, 16), (wi - c0).clamp(0, 16));
            if hi <= lo {
                fv
            } else if lo == 0 && hi == 16 {
                reduce(fv, &|r| _mm512_loadu_ps(r.offset(c0)))
            } else {
                let m = (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as __mmask16;
                // Masked-off lanes are not read: the address may lie outside the row.
                reduce(fv, &|r| _mm512_mask_loadu_ps(fv, m, r.wrapping_offset(c0)))
            }
        };
        let mut v0 = vblock(0);
        for x0 in (0..ow).step_by(16) {
            let out = if sw == 1 {
                let v1 = vblock(x0 + 16);
                let mut acc = fv;
                for j in 0..kw {
                    acc = op(acc, lanes_from(v0, v1, j * dw));
                }
                v0 = v1;
                acc
            } else {
                let (v1, v2) = (vblock(2 * x0 + 16), vblock(2 * x0 + 32));
                let (mut lo, mut hi) = (fv, fv);
                for j in 0..kw {
                    lo = op(lo, lanes_from(v0, v1, j * dw));
                    hi = op(hi, lanes_from(v1, v2, j * dw));
                }
                v0 = v2;
                _mm512_permutex2var_ps(lo, even, hi)
            };
            let lanes = 16.min(ow - x0);
            let dst = yrow.as_mut_ptr().add(x0);
            if lanes == 16 {
                _mm512_storeu_ps(dst, out);
            } else {
                _mm512_mask_storeu_ps(dst, ((1u32 << lanes) - 1) as __mmask16, out);
            }
        }
    }
}

/// Blocks of 8 outputs, each loading its taps from the input rows: AVX2's masked loads read zeros where a tap
/// falls outside the row, blended with `fill`; a stride-2 tap loads 16 columns and keeps the
/// even ones with a shuffle and a lane permute.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn direct_avx2(xp: &[f32], yp: &mut [f32], g: &Geo, kind: Kind, fill: f32, cols: &[Col]) {
    use std::arch::x86_64::*;
    let ow = g.ow;
    let kw = g.k[1];
    let fv = _mm256_set1_ps(fill);
    let bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    // Lane i of the mask is all ones when bit i of `m` is set.
    let lane_mask =
        |m: u16| _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(m as i32), bits), bits);
    let load = |p: *const f32, m: u16| {
        if m == 0xFF {
            _mm256_loadu_ps(p)
        } else {
            let lm = lane_mask(m);
            _mm256_blendv_ps(fv, _mm256_maskload_ps(p, lm), _mm256_castsi256_ps(lm))
        }
    };
    // Up to GROUP blocks of a row at once: independent accumulators hide the latency of
    // each block's chain of taps (one block at a time ran at a tenth of the load rate).
    const GROUP: usize = 4;
    let blocks = cols.len() / kw;
    for (oy, yrow) in yp.chunks_exact_mut(ow).enumerate() {
        for b0 in (0..blocks).step_by(GROUP) {
            let nb = GROUP.min(blocks - b0);
            let mut acc = [fv; GROUP];
            for i in 0..g.k[0] {
                let iy = (oy * g.s[0] + i * g.d[0]) as isize - g.pads[0] as isize;
                if iy < 0 || iy >= g.h as isize {
                    continue;
                }
                let row = xp.as_ptr().add(iy as usize * g.wi);
                for j in 0..kw {
                    for (bi, a) in acc.iter_mut().enumerate().take(nb) {
                        let c = &cols[(b0 + bi) * kw + j];
                        // Masked-off lanes are not read, so the address may lie outside the
                        // row.
                        let p = row.wrapping_offset(c.start);
                        let v = if g.s[1] == 1 {
                            load(p, c.masks[0])
                        } else {
                            let lo = load(p, c.masks[0]);
                            let hi = load(p.wrapping_add(8), c.masks[1]);
                            // [l0 l2 h0 h2 | l4 l6 h4 h6] -> [l0 l2 l4 l6 h0 h2 h4 h6].
                            let e = _mm256_shuffle_ps::<0b10_00_10_00>(lo, hi);
                            _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(
                                _mm256_castps_pd(e),
                            ))
                        };
                        *a = match kind {
                            // vmaxps keeps its second operand when either is NaN:
                            // `v > acc ? v : acc`.
                            Kind::Max => _mm256_max_ps(v, *a),
                            Kind::Sum => _mm256_add_ps(*a, v),
                        };
                    }
                }
            }
            for (bi, a) in acc.iter().enumerate().take(nb) {
                let x0 = (b0 + bi) * 8;
                let lanes = 8.min(ow - x0);
                let out = yrow.as_mut_ptr().add(x0);
                if lanes == 8 {
                    _mm256_storeu_ps(out, *a);
                } else {
                    _mm256_maskstore_ps(out, lane_mask(((1u32 << lanes) - 1) as u16), *a);
                }
            }
        }
    }
}

/// Where one tap of a block of `lanes` outputs reads in an input row: the first column and
/// the lanes inside the row, for the `lanes` columns from there and (stride 2) the next.
#[derive(Clone, Copy)]
struct Col {
    start: isize,
    masks: [u16; 2],
}

/// The taps of every block of `lanes` (16 or 8) outputs along a row, the same for every row
/// and plane.
fn col_table(g: &Geo, lanes: usize) -> Vec<Col> {
    let w = g.wi as isize;
    let l = lanes as isize;
    let inside = |start: isize| -> u16 {
        let lo = (-start).clamp(0, l);
        let hi = (w - start).clamp(0, l);
        if hi <= lo {
            0
        } else {
            (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as u16
        }
    };
    let mut out = Vec::new();
    for x0 in (0..g.ow).step_by(lanes) {
        for j in 0..g.k[1] {
            let start = (x0 * g.s[1] + j * g.d[1]) as isize - g.pads[1] as isize;
            out.push(Col {
                start,
                masks: [inside(start), inside(start + l)],
            });
        }
    }
    out
}

/// Working rows of one task, each with LANES floats of slack so that `reduce` can finish a
/// row with a whole block (the lanes past the row are computed and dropped).
struct Bufs {
    padded: Vec<f32>,
    across: Vec<f32>,
    split: Vec<f32>,
}

impl Bufs {
    fn new(g: &Geo, fill: f32) -> Bufs {
        Bufs {
            padded: vec![fill; g.hp * g.wp + LANES],
            across: vec![fill; g.hp * g.ow + LANES],
            split: vec![fill; 2 * (g.wp.div_ceil(2) + LANES)],
        }
    }
}

/// One plane, separably: each padded row reduced along the width into `ow` columns, then
/// those rows reduced along the height. A stride-2 row is split into its even and odd
/// columns first, so that every tap reads contiguously.
#[inline(always)]
fn plane(xp: &[f32], yp: &mut [f32], g: &Geo, kind: Kind, fill: f32, b: &mut Bufs) {
    match kind {
        Kind::Max => plane_with(xp, yp, g, fill, b, |a, v| if v > a { v } else { a }),
        Kind::Sum => plane_with(xp, yp, g, fill, b, |a, v| a + v),
    }
}

/// `dst.copy_from_slice(src)` for the short rows of small maps: fixed-size blocks, the last
/// one overlapping the one before, instead of a `memmove` call per row (which cost a third
/// of a 14×14 pool).
#[inline(always)]
fn copy_short(dst: &mut [f32], src: &[f32]) {
    #[inline(always)]
    fn blocks<const B: usize>(dst: &mut [f32], src: &[f32]) {
        let n = dst.len();
        let mut i = 0;
        while i + B <= n {
            dst[i..i + B].copy_from_slice(&src[i..i + B]);
            i += B;
        }
        if i < n {
            dst[n - B..].copy_from_slice(&src[n - B..n]);
        }
    }
    match dst.len() {
        n if n >= 16 => blocks::<16>(dst, src),
        n if n >= 8 => blocks::<8>(dst, src),
        n if n >= 4 => blocks::<4>(dst, src),
        _ => dst.iter_mut().zip(src).for_each(|(d, &s)| *d = s),
    }
}

/// Lanes `reduce` works on at once.
const LANES: usize = 16;

/// Most taps a window may have along one axis for the tap-array path.
const MAX_TAPS: usize = 16;

#[inline(always)]
fn plane_with(
    xp: &[f32],
    yp: &mut [f32],
    g: &Geo,
    fill: f32,
    b: &mut Bufs,
    f: impl Fn(f32, f32) -> f32 + Copy,
) {
    let Bufs {
        padded,
        across,
        split,
    } = b;
    if g.pads != [0, 0] || g.hp > g.h || g.wp > g.wi {
        padded.fill(fill);
    }
    for r in 0..g.h {
        let pr = r + g.pads[0];
        if pr >= g.hp || g.pads[1] >= g.wp {
            break;
        }
        let len = g.wi.min(g.wp - g.pads[1]);
        copy_short(
            &mut padded[pr * g.wp + g.pads[1]..][..len],
            &xp[r * g.wi..][..len],
        );
    }
    let half = g.wp.div_ceil(2) + LANES;
    let few = g.k[0] <= MAX_TAPS && g.k[1] <= MAX_TAPS;
    for (r, row) in across.chunks_exact_mut(g.ow).take(g.hp).enumerate() {
        let src = &padded[r * g.wp..];
        let mut taps: [&[f32]; MAX_TAPS] = [&[]; MAX_TAPS];
        if few && g.s[1] == 2 {
            let (even, odd) = split.split_at_mut(half);
            for ((e, o), pair) in even
                .iter_mut()
                .zip(odd.iter_mut())
                .zip(src[..g.wp].chunks_exact(2))
            {
                *e = pair[0];
                *o = pair[1];
            }
            if g.wp % 2 == 1 {
                even[g.wp / 2] = src[g.wp - 1];
            }
            for (j, t) in taps.iter_mut().enumerate().take(g.k[1]) {
                let c = j * g.d[1];
                *t = if c.is_multiple_of(2) {
                    &even[c / 2..]
                } else {
                    &odd[c / 2..]
                };
            }
            reduce(row, &taps[..g.k[1]], fill, f);
        } else if few && g.s[1] == 1 {
            for (j, t) in taps.iter_mut().enumerate().take(g.k[1]) {
                *t = &src[j * g.d[1]..];
            }
            reduce(row, &taps[..g.k[1]], fill, f);
        } else {
            for (x, o) in row.iter_mut().enumerate() {
                *o = (0..g.k[1]).fold(fill, |a, j| f(a, src[x * g.s[1] + j * g.d[1]]));
            }
        }
    }
    for (oy, row) in yp.chunks_exact_mut(g.ow).enumerate() {
        let tap = |i: usize| &across[(oy * g.s[0] + i * g.d[0]) * g.ow..];
        if few {
            let mut taps: [&[f32]; MAX_TAPS] = [&[]; MAX_TAPS];
            for (i, t) in taps.iter_mut().enumerate().take(g.k[0]) {
                *t = tap(i);
            }
            reduce(row, &taps[..g.k[0]], fill, f);
        } else {
            row.fill(fill);
            for i in 0..g.k[0] {
                row.iter_mut().zip(tap(i)).for_each(|(o, &v)| *o = f(*o, v));
            }
        }
    }
}

/// `out[x] = f(…f(f(init, taps[0][x]), taps[1][x])…)`, a block of lanes at a time held
/// in registers: each output is written once (rewriting a row once per tap made the compiler
/// emit masked stores whose re-reads stall on store forwarding).
#[inline(always)]
fn reduce(out: &mut [f32], taps: &[&[f32]], init: f32, f: impl Fn(f32, f32) -> f32) {
    const L: usize = LANES;
    let n = out.len();
    let mut c = 0;
    while c < n {
        if taps.iter().any(|t| t.len() < c + L) {
            break;
        }
        let mut acc = [init; L];
        for t in taps {
            for (a, &v) in acc.iter_mut().zip(&t[c..c + L]) {
                *a = f(*a, v);
            }
        }
        let w = L.min(n - c);
        copy_short(&mut out[c..c + w], &acc[..w]);
        c += L;
    }
    for (i, o) in out.iter_mut().enumerate().skip(c) {
        *o = taps.iter().fold(init, |a, t| f(a, t[i]));
    }
}

/// MaxPool's values, or `None` when the fast path does not apply.
pub(crate) fn max(x: &Tensor, t: &Taps) -> Option<Vec<f32>> {
    pool(x, t, Kind::Max)
}

/// AveragePool's values, or `None` when the fast path does not apply.
pub(crate) fn average(x: &Tensor, t: &Taps, include_pad: bool) -> Option<Vec<f32>> {
    if x.rank() != 4 || t.lead.len() != t.win.output[0] || t.last.len() != t.win.output[1] {
        return None;
    }
    let mut y = pool(x, t, Kind::Sum)?;
    let ow = t.win.output[1];
    // One divisor per output position, as the reference computes it.
    let div: Vec<f32> = (0..t.lead.len() * ow)
        .map(|o| {
            let (r, c) = (o / ow, o % ow);
            let d = if include_pad {
                t.lead_incl[r] * t.last_incl[c]
            } else {
                t.lead[r].len() * t.last[c].len()
            };
            if d == 0 {
                0.0
            } else {
                1.0 / d as f32
            }
        })
        .collect();
    y.par_chunks_mut(div.len()).for_each(|p| {
        p.iter_mut().zip(&div).for_each(|(v, &d)| *v *= d);
    });
    Some(y)
}
