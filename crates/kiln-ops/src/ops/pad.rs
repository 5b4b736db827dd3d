//! Pad: each dim grows by its begin and end pads (attribute before opset 11, input after; the
//! `axes` input of opset 18 limits which dims the pads apply to).
use kiln_ir::Dim;

use crate::ctx::{small, InferCtx, Inferred, Result};

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let Some(x) = ctx.shape(0) else {
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None)]);
    };
    let r = x.len();
    let pads = if ctx.opset < 11 {
        ctx.ints_attr("pads")
            .or(ctx.ints_attr("paddings"))
            .map(|p| p.to_vec())
    } else {
        ctx.known_ints(1)
    };
    let Some(pads) = pads else {
        return Ok(vec![Inferred::tensor(
            ctx.dtype(0),
            Some(vec![Dim::Unknown; r]),
        )]);
    };
    let axes: Vec<usize> = if ctx.has_input(3) {
        match ctx.known_ints(3) {
            Some(a) => a.iter().map(|&a| ctx.axis(a, r)).collect::<Result<_>>()?,
            None => {
                return Ok(vec![Inferred::tensor(
                    ctx.dtype(0),
                    Some(vec![Dim::Unknown; r]),
                )])
            }
        }
    } else {
        (0..r).collect()
    };
    small("pads", &pads)?;
    let n = axes.len();
    if pads.len() != 2 * n {
        return Err(format!(
            "pads has {} entries, expected {}",
            pads.len(),
            2 * n
        ));
    }
    let mut out = x.to_vec();
    for (i, &a) in axes.iter().enumerate() {
        out[a] = x[a].add_const(pads[i] + pads[i + n]);
        if out[a].known().is_some_and(|v| v < 0) {
            return Err(format!("padding makes dimension {a} negative"));
        }
    }
    Ok(vec![Inferred::tensor(ctx.dtype(0), Some(out))])
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    let _ = (domain, op_type);
    None
}
