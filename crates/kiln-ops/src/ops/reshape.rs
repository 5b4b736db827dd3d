//! Reshape (with 0 = copy and -1 = inferred, computed symbolically by cancelling dims the input
//! and output share) and Flatten.
use kiln_ir::Dim;

use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{one, KernelCtx, Result as KResult};
use crate::ops::movement;
use crate::value::Value;

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
    match (domain, op_type) {
        ("", "Reshape") => Some(run_reshape),
        ("", "Flatten") => Some(run_flatten),
        _ => None,
    }
}

/// The output shape of Reshape: 0 copies the input dim (unless `allow_zero`), one -1 takes
/// what is left.
pub fn reshape_target(input: &[usize], target: &[i64], allow_zero: bool) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, &d) in target.iter().enumerate() {
        match d {
            -1 => {
                if infer_at.replace(i).is_some() {
                    return Err("shape has more than one -1".into());
                }
                out.push(1);
            }
            0 if !allow_zero => match input.get(i) {
                Some(&n) => out.push(n),
                None => {
                    return Err(format!(
                        "shape copies dimension {i} (0) but the input has rank {}",
                        input.len()
                    ))
                }
            },
            d if d < 0 => return Err(format!("invalid dimension {d} in shape")),
            d => out.push(usize::try_from(d).map_err(|_| format!("dimension {d} is too large"))?),
        }
    }
    let n = movement::numel(input)?;
    if let Some(i) = infer_at {
        if allow_zero && target.contains(&0) {
            return Err("shape has both -1 and 0 with allowzero".into());
        }
        let rest = out
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or("shape is too large")?;
        if rest == 0 || n % rest != 0 {
            return Err(format!(
                "cannot reshape {input:?} into {target:?}: {n} elements do not divide into rows of {rest}"
            ));
        }
        out[i] = n / rest;
    } else {
        let m = movement::numel(&out)?;
        if m != n {
            return Err(format!(
                "cannot reshape {input:?} ({n} elements) into {out:?} ({m} elements)"
            ));
        }
    }
    Ok(out)
}

fn run_reshape(ctx: &KernelCtx) -> KResult<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let target = if ctx.opset < 5 {
        ctx.ints_attr("shape")
            .ok_or("Reshape-1 needs the shape attribute")?
            .to_vec()
    } else {
        let s = ctx.tensor(1)?;
        if s.rank() != 1 {
            return Err(format!("shape must be 1-D, got shape {:?}", s.shape));
        }
        s.to_i64s()?
    };
    let allow_zero = ctx.int_attr("allowzero", 0) != 0;
    let shape = reshape_target(&x.shape, &target, allow_zero)?;
    one(movement::reshaped(x, shape))
}

fn run_flatten(ctx: &KernelCtx) -> KResult<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let r = x.rank() as i64;
    let axis = ctx.int_attr("axis", 1);
    if axis < -r || axis > r {
        return Err(format!("axis {axis} is out of range for rank {r}"));
    }
    let axis = if axis < 0 { axis + r } else { axis } as usize;
    let outer = movement::numel(&x.shape[..axis])?;
    let inner = movement::numel(&x.shape[axis..])?;
    one(movement::reshaped(x, vec![outer, inner]))
}

#[cfg(test)]
mod kernel_tests {
    use crate::ops::movement::testing::*;
    use kiln_ir::Attribute;

    #[test]
    fn reshape_kernel() {
        let x = iota(&[2, 3, 4]);
        let y = run("Reshape", &[], &[x.clone(), i64s(&[3], &[0, -1, 2])]).unwrap();
        assert_eq!(y.shape, vec![2, 6, 2]);
        assert_eq!(vals(&y), vals(&x));
        let y = run("Reshape", &[], &[x.clone(), i64s(&[2], &[-1, 4])]).unwrap();
        assert_eq!(y.shape, vec![6, 4]);
        assert!(run("Reshape", &[], &[x.clone(), i64s(&[1], &[5])]).is_err());
        assert!(run("Reshape", &[], &[x.clone(), i64s(&[2], &[-1, -1])]).is_err());
        assert!(run("Reshape", &[], &[x.clone(), i64s(&[2], &[5, -1])]).is_err());
        // allowzero keeps a literal 0.
        let e = f32s(&[0, 3], &[]);
        let az = [Attribute::int("allowzero", 1)];
        let y = run("Reshape", &az, &[e.clone(), i64s(&[2], &[3, 0])]).unwrap();
        assert_eq!(y.shape, vec![3, 0]);
        let y = run("Reshape", &[], &[e, i64s(&[2], &[3, 0])]).unwrap_err();
        assert!(y.contains("cannot reshape"), "{y}");
    }

    #[test]
    fn flatten_kernel() {
        let x = iota(&[2, 3, 4]);
        let f = |a: i64| {
            run("Flatten", &[Attribute::int("axis", a)], &[x.clone()])
                .unwrap()
                .shape
        };
        assert_eq!(f(0), vec![1, 24]);
        assert_eq!(f(2), vec![6, 4]);
        assert_eq!(f(3), vec![24, 1]);
        assert_eq!(f(-1), vec![6, 4]);
        assert!(run("Flatten", &[Attribute::int("axis", 4)], &[x]).is_err());
    }
}
