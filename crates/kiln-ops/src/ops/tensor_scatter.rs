//! TensorScatter (opset 24): writes `update` into a copy of `past_cache` along the sequence
//! axis, at a per-batch start index (`linear`) or wrapping around (`circular`).
use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{one, KernelCtx, KernelFn};
use crate::ops::movement;
use crate::value::{Tensor, Value};

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    match (domain, op_type) {
        ("", "TensorScatter") => Some(run),
        _ => None,
    }
}

/// present_cache is like past_cache.
pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    Ok(vec![ctx.same_as(0)])
}

fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let past = ctx.tensor(0)?;
    let update = ctx.tensor(1)?;
    let rank = past.rank();
    let axis = ctx.axis(ctx.int_attr("axis", -2), rank)?;
    if axis == 0 {
        return Err("axis cannot be 0 (the batch axis)".into());
    }
    let circular = match ctx.str_attr("mode").unwrap_or("linear") {
        "linear" => false,
        "circular" => true,
        m => return Err(format!("mode must be linear or circular, got '{m}'")),
    };
    if update.rank() != rank
        || update.dtype() != past.dtype()
        || (0..rank).any(|a| a != axis && update.shape[a] != past.shape[a])
        || update.shape[axis] > past.shape[axis]
    {
        return Err(format!(
            "update ({} {:?}) must match past_cache ({} {:?}) except for a shorter axis {axis}",
            update.dtype(),
            update.shape,
            past.dtype(),
            past.shape
        ));
    }
    let batch = past.shape[0];
    let starts = match ctx.opt_tensor(2)? {
        Some(t) => t.to_i64s()?,
        None => vec![0; batch],
    };
    if starts.len() != batch {
        return Err(format!(
            "write_indices has {} values for a batch of {batch}",
            starts.len()
        ));
    }
    let (max_len, len) = (past.shape[axis], update.shape[axis]);
    let inner: usize = past.shape[axis + 1..].iter().product();
    let outer_per_batch: usize = past.shape[1..axis].iter().product();
    // Pairs (source tensor, element) for every output element: past, or update where written.
    let mut pairs: Vec<(usize, usize)> = (0..past.len()).map(|i| (0, i)).collect();
    for b in 0..batch {
        let start = starts[b];
        for o in 0..outer_per_batch {
            let row = b * outer_per_batch + o;
            for s in 0..len {
                let mut at = start + s as i64;
                if circular {
                    at = at.rem_euclid(max_len as i64);
                }
                if at < 0 || at as usize >= max_len {
                    return Err(format!(
                        "write index {start} + {len} updates run past the cache length {max_len} (batch {b})"
                    ));
                }
                let dst = (row * max_len + at as usize) * inner;
                let src = (row * len + s) * inner;
                for i in 0..inner {
                    pairs[dst + i] = (1, src + i);
                }
            }
        }
    }
    one(Tensor::new(
        past.shape.clone(),
        movement::take_from(&[&past.data, &update.data], &pairs)?,
    ))
}
