//! BatchNormalization: Y keeps X's type and shape; training-mode outputs are per channel.
use kiln_ir::Dim;

use crate::ctx::{InferCtx, Inferred, Result};

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let mut out = vec![ctx.same_as(0)];
    let channels = ctx
        .shape(0)
        .and_then(|s| s.get(1).cloned())
        .unwrap_or(Dim::Unknown);
    for _ in 1..ctx.num_outputs {
        out.push(Inferred::tensor(ctx.dtype(0), Some(vec![channels.clone()])));
    }
    Ok(out)
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    let _ = (domain, op_type);
    None
}
