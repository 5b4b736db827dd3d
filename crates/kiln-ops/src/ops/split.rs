//! Split: sizes from the `split` attribute (before opset 13), input 1, or equal parts (the last
//! smaller when `num_outputs` does not divide the size, opset 18).
use kiln_ir::Dim;

use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{strides, KernelCtx};
use crate::ops::movement;
use crate::value::{Tensor, Value};

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
    match (domain, op_type) {
        ("", "Split") => Some(run),
        _ => None,
    }
}

/// Sizes of `n` parts of `total` when no split is given: equal when `n` divides `total`,
/// else parts of `ceil(total / n)` with the last ones smaller.
pub fn equal_parts(total: usize, n: usize) -> Vec<usize> {
    let n = n.max(1);
    let chunk = total.div_ceil(n);
    (0..n)
        .map(|i| chunk.min(total.saturating_sub(i * chunk)))
        .collect()
}

/// The parts of `x` along `axis` with the given sizes (which must add up to the dim).
pub fn split_parts(x: &Tensor, axis: usize, sizes: &[usize]) -> Result<Vec<Tensor>> {
    movement::check_len(x, "input")?;
    let total: usize = sizes.iter().sum();
    if total != x.shape[axis] {
        return Err(format!(
            "split sizes {sizes:?} add up to {total}, but axis {axis} has {}",
            x.shape[axis]
        ));
    }
    let st = strides(&x.shape);
    let mut offs = movement::identity_tables(&x.shape);
    let mut out = Vec::with_capacity(sizes.len());
    let mut pos = 0;
    for &s in sizes {
        let mut shape = x.shape.clone();
        shape[axis] = s;
        offs[axis] = (pos..pos + s).map(|c| Some(c * st[axis])).collect();
        out.push(Tensor::new(
            shape,
            movement::take_tables(&x.data, &offs, None)?,
        ));
        pos += s;
    }
    Ok(out)
}

fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    if x.rank() == 0 {
        return Err("cannot split a scalar".into());
    }
    let axis = ctx.axis(ctx.int_attr("axis", 0), x.rank())?;
    let given: Option<Vec<i64>> = match ctx.opt_tensor(1)? {
        // Some exporters pass an empty tensor for "no split".
        Some(t) if movement::numel(&t.shape)? == 0 => None,
        Some(t) => Some(t.to_i64s()?),
        None => ctx.ints_attr("split").map(|s| s.to_vec()),
    };
    let n = ctx.num_outputs;
    let sizes = match given {
        Some(s) => {
            if s.len() != n {
                return Err(format!("split gives {} sizes for {n} outputs", s.len()));
            }
            movement::dims_of(&s, "split")?
        }
        None => {
            let parts = match ctx.attr("num_outputs") {
                Some(_) => {
                    let k = ctx.int_attr("num_outputs", 0);
                    if k != n as i64 {
                        return Err(format!("num_outputs is {k} but the node has {n} outputs"));
                    }
                    n
                }
                None => n,
            };
            equal_parts(x.shape[axis], parts)
        }
    };
    Ok(split_parts(x, axis, &sizes)?
        .into_iter()
        .map(Value::Tensor)
        .collect())
}

#[cfg(test)]
mod kernel_tests {
    use crate::ops::movement::testing::*;
    use kiln_ir::Attribute;

    #[test]
    fn split_kernel() {
        let x = iota(&[2, 5]);
        let a = [Attribute::int("axis", 1)];
        let y = run_opset(
            "Split",
            18,
            &a,
            &[Some(x.clone()), Some(i64s(&[2], &[2, 3]))],
            2,
        )
        .unwrap();
        assert_eq!(y[0].shape, vec![2, 2]);
        assert_eq!(vals(&y[0]), vec![0., 1., 5., 6.]);
        assert_eq!(vals(&y[1]), vec![2., 3., 4., 7., 8., 9.]);
        // Uneven equal parts: 2, 2, 1.
        let a = [Attribute::int("axis", 1), Attribute::int("num_outputs", 3)];
        let y = run_opset("Split", 18, &a, &[Some(x.clone())], 3).unwrap();
        let shapes: Vec<_> = y.iter().map(|t| t.shape[1]).collect();
        assert_eq!(shapes, vec![2, 2, 1]);
        assert_eq!(vals(&y[2]), vec![4., 9.]);
        // Opset 11: the split attribute; zero-size parts.
        let a = [Attribute::int("axis", 1), Attribute::ints("split", &[0, 5])];
        let y = run_opset("Split", 11, &a, &[Some(x.clone())], 2).unwrap();
        assert_eq!(y[0].shape, vec![2, 0]);
        let a = [Attribute::int("axis", 1), Attribute::ints("split", &[1, 5])];
        assert!(run_opset("Split", 11, &a, &[Some(x)], 2).is_err());
    }
}
