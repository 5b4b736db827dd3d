//! BitCast (opset 26): the same bytes read as another type of the same width.
use kiln_ir::DataType;

use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{one, KernelCtx, KernelFn};
use crate::value::{Tensor, Value};

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    match (domain, op_type) {
        ("", "BitCast") => Some(run),
        _ => None,
    }
}

/// The shape of the input, the type of `to`.
pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let to = DataType::from_onnx(ctx.int_attr("to", 0) as i32);
    Ok(vec![Inferred::tensor(to, ctx.shape(0).map(|s| s.to_vec()))])
}

fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let code = ctx.int_attr("to", 0);
    let to = DataType::from_onnx(code as i32)
        .ok_or_else(|| format!("'to' = {code} is not an ONNX tensor type"))?;
    let width = |d: DataType| match d {
        DataType::String => None,
        DataType::Bool => Some(8),
        d => d.bits(),
    };
    match (width(x.dtype()), width(to)) {
        (Some(a), Some(b)) if a == b => {}
        _ => {
            return Err(format!(
                "cannot bit-cast {} to {to}: the widths differ or a string is involved",
                x.dtype()
            ))
        }
    }
    let mut t = x.to_ir();
    t.dtype = to;
    one(Tensor::from_ir(&t))
}
