//! Reshape (with 0 = copy and -1 = inferred, computed symbolically by cancelling dims the input
//! and output share) and Flatten.
use kiln_ir::Dim;

use crate::ctx::{InferCtx, Inferred, Result};

fn product(dims: &[Dim]) -> Dim {
    dims.iter().fold(Dim::Known(1), |acc, d| acc.mul(d))
}

/// `prod(input) / prod(known_out)`, cancelling equal factors first so that symbolic dims which
/// pass through unchanged do not block the division.
fn inferred_dim(input: &[Dim], known_out: &[Dim]) -> Result<Dim> {
    let mut num: Vec<Dim> = input.to_vec();
    let mut den: Vec<Dim> = Vec::new();
    for d in known_out {
        if let Some(i) = num.iter().position(|x| x == d) {
            num.swap_remove(i);
        } else {
            den.push(d.clone());
        }
    }
    let den = product(&den);
    let num = product(&num);
    match (num.known(), den.known()) {
        (_, Some(0)) => Err("cannot infer -1 next to a zero-sized dimension".into()),
        (Some(n), Some(k)) if n % k != 0 => Err(format!(
            "cannot reshape: {n} elements do not divide into rows of {k}"
        )),
        (_, Some(k)) => Ok(num.floor_div(k)),
        _ => Ok(Dim::Unknown),
    }
}

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let target: Option<Vec<Dim>> = if ctx.opset < 5 {
        ctx.ints_attr("shape")
            .map(|s| s.iter().map(|&d| Dim::Known(d)).collect())
    } else {
        ctx.int_values(1)
    };
    let Some(target) = target else {
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None)]);
    };
    let allow_zero = ctx.int_attr("allowzero", 0) != 0;
    let input = ctx.shape(0);
    let mut out = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, d) in target.iter().enumerate() {
        match d.known() {
            Some(-1) => {
                if infer_at.replace(i).is_some() {
                    return Err("shape has more than one -1".into());
                }
                out.push(Dim::Unknown);
            }
            Some(0) if !allow_zero => match input {
                Some(s) if i < s.len() => out.push(s[i].clone()),
                Some(s) => {
                    return Err(format!(
                        "shape copies dimension {i} (0) but the input has rank {}",
                        s.len()
                    ))
                }
                None => out.push(Dim::Unknown),
            },
            Some(v) if v < -1 => return Err(format!("invalid dimension {v} in shape")),
            _ => out.push(d.clone()),
        }
    }
    if let Some(i) = infer_at {
        if let Some(s) = input {
            let others: Vec<Dim> = out
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, d)| d.clone())
                .collect();
            out[i] = inferred_dim(s, &others)?;
        }
    } else if let Some(s) = input {
        if let (Some(a), Some(b)) = (product(s).known(), product(&out).known()) {
            if a != b {
                return Err(format!("cannot reshape {a} elements into {b}"));
            }
        }
    }
    Ok(vec![Inferred::tensor(ctx.dtype(0), Some(out))])
}

pub fn infer_flatten(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let Some(s) = ctx.shape(0) else {
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None)]);
    };
    let axis = ctx.int_attr("axis", 1);
    let r = s.len() as i64;
    if axis < -r || axis > r {
        return Err(format!("axis {axis} is out of range for rank {r}"));
    }
    let axis = if axis < 0 { axis + r } else { axis } as usize;
    Ok(vec![Inferred::tensor(
        ctx.dtype(0),
        Some(vec![product(&s[..axis]), product(&s[axis..])]),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::testing::{ctx, f32_ty};
    use kiln_ir::{DataType, Tensor, ValueType};

    fn reshape(x: &[Dim], target: &[i64]) -> Result<Vec<Dim>> {
        let types = [
            f32_ty(x),
            ValueType::tensor(DataType::I64, vec![Dim::Known(target.len() as i64)]),
        ];
        let consts = [None, Some(Tensor::from_i64(vec![target.len()], target))];
        let out = infer(&ctx("Reshape", &types, &consts, &[]))?;
        Ok(out[0].ty.as_ref().unwrap().shape().unwrap().to_vec())
    }

    #[test]
    fn minus_one_cancels_shared_dims() {
        let (b, h, w) = (Dim::sym("b"), Dim::sym("h"), Dim::sym("w"));
        let s = reshape(&[b.clone(), 64.into(), h.clone(), w.clone()], &[0, 64, -1]).unwrap();
        assert_eq!(s, vec![b.clone(), 64.into(), h.mul(&w)]);
        let s = reshape(&[2.into(), 3.into(), 4.into()], &[-1, 4]).unwrap();
        assert_eq!(s, vec![Dim::Known(6), Dim::Known(4)]);
    }

    #[test]
    fn refusals() {
        let x = [2.into(), 3.into()];
        assert!(reshape(&x, &[4, -1]).unwrap_err().contains("do not divide"));
        assert!(reshape(&x, &[-1, -1])
            .unwrap_err()
            .contains("more than one"));
        assert!(reshape(&x, &[5]).unwrap_err().contains("cannot reshape"));
        assert!(reshape(&x, &[0, 0, 0]).unwrap_err().contains("rank"));
    }
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    let _ = (domain, op_type);
    None
}
