//! Cast and CastLike: the shape is kept; integer values survive integer casts.
use kiln_ir::DataType;

use crate::ctx::{InferCtx, Inferred, Result, SymValue};

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let to = ctx.int_attr("to", 0);
    let dtype = DataType::from_onnx(to as i32).ok_or(format!("Cast to unknown type {to}"))?;
    Ok(vec![cast_to(ctx, dtype)])
}

pub fn infer_like(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    match ctx.dtype(1) {
        Some(d) => Ok(vec![cast_to(ctx, d)]),
        None => Ok(vec![Inferred::tensor(
            None,
            ctx.shape(0).map(|s| s.to_vec()),
        )]),
    }
}

fn cast_to(ctx: &InferCtx, dtype: DataType) -> Inferred {
    // Whole numbers stay exact through casts to wide integer or float types.
    let keeps_value = matches!(
        dtype,
        DataType::I64 | DataType::I32 | DataType::F32 | DataType::F64
    );
    let value = ctx
        .int_values(0)
        .filter(|_| keeps_value && ctx.dtype(0).is_some_and(|d| d.is_int()))
        .map(|elems| SymValue {
            scalar: ctx.rank(0) == Some(0),
            elems,
        });
    Inferred::tensor(Some(dtype), ctx.shape(0).map(|s| s.to_vec())).with_value(value)
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    let _ = (domain, op_type);
    None
}
