//! Squeeze and Unsqueeze (axes from the attribute before opset 13, from input 1 after), with
//! scalar <-> one-element vector values carried through.
use kiln_ir::Dim;

use crate::ctx::{InferCtx, Inferred, Result, SymValue};

fn axes(ctx: &InferCtx) -> Option<Vec<i64>> {
    if ctx.has_input(1) {
        ctx.known_ints(1)
    } else {
        ctx.ints_attr("axes").map(|a| a.to_vec())
    }
}

pub fn infer_squeeze(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let Some(s) = ctx.shape(0) else {
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None)]);
    };
    let has_axes = ctx.has_input(1) || ctx.attr("axes").is_some();
    let shape: Option<Vec<Dim>> = match axes(ctx) {
        Some(ax) if has_axes => {
            let mut drop = Vec::new();
            for a in ax {
                let a = ctx.axis(a, s.len())?;
                if let Some(v) = s[a].known() {
                    if v != 1 {
                        return Err(format!("cannot squeeze dimension {a} of size {v}"));
                    }
                }
                drop.push(a);
            }
            Some(
                s.iter()
                    .enumerate()
                    .filter(|(i, _)| !drop.contains(i))
                    .map(|(_, d)| d.clone())
                    .collect(),
            )
        }
        None if has_axes => None,
        _ => {
            if s.iter().any(|d| d.known().is_none()) {
                None
            } else {
                Some(s.iter().filter(|d| d.known() != Some(1)).cloned().collect())
            }
        }
    };
    let value = match (&shape, ctx.int_values(0)) {
        (Some(sh), Some(v)) if sh.is_empty() && v.len() == 1 => Some(SymValue {
            scalar: true,
            elems: v,
        }),
        _ => None,
    };
    Ok(vec![Inferred::tensor(ctx.dtype(0), shape).with_value(value)])
}

pub fn infer_unsqueeze(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let (Some(s), Some(ax)) = (ctx.shape(0), axes(ctx)) else {
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None)]);
    };
    let rank = s.len() + ax.len();
    let mut positions = Vec::new();
    for a in ax {
        let a = ctx.axis(a, rank)?;
        if positions.contains(&a) {
            return Err(format!("axis {a} is given twice"));
        }
        positions.push(a);
    }
    let mut rest = s.iter();
    let shape: Vec<Dim> = (0..rank)
        .map(|i| {
            if positions.contains(&i) {
                Dim::Known(1)
            } else {
                rest.next().cloned().unwrap_or(Dim::Unknown)
            }
        })
        .collect();
    let value = match ctx.int_values(0) {
        Some(v) if s.is_empty() => Some(SymValue {
            scalar: false,
            elems: v,
        }),
        _ => None,
    };
    Ok(vec![
        Inferred::tensor(ctx.dtype(0), Some(shape)).with_value(value)
    ])
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    let _ = (domain, op_type);
    None
}
