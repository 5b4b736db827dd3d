//! Gather: `data[:axis] + indices.shape + data[axis+1:]`; gathering from a known 1-D integer
//! value (`Shape` → `Gather`) gives a known value.
use crate::ctx::{InferCtx, Inferred, Result, SymValue};

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let (Some(data), Some(idx)) = (ctx.shape(0), ctx.shape(1)) else {
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None)]);
    };
    if data.is_empty() {
        return Err("data must have rank >= 1".into());
    }
    let axis = ctx.axis(ctx.int_attr("axis", 0), data.len())?;
    let mut shape = data[..axis].to_vec();
    shape.extend(idx.iter().cloned());
    shape.extend(data[axis + 1..].iter().cloned());
    let value = match (data.len(), ctx.int_values(0), ctx.known_ints(1)) {
        (1, Some(v), Some(ix)) if idx.len() <= 1 => {
            let n = v.len() as i64;
            let mut elems = Vec::with_capacity(ix.len());
            for i in ix {
                let j = if i < 0 { i + n } else { i };
                if j < 0 || j >= n {
                    return Err(format!("index {i} is out of range for {n} elements"));
                }
                elems.push(v[j as usize].clone());
            }
            Some(SymValue {
                scalar: idx.is_empty(),
                elems,
            })
        }
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
