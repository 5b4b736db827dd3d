//! Gemm (and com.microsoft FusedGemm): `alpha * A' * B' + beta * C` with optional transposes.
use crate::ctx::{InferCtx, Inferred, Result};

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let (Some(a), Some(b)) = (ctx.shape(0), ctx.shape(1)) else {
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None)]);
    };
    if a.len() != 2 || b.len() != 2 {
        return Err(format!(
            "A and B must be matrices, got ranks {} and {}",
            a.len(),
            b.len()
        ));
    }
    let ta = ctx.int_attr("transA", 0) != 0;
    let tb = ctx.int_attr("transB", 0) != 0;
    let (m, ka) = if ta { (&a[1], &a[0]) } else { (&a[0], &a[1]) };
    let (kb, n) = if tb { (&b[1], &b[0]) } else { (&b[0], &b[1]) };
    if let (Some(x), Some(y)) = (ka.known(), kb.known()) {
        if x != y {
            return Err(format!("inner dimensions differ: A gives {x}, B gives {y}"));
        }
    }
    Ok(vec![Inferred::tensor(
        ctx.dtype(0),
        Some(vec![m.clone(), n.clone()]),
    )])
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    let _ = (domain, op_type);
    None
}
