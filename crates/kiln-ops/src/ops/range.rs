//! Range: `max(ceil((limit - start) / delta), 0)` elements, symbolic when start and delta are
//! whole numbers and the limit comes from a shape.
use kiln_ir::Dim;

use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{one, KernelCtx};
use crate::ops::{cast, movement};
use crate::value::{Data, Tensor, Value};

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let dtype = ctx.dtype(0);
    let scalar = |i: usize| -> Option<Dim> {
        let v = ctx.integral_values(i)?;
        (v.len() == 1).then(|| v[0].clone())
    };
    let len = match (scalar(0), scalar(1), scalar(2).and_then(|d| d.known())) {
        (_, _, Some(0)) => return Err("delta cannot be 0".into()),
        (Some(s), Some(l), Some(delta)) if delta > 0 => {
            l.sub(&s).ceil_div(delta).max(&Dim::Known(0))
        }
        (Some(s), Some(l), Some(delta)) => match delta.checked_neg() {
            Some(d) => s.sub(&l).ceil_div(d).max(&Dim::Known(0)),
            None => Dim::Unknown,
        },
        _ => {
            // Fractional float ranges: only when all three are constants.
            let f = |i: usize| ctx.float_values(i).filter(|v| v.len() == 1).map(|v| v[0]);
            match (f(0), f(1), f(2)) {
                (Some(s), Some(l), Some(d)) if d != 0.0 => {
                    Dim::Known(((l - s) / d).ceil().max(0.0) as i64)
                }
                _ => Dim::Unknown,
            }
        }
    };
    Ok(vec![Inferred::tensor(dtype, Some(vec![len]))])
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    match (domain, op_type) {
        ("", "Range") => Some(run),
        _ => None,
    }
}

fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let t: Vec<&Tensor> = (0..3).map(|i| ctx.tensor(i)).collect::<Result<_>>()?;
    let dtype = t[0].dtype();
    for (i, x) in t.iter().enumerate() {
        if movement::numel(&x.shape)? != 1 {
            return Err(format!(
                "input {i} must be a scalar, got shape {:?}",
                x.shape
            ));
        }
        if x.dtype() != dtype {
            return Err(format!("inputs have types {dtype} and {}", x.dtype()));
        }
    }
    if dtype.is_int() {
        let v: Vec<i128> = t
            .iter()
            .map(|x| Ok(x.to_i64s()?[0] as i128))
            .collect::<Result<_>>()?;
        let (start, limit, delta) = (v[0], v[1], v[2]);
        if delta == 0 {
            return Err("delta cannot be 0".into());
        }
        let n = if delta > 0 {
            (limit - start + delta - 1).div_euclid(delta)
        } else {
            (start - limit - delta - 1).div_euclid(-delta)
        }
        .max(0);
        let n = usize::try_from(n).map_err(|_| format!("range of {n} elements is too large"))?;
        movement::numel(&[n])?;
        let vals: Vec<i64> = (0..n as i128).map(|i| (start + i * delta) as i64).collect();
        let out = Tensor::new(vec![n], Data::I64(vals));
        return one(cast::cast(&out, dtype, Default::default())?);
    }
    if !dtype.is_float() {
        return Err(format!("Range is not defined for {dtype}"));
    }
    let v: Vec<f64> = t
        .iter()
        .map(|x| Ok(cast::to_f64s(x)?[0]))
        .collect::<Result<_>>()?;
    let (start, limit, delta) = (v[0], v[1], v[2]);
    if delta == 0.0 || !delta.is_finite() || !start.is_finite() || limit.is_nan() {
        return Err(format!(
            "cannot make a range from {start} to {limit} by {delta}"
        ));
    }
    let n = ((limit - start) / delta).ceil().max(0.0);
    if n > movement::MAX_OUTPUT_ELEMENTS as f64 {
        return Err(format!("range of {n} elements is too large"));
    }
    let n = n as usize;
    let vals: Vec<f64> = (0..n).map(|i| start + i as f64 * delta).collect();
    let out = Tensor::new(vec![n], Data::F64(vals));
    one(cast::cast(&out, dtype, Default::default())?)
}

#[cfg(test)]
mod kernel_tests {
    use crate::ops::movement::testing::*;
    use crate::value::Tensor;

    #[test]
    fn range_kernel() {
        let s = |v: f32| f32s(&[], &[v]);
        let y = run("Range", &[], &[s(1.0), s(2.0), s(0.25)]).unwrap();
        assert_eq!(vals(&y), vec![1.0, 1.25, 1.5, 1.75]);
        let y = run("Range", &[], &[s(1.0), s(2.0), s(0.3)]).unwrap();
        assert_eq!(y.shape, vec![4]);
        let i = |v: i32| Tensor::from_vec(vec![], vec![v]);
        let y = run("Range", &[], &[i(10), i(6), i(-3)]).unwrap();
        assert_eq!(y.as_slice::<i32>().unwrap(), &[10, 7]);
        let y = run("Range", &[], &[i(1), i(0), i(1)]).unwrap();
        assert_eq!(y.shape, vec![0]);
        assert!(run("Range", &[], &[i(1), i(5), i(0)]).is_err());
        assert!(run("Range", &[], &[i(1), i(5), i64s(&[], &[1])]).is_err());
    }
}
