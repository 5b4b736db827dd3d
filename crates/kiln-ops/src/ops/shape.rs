//! Shape (its output value is the input's dims, symbolic ones included) and Size.
use kiln_ir::{DataType, Dim};

use crate::ctx::{InferCtx, Inferred, Result, SymValue};
use crate::kernel::{one, KernelCtx};
use crate::value::{Tensor, Value};

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let Some(s) = ctx.shape(0) else {
        return Ok(vec![Inferred::tensor(
            Some(DataType::I64),
            Some(vec![Dim::Unknown]),
        )]);
    };
    let r = s.len() as i64;
    let clamp = |v: i64| (if v < 0 { v.saturating_add(r) } else { v }).clamp(0, r) as usize;
    let start = clamp(ctx.int_attr("start", 0));
    let end = clamp(ctx.int_attr("end", r));
    let elems: Vec<Dim> = if start < end {
        s[start..end].to_vec()
    } else {
        Vec::new()
    };
    Ok(vec![Inferred::tensor(
        Some(DataType::I64),
        Some(vec![Dim::Known(elems.len() as i64)]),
    )
    .with_value(Some(SymValue {
        scalar: false,
        elems,
    }))])
}

pub fn infer_size(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let value = ctx.shape(0).map(|s| SymValue {
        scalar: true,
        elems: vec![s.iter().fold(Dim::Known(1), |a, d| a.mul(d))],
    });
    Ok(vec![
        Inferred::tensor(Some(DataType::I64), Some(vec![])).with_value(value)
    ])
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    match (domain, op_type) {
        ("", "Shape") => Some(run_shape),
        ("", "Size") => Some(run_size),
        _ => None,
    }
}

/// `start` and `end` of Shape-15: negative values count from the end, then both clamp.
fn shape_range(r: usize, start: i64, end: i64) -> (usize, usize) {
    let r_i = r as i64;
    let clamp = |v: i64| (if v < 0 { v.saturating_add(r_i) } else { v }).clamp(0, r_i) as usize;
    (clamp(start), clamp(end))
}

fn run_shape(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let shape: &[usize] = match ctx.value(0)? {
        Value::Tensor(t) => &t.shape,
        _ => return Err("Shape needs a tensor input".into()),
    };
    let r = shape.len();
    let (start, end) = shape_range(r, ctx.int_attr("start", 0), ctx.int_attr("end", r as i64));
    let dims: Vec<i64> = if start < end {
        shape[start..end].iter().map(|&d| d as i64).collect()
    } else {
        Vec::new()
    };
    one(Tensor::from_vec(vec![dims.len()], dims))
}

fn run_size(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let t = ctx.tensor(0)?;
    let n = crate::ops::movement::numel(&t.shape)?;
    one(Tensor::scalar(n as i64))
}

#[cfg(test)]
mod kernel_tests {
    use crate::ops::movement::testing::*;
    use kiln_ir::Attribute;

    #[test]
    fn shape_and_size() {
        let x = iota(&[2, 3, 4]);
        let y = run("Shape", &[], &[x.clone()]).unwrap();
        assert_eq!(y.as_slice::<i64>().unwrap(), &[2, 3, 4]);
        let a = [Attribute::int("start", -2), Attribute::int("end", 100)];
        let y = run("Shape", &a, &[x.clone()]).unwrap();
        assert_eq!(y.as_slice::<i64>().unwrap(), &[3, 4]);
        let a = [Attribute::int("start", 2), Attribute::int("end", 1)];
        assert_eq!(run("Shape", &a, &[x.clone()]).unwrap().shape, vec![0]);
        let a = [Attribute::int("start", i64::MIN)];
        assert_eq!(run("Shape", &a, &[x.clone()]).unwrap().shape, vec![3]);
        let y = run("Size", &[], &[x]).unwrap();
        assert_eq!(y.shape, Vec::<usize>::new());
        assert_eq!(y.as_slice::<i64>().unwrap(), &[24]);
    }
}
