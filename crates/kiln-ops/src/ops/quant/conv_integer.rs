//! ConvInteger (what `quantize_dynamic` writes for a CNN's convolutions) on the quantized
//! product: QLinearConv's packed groups and image driver with the i32 sums as the output,
//! stored channels-last and moved channel-first in cache-sized blocks; depthwise layers on
//! `kiln_kernels::qdepthwise`'s i32 sums. Constant weights are packed once per session; other
//! narrow groups, non-2-D shapes and changed weights run the reference kernel (`ops/conv.rs`).
use kiln_ir::AttrList;
use kiln_kernels::qdepthwise::{qdepthwise_i32, DwInput};
use kiln_kernels::qgemm::MAX_K;
use kiln_kernels::vecmath::unfilled;
use rayon::prelude::*;

use super::qconv::{image, tap_channels, to_channels_last, Dest, Geom, Packed};
use super::{bytes, zero};
use crate::kernel::{one, KernelCtx, PrepareCtx, PreparedKernel, Result};
use crate::value::{Tensor, Value};

struct Prepared {
    packed: Packed,
    shape: Vec<usize>,
}

pub fn prepare(ctx: &PrepareCtx) -> Option<Box<dyn PreparedKernel>> {
    let w = ctx.constant(1)?;
    let wz = ctx.optional_constant(3)?;
    let group = ctx.attrs.get_int("group").unwrap_or(1).max(1) as usize;
    Some(Box::new(Prepared {
        packed: Packed::new(w, wz, group)?,
        shape: w.shape.clone(),
    }))
}

impl PreparedKernel for Prepared {
    fn run(&self, ctx: &KernelCtx) -> Result<Vec<Value>> {
        if ctx.tensor(1)?.shape == self.shape {
            if let Some(y) = fast(ctx, &self.packed)? {
                return one(y);
            }
        }
        let reference =
            crate::ops::conv::kernel("", "ConvInteger").ok_or("no ConvInteger kernel")?;
        reference(ctx)
    }
}

/// The product path, or None where it does not apply.
fn fast(ctx: &KernelCtx, packed: &Packed) -> Result<Option<Tensor>> {
    let (x, w) = (ctx.tensor(0)?, ctx.tensor(1)?);
    let Some(g) = Geom::new(ctx, &x.shape, &w.shape, false)? else {
        return Ok(None);
    };
    let fits = match packed {
        // K as the packed groups hold it (an RGB input's taps padded to 4 channels).
        Packed::Groups(p) => {
            tap_channels(g.cg(), g.group) * g.kh * g.kw <= MAX_K && p.len() == g.group
        }
        Packed::Depthwise(d) => d.channels() == g.c && d.window() == (g.kh, g.kw),
    };
    if !fits {
        return Ok(None);
    }
    let (xv, x_signed) = bytes(x).ok_or("X must be uint8 or int8")?;
    let zx = zero(ctx.opt_tensor(2)?, x_signed, "x_zero_point")?;
    let (plane, pixels) = (g.h * g.w, g.oh * g.ow);
    // The product writes every channel-last sum, and the transpose every output.
    let mut y = unfilled(g.n * g.m * pixels, 0x5a5a_5a5a);
    let (mut nhwc, mut last) = (
        unfilled(plane * g.c, 0xa5),
        unfilled(pixels * g.m, 0x5a5a_5a5a),
    );
    for img in 0..g.n {
        to_channels_last(
            &xv[img * g.c * plane..][..g.c * plane],
            g.c,
            plane,
            &mut nhwc,
        );
        match packed {
            Packed::Groups(p) => image(&g, p, &nhwc, x_signed, zx, true, Dest::I32(&mut last))?,
            Packed::Depthwise(d) => {
                let input = DwInput {
                    x: &nhwc,
                    h: g.h,
                    w: g.w,
                    signed: x_signed,
                    zero: zx,
                };
                let geom = g.dw_geom();
                qdepthwise_i32(&input, d, &geom, &mut last)?;
            }
        }
        channels_first(
            &last,
            pixels,
            g.m,
            &mut y[img * g.m * pixels..][..g.m * pixels],
        );
    }
    Ok(Some(Tensor::from_vec(vec![g.n, g.m, g.oh, g.ow], y)))
}

/// `dst [m, p] = src [p, m]ᵀ`, 16 channels × 64 pixels at a time (one cache line of each
/// source row), bands of channels on rayon's threads.
fn channels_first(src: &[i32], p: usize, m: usize, dst: &mut [i32]) {
    const CB: usize = 16;
    const PB: usize = 64;
    let band = |(b, out): (usize, &mut [i32])| {
        let m0 = b * CB;
        let mn = out.len() / p;
        for p0 in (0..p).step_by(PB) {
            let pn = PB.min(p - p0);
            for j in 0..mn {
                let row = &mut out[j * p + p0..][..pn];
                for (i, o) in row.iter_mut().enumerate() {
                    *o = src[(p0 + i) * m + m0 + j];
                }
            }
        }
    };
    if p * m < 1 << 15 {
        dst.chunks_mut(CB * p).enumerate().for_each(band);
    } else {
        dst.par_chunks_mut(CB * p).enumerate().for_each(band);
    }
}
