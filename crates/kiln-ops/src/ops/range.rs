//! Range: `max(ceil((limit - start) / delta), 0)` elements, symbolic when start and delta are
//! whole numbers and the limit comes from a shape.
use kiln_ir::Dim;

use crate::ctx::{InferCtx, Inferred, Result};

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let dtype = ctx.dtype(0);
    let scalar = |i: usize| -> Option<Dim> {
        let v = ctx.integral_values(i)?;
        (v.len() == 1).then(|| v[0].clone())
    };
    let len = match (scalar(0), scalar(1), scalar(2).and_then(|d| d.known())) {
        (_, _, Some(0)) => return Err("delta cannot be 0".into()),
        (Some(s), Some(l), Some(delta)) if delta > 0 => {
            l.sub(&s).ceil_div(delta).max(&Dim::Known(0))
        }
        (Some(s), Some(l), Some(delta)) => match delta.checked_neg() {
            Some(d) => s.sub(&l).ceil_div(d).max(&Dim::Known(0)),
            None => Dim::Unknown,
        },
        _ => {
            // Fractional float ranges: only when all three are constants.
            let f = |i: usize| ctx.float_values(i).filter(|v| v.len() == 1).map(|v| v[0]);
            match (f(0), f(1), f(2)) {
                (Some(s), Some(l), Some(d)) if d != 0.0 => {
                    Dim::Known(((l - s) / d).ceil().max(0.0) as i64)
                }
                _ => Dim::Unknown,
            }
        }
    };
    Ok(vec![Inferred::tensor(dtype, Some(vec![len]))])
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    let _ = (domain, op_type);
    None
}
