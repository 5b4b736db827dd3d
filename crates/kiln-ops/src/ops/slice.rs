//! Slice (attributes before opset 10, inputs after), with symbolic sizes for the common forms
//! (from a constant to the end, a constant length) and known integer values sliced too.
use kiln_ir::Dim;

use crate::ctx::{InferCtx, Inferred, Result, SymValue};
use crate::kernel::{one, strides, KernelCtx};
use crate::ops::movement;
use crate::value::{Tensor, Value};

/// Ends at or beyond this mean "to the end" whatever the dim is (exporters write INT64_MAX or
/// INT32_MAX).
const HUGE: i64 = 1 << 30;

/// Length of `start:end:step` over a dim of size `d`, following ONNX's clamping rules.
fn slice_len(d: &Dim, start: i64, end: i64, step: i64) -> Dim {
    if let Some(n) = d.known() {
        // i128: starts, ends and steps may be anywhere in i64.
        let (n, start, end, step) = (n as i128, start as i128, end as i128, step as i128);
        let clamp = |v: i128, lo: i128, hi: i128| v.max(lo).min(hi);
        let norm = |v: i128| if v < 0 { v + n } else { v };
        let (s, e) = if step > 0 {
            (clamp(norm(start), 0, n), clamp(norm(end), 0, n))
        } else {
            (clamp(norm(start), -1, n - 1), clamp(norm(end), -1, n - 1))
        };
        let len = if step > 0 {
            (e - s + step - 1).div_euclid(step)
        } else {
            (s - e - step - 1).div_euclid(-step)
        };
        return Dim::Known(len.max(0) as i64);
    }
    if step <= 0 {
        return Dim::Unknown;
    }
    // Symbolic dim: express start and end as `d + c` or a plain number, clamped by min/max.
    let bound = |v: i64| -> Dim {
        if v >= HUGE {
            d.clone()
        } else if v < 0 {
            d.add_const(v).max(&Dim::Known(0))
        } else if v == 0 {
            Dim::Known(0)
        } else {
            Dim::Known(v).min(d)
        }
    };
    let (s, e) = (bound(start), bound(end));
    e.sub(&s).ceil_div(step).max(&Dim::Known(0))
}

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let Some(shape) = ctx.shape(0) else {
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None)]);
    };
    let rank = shape.len();
    let (starts, ends, axes, steps) = if ctx.opset < 10 {
        (
            ctx.ints_attr("starts").map(|v| v.to_vec()),
            ctx.ints_attr("ends").map(|v| v.to_vec()),
            ctx.ints_attr("axes").map(|v| v.to_vec()),
            None,
        )
    } else {
        (
            ctx.known_ints(1),
            ctx.known_ints(2),
            if ctx.has_input(3) {
                ctx.known_ints(3)
            } else {
                None
            },
            if ctx.has_input(4) {
                ctx.known_ints(4)
            } else {
                None
            },
        )
    };
    let axes_missing =
        ctx.opset < 10 && ctx.attr("axes").is_none() || ctx.opset >= 10 && !ctx.has_input(3);
    let steps_missing = ctx.opset < 10 || !ctx.has_input(4);
    let (Some(starts), Some(ends)) = (starts, ends) else {
        return Ok(vec![Inferred::tensor(
            ctx.dtype(0),
            Some(vec![Dim::Unknown; rank]),
        )]);
    };
    let axes = match axes {
        Some(a) => a,
        None if axes_missing => (0..starts.len() as i64).collect(),
        None => {
            return Ok(vec![Inferred::tensor(
                ctx.dtype(0),
                Some(vec![Dim::Unknown; rank]),
            )])
        }
    };
    let steps = match steps {
        Some(s) => s,
        None if steps_missing => vec![1; starts.len()],
        None => {
            return Ok(vec![Inferred::tensor(
                ctx.dtype(0),
                Some(vec![Dim::Unknown; rank]),
            )])
        }
    };
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err("starts, ends, axes and steps differ in length".into());
    }
    let mut out = shape.to_vec();
    let mut seen = Vec::new();
    let mut spec = Vec::new();
    for i in 0..starts.len() {
        let a = ctx.axis(axes[i], rank)?;
        if seen.contains(&a) {
            return Err(format!("axis {a} is sliced twice"));
        }
        seen.push(a);
        if steps[i] == 0 {
            return Err("step cannot be 0".into());
        }
        out[a] = slice_len(&shape[a], starts[i], ends[i], steps[i]);
        spec.push((starts[i], ends[i], steps[i]));
    }
    // Slicing a known 1-D integer value (e.g. part of a Shape).
    let value = match (rank, ctx.int_values(0)) {
        (1, Some(v)) if spec.len() == 1 => {
            let (s, e, st) = spec[0];
            let n = v.len() as i64;
            let norm = |x: i64| if x < 0 { x.saturating_add(n) } else { x };
            let mut elems = Vec::new();
            if st > 0 {
                let mut i = norm(s).clamp(0, n);
                let e = norm(e).clamp(0, n);
                while i < e {
                    elems.push(v[i as usize].clone());
                    i += st;
                }
            } else {
                let mut i = norm(s).clamp(-1, n - 1);
                let e = norm(e).clamp(-1, n - 1);
                while i > e {
                    elems.push(v[i as usize].clone());
                    i += st;
                }
            }
            Some(SymValue {
                scalar: false,
                elems,
            })
        }
        _ => None,
    };
    Ok(vec![
        Inferred::tensor(ctx.dtype(0), Some(out)).with_value(value)
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_lengths_follow_onnx_clamping() {
        let d = Dim::Known(10);
        assert_eq!(slice_len(&d, 0, i64::MAX, 1), Dim::Known(10));
        assert_eq!(slice_len(&d, 1, i64::MAX, 2), Dim::Known(5));
        assert_eq!(slice_len(&d, -3, -1, 1), Dim::Known(2));
        assert_eq!(slice_len(&d, 20, 30, 1), Dim::Known(0));
        assert_eq!(slice_len(&d, -1, i64::MIN, -1), Dim::Known(10));
        assert_eq!(slice_len(&d, 8, 2, -2), Dim::Known(3));
    }

    #[test]
    fn symbolic_lengths() {
        let h = Dim::sym("h");
        assert_eq!(slice_len(&h, 0, i64::MAX, 2), h.ceil_div(2));
        let v = slice_len(&h, 1, i64::MAX, 2);
        let env = |_: &str| Some(9);
        assert_eq!(v.eval(&env), Some(4));
    }
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    match (domain, op_type) {
        ("", "Slice") => Some(run),
        _ => None,
    }
}

/// First index and element count of `start:end:step` over a dim of size `n`, with ONNX's
/// clamping (i128: the values may be anywhere in i64).
pub fn slice_range(n: usize, start: i64, end: i64, step: i64) -> (usize, usize) {
    let (n, start, end, step) = (n as i128, start as i128, end as i128, step as i128);
    let norm = |v: i128| if v < 0 { v + n } else { v };
    let clamp = |v: i128, lo: i128, hi: i128| v.max(lo).min(hi);
    let (s, e) = if step > 0 {
        (clamp(norm(start), 0, n), clamp(norm(end), 0, n))
    } else {
        (clamp(norm(start), -1, n - 1), clamp(norm(end), -1, n - 1))
    };
    let len = if step > 0 {
        (e - s + step - 1).div_euclid(step)
    } else {
        (s - e - step - 1).div_euclid(-step)
    };
    let len = len.max(0) as usize;
    (if len == 0 { 0 } else { s as usize }, len)
}

/// `x[starts:ends:steps]` over `axes` (all normalized and validated by the caller).
pub fn slice(
    x: &Tensor,
    starts: &[i64],
    ends: &[i64],
    axes: &[usize],
    steps: &[i64],
) -> Result<Tensor> {
    movement::check_len(x, "input")?;
    let st = strides(&x.shape);
    let mut offs = movement::identity_tables(&x.shape);
    for (k, &a) in axes.iter().enumerate() {
        let (first, len) = slice_range(x.shape[a], starts[k], ends[k], steps[k]);
        // Every visited index lies in [0, dim): slice_range clamps.
        let step = steps[k] as i128;
        offs[a] = (0..len)
            .map(|j| Some((first as i128 + j as i128 * step) as usize * st[a]))
            .collect();
    }
    let shape: Vec<usize> = offs.iter().map(|t| t.len()).collect();
    Ok(Tensor::new(
        shape,
        movement::take_tables(&x.data, &offs, None)?,
    ))
}

fn ints_input(ctx: &KernelCtx, i: usize, what: &str) -> Result<Option<Vec<i64>>> {
    match ctx.opt_tensor(i)? {
        Some(t) if t.rank() != 1 => Err(format!("{what} must be 1-D, got shape {:?}", t.shape)),
        Some(t) => Ok(Some(t.to_i64s()?)),
        None => Ok(None),
    }
}

fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let (starts, ends, axes, steps) = if ctx.opset < 10 {
        let get = |n: &str| ctx.ints_attr(n).map(|v| v.to_vec());
        (
            get("starts").ok_or("starts attribute is required")?,
            get("ends").ok_or("ends attribute is required")?,
            get("axes"),
            None,
        )
    } else {
        (
            ints_input(ctx, 1, "starts")?.ok_or("starts is required")?,
            ints_input(ctx, 2, "ends")?.ok_or("ends is required")?,
            ints_input(ctx, 3, "axes")?,
            ints_input(ctx, 4, "steps")?,
        )
    };
    let k = starts.len();
    if ends.len() != k {
        return Err(format!("{k} starts but {} ends", ends.len()));
    }
    let axes = match axes {
        Some(a) if a.len() != k => return Err(format!("{k} starts but {} axes", a.len())),
        Some(a) => movement::norm_axes(&a, x.rank())?,
        None if k > x.rank() => {
            return Err(format!("{k} starts for an input of rank {}", x.rank()))
        }
        None => (0..k).collect(),
    };
    let steps = steps.unwrap_or_else(|| vec![1; k]);
    if steps.len() != k {
        return Err(format!("{k} starts but {} steps", steps.len()));
    }
    if steps.contains(&0) {
        return Err("slice step cannot be 0".into());
    }
    one(slice(x, &starts, &ends, &axes, &steps)?)
}

#[cfg(test)]
mod kernel_tests {
    use super::slice_range;
    use crate::ops::movement::testing::*;
    use kiln_ir::Attribute;

    #[test]
    fn ranges() {
        assert_eq!(slice_range(10, 0, i64::MAX, 1), (0, 10));
        assert_eq!(slice_range(10, -1, i64::MIN, -1), (9, 10));
        assert_eq!(slice_range(10, 20, 30, 1), (0, 0));
        assert_eq!(slice_range(10, 8, 1, -3), (8, 3));
        assert_eq!(slice_range(10, 1, 8, 3), (1, 3));
        assert_eq!(slice_range(0, 0, -1, -1), (0, 0));
    }

    #[test]
    fn slice_kernel() {
        let x = iota(&[3, 4]);
        let y = run(
            "Slice",
            &[],
            &[
                x.clone(),
                i64s(&[2], &[1, -1]),
                i64s(&[2], &[3, i64::MIN]),
                i64s(&[2], &[0, 1]),
                i64s(&[2], &[1, -2]),
            ],
        )
        .unwrap();
        assert_eq!(y.shape, vec![2, 2]);
        assert_eq!(vals(&y), vec![7., 5., 11., 9.]);
        // Opset 1: attributes.
        let a = [
            Attribute::ints("starts", &[1]),
            Attribute::ints("ends", &[1000]),
            Attribute::ints("axes", &[1]),
        ];
        let y = run_opset("Slice", 1, &a, &[Some(x.clone())], 1).unwrap();
        assert_eq!(y[0].shape, vec![3, 3]);
        assert!(run(
            "Slice",
            &[],
            &[
                x.clone(),
                i64s(&[1], &[0]),
                i64s(&[1], &[1]),
                i64s(&[1], &[0]),
                i64s(&[1], &[0])
            ]
        )
        .is_err());
        assert!(run("Slice", &[], &[x, i64s(&[1], &[0]), i64s(&[2], &[1, 1])]).is_err());
    }
}
