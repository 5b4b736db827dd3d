//! Squeeze and Unsqueeze (axes from the attribute before opset 13, from input 1 after), with
//! scalar <-> one-element vector values carried through.
use kiln_ir::Dim;

use crate::ctx::{InferCtx, Inferred, Result, SymValue};
use crate::kernel::{one, KernelCtx};
use crate::ops::movement;
use crate::value::Value;

fn axes(ctx: &InferCtx) -> Option<Vec<i64>> {
    if ctx.has_input(1) {
        ctx.known_ints(1)
    } else {
        ctx.ints_attr("axes").map(|a| a.to_vec())
    }
}

pub fn infer_squeeze(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let Some(s) = ctx.shape(0) else {
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None)]);
    };
    let has_axes = ctx.has_input(1) || ctx.attr("axes").is_some();
    let shape: Option<Vec<Dim>> = match axes(ctx) {
        Some(ax) if has_axes => {
            let mut drop = Vec::new();
            for a in ax {
                let a = ctx.axis(a, s.len())?;
                if let Some(v) = s[a].known() {
                    if v != 1 {
                        return Err(format!("cannot squeeze dimension {a} of size {v}"));
                    }
                }
                drop.push(a);
            }
            Some(
                s.iter()
                    .enumerate()
                    .filter(|(i, _)| !drop.contains(i))
                    .map(|(_, d)| d.clone())
                    .collect(),
            )
        }
        None if has_axes => None,
        _ => {
            if s.iter().any(|d| d.known().is_none()) {
                None
            } else {
                Some(s.iter().filter(|d| d.known() != Some(1)).cloned().collect())
            }
        }
    };
    let value = match (&shape, ctx.int_values(0)) {
        (Some(sh), Some(v)) if sh.is_empty() && v.len() == 1 => Some(SymValue {
            scalar: true,
            elems: v,
        }),
        _ => None,
    };
    Ok(vec![Inferred::tensor(ctx.dtype(0), shape).with_value(value)])
}

pub fn infer_unsqueeze(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let (Some(s), Some(ax)) = (ctx.shape(0), axes(ctx)) else {
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None)]);
    };
    let rank = s.len() + ax.len();
    let mut positions = Vec::new();
    for a in ax {
        let a = ctx.axis(a, rank)?;
        if positions.contains(&a) {
            return Err(format!("axis {a} is given twice"));
        }
        positions.push(a);
    }
    let mut rest = s.iter();
    let shape: Vec<Dim> = (0..rank)
        .map(|i| {
            if positions.contains(&i) {
                Dim::Known(1)
            } else {
                rest.next().cloned().unwrap_or(Dim::Unknown)
            }
        })
        .collect();
    let value = match ctx.int_values(0) {
        Some(v) if s.is_empty() => Some(SymValue {
            scalar: false,
            elems: v,
        }),
        _ => None,
    };
    Ok(vec![
        Inferred::tensor(ctx.dtype(0), Some(shape)).with_value(value)
    ])
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    match (domain, op_type) {
        ("", "Squeeze") => Some(run_squeeze),
        ("", "Unsqueeze") => Some(run_unsqueeze),
        _ => None,
    }
}

/// The axes list: input 1 when given (opset 13), else the attribute.
fn kernel_axes(ctx: &KernelCtx) -> Result<Option<Vec<i64>>> {
    if let Some(t) = ctx.opt_tensor(1)? {
        if t.rank() > 1 {
            return Err(format!("axes must be 1-D, got shape {:?}", t.shape));
        }
        return Ok(Some(t.to_i64s()?));
    }
    Ok(ctx.ints_attr("axes").map(|a| a.to_vec()))
}

fn run_squeeze(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let shape: Vec<usize> = match kernel_axes(ctx)? {
        Some(axes) => {
            let axes = movement::norm_axes(&axes, x.rank())?;
            if let Some(&a) = axes.iter().find(|&&a| x.shape[a] != 1) {
                return Err(format!(
                    "cannot squeeze axis {a} of size {} (shape {:?})",
                    x.shape[a], x.shape
                ));
            }
            (0..x.rank())
                .filter(|a| !axes.contains(a))
                .map(|a| x.shape[a])
                .collect()
        }
        None => x.shape.iter().copied().filter(|&d| d != 1).collect(),
    };
    one(movement::reshaped(x, shape))
}

fn run_unsqueeze(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let axes = kernel_axes(ctx)?.ok_or("Unsqueeze needs axes")?;
    let rank = x.rank() + axes.len();
    let axes = movement::norm_axes(&axes, rank)?;
    let mut dims = x.shape.iter();
    let shape: Vec<usize> = (0..rank)
        .map(|a| {
            if axes.contains(&a) {
                1
            } else {
                dims.next().copied().unwrap_or(1)
            }
        })
        .collect();
    one(movement::reshaped(x, shape))
}

#[cfg(test)]
mod kernel_tests {
    use crate::ops::movement::testing::*;
    use kiln_ir::Attribute;

    #[test]
    fn squeeze_kernels() {
        let x = iota(&[1, 3, 1, 2]);
        assert_eq!(run("Squeeze", &[], &[x.clone()]).unwrap().shape, vec![3, 2]);
        let y = run("Squeeze", &[], &[x.clone(), i64s(&[1], &[-2])]).unwrap();
        assert_eq!(y.shape, vec![1, 3, 2]);
        assert_eq!(vals(&y), vals(&x));
        assert!(run("Squeeze", &[], &[x.clone(), i64s(&[1], &[1])]).is_err());
        assert!(run("Squeeze", &[], &[x.clone(), i64s(&[1], &[4])]).is_err());
        let y = run("Unsqueeze", &[], &[iota(&[3, 2]), i64s(&[3], &[4, 0, -3])]).unwrap();
        assert_eq!(y.shape, vec![1, 3, 1, 2, 1]);
        assert!(run("Unsqueeze", &[], &[iota(&[3]), i64s(&[2], &[0, -3])]).is_err());
        // Opset 11: axes from the attribute.
        let y = super::super::movement::testing::run_opset(
            "Unsqueeze",
            11,
            &[Attribute::ints("axes", &[0])],
            &[Some(iota(&[2]))],
            1,
        )
        .unwrap();
        assert_eq!(y[0].shape, vec![1, 2]);
    }
}
