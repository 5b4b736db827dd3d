//! Split: sizes from the `split` attribute (before opset 13), input 1, or equal parts (the last
//! smaller when `num_outputs` does not divide the size, opset 18).
use kiln_ir::Dim;

use crate::ctx::{InferCtx, Inferred, Result};

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let n = ctx.num_outputs;
    let Some(s) = ctx.shape(0) else {
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None); n]);
    };
    let axis = ctx.axis(ctx.int_attr("axis", 0), s.len())?;
    let sizes: Option<Vec<Dim>> = if ctx.has_input(1) {
        ctx.int_values(1)
    } else if let Some(sp) = ctx.ints_attr("split") {
        Some(sp.iter().map(|&d| Dim::Known(d)).collect())
    } else {
        let total = &s[axis];
        let n_i = n as i64;
        match total.known() {
            Some(t) => {
                let n_i = n_i.max(1);
                let chunk = t / n_i + i64::from(t % n_i != 0);
                Some(
                    (0..n_i)
                        .map(|i| {
                            Dim::Known(chunk.min(t.saturating_sub(i.saturating_mul(chunk)).max(0)))
                        })
                        .collect(),
                )
            }
            None => Some(vec![total.ceil_div(n_i); n]),
        }
    };
    let Some(sizes) = sizes else {
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None); n]);
    };
    if sizes.len() != n {
        return Err(format!("split gives {} sizes for {n} outputs", sizes.len()));
    }
    if let (Some(t), Some(sum)) = (
        s[axis].known(),
        sizes.iter().map(|d| d.known()).sum::<Option<i64>>(),
    ) {
        if t != sum {
            return Err(format!("split sizes add up to {sum}, but the axis has {t}"));
        }
    }
    Ok(sizes
        .into_iter()
        .map(|d| {
            let mut shape = s.to_vec();
            shape[axis] = d;
            Inferred::tensor(ctx.dtype(0), Some(shape))
        })
        .collect())
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    let _ = (domain, op_type);
    None
}
