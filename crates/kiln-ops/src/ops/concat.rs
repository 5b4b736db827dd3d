//! Concat: sizes add up along `axis`; known integer values are concatenated too.
use kiln_ir::Dim;

use crate::ctx::{InferCtx, Inferred, Result, SymValue};

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let n = ctx.inputs.len();
    let dtype = (0..n).find_map(|i| ctx.dtype(i));
    let shapes: Option<Vec<_>> = (0..n).map(|i| ctx.shape(i)).collect();
    let Some(shapes) = shapes.filter(|s| !s.is_empty()) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    let rank = shapes[0].len();
    if shapes.iter().any(|s| s.len() != rank) {
        return Err("inputs have different ranks".into());
    }
    let axis = ctx.axis(
        ctx.attr("axis")
            .and(Some(ctx.int_attr("axis", 0)))
            .ok_or("axis attribute is required")?,
        rank,
    )?;
    let mut shape = Vec::with_capacity(rank);
    for d in 0..rank {
        if d == axis {
            shape.push(shapes.iter().fold(Dim::Known(0), |acc, s| acc.add(&s[d])));
            continue;
        }
        // Take the most specific size any input gives.
        let mut best = Dim::Unknown;
        for s in &shapes {
            match (&best, &s[d]) {
                (Dim::Known(a), Dim::Known(b)) if a != b => {
                    return Err(format!("inputs differ in dimension {d}: {a} vs {b}"))
                }
                (Dim::Known(_), _) => {}
                (_, Dim::Known(_)) => best = s[d].clone(),
                (Dim::Unknown, x) => best = x.clone(),
                _ => {}
            }
        }
        shape.push(best);
    }
    let value = if rank == 1 {
        let vals: Option<Vec<Vec<Dim>>> = (0..n).map(|i| ctx.int_values(i)).collect();
        vals.map(|v| SymValue {
            scalar: false,
            elems: v.concat(),
        })
    } else {
        None
    };
    Ok(vec![Inferred::tensor(dtype, Some(shape)).with_value(value)])
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    let _ = (domain, op_type);
    None
}
