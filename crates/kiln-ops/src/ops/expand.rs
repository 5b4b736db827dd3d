//! Expand: bidirectional broadcast of the input's shape with the requested shape.
use kiln_ir::Dim;

use crate::ctx::{broadcast, InferCtx, Inferred, Result};
use crate::kernel::{broadcast_shape, broadcast_strides, one, KernelCtx};
use crate::ops::movement;
use crate::value::{Tensor, Value};

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let (Some(x), Some(target)) = (ctx.shape(0), ctx.int_values(1)) else {
        let rank = ctx.shape(1).and_then(|s| s.first()).and_then(|d| d.known());
        let shape = match (ctx.shape(0), rank) {
            (Some(x), Some(r)) => Some(vec![Dim::Unknown; x.len().max(r as usize)]),
            _ => None,
        };
        return Ok(vec![Inferred::tensor(ctx.dtype(0), shape)]);
    };
    Ok(vec![Inferred::tensor(
        ctx.dtype(0),
        Some(broadcast(&[x, &target])?),
    )])
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    match (domain, op_type) {
        ("", "Expand") => Some(run),
        _ => None,
    }
}

/// `x` broadcast to `shape` (which must already be a broadcast of `x`'s shape).
pub fn broadcast_to(x: &Tensor, shape: &[usize]) -> Result<Tensor> {
    movement::check_len(x, "input")?;
    movement::numel(shape)?;
    if x.shape == shape {
        return Ok(x.clone());
    }
    let st = broadcast_strides(&x.shape, shape);
    let offs: Vec<Vec<Option<usize>>> = shape
        .iter()
        .zip(&st)
        .map(|(&d, &s)| (0..d).map(|c| Some(c * s)).collect())
        .collect();
    Ok(Tensor::new(
        shape.to_vec(),
        movement::take_tables(&x.data, &offs, None)?,
    ))
}

fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let s = ctx.tensor(1)?;
    if s.rank() != 1 {
        return Err(format!("shape must be 1-D, got shape {:?}", s.shape));
    }
    let target = movement::dims_of(&s.to_i64s()?, "shape")?;
    let out = broadcast_shape(&[&x.shape, &target])
        .map_err(|_| format!("cannot expand shape {:?} to {target:?}", x.shape))?;
    one(broadcast_to(x, &out)?)
}

#[cfg(test)]
mod kernel_tests {
    use crate::ops::movement::testing::*;

    #[test]
    fn expand_kernel() {
        let x = f32s(&[3, 1], &[1., 2., 3.]);
        let y = run("Expand", &[], &[x.clone(), i64s(&[3], &[2, 1, 2])]).unwrap();
        assert_eq!(y.shape, vec![2, 3, 2]);
        assert_eq!(
            vals(&y),
            vec![1., 1., 2., 2., 3., 3., 1., 1., 2., 2., 3., 3.]
        );
        // A 1 in the target keeps the input's dim.
        let y = run("Expand", &[], &[x.clone(), i64s(&[1], &[1])]).unwrap();
        assert_eq!(y.shape, vec![3, 1]);
        assert!(run("Expand", &[], &[x.clone(), i64s(&[2], &[2, 1])]).is_err());
        assert!(run("Expand", &[], &[x, i64s(&[1], &[-1])]).is_err());
    }
}
