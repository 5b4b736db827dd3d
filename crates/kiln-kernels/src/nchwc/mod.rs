//! The blocked channel layout (NCHWc): a `[n][c][h][w]` tensor stored as
//! `[n][c/B][h][w][B]`, `B` the vector width (16 floats on AVX-512, 8 otherwise), channels
//! padded with zeros to whole blocks. One vector then holds one pixel of `B` channels, so a
//! convolution broadcasts an input value against a weight vector with no im2col and no
//! transposes, and pools and element-wise ops work a vector at a time.
//!
//! Reorders ([`reorder_in`], [`reorder_out`]) convert at the edges of a blocked region; the
//! convolution ([`conv`]) and pools ([`pool`]) work inside it.
pub mod conv;
mod lanes;
pub mod pool;
mod small_map;
mod winograd;

use rayon::prelude::*;

use crate::Isa;

pub use conv::{Input, NchwcConv};

/// The channel block of this CPU's kernels.
pub fn block() -> usize {
    match Isa::detect() {
        Isa::Avx512 => 16,
        _ => 8,
    }
}

/// `c` rounded up to whole blocks.
pub fn padded(c: usize) -> usize {
    c.div_ceil(block()) * block()
}

/// Pixels per task of a reorder (whole cache lines of each plane at a time).
const REORDER_PIXELS: usize = 1024;

/// NCHW (`[n][c][hw]`) to blocked (`[n][padded(c)/B][hw][B]`), padding channels with zeros.
pub fn reorder_in(x: &[f32], n: usize, c: usize, hw: usize, out: &mut [f32]) {
    let b = block();
    let cp = padded(c);
    assert_eq!(x.len(), n * c * hw, "reorder input size");
    assert_eq!(out.len(), n * cp * hw, "reorder output size");
    if out.is_empty() {
        return;
    }
    out.par_chunks_mut(hw * b).enumerate().for_each(|(i, blk)| {
        let (img, cb) = (i / (cp / b), i % (cp / b));
        let lanes = b.min(c - (cb * b).min(c));
        for p0 in (0..hw).step_by(REORDER_PIXELS) {
            let np = REORDER_PIXELS.min(hw - p0);
            let dst = &mut blk[p0 * b..(p0 + np) * b];
            if lanes < b {
                dst.fill(0.0);
            }
            for l in 0..lanes {
                let src = &x[(img * c + cb * b + l) * hw + p0..][..np];
                for (p, &v) in src.iter().enumerate() {
                    dst[p * b + l] = v;
                }
            }
        }
    });
}

/// Blocked (`[n][padded(c)/B][hw][B]`) back to NCHW (`[n][c][hw]`), dropping the padding.
pub fn reorder_out(x: &[f32], n: usize, c: usize, hw: usize, out: &mut [f32]) {
    let b = block();
    let cp = padded(c);
    assert_eq!(x.len(), n * cp * hw, "reorder input size");
    assert_eq!(out.len(), n * c * hw, "reorder output size");
    if out.is_empty() {
        return;
    }
    out.par_chunks_mut(hw).enumerate().for_each(|(i, plane)| {
        let (img, ch) = (i / c, i % c);
        let src = &x[(img * cp + ch / b * b) * hw..][..hw * b];
        let l = ch % b;
        for (p, v) in plane.iter_mut().enumerate() {
            *v = src[p * b + l];
        }
    });
}

/// Nearest-neighbour upsampling by whole factors `[sh, sw]` of a blocked tensor
/// (`[n][cp/B][h][w][B]` to `[n][cp/B][h·sh][w·sw][B]`): output pixel `(y, x)` is input pixel
/// `(y / sh, x / sw)`, one block vector copied at a time.
pub fn upsample_nearest(
    x: &[f32],
    [n, cp, h, w]: [usize; 4],
    [sh, sw]: [usize; 2],
    out: &mut [f32],
) {
    let b = block();
    let (oh, ow) = (h * sh, w * sw);
    assert_eq!(x.len(), n * cp * h * w, "upsample input size");
    assert_eq!(out.len(), n * cp * oh * ow, "upsample output size");
    if out.is_empty() {
        return;
    }
    // One output row of one channel block per task.
    out.par_chunks_mut(ow * b).enumerate().for_each(|(i, row)| {
        let (plane, y) = (i / oh, i % oh);
        let src = &x[(plane * h + y / sh) * w * b..][..w * b];
        for (xo, px) in row.chunks_exact_mut(b).enumerate() {
            px.copy_from_slice(&src[xo / sw * b..][..b]);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reorders_round_trip_and_pad_with_zeros() {
        let b = block();
        for &(n, c, hw) in &[(1, 3, 5), (2, 16, 7), (2, 19, 1030), (1, 8, 1)] {
            let x: Vec<f32> = (0..n * c * hw).map(|i| i as f32).collect();
            let mut blocked = vec![f32::NAN; n * padded(c) * hw];
            reorder_in(&x, n, c, hw, &mut blocked);
            for img in 0..n {
                for ch in 0..padded(c) {
                    for p in 0..hw {
                        let got = blocked[((img * padded(c) / b + ch / b) * hw + p) * b + ch % b];
                        let want = if ch < c {
                            x[(img * c + ch) * hw + p]
                        } else {
                            0.0
                        };
                        assert_eq!(got, want, "n{img} c{ch} p{p}");
                    }
                }
            }
            let mut back = vec![f32::NAN; x.len()];
            reorder_out(&blocked, n, c, hw, &mut back);
            assert_eq!(back, x);
        }
    }

    #[test]
    fn upsample_repeats_pixels() {
        let b = block();
        let (n, c, h, w) = (2, 2 * b, 3, 5);
        let x: Vec<f32> = (0..n * c * h * w).map(|i| i as f32).collect();
        for s in [[2, 2], [1, 3], [3, 1]] {
            let (oh, ow) = (h * s[0], w * s[1]);
            let mut y = vec![f32::NAN; n * c * oh * ow];
            upsample_nearest(&x, [n, c, h, w], s, &mut y);
            for p in 0..n * c / b {
                for yy in 0..oh {
                    for xx in 0..ow {
                        for l in 0..b {
                            let got = y[((p * oh + yy) * ow + xx) * b + l];
                            let want = x[((p * h + yy / s[0]) * w + xx / s[1]) * b + l];
                            assert_eq!(got, want, "{s:?} plane {p} ({yy}, {xx}) lane {l}");
                        }
                    }
                }
            }
        }
    }
}
