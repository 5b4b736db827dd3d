//! Gather: `data[:axis] + indices.shape + data[axis+1:]`; gathering from a known 1-D integer
//! value (`Shape` → `Gather`) gives a known value.
use crate::ctx::{InferCtx, Inferred, Result, SymValue};
use crate::kernel::{one, KernelCtx};
use crate::ops::movement;
use crate::value::{Tensor, Value};

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
    match (domain, op_type) {
        ("", "Gather") => Some(run),
        _ => None,
    }
}

/// `data` gathered along `axis` at `indices` (negative ones count from the end).
pub fn gather(data: &Tensor, indices: &Tensor, axis: usize) -> Result<Tensor> {
    movement::check_len(data, "data")?;
    movement::check_len(indices, "indices")?;
    let ix = indices.to_i64s()?;
    let n = data.shape[axis];
    let ix = ix
        .iter()
        .map(|&i| movement::norm_index(i, n, "index"))
        .collect::<Result<Vec<usize>>>()?;
    let mut shape = data.shape[..axis].to_vec();
    shape.extend_from_slice(&indices.shape);
    shape.extend_from_slice(&data.shape[axis + 1..]);
    movement::numel(&shape)?;
    let outer: usize = data.shape[..axis].iter().product();
    let inner: usize = data.shape[axis + 1..].iter().product();
    // Data seen as [outer, n, inner], the output as [outer, indices, inner].
    let offs = vec![
        (0..outer).map(|o| Some(o * n * inner)).collect(),
        ix.iter().map(|&j| Some(j * inner)).collect(),
        (0..inner).map(Some).collect(),
    ];
    Ok(Tensor::new(
        shape,
        movement::take_tables(&data.data, &offs, None)?,
    ))
}

fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let data = ctx.tensor(0)?;
    let indices = ctx.tensor(1)?;
    if data.rank() == 0 {
        return Err("data must have rank >= 1".into());
    }
    let axis = ctx.axis(ctx.int_attr("axis", 0), data.rank())?;
    one(gather(data, indices, axis)?)
}

#[cfg(test)]
mod kernel_tests {
    use crate::ops::movement::testing::*;
    use crate::value::Tensor;
    use kiln_ir::Attribute;

    #[test]
    fn gather_kernel() {
        let x = iota(&[3, 2]);
        let y = run("Gather", &[], &[x.clone(), i64s(&[2, 2], &[0, 2, -1, 1])]).unwrap();
        assert_eq!(y.shape, vec![2, 2, 2]);
        assert_eq!(vals(&y), vec![0., 1., 4., 5., 4., 5., 2., 3.]);
        let y = run(
            "Gather",
            &[Attribute::int("axis", 1)],
            &[x.clone(), i64s(&[], &[1])],
        )
        .unwrap();
        assert_eq!(y.shape, vec![3]);
        assert_eq!(vals(&y), vec![1., 3., 5.]);
        let i32s = Tensor::from_vec(vec![1], vec![1i32]);
        assert_eq!(
            run("Gather", &[], &[x.clone(), i32s]).unwrap().shape,
            vec![1, 2]
        );
        let e = run("Gather", &[], &[x, i64s(&[1], &[3])]).unwrap_err();
        assert!(e.contains("index 3"), "{e}");
    }
}
