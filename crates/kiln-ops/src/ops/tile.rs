//! Tile: each dim multiplied by its repeat count.
use kiln_ir::Dim;

use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{one, strides, KernelCtx};
use crate::ops::movement;
use crate::value::{Tensor, Value};

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let Some(x) = ctx.shape(0) else {
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None)]);
    };
    let Some(reps) = ctx.int_values(1) else {
        return Ok(vec![Inferred::tensor(
            ctx.dtype(0),
            Some(vec![Dim::Unknown; x.len()]),
        )]);
    };
    if reps.len() != x.len() {
        return Err(format!(
            "repeats has {} entries for rank {}",
            reps.len(),
            x.len()
        ));
    }
    let shape = x.iter().zip(&reps).map(|(d, r)| d.mul(r)).collect();
    Ok(vec![Inferred::tensor(ctx.dtype(0), Some(shape))])
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    match (domain, op_type) {
        ("", "Tile") => Some(run),
        _ => None,
    }
}

fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    movement::check_len(x, "input")?;
    let r = x.rank();
    let repeats: Vec<i64> = if ctx.opset < 6 {
        // Tile-1: a number of tiles along one axis.
        let tiles = ctx.tensor(1)?.to_i64s()?;
        let axis = ctx.tensor(2)?.to_i64s()?;
        let (&[t], &[a]) = (tiles.as_slice(), axis.as_slice()) else {
            return Err("tiles and axis must be scalars".into());
        };
        let a = ctx.axis(a, r)?;
        (0..r).map(|i| if i == a { t } else { 1 }).collect()
    } else {
        let t = ctx.tensor(1)?;
        if t.rank() != 1 {
            return Err(format!("repeats must be 1-D, got shape {:?}", t.shape));
        }
        t.to_i64s()?
    };
    if repeats.len() != r {
        return Err(format!(
            "repeats has {} entries for rank {r}",
            repeats.len()
        ));
    }
    let reps = movement::dims_of(&repeats, "repeats")?;
    let shape: Vec<usize> = x
        .shape
        .iter()
        .zip(&reps)
        .map(|(&d, &k)| {
            d.checked_mul(k)
                .ok_or_else(|| "output is too large".to_string())
        })
        .collect::<Result<_>>()?;
    movement::numel(&shape)?;
    let st = strides(&x.shape);
    let offs: Vec<Vec<Option<usize>>> = x
        .shape
        .iter()
        .zip(&shape)
        .zip(&st)
        .map(|((&d, &o), &s)| (0..o).map(|c| Some(c % d * s)).collect())
        .collect();
    one(Tensor::new(
        shape,
        movement::take_tables(&x.data, &offs, None)?,
    ))
}

#[cfg(test)]
mod kernel_tests {
    use crate::ops::movement::testing::*;

    #[test]
    fn tile_kernel() {
        let x = f32s(&[2, 2], &[1., 2., 3., 4.]);
        let y = run("Tile", &[], &[x.clone(), i64s(&[2], &[1, 2])]).unwrap();
        assert_eq!(y.shape, vec![2, 4]);
        assert_eq!(vals(&y), vec![1., 2., 1., 2., 3., 4., 3., 4.]);
        let y = run("Tile", &[], &[x.clone(), i64s(&[2], &[2, 0])]).unwrap();
        assert_eq!(y.shape, vec![4, 0]);
        assert!(run("Tile", &[], &[x.clone(), i64s(&[1], &[2])]).is_err());
        assert!(run("Tile", &[], &[x, i64s(&[2], &[-1, 1])]).is_err());
    }
}
