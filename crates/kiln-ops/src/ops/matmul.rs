//! MatMul (numpy semantics: 1-D operands are promoted and the added dim removed; batch dims
//! broadcast), also used for com.microsoft FusedMatMul without transposes.
use crate::ctx::{broadcast, InferCtx, Inferred, Result};

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let (Some(a), Some(b)) = (ctx.shape(0), ctx.shape(1)) else {
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None)]);
    };
    if a.is_empty() || b.is_empty() {
        return Err("MatMul operands must have rank >= 1".into());
    }
    let mut a2 = a.to_vec();
    let mut b2 = b.to_vec();
    if a.len() == 1 {
        a2.insert(0, kiln_ir::Dim::Known(1));
    }
    if b.len() == 1 {
        b2.push(kiln_ir::Dim::Known(1));
    }
    if ctx.domain == "com.microsoft" {
        let ra = a2.len();
        let rb = b2.len();
        if ctx.int_attr("transA", 0) != 0 {
            a2.swap(ra - 2, ra - 1);
        }
        if ctx.int_attr("transB", 0) != 0 {
            b2.swap(rb - 2, rb - 1);
        }
    }
    let (ka, kb) = (&a2[a2.len() - 1], &b2[b2.len() - 2]);
    if let (Some(x), Some(y)) = (ka.known(), kb.known()) {
        if x != y {
            return Err(format!("inner dimensions differ: {x} vs {y}"));
        }
    }
    let mut shape = broadcast(&[&a2[..a2.len() - 2], &b2[..b2.len() - 2]])?;
    if a.len() > 1 {
        shape.push(a2[a2.len() - 2].clone());
    }
    if b.len() > 1 {
        shape.push(b2[b2.len() - 1].clone());
    }
    Ok(vec![Inferred::tensor(ctx.dtype(0), Some(shape))])
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    let _ = (domain, op_type);
    None
}
