//! Where: broadcast of condition, X and Y; the type of X. The select walks the three inputs
//! with merged strides (no index vectors), as masks in attention graphs broadcast over scores.
use crate::ctx::{broadcast, InferCtx, Inferred, Result};
use crate::kernel::{
    broadcast_index, broadcast_shape, broadcast_strides, one, walk3_broadcast, KernelCtx,
};
use crate::ops::movement::{self, per_item, Item};
use crate::value::{Data, Tensor, Value};

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let shapes: Option<Vec<_>> = (0..3).map(|i| ctx.shape(i)).collect();
    let shape = match shapes {
        Some(s) => Some(broadcast(&s)?),
        None => None,
    };
    Ok(vec![Inferred::tensor(ctx.dtype(1), shape)])
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    match (domain, op_type) {
        ("", "Where") => Some(run),
        _ => None,
    }
}

fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let c = ctx.tensor(0)?;
    let x = ctx.tensor(1)?;
    let y = ctx.tensor(2)?;
    let Data::Bool(cond) = &c.data else {
        return Err(format!("condition must be bool, got {}", c.dtype()));
    };
    for (t, what) in [(c, "condition"), (x, "X"), (y, "Y")] {
        movement::check_len(t, what)?;
    }
    if x.dtype() != y.dtype() {
        return Err(format!("X is {} and Y {}", x.dtype(), y.dtype()));
    }
    let shape = broadcast_shape(&[&c.shape, &x.shape, &y.shape])?;
    let n = movement::numel(&shape)?;
    fn select<T: Item + Default>(
        cond: &[bool],
        shapes: [&[usize]; 3],
        x: &Data,
        y: &Data,
        n: usize,
    ) -> Result<Data> {
        let (xv, yv) = (T::slice(x).unwrap_or(&[]), T::slice(y).unwrap_or(&[]));
        let mut out = vec![T::default(); n];
        walk3_broadcast(shapes, |o, ic, ix, iy| {
            out[o] = if cond[ic] {
                xv[ix].clone()
            } else {
                yv[iy].clone()
            };
        })?;
        Ok(T::wrap(out))
    }
    let shapes = [&c.shape[..], &x.shape[..], &y.shape[..]];
    let data = per_item!(&x.data, T => select::<T>(cond, shapes, &x.data, &y.data, n)?, packed => {
        // Packed types (8-bit floats, sub-byte ints) go through the generic gather.
        let ic = broadcast_index(&shape, &broadcast_strides(&c.shape, &shape));
        let ix = broadcast_index(&shape, &broadcast_strides(&x.shape, &shape));
        let iy = broadcast_index(&shape, &broadcast_strides(&y.shape, &shape));
        let pairs: Vec<(usize, usize)> = (0..ic.len())
            .map(|i| if cond[ic[i]] { (0, ix[i]) } else { (1, iy[i]) })
            .collect();
        movement::take_from(&[&x.data, &y.data], &pairs)?
    });
    one(Tensor::new(shape, data))
}

#[cfg(test)]
mod kernel_tests {
    use crate::ops::movement::testing::*;
    use crate::value::Tensor;

    #[test]
    fn where_kernel() {
        let c = Tensor::from_vec(vec![2, 1], vec![true, false]);
        let x = f32s(&[2], &[1., 2.]);
        let y = f32s(&[], &[9.]);
        let out = run("Where", &[], &[c.clone(), x.clone(), y]).unwrap();
        assert_eq!(out.shape, vec![2, 2]);
        assert_eq!(vals(&out), vec![1., 2., 9., 9.]);
        assert!(run("Where", &[], &[c.clone(), x.clone(), i64s(&[], &[1])]).is_err());
        assert!(run("Where", &[], &[c, x, f32s(&[3], &[0.; 3])]).is_err());
    }
}
