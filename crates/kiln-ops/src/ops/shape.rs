//! Shape (its output value is the input's dims, symbolic ones included) and Size.
use kiln_ir::{DataType, Dim};

use crate::ctx::{InferCtx, Inferred, Result, SymValue};

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let Some(s) = ctx.shape(0) else {
        return Ok(vec![Inferred::tensor(
            Some(DataType::I64),
            Some(vec![Dim::Unknown]),
        )]);
    };
    let r = s.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let start = clamp(ctx.int_attr("start", 0));
    let end = clamp(ctx.int_attr("end", r));
    let elems: Vec<Dim> = if start < end {
        s[start..end].to_vec()
    } else {
        Vec::new()
    };
    Ok(vec![Inferred::tensor(
        Some(DataType::I64),
        Some(vec![Dim::Known(elems.len() as i64)]),
    )
    .with_value(Some(SymValue {
        scalar: false,
        elems,
    }))])
}

pub fn infer_size(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let value = ctx.shape(0).map(|s| SymValue {
        scalar: true,
        elems: vec![s.iter().fold(Dim::Known(1), |a, d| a.mul(d))],
    });
    Ok(vec![
        Inferred::tensor(Some(DataType::I64), Some(vec![])).with_value(value)
    ])
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    let _ = (domain, op_type);
    None
}
