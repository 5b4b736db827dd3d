//! Reductions (axes from the attribute, or from input 1 since opset 13 for ReduceSum and 18 for
//! the rest; `keepdims`, `noop_with_empty_axes`) and ArgMax/ArgMin.
use kiln_ir::{DataType, Dim};

use crate::ctx::{InferCtx, Inferred, Result};

fn reduced(x: &[Dim], axes: &[usize], keep: bool) -> Vec<Dim> {
    x.iter()
        .enumerate()
        .filter_map(|(i, d)| {
            if axes.contains(&i) {
                keep.then_some(Dim::Known(1))
            } else {
                Some(d.clone())
            }
        })
        .collect()
}

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let Some(x) = ctx.shape(0) else {
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None)]);
    };
    let keep = ctx.int_attr("keepdims", 1) != 0;
    let axes = if ctx.has_input(1) {
        match ctx.known_ints(1) {
            Some(a) => Some(a),
            None => {
                let rank = if keep {
                    Some(vec![Dim::Unknown; x.len()])
                } else {
                    None
                };
                return Ok(vec![Inferred::tensor(ctx.dtype(0), rank)]);
            }
        }
    } else {
        ctx.ints_attr("axes").map(|a| a.to_vec())
    };
    let axes: Vec<usize> = match axes {
        Some(a) if !a.is_empty() => a
            .iter()
            .map(|&a| ctx.axis(a, x.len()))
            .collect::<Result<_>>()?,
        _ if ctx.int_attr("noop_with_empty_axes", 0) != 0 => {
            return Ok(vec![ctx.same_as(0)]);
        }
        _ => (0..x.len()).collect(),
    };
    Ok(vec![Inferred::tensor(
        ctx.dtype(0),
        Some(reduced(x, &axes, keep)),
    )])
}

pub fn infer_arg(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let Some(x) = ctx.shape(0) else {
        return Ok(vec![Inferred::tensor(Some(DataType::I64), None)]);
    };
    let keep = ctx.int_attr("keepdims", 1) != 0;
    let axis = ctx.axis(ctx.int_attr("axis", 0), x.len())?;
    Ok(vec![Inferred::tensor(
        Some(DataType::I64),
        Some(reduced(x, &[axis], keep)),
    )])
}

// ---------------------------------------------------------------------------------------------
// Kernels.

use crate::kernel::{one, strides, KernelCtx, KernelFn};
use crate::ops::movement::{norm_axes, strided};
use crate::ops::num::Num;
use crate::value::{Data, Elem, Tensor, Value};
use crate::with_numeric;

/// Where the elements of a reduction live: output element `o` reduces the input elements at
/// `base[o] + red[k]` for every `k`.
pub(crate) struct Plan {
    pub base: Vec<usize>,
    pub red: Vec<usize>,
}

pub(crate) fn plan(shape: &[usize], axes: &[usize]) -> Plan {
    let st = strides(shape);
    let mut kept = shape.to_vec();
    let mut red_shape = vec![1usize; shape.len()];
    for &a in axes {
        kept[a] = 1;
        red_shape[a] = shape[a];
    }
    let kst: Vec<isize> = (0..shape.len())
        .map(|i| if axes.contains(&i) { 0 } else { st[i] as isize })
        .collect();
    let rst: Vec<isize> = st.iter().map(|&s| s as isize).collect();
    Plan {
        base: strided(&kept, 0, &kst),
        red: strided(&red_shape, 0, &rst),
    }
}

/// The output shape: `kept`, without the reduced dims unless `keepdims`.
fn out_shape(shape: &[usize], axes: &[usize], keep: bool) -> Vec<usize> {
    shape
        .iter()
        .enumerate()
        .filter_map(|(i, &d)| {
            if axes.contains(&i) {
                keep.then_some(1)
            } else {
                Some(d)
            }
        })
        .collect()
}

pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    if !domain.is_empty() {
        return None;
    }
    Some(match op_type {
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1"
        | "ReduceL2" | "ReduceLogSum" | "ReduceLogSumExp" | "ReduceSumSquare" => reduce,
        "ArgMax" | "ArgMin" => arg,
        _ => return None,
    })
}

fn nan_or(m: f64, x: f64, take_x: bool) -> f64 {
    if m.is_nan() || x.is_nan() {
        f64::NAN
    } else if take_x {
        x
    } else {
        m
    }
}

/// One reduction over values read as f64.
fn reduce_f64(op: &str, it: impl Iterator<Item = f64>, n: usize) -> f64 {
    match op {
        "ReduceSum" => it.sum(),
        "ReduceMean" => it.sum::<f64>() / n as f64,
        "ReduceProd" => it.product(),
        // NaN wins, as with numpy.
        "ReduceMax" => it.fold(f64::NEG_INFINITY, |m, x| nan_or(m, x, x > m)),
        "ReduceMin" => it.fold(f64::INFINITY, |m, x| nan_or(m, x, x < m)),
        "ReduceL1" => it.map(f64::abs).sum(),
        "ReduceL2" => it.map(|x| x * x).sum::<f64>().sqrt(),
        "ReduceSumSquare" => it.map(|x| x * x).sum(),
        "ReduceLogSum" => it.sum::<f64>().ln(),
        _ => {
            // ReduceLogSumExp, shifted by the maximum so large inputs do not overflow.
            let v: Vec<f64> = it.collect();
            let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            if m.is_infinite() {
                return v.iter().map(|x| x.exp()).sum::<f64>().ln();
            }
            m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
        }
    }
}

/// One reduction computed in the integer type itself (wrapping, as ONNX Runtime).
fn reduce_exact<T: Num>(op: &str, it: impl Iterator<Item = T>, n: usize) -> T {
    let z = T::zero();
    match op {
        "ReduceSum" => it.fold(z, |a, x| a.add(x)),
        "ReduceMean" => {
            let s = it.fold(z, |a, x| a.add(x));
            s.div(T::from_f64(n as f64)).unwrap_or(z)
        }
        "ReduceProd" => it.fold(T::one(), |a, x| a.mul(x)),
        "ReduceMax" => it.fold(
            T::from_f64(f64::NEG_INFINITY),
            |m, x| if x > m { x } else { m },
        ),
        "ReduceMin" => it.fold(T::from_f64(f64::INFINITY), |m, x| if x < m { x } else { m }),
        "ReduceL1" => it.fold(z, |a, x| a.add(if x < z { z.sub(x) } else { x })),
        _ => it.fold(z, |a, x| a.add(x.mul(x))), // ReduceSumSquare
    }
}

fn reduce_typed<T: Num>(op: &str, v: &[T], p: &Plan) -> Vec<T> {
    let n = p.red.len();
    let via_f64 = T::IS_FLOAT || matches!(op, "ReduceL2" | "ReduceLogSum" | "ReduceLogSumExp");
    p.base
        .iter()
        .map(|&b| {
            let it = p.red.iter().map(|&r| v[b + r]);
            if via_f64 {
                T::from_f64(reduce_f64(op, it.map(Num::to_f64), n))
            } else {
                reduce_exact(op, it, n)
            }
        })
        .collect()
}

/// The axes of a reduction: input 1 where the opset takes them there, else the attribute.
/// `None` means "leave the input as it is" (empty axes with `noop_with_empty_axes`).
fn reduce_axes(ctx: &KernelCtx, rank: usize) -> Result<Option<Vec<usize>>> {
    let axes = match ctx.opt_tensor(1)? {
        Some(t) => t.to_i64s()?,
        None => ctx
            .ints_attr("axes")
            .map(|a| a.to_vec())
            .unwrap_or_default(),
    };
    if axes.is_empty() {
        if ctx.int_attr("noop_with_empty_axes", 0) != 0 {
            return Ok(None);
        }
        return Ok(Some((0..rank).collect()));
    }
    let mut a = norm_axes(&axes, rank)?;
    a.sort_unstable();
    Ok(Some(a))
}

fn reduce(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let op = ctx.op_type;
    crate::ops::movement::check_len(x, "input")?;
    let Some(axes) = reduce_axes(ctx, x.rank())? else {
        return one(x.clone());
    };
    let keep = ctx.int_attr("keepdims", 1) != 0;
    let p = plan(&x.shape, &axes);
    let shape = out_shape(&x.shape, &axes, keep);
    let data = match &x.data {
        Data::Bool(v) if op == "ReduceMax" => Data::Bool(
            p.base
                .iter()
                .map(|&b| p.red.iter().any(|&r| v[b + r]))
                .collect(),
        ),
        Data::Bool(v) if op == "ReduceMin" => Data::Bool(
            p.base
                .iter()
                .map(|&b| p.red.iter().all(|&r| v[b + r]))
                .collect(),
        ),
        d => with_numeric!(d, v => Elem::wrap(reduce_typed(op, v, &p)),
            _ => return Err(format!("{op} does not take {} tensors", x.dtype()))),
    };
    one(Tensor::new(shape, data))
}

/// Index of the maximum (or minimum) of each lane; ties to the first (or last) index. A NaN
/// counts as the extreme, as numpy's argmax does.
fn arg_typed<T: Num>(v: &[T], p: &Plan, max: bool, last: bool) -> Vec<i64> {
    p.base
        .iter()
        .map(|&b| {
            let mut best = 0usize;
            let mut bv = v[b];
            for (k, &r) in p.red.iter().enumerate().skip(1) {
                let x = v[b + r];
                #[allow(clippy::eq_op)]
                let (x_nan, b_nan) = (x != x, bv != bv);
                let better = if b_nan {
                    last && x_nan
                } else if x_nan {
                    true
                } else if max {
                    x > bv || (last && x == bv)
                } else {
                    x < bv || (last && x == bv)
                };
                if better {
                    best = k;
                    bv = x;
                }
            }
            best as i64
        })
        .collect()
}

fn arg(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    crate::ops::movement::check_len(x, "input")?;
    let axis = ctx.axis(ctx.int_attr("axis", 0), x.rank())?;
    if x.shape[axis] == 0 {
        return Err(format!("{} over an empty axis", ctx.op_type));
    }
    let keep = ctx.int_attr("keepdims", 1) != 0;
    let last = ctx.int_attr("select_last_index", 0) != 0;
    let max = ctx.op_type == "ArgMax";
    let p = plan(&x.shape, &[axis]);
    let out = match &x.data {
        Data::Bool(v) => {
            let u: Vec<u8> = v.iter().map(|&b| b as u8).collect();
            arg_typed(&u, &p, max, last)
        }
        d => with_numeric!(d, v => arg_typed(v, &p, max, last),
            _ => return Err(format!("{} does not take {} tensors", ctx.op_type, x.dtype()))),
    };
    one(Tensor::from_vec(out_shape(&x.shape, &[axis], keep), out))
}

#[cfg(test)]
mod tests {
    use crate::ops::movement::testing::{f32s, i64s, run, run_opset, vals};
    use kiln_ir::Attribute;

    #[test]
    fn sums_means_and_axes_input() {
        let x = f32s(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let r = run("ReduceSum", &[], &[x.clone(), i64s(&[1], &[1])]).unwrap();
        assert_eq!(r.shape, vec![2, 1]);
        assert_eq!(vals(&r), vec![6.0, 15.0]);
        let r = run("ReduceMean", &[Attribute::int("keepdims", 0)], &[x.clone()]).unwrap();
        assert_eq!(r.shape, Vec::<usize>::new());
        assert_eq!(vals(&r), vec![3.5]);
        let r = run_opset(
            "ReduceMax",
            13,
            &[Attribute::ints("axes", &[-2])],
            &[Some(x.clone())],
            1,
        )
        .unwrap()
        .remove(0);
        assert_eq!(vals(&r), vec![4.0, 5.0, 6.0]);
        let noop = [Attribute::int("noop_with_empty_axes", 1)];
        let r = run("ReduceSum", &noop, &[x.clone(), i64s(&[0], &[])]).unwrap();
        assert_eq!(r, x);
        let r = run(
            "ReduceLogSumExp",
            &[],
            &[f32s(&[2], &[1000.0, 1000.0]), i64s(&[1], &[0])],
        )
        .unwrap();
        assert!((vals(&r)[0] - (1000.0 + 2f32.ln())).abs() < 1e-3);
        assert!(run("ReduceSum", &[], &[x, i64s(&[2], &[0, 0])]).is_err());
    }

    #[test]
    fn empty_sets_and_integers() {
        let e = f32s(&[2, 0, 3], &[]);
        let r = run("ReduceProd", &[], &[e.clone(), i64s(&[1], &[1])]).unwrap();
        assert_eq!((r.shape.clone(), vals(&r)), (vec![2, 1, 3], vec![1.0; 6]));
        let r = run("ReduceMin", &[], &[e, i64s(&[1], &[1])]).unwrap();
        assert!(vals(&r).iter().all(|v| *v == f32::INFINITY));
        let x = crate::value::Tensor::from_vec(vec![3], vec![7i32, -9, 2]);
        let r = run("ReduceMean", &[], &[x.clone()]).unwrap();
        assert_eq!(r.as_slice::<i32>().unwrap(), &[0]);
        let r = run("ReduceL1", &[], &[x]).unwrap();
        assert_eq!(r.as_slice::<i32>().unwrap(), &[18]);
    }

    #[test]
    fn argmax_ties() {
        let x = f32s(&[2, 3], &[1.0, 3.0, 3.0, 5.0, 0.0, 5.0]);
        let r = run("ArgMax", &[Attribute::int("axis", 1)], &[x.clone()]).unwrap();
        assert_eq!(
            (r.shape.clone(), r.to_i64s().unwrap()),
            (vec![2, 1], vec![1, 0])
        );
        let attrs = [
            Attribute::int("axis", -1),
            Attribute::int("keepdims", 0),
            Attribute::int("select_last_index", 1),
        ];
        let r = run("ArgMax", &attrs, &[x.clone()]).unwrap();
        assert_eq!(
            (r.shape.clone(), r.to_i64s().unwrap()),
            (vec![2], vec![2, 2])
        );
        let r = run("ArgMin", &[], &[x]).unwrap();
        assert_eq!(r.to_i64s().unwrap(), vec![0, 1, 0]);
    }
}
