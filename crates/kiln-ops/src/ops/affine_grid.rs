//! AffineGrid: the sampling grid `theta · [x, y, (z,) 1]` over normalized output positions in
//! [-1, 1] (pixel centres, or corner pixels' centres with `align_corners`), `[N, H, W, 2]` or
//! `[N, D, H, W, 3]`.
use super::linalg::{float_dispatch, Real};
use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{one, KernelCtx, KernelFn};
use crate::value::{Data, Tensor, Value};
use kiln_ir::Dim;

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    match (domain, op_type) {
        ("", "AffineGrid") => Some(run),
        _ => None,
    }
}

/// `[N, (D,) H, W, dims]` from the constant `size`.
pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let shape = ctx.int_values(1).and_then(|s| {
        let spatial = s.len().checked_sub(2)?;
        let mut out = vec![s[0].clone()];
        out.extend(s[2..].iter().cloned());
        out.push(Dim::Known(spatial as i64));
        Some(out)
    });
    Ok(vec![Inferred::tensor(ctx.dtype(0), shape)])
}

fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let theta = ctx.tensor(0)?;
    float_dispatch!(theta.dtype(), grid(ctx, theta))
}

fn grid<T: Real>(ctx: &KernelCtx, theta: &Tensor) -> Result<Vec<Value>> {
    let size = ctx.tensor(1)?.to_i64s()?;
    let dims = match size.len() {
        4 => 2,
        5 => 3,
        n => return Err(format!("size must have 4 or 5 values, got {n}")),
    };
    if theta.shape.len() != 3 || theta.shape[1] != dims || theta.shape[2] != dims + 1 {
        return Err(format!(
            "theta must be [N, {dims}, {}], got {:?}",
            dims + 1,
            theta.shape
        ));
    }
    let sz: Vec<usize> = size
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("size has a negative value {d}")))
        .collect::<Result<_>>()?;
    let n = sz[0];
    if theta.shape[0] != n {
        return Err(format!("theta has {} matrices for N = {n}", theta.shape[0]));
    }
    let align = ctx.int_attr("align_corners", 0) != 0;
    let pos = |i: usize, len: usize| -> f64 {
        if align {
            if len <= 1 {
                -1.0
            } else {
                -1.0 + 2.0 * i as f64 / (len - 1) as f64
            }
        } else {
            -1.0 + (2 * i + 1) as f64 / len as f64
        }
    };
    // Spatial sizes, outermost first; the coordinates are listed x (innermost) first.
    let spatial = &sz[2..];
    let count: usize = spatial.iter().product();
    super::linalg::product(&[n, count, dims])?;
    let th = T::load(theta)?;
    let mut out = Vec::with_capacity(n * count * dims);
    let mut coord = vec![0f64; dims + 1];
    for b in 0..n {
        let m = &th[b * dims * (dims + 1)..][..dims * (dims + 1)];
        for flat in 0..count {
            let mut rest = flat;
            for (k, &len) in spatial.iter().enumerate().rev() {
                let i = rest % len;
                rest /= len;
                // spatial axis k (outermost 0) is coordinate dims-1-k.
                coord[dims - 1 - k] = pos(i, len);
            }
            coord[dims] = 1.0;
            for r in 0..dims {
                let v: f64 = (0..=dims)
                    .map(|c| m[r * (dims + 1) + c].f64() * coord[c])
                    .sum();
                out.push(T::of(v));
            }
        }
    }
    let mut shape = vec![n];
    shape.extend_from_slice(spatial);
    shape.push(dims);
    let data: Data = T::store(out, theta.dtype());
    one(Tensor::new(shape, data))
}
