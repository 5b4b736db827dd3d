//! SwiGLU (opset 28): `Y = A·sigmoid(alpha·A) ⊙ B`, A and B of one shape.
use super::linalg::{float_dispatch, Real};
use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{one, KernelCtx, KernelFn};
use crate::value::{Data, Tensor, Value};

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    match (domain, op_type) {
        ("", "SwiGLU") => Some(run),
        _ => None,
    }
}

/// Y is like A.
pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    Ok(vec![ctx.same_as(0)])
}

fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (a, b) = (ctx.tensor(0)?, ctx.tensor(1)?);
    if a.shape != b.shape || a.dtype() != b.dtype() {
        return Err(format!(
            "A ({} {:?}) and B ({} {:?}) must have one type and shape",
            a.dtype(),
            a.shape,
            b.dtype(),
            b.shape
        ));
    }
    let alpha = ctx.float_attr("alpha", 1.0) as f64;
    one(Tensor::new(
        a.shape.clone(),
        float_dispatch!(a.dtype(), swiglu(a, b, alpha))?,
    ))
}

fn swiglu<T: Real>(a: &Tensor, b: &Tensor, alpha: f64) -> Result<Data> {
    let (av, bv) = (T::load(a)?, T::load(b)?);
    let al = T::of(alpha);
    let y = av
        .iter()
        .zip(bv.iter())
        .map(|(&x, &v)| x / (T::one() + (-(al * x)).exp()) * v)
        .collect();
    Ok(T::store(y, a.dtype()))
}
