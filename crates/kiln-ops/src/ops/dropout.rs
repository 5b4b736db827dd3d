//! Dropout: output like the input; the optional mask is bool of the same shape.
use kiln_ir::DataType;

use crate::ctx::{InferCtx, Inferred, Result};

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let mut out = vec![ctx.same_as(0)];
    if ctx.num_outputs > 1 {
        // Before opset 10 the mask had the input's type.
        let mask = if ctx.opset < 10 {
            ctx.dtype(0)
        } else {
            Some(DataType::Bool)
        };
        out.push(Inferred::tensor(mask, ctx.shape(0).map(|s| s.to_vec())));
    }
    Ok(out)
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    let _ = (domain, op_type);
    None
}
