//! Tile: each dim multiplied by its repeat count.
use kiln_ir::Dim;

use crate::ctx::{InferCtx, Inferred, Result};

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let Some(x) = ctx.shape(0) else {
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None)]);
    };
    let Some(reps) = ctx.int_values(1) else {
        return Ok(vec![Inferred::tensor(
            ctx.dtype(0),
            Some(vec![Dim::Unknown; x.len()]),
        )]);
    };
    if reps.len() != x.len() {
        return Err(format!(
            "repeats has {} entries for rank {}",
            reps.len(),
            x.len()
        ));
    }
    let shape = x.iter().zip(&reps).map(|(d, r)| d.mul(r)).collect();
    Ok(vec![Inferred::tensor(ctx.dtype(0), Some(shape))])
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    let _ = (domain, op_type);
    None
}
