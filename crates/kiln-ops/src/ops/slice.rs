//! Slice (attributes before opset 10, inputs after), with symbolic sizes for the common forms
//! (from a constant to the end, a constant length) and known integer values sliced too.
use kiln_ir::Dim;

use crate::ctx::{InferCtx, Inferred, Result, SymValue};

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
    let _ = (domain, op_type);
    None
}
