//! MaxPool (without indices) and AveragePool over f32 NCHW with two spatial dims, vectorized
//! and separable: each plane is copied once into a padded plane (padding that never wins a max
//! and adds nothing to a sum), reduced along the width, then along the height; every kernel
//! tap updates a whole row at once, contiguous when the stride is 1. Divisors come from the reference kernel's window tables, so results
//! match it; other cases run the reference kernel in `pool.rs`.
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
    y.par_chunks_mut(out_sp).enumerate().for_each(|(p, yp)| {
        let xp = &xv[p * in_sp..(p + 1) * in_sp];
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { plane_avx2(xp, yp, &geo, kind, fill) };
        }
        plane(xp, yp, &geo, kind, fill)
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
unsafe fn plane_avx2(xp: &[f32], yp: &mut [f32], g: &Geo, kind: Kind, fill: f32) {
    plane(xp, yp, g, kind, fill)
}

/// One plane, separably: each padded row reduced along the width into `ow` columns, then
/// those rows reduced along the height. A stride-2 row is split into its even and odd
/// columns first, so that every tap reads contiguously.
#[inline(always)]
fn plane(xp: &[f32], yp: &mut [f32], g: &Geo, kind: Kind, fill: f32) {
    match kind {
        Kind::Max => plane_with(xp, yp, g, fill, |a, v| if v > a { v } else { a }),
        Kind::Sum => plane_with(xp, yp, g, fill, |a, v| a + v),
    }
}

/// Lanes `reduce` works on at once.
const LANES: usize = 16;

/// Most taps a window may have along one axis for the tap-array path.
const MAX_TAPS: usize = 16;

#[inline(always)]
fn plane_with(xp: &[f32], yp: &mut [f32], g: &Geo, fill: f32, f: impl Fn(f32, f32) -> f32 + Copy) {
    // Every buffer has LANES floats of slack, so that `reduce` can finish a row with a
    // whole block (the lanes past the row are computed and dropped).
    let mut padded = vec![fill; g.hp * g.wp + LANES];
    for r in 0..g.h {
        let pr = r + g.pads[0];
        if pr >= g.hp || g.pads[1] >= g.wp {
            break;
        }
        let len = g.wi.min(g.wp - g.pads[1]);
        padded[pr * g.wp + g.pads[1]..][..len].copy_from_slice(&xp[r * g.wi..][..len]);
    }
    let mut across = vec![fill; g.hp * g.ow + LANES];
    let half = g.wp.div_ceil(2) + LANES;
    let mut split = vec![fill; 2 * half];
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
                *t = if c % 2 == 0 {
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
        out[c..c + w].copy_from_slice(&acc[..w]);
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
