//! Small maps with padding through a zero-padded copy of the input. On a row of 7 outputs a
//! 3×3 window with padding 1 leaves the input at both ends, and those two pixels run alone
//! over the taps that stay inside: a one-pixel tile keeps only `NB` sums in flight, so it
//! waits on the FMA latency, and on AVX2 it did 2 of the 7 pixels at a quarter of the rate
//! (ResNet50's 3×3 512->512 @7 ran at 40% of the peak). Over a padded copy every window is
//! inside, so the whole map is one flat run of pixels `wp` wide (the padded width), of which
//! the `wp − ow` at the end of each row are computed and dropped: full tiles throughout.
use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::conv::{blocks_per_tile, chunk_weight_bytes, dense_kernel, max_pixels, Epi, Tap};
use super::padded;
use crate::act::Activation;
use crate::conv::Conv2d;
use crate::gemm::SendPtr;
use crate::Isa;

/// Output rows at most this wide take the padded copy (over wider rows the two edge pixels
/// are a small share and the copy costs more than they do).
pub(super) const MAX_ROW: usize = 16;

/// What the padded run needs of the packed convolution.
pub(super) struct Packed<'a> {
    pub w: &'a [f32],
    pub bias: &'a [f32],
    pub isa: Isa,
    pub block: usize,
}

/// Whether `g` over an `oh × ow` output takes [`run`]: a dense convolution over a blocked
/// input, stride 1, padded, rows of at most [`MAX_ROW`] pixels and no residual (the dropped
/// pixels' residual would be read out of place).
pub(super) fn applies(isa: Isa, g: &Conv2d, ow: usize, residual: bool) -> bool {
    isa == Isa::Avx2
        && !residual
        && g.strides == [1, 1]
        && g.pads != [0; 4]
        && g.kernel != [1, 1]
        && ow <= MAX_ROW
}

/// `out = act(conv(x) + bias)` for `x` `[n][c_in/B][h][w][B]` and `out`
/// `[n][c_out/B][oh][ow][B]`.
pub(super) fn run(
    p: &Packed,
    g: &Conv2d,
    x: &[f32],
    [n, h, w]: [usize; 3],
    [oh, ow]: [usize; 2],
    act: Activation,
    out: &mut [MaybeUninit<f32>],
) {
    let b = p.block;
    let [pt, pl, pb, pr] = g.pads;
    let (hp, wp) = (h + pt + pb, w + pl + pr);
    let [kh, kw] = g.kernel;
    let [dh, dw] = g.dilations;
    let icb = padded(g.c_in) / b;
    let ocb = padded(g.c_out) / b;
    // The last flat pixel's window reaches `(kw − 1)·dw` floats past the last padded row
    // at most: zeros after the planes keep every read inside.
    let plane = hp * wp * b;
    let slack = (kw - 1) * dw * b;
    let mut xp = vec![0f32; n * icb * plane + slack];
    xp[..n * icb * plane]
        .par_chunks_mut(plane)
        .enumerate()
        .for_each(|(i, dst)| {
            let src = &x[i * h * w * b..][..h * w * b];
            for (y, row) in src.chunks_exact(w * b).enumerate() {
                dst[((y + pt) * wp + pl) * b..][..w * b].copy_from_slice(row);
            }
        });
    // Flat outputs: `oh` rows of `wp` pixels per output block.
    let flat = oh * wp;
    let tap = Tap {
        x_cb: plane as isize,
        x_kh: (dh * wp * b) as isize,
        x_kw: (dw * b) as isize,
        x_px: b as isize,
        x_lane: 1,
        lanes: b,
        lanes_last: g.c_in - (icb - 1) * b,
        w_ob: icb * kh * kw * b * b,
        w_cb: kh * kw * b * b,
        kw,
        y_ob: flat * b,
    };
    let groups = ocb.div_ceil(blocks_per_tile(p.isa));
    let mut tmp = vec![0f32; n * ocb * flat * b];
    let per_block = blocks_per_tile(p.isa) * kh * kw * b * b * 4;
    let chunk = (chunk_weight_bytes(p.isa) / per_block).clamp(1, icb);
    // Segments of whole tiles, enough for every worker several times over.
    let threads = rayon::current_num_threads();
    let tile = max_pixels(p.isa, ocb.div_ceil(groups));
    let want = (4 * threads).div_ceil(n * groups).max(1);
    let seg = flat.div_ceil(want).next_multiple_of(tile).min(flat).max(1);
    let nseg = flat.div_ceil(seg);
    let (xs, ys) = (SendPtr(xp.as_mut_ptr()), SendPtr(tmp.as_mut_ptr()));
    (0..n * groups * nseg).into_par_iter().for_each(|t| {
        let s = t % nseg;
        let grp = (t / nseg) % groups;
        let img = t / (nseg * groups);
        let (base, extra) = (ocb / groups, ocb % groups);
        let (ob0, nb) = (grp * base + grp.min(extra), base + usize::from(grp < extra));
        let (p0, p1) = (s * seg, ((s + 1) * seg).min(flat));
        let pmax = max_pixels(p.isa, nb);
        let y0 = (img * ocb + ob0) * flat * b;
        let mut c0 = 0;
        while c0 < icb {
            let icbs = chunk.min(icb - c0);
            let last = c0 + icbs == icb;
            let wp_ = p.w.as_ptr().wrapping_add(ob0 * tap.w_ob + c0 * tap.w_cb);
            let xb = xs.at((img * icb + c0) * plane) as *const f32;
            let epi = last.then(|| Epi {
                bias: p.bias.as_ptr().wrapping_add(ob0 * b),
                z: std::ptr::null(),
                act,
            });
            let call = |px: usize, np: usize, count: usize| {
                let k = dense_kernel(p.isa, nb, np);
                // SAFETY: every window lies inside the padded copy (plus its slack); the
                // writes are pixels `px..px + np·count` of `nb` blocks of this image's
                // flat output, this task's alone.
                unsafe {
                    k(
                        &tap,
                        xb.add(px * b),
                        wp_,
                        ys.at(y0 + px * b),
                        icbs,
                        (0, kh),
                        (0, kw),
                        c0 == 0,
                        epi.as_ref(),
                        count,
                    )
                }
            };
            let full = (p1 - p0) / pmax;
            if full > 0 {
                call(p0, pmax, full);
            }
            let rest = p0 + full * pmax;
            if rest < p1 {
                call(rest, p1 - rest, 1);
            }
            c0 += icbs;
        }
    });
    out.par_chunks_mut(ow * b).enumerate().for_each(|(i, row)| {
        let (plane, y) = (i / oh, i % oh);
        let src = &tmp[(plane * flat + y * wp) * b..][..ow * b];
        for (d, &v) in row.iter_mut().zip(src) {
            d.write(v);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nchwc::{reorder_in, reorder_out, Input, NchwcConv};

    /// The padded run against the plain reference on this CPU's kernels, whichever path
    /// [`applies`] would pick here: odd channel counts, asymmetric pads, dilation, batches.
    #[test]
    fn matches_reference() {
        let vals = |n: usize, seed: usize| -> Vec<f32> {
            (0..n)
                .map(|i| ((i * 7919 + seed * 104729) % 1999) as f32 / 1999.0 - 0.5)
                .collect()
        };
        for &(ci, co, k, d, pads, n, h, w) in &[
            (16, 16, [3, 3], [1, 1], [1, 1, 1, 1], 1, 7, 7),
            (40, 72, [3, 3], [1, 1], [1, 1, 1, 1], 2, 7, 7),
            (5, 9, [5, 3], [1, 1], [2, 0, 1, 3], 1, 6, 9),
            (24, 40, [3, 3], [2, 2], [2, 2, 2, 2], 1, 10, 5),
            (64, 32, [3, 3], [1, 1], [1, 1, 1, 1], 1, 14, 14),
        ] {
            let g = Conv2d {
                c_in: ci,
                c_out: co,
                groups: 1,
                kernel: k,
                strides: [1, 1],
                dilations: d,
                pads,
            };
            let (oh, ow) = g.output_hw(h, w).unwrap();
            let (x, wt, bias) = (
                vals(n * ci * h * w, 1),
                vals(co * ci * k[0] * k[1], 2),
                vals(co, 3),
            );
            let act = Activation::Relu;
            let want: Vec<f32> = crate::conv::reference(&g, &x, [n, h, w], &wt, Some(&bias))
                .into_iter()
                .map(|v| act.apply(v))
                .collect();
            let conv = NchwcConv::new(g, &wt, Some(&bias), Input::Blocked).unwrap();
            let mut xb = vec![0f32; n * padded(ci) * h * w];
            reorder_in(&x, n, ci, h * w, &mut xb);
            let mut yb = vec![MaybeUninit::new(f32::NAN); n * padded(co) * oh * ow];
            run(
                &conv.small_map(),
                &g,
                &xb,
                [n, h, w],
                [oh, ow],
                act,
                &mut yb,
            );
            // SAFETY: `run` wrote every value (and they started initialized anyway).
            let yb: Vec<f32> = yb.into_iter().map(|v| unsafe { v.assume_init() }).collect();
            let mut got = vec![0f32; want.len()];
            reorder_out(&yb, n, co, oh * ow, &mut got);
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-4 + 1e-4 * b.abs(),
                    "{g:?} n{n} {h}x{w}: out[{i}] = {a}, want {b}"
                );
            }
        }
    }
}
