//! Transpose: dims permuted by `perm` (reversed by default).
use crate::ctx::{InferCtx, Inferred, Result};

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let Some(s) = ctx.shape(0) else {
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None)]);
    };
    let perm: Vec<i64> = match ctx.ints_attr("perm") {
        Some(p) => p.to_vec(),
        None => (0..s.len() as i64).rev().collect(),
    };
    if perm.len() != s.len() {
        return Err(format!(
            "perm has {} entries for rank {}",
            perm.len(),
            s.len()
        ));
    }
    let mut seen = vec![false; s.len()];
    let mut shape = Vec::with_capacity(s.len());
    for &p in &perm {
        let a = ctx.axis(p, s.len())?;
        if std::mem::replace(&mut seen[a], true) {
            return Err(format!("perm {perm:?} is not a permutation"));
        }
        shape.push(s[a].clone());
    }
    Ok(vec![Inferred::tensor(ctx.dtype(0), Some(shape))])
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    let _ = (domain, op_type);
    None
}
