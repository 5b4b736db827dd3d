//! CausalConvWithState (opset 27): a depthwise 1-D convolution over `[b, c, len]` that sees
//! only the current and earlier positions, with the last `k - 1` positions carried as state,
//! and an optional fused SiLU.
use super::linalg::{float_dispatch, Real};
use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{KernelCtx, KernelFn};
use crate::value::{Tensor, Value};
use kiln_ir::Dim;

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    match (domain, op_type) {
        ("", "CausalConvWithState") => Some(run),
        _ => None,
    }
}

/// output like input; present_state `[b, c, k - 1]`.
pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let state = match (ctx.shape(0), ctx.shape(1)) {
        (Some(x), Some(w)) if x.len() == 3 && w.len() == 3 => Some(vec![
            x[0].clone(),
            x[1].clone(),
            match &w[2] {
                Dim::Known(k) => Dim::Known((k - 1).max(0)),
                _ => Dim::Unknown,
            },
        ]),
        _ => None,
    };
    Ok(vec![ctx.same_as(0), Inferred::tensor(ctx.dtype(0), state)])
}

fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    float_dispatch!(ctx.tensor(0)?.dtype(), run_typed(ctx))
}

fn run_typed<T: Real>(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (x, w) = (ctx.tensor(0)?, ctx.tensor(1)?);
    let silu = match ctx.str_attr("activation").unwrap_or("none") {
        "none" => false,
        "silu" | "swish" => true,
        a => return Err(format!("activation must be none, silu or swish, got '{a}'")),
    };
    if x.rank() != 3 {
        return Err(format!(
            "input must be [batch, channels, length], got {:?}",
            x.shape
        ));
    }
    let (b, c, len) = (x.shape[0], x.shape[1], x.shape[2]);
    if w.rank() != 3 || w.shape[0] != c || w.shape[1] != 1 || w.shape[2] == 0 {
        return Err(format!(
            "weight must be [{c}, 1, k] with k >= 1, got {:?}",
            w.shape
        ));
    }
    let k = w.shape[2];
    let bias = match ctx.opt_tensor(2)? {
        Some(t) if t.len() == c => Some(T::load(t)?),
        Some(t) => return Err(format!("bias has shape {:?}, expected [{c}]", t.shape)),
        None => None,
    };
    let past = match ctx.opt_tensor(3)? {
        Some(t) if t.shape == [b, c, k - 1] => Some(T::load(t)?),
        Some(t) => {
            return Err(format!(
                "past_state has shape {:?}, expected [{b}, {c}, {}]",
                t.shape,
                k - 1
            ))
        }
        None => None,
    };
    let (xv, wv) = (T::load(x)?, T::load(w)?);
    let plen = len + k - 1;
    let mut y = vec![T::zero(); xv.len()];
    let mut state = vec![T::zero(); b * c * (k - 1)];
    let mut padded = vec![T::zero(); plen];
    for bi in 0..b {
        for ch in 0..c {
            let row = bi * c + ch;
            match &past {
                Some(p) => padded[..k - 1].copy_from_slice(&p[row * (k - 1)..][..k - 1]),
                None => padded[..k - 1].fill(T::zero()),
            }
            padded[k - 1..].copy_from_slice(&xv[row * len..][..len]);
            let wk = &wv[ch * k..][..k];
            for t in 0..len {
                let mut acc = bias.as_ref().map_or(T::zero(), |bv| bv[ch]);
                for (j, &wj) in wk.iter().enumerate() {
                    acc = acc + wj * padded[t + j];
                }
                if silu {
                    acc = acc / (T::one() + (-acc).exp());
                }
                y[row * len + t] = acc;
            }
            state[row * (k - 1)..][..k - 1].copy_from_slice(&padded[plen - (k - 1)..]);
        }
    }
    Ok(vec![
        Value::Tensor(Tensor::new(x.shape.clone(), T::store(y, x.dtype()))),
        Value::Tensor(Tensor::new(vec![b, c, k - 1], T::store(state, x.dtype()))),
    ])
}
