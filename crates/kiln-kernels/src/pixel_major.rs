//! Convolution over a small map as a product over output pixels: `Cᵀ = im2colᵀ · Wᵀ`.
//!
//! The channel-major GEMM ([`crate::conv`]) puts output pixels in the micro-kernel's vector
//! lanes, so a 7×7 map (49 pixels) fills two 32-lane panels to 77%, and a 3×3 window adds
//! the padding columns of the shifted layout on top (63 of 64 lanes computed for 49 kept).
//! Here the output channels are the lanes (a multiple of 32 in every such network) and the
//! pixels are the broadcast rows, in panels of 7: one panel is one row of a 7-wide map (two
//! of a 14-wide one), so every lane does useful work and a panel's values for one tap are
//! seven contiguous floats of the input (or of its shifted copy). The weights are packed
//! once more, transposed, the first time a convolution meets such a map; the product lands
//! pixel-major and goes out transposed through the epilogue.
use std::cell::RefCell;

use rayon::prelude::*;

use crate::act::Activation;
use crate::gemm::{gemm_packed, Epilogue, PackedA, PackedB};
use crate::Isa;

/// Pixels per panel: the height of the AVX-512 micro-kernel this path runs on.
const MR: usize = 7;

/// Largest map (pixels) taken this way: at 28×28 the channel-major panels are 98% full and
/// measured faster.
const MAX_PIXELS: usize = 16 * 16;

thread_local! {
    static PANELS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Whether an `[oh, ow]` output of `c_out` channels runs pixel-major on `isa`.
pub(crate) fn applies(isa: Isa, c_out: usize, [oh, ow]: [usize; 2]) -> bool {
    let nr = isa.tile().1;
    isa == Isa::Avx512
        && ow.is_multiple_of(MR)
        && oh * ow <= MAX_PIXELS
        && c_out.is_multiple_of(nr)
        && c_out >= 2 * nr
}

/// Where the values of GEMM depth `kk` for output row `oy` start: `ow` contiguous floats.
pub(crate) trait PixelRows: Sync {
    fn row(&self, kk: usize, oy: usize) -> &[f32];
}

/// A 1×1, stride-1 convolution's input planes (`[k][oh·ow]`).
pub(crate) struct Planes<'a> {
    pub x: &'a [f32],
    pub ow: usize,
    pub sp: usize,
}

impl PixelRows for Planes<'_> {
    fn row(&self, kk: usize, oy: usize) -> &[f32] {
        &self.x[kk * self.sp + oy * self.ow..][..self.ow]
    }
}

/// The shifted, phase-split copy of [`crate::shifted`]: depth `kk` of pixel `(oy, ox)` is at
/// `offsets[kk] + oy·wq + ox`.
pub(crate) struct ShiftedRows<'a> {
    pub buf: &'a [f32],
    pub offsets: &'a [isize],
    pub wq: usize,
    pub ow: usize,
}

impl PixelRows for ShiftedRows<'_> {
    fn row(&self, kk: usize, oy: usize) -> &[f32] {
        &self.buf[self.offsets[kk] as usize + oy * self.wq..][..self.ow]
    }
}

/// One image: `out[c][p] = act(Σₖ wt[k][c]·src(k, p) + bias[c] + z[c][p])` for the
/// `[oh, ow]` pixels `p` of `out` (`[c_out][oh·ow]`), with `wt` the transposed weights.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    isa: Isa,
    wt: &PackedB,
    src: &impl PixelRows,
    [oh, ow]: [usize; 2],
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    act: Activation,
    cbuf: &mut [f32],
    out: &mut [f32],
) {
    let (k, c_out, pixels) = (wt.k(), out.len() / (oh * ow), oh * ow);
    let per_row = ow / MR;
    let panel_len = MR * k;
    let mut data = PANELS.with(|p| std::mem::take(&mut *p.borrow_mut()));
    data.resize(pixels / MR * panel_len, 0.0);
    let pack = |(pi, panel): (usize, &mut [f32])| {
        let (oy, ox) = (pi / per_row, pi % per_row * MR);
        for (kk, dst) in panel.chunks_exact_mut(MR).enumerate() {
            dst.copy_from_slice(&src.row(kk, oy)[ox..ox + MR]);
        }
    };
    if data.len() >= 1 << 15 {
        data.par_chunks_mut(panel_len).enumerate().for_each(pack);
    } else {
        data.chunks_mut(panel_len).enumerate().for_each(pack);
    }
    let a = PackedA::from_panels(isa, MR, pixels, k, data);
    let c = &mut cbuf[..pixels * c_out];
    gemm_packed(&a, wt, c, c_out, &Epilogue::NONE);
    PANELS.with(|p| *p.borrow_mut() = a.into_data());
    transpose_out(c, pixels, bias, residual, act, out);
}

/// `out[c][p] = act(cp[p][c] + bias[c] + z[c][p])`, in blocks of channels that read `cp`
/// a cache line at a time.
fn transpose_out(
    cp: &[f32],
    pixels: usize,
    bias: Option<&[f32]>,
    residual: Option<&[f32]>,
    act: Activation,
    out: &mut [f32],
) {
    const BLOCK: usize = 16;
    let c_out = out.len() / pixels;
    let block = |(bi, rows): (usize, &mut [f32])| {
        let c0 = bi * BLOCK;
        let n = rows.len() / pixels;
        let mut tmp = vec![0f32; BLOCK * pixels];
        for p in 0..pixels {
            let from = &cp[p * c_out + c0..][..n];
            for (j, &v) in from.iter().enumerate() {
                tmp[j * pixels + p] = v;
            }
        }
        for (j, row) in rows.chunks_exact_mut(pixels).enumerate() {
            let c = c0 + j;
            let z = residual.map(|z| &z[c * pixels..(c + 1) * pixels]);
            let b = bias.map_or(0.0, |b| b[c]);
            act.bias_residual_from(&tmp[j * pixels..(j + 1) * pixels], row, b, z);
        }
    };
    if out.len() >= 1 << 14 {
        out.par_chunks_mut(BLOCK * pixels)
            .enumerate()
            .for_each(block);
    } else {
        out.chunks_mut(BLOCK * pixels).enumerate().for_each(block);
    }
}
