//! DeformConv (2-D): each kernel tap samples X bilinearly at its grid position plus a learned
//! offset (zero outside the image), scaled by an optional mask; groups and offset groups as
//! the spec defines them.
use super::linalg::{float_dispatch, product, Real};
use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{one, KernelCtx, KernelFn};
use crate::value::{Tensor, Value};

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    match (domain, op_type) {
        ("", "DeformConv") => Some(run),
        _ => None,
    }
}

/// Y: `[N, M, (offset's spatial dims)]`.
pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let shape = match (ctx.shape(0), ctx.shape(1), ctx.shape(2)) {
        (Some(x), Some(w), Some(o)) if o.len() >= 3 && !x.is_empty() && !w.is_empty() => {
            let mut s = vec![x[0].clone(), w[0].clone()];
            s.extend(o[2..].iter().cloned());
            Some(s)
        }
        _ => None,
    };
    Ok(vec![Inferred::tensor(ctx.dtype(0), shape)])
}

fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    float_dispatch!(x.dtype(), deform(ctx, x))
}

/// Bilinear sample of one plane at (h, w), zero outside.
fn sample<T: Real>(plane: &[T], ih: usize, iw: usize, h: f64, w: f64) -> f64 {
    let (h0, w0) = (h.floor(), w.floor());
    let (dh, dw) = (h - h0, w - w0);
    let at = |y: f64, x: f64| -> f64 {
        if y < 0.0 || x < 0.0 || y >= ih as f64 || x >= iw as f64 {
            0.0
        } else {
            plane[y as usize * iw + x as usize].f64()
        }
    };
    at(h0, w0) * (1.0 - dh) * (1.0 - dw)
        + at(h0, w0 + 1.0) * (1.0 - dh) * dw
        + at(h0 + 1.0, w0) * dh * (1.0 - dw)
        + at(h0 + 1.0, w0 + 1.0) * dh * dw
}

fn deform<T: Real>(ctx: &KernelCtx, xt: &Tensor) -> Result<Vec<Value>> {
    let (wt, ot) = (ctx.tensor(1)?, ctx.tensor(2)?);
    if xt.rank() != 4 || wt.rank() != 4 || ot.rank() != 4 {
        return Err(format!(
            "kiln runs 2-D DeformConv: X {:?}, W {:?} and offset {:?} must have rank 4",
            xt.shape, wt.shape, ot.shape
        ));
    }
    let (n, ic, ih, iw) = (xt.shape[0], xt.shape[1], xt.shape[2], xt.shape[3]);
    let (oc, icg, kh, kw) = (wt.shape[0], wt.shape[1], wt.shape[2], wt.shape[3]);
    let (oh, ow) = (ot.shape[2], ot.shape[3]);
    let group = ctx.int_attr("group", 1).max(1) as usize;
    let og = ctx.int_attr("offset_group", 1).max(1) as usize;
    if ic != icg * group || oc % group != 0 || ic % og != 0 {
        return Err(format!(
            "X has {ic} channels, W {:?}: group {group} and offset_group {og} do not divide them",
            wt.shape
        ));
    }
    if ot.shape[0] != n || ot.shape[1] != og * kh * kw * 2 {
        return Err(format!(
            "offset must be [{n}, {}, oh, ow], got {:?}",
            og * kh * kw * 2,
            ot.shape
        ));
    }
    let strides = ctx.ints_or("strides", 1, 2);
    let dil = ctx.ints_or("dilations", 1, 2);
    let pads = ctx.ints_or("pads", 0, 4);
    if strides.len() != 2 || dil.len() != 2 || pads.len() != 4 {
        return Err("strides, dilations and pads must have 2, 2 and 4 values".into());
    }
    let mask = ctx.opt_tensor(4)?;
    if let Some(m) = mask {
        if m.shape != [n, og * kh * kw, oh, ow] {
            return Err(format!(
                "mask must be [{n}, {}, {oh}, {ow}], got {:?}",
                og * kh * kw,
                m.shape
            ));
        }
    }
    let bias = ctx.opt_tensor(3)?;
    if bias.is_some_and(|t| t.len() != oc) {
        return Err(format!("B must have {oc} values, one per output channel"));
    }
    product(&[n, oc, oh, ow])?;
    let (x, w, off) = (T::load(xt)?, T::load(wt)?, T::load(ot)?);
    let mv = mask.map(T::load).transpose()?;
    let bv = bias.map(T::load).transpose()?;
    let (ocg, icpo) = (oc / group, ic / og);
    let mut y = vec![T::zero(); n * oc * oh * ow];
    for b in 0..n {
        for o in 0..oc {
            let g = o / ocg;
            for i in 0..oh {
                for j in 0..ow {
                    let mut acc = bv.as_ref().map_or(0.0, |v| v[o].f64());
                    for c in g * icg..(g + 1) * icg {
                        let ogi = c / icpo;
                        let plane = &x[(b * ic + c) * ih * iw..][..ih * iw];
                        for p in 0..kh {
                            for q in 0..kw {
                                let tap = (ogi * kh + p) * kw + q;
                                let oidx = |k: usize| {
                                    ((b * og * kh * kw * 2 + tap * 2 + k) * oh + i) * ow + j
                                };
                                let hh = i as f64 * strides[0] as f64 - pads[0] as f64
                                    + p as f64 * dil[0] as f64
                                    + off[oidx(0)].f64();
                                let ww = j as f64 * strides[1] as f64 - pads[1] as f64
                                    + q as f64 * dil[1] as f64
                                    + off[oidx(1)].f64();
                                let m = mv.as_ref().map_or(1.0, |m| {
                                    m[((b * og * kh * kw + tap) * oh + i) * ow + j].f64()
                                });
                                let wv = w[((o * icg + (c - g * icg)) * kh + p) * kw + q].f64();
                                acc += sample(plane, ih, iw, hh, ww) * wv * m;
                            }
                        }
                    }
                    y[((b * oc + o) * oh + i) * ow + j] = T::of(acc);
                }
            }
        }
    }
    one(Tensor::new(vec![n, oc, oh, ow], T::store(y, xt.dtype())))
}
