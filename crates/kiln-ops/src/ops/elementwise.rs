//! Element-wise ops: unary ops keep type and shape; binary and variadic ops broadcast, and
//! integer arithmetic on known shape values is carried through (`Shape` → `Mul` → `Reshape`).
use kiln_ir::{DataType, Dim};

use crate::ctx::{broadcast, InferCtx, Inferred, Result, SymValue};

pub fn unary(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let mut out = ctx.same_as(0);
    if ctx.op_type == "Identity" {
        out.value = ctx.int_values(0).map(|elems| SymValue {
            scalar: ctx.rank(0) == Some(0),
            elems,
        });
    }
    Ok(vec![out])
}

pub fn unary_bool(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    Ok(vec![Inferred::tensor(
        Some(DataType::Bool),
        ctx.shape(0).map(|s| s.to_vec()),
    )])
}

fn broadcast_inputs(ctx: &InferCtx) -> Result<Option<Vec<Dim>>> {
    let mut shapes = Vec::new();
    for i in 0..ctx.inputs.len() {
        if !ctx.has_input(i) {
            continue;
        }
        match ctx.shape(i) {
            Some(s) => shapes.push(s),
            None => return Ok(None),
        }
    }
    broadcast(&shapes).map(Some)
}

pub fn broadcast_first_type(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let shape = broadcast_inputs(ctx)?;
    let value = int_arith(ctx);
    Ok(vec![Inferred::tensor(ctx.dtype(0), shape).with_value(value)])
}

pub fn broadcast_bool(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    Ok(vec![Inferred::tensor(
        Some(DataType::Bool),
        broadcast_inputs(ctx)?,
    )])
}

/// Integer arithmetic on two known rank-0/1 values, with scalar broadcasting.
fn int_arith(ctx: &InferCtx) -> Option<SymValue> {
    if ctx.inputs.len() != 2 || !ctx.dtype(0)?.is_int() {
        return None;
    }
    let (a, b) = (ctx.int_values(0)?, ctx.int_values(1)?);
    let n = a.len().max(b.len());
    if (a.len() != n && a.len() != 1) || (b.len() != n && b.len() != 1) {
        return None;
    }
    let at = |v: &Vec<Dim>, i: usize| v[if v.len() == 1 { 0 } else { i }].clone();
    let elems = (0..n)
        .map(|i| {
            let (x, y) = (at(&a, i), at(&b, i));
            match ctx.op_type {
                "Add" => x.add(&y),
                "Sub" => x.sub(&y),
                "Mul" => x.mul(&y),
                // ONNX integer Div truncates; shape values are non-negative, where it floors.
                "Div" => x.div(&y),
                "Max" => x.max(&y),
                "Min" => x.min(&y),
                _ => Dim::Unknown,
            }
        })
        .collect();
    Some(SymValue {
        scalar: ctx.rank(0) == Some(0) && ctx.rank(1) == Some(0),
        elems,
    })
}

/// The kernels of this family live in `unary` and `binary`.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    if !domain.is_empty() {
        return None;
    }
    super::unary::kernel(op_type).or_else(|| super::binary::kernel(op_type))
}
