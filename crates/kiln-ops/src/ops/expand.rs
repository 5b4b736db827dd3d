//! Expand: bidirectional broadcast of the input's shape with the requested shape.
use kiln_ir::Dim;

use crate::ctx::{broadcast, InferCtx, Inferred, Result};

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let (Some(x), Some(target)) = (ctx.shape(0), ctx.int_values(1)) else {
        let rank = ctx.shape(1).and_then(|s| s.first()).and_then(|d| d.known());
        let shape = match (ctx.shape(0), rank) {
            (Some(x), Some(r)) => Some(vec![Dim::Unknown; x.len().max(r as usize)]),
            _ => None,
        };
        return Ok(vec![Inferred::tensor(ctx.dtype(0), shape)]);
    };
    Ok(vec![Inferred::tensor(
        ctx.dtype(0),
        Some(broadcast(&[x, &target])?),
    )])
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    let _ = (domain, op_type);
    None
}
