//! Reductions (axes from the attribute, or from input 1 since opset 13 for ReduceSum and 18 for
//! the rest; `keepdims`, `noop_with_empty_axes`) and ArgMax/ArgMin.
use kiln_ir::{DataType, Dim};

use crate::ctx::{InferCtx, Inferred, Result};

fn reduced(x: &[Dim], axes: &[usize], keep: bool) -> Vec<Dim> {
    x.iter()
        .enumerate()
        .filter_map(|(i, d)| {
            if axes.contains(&i) {
                keep.then_some(Dim::Known(1))
            } else {
                Some(d.clone())
            }
        })
        .collect()
}

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let Some(x) = ctx.shape(0) else {
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None)]);
    };
    let keep = ctx.int_attr("keepdims", 1) != 0;
    let axes = if ctx.has_input(1) {
        match ctx.known_ints(1) {
            Some(a) => Some(a),
            None => {
                let rank = if keep {
                    Some(vec![Dim::Unknown; x.len()])
                } else {
                    None
                };
                return Ok(vec![Inferred::tensor(ctx.dtype(0), rank)]);
            }
        }
    } else {
        ctx.ints_attr("axes").map(|a| a.to_vec())
    };
    let axes: Vec<usize> = match axes {
        Some(a) if !a.is_empty() => a
            .iter()
            .map(|&a| ctx.axis(a, x.len()))
            .collect::<Result<_>>()?,
        _ if ctx.int_attr("noop_with_empty_axes", 0) != 0 => {
            return Ok(vec![ctx.same_as(0)]);
        }
        _ => (0..x.len()).collect(),
    };
    Ok(vec![Inferred::tensor(
        ctx.dtype(0),
        Some(reduced(x, &axes, keep)),
    )])
}

pub fn infer_arg(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let Some(x) = ctx.shape(0) else {
        return Ok(vec![Inferred::tensor(Some(DataType::I64), None)]);
    };
    let keep = ctx.int_attr("keepdims", 1) != 0;
    let axis = ctx.axis(ctx.int_attr("axis", 0), x.len())?;
    Ok(vec![Inferred::tensor(
        Some(DataType::I64),
        Some(reduced(x, &[axis], keep)),
    )])
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    let _ = (domain, op_type);
    None
}
