//! Pooling: MaxPool/AveragePool/LpPool over a window, and the global pools.
use kiln_ir::{DataType, Dim};

use crate::ctx::{InferCtx, Inferred, Result};
use crate::ops::conv::window_output;

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let Some(x) = ctx.shape(0) else {
        return Ok((0..ctx.num_outputs)
            .map(|i| {
                Inferred::tensor(
                    if i == 0 {
                        ctx.dtype(0)
                    } else {
                        Some(DataType::I64)
                    },
                    None,
                )
            })
            .collect());
    };
    if x.len() < 3 {
        return Err(format!("input X must have rank >= 3, got {}", x.len()));
    }
    let kernel = ctx
        .ints_attr("kernel_shape")
        .ok_or("kernel_shape attribute is required")?;
    let ceil = ctx.int_attr("ceil_mode", 0) != 0;
    let mut shape = vec![x[0].clone(), x[1].clone()];
    shape.extend(window_output(ctx, &x[2..], kernel, ceil)?);
    let mut out = vec![Inferred::tensor(ctx.dtype(0), Some(shape.clone()))];
    if ctx.num_outputs > 1 {
        out.push(Inferred::tensor(Some(DataType::I64), Some(shape)));
    }
    Ok(out)
}

pub fn infer_global(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let shape = match ctx.shape(0) {
        Some(x) if x.len() < 2 => {
            return Err(format!("input X must have rank >= 2, got {}", x.len()))
        }
        Some(x) => Some(
            x.iter()
                .enumerate()
                .map(|(i, d)| if i < 2 { d.clone() } else { Dim::Known(1) })
                .collect(),
        ),
        None => None,
    };
    Ok(vec![Inferred::tensor(ctx.dtype(0), shape)])
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    let _ = (domain, op_type);
    None
}
