//! Concat: sizes add up along `axis`; known integer values are concatenated too.
use kiln_ir::Dim;

use crate::ctx::{InferCtx, Inferred, Result, SymValue};
use crate::kernel::{one, KernelCtx};
use crate::ops::movement;
use crate::value::{Data, Tensor, Value};

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let n = ctx.inputs.len();
    let dtype = (0..n).find_map(|i| ctx.dtype(i));
    let shapes: Option<Vec<_>> = (0..n).map(|i| ctx.shape(i)).collect();
    let Some(shapes) = shapes.filter(|s| !s.is_empty()) else {
        return Ok(vec![Inferred::tensor(dtype, None)]);
    };
    let rank = shapes[0].len();
    if shapes.iter().any(|s| s.len() != rank) {
        return Err("inputs have different ranks".into());
    }
    let axis = ctx.axis(
        ctx.attr("axis")
            .and(Some(ctx.int_attr("axis", 0)))
            .ok_or("axis attribute is required")?,
        rank,
    )?;
    let mut shape = Vec::with_capacity(rank);
    for d in 0..rank {
        if d == axis {
            shape.push(shapes.iter().fold(Dim::Known(0), |acc, s| acc.add(&s[d])));
            continue;
        }
        // Take the most specific size any input gives.
        let mut best = Dim::Unknown;
        for s in &shapes {
            match (&best, &s[d]) {
                (Dim::Known(a), Dim::Known(b)) if a != b => {
                    return Err(format!("inputs differ in dimension {d}: {a} vs {b}"))
                }
                (Dim::Known(_), _) => {}
                (_, Dim::Known(_)) => best = s[d].clone(),
                (Dim::Unknown, x) => best = x.clone(),
                _ => {}
            }
        }
        shape.push(best);
    }
    let value = if rank == 1 {
        let vals: Option<Vec<Vec<Dim>>> = (0..n).map(|i| ctx.int_values(i)).collect();
        vals.map(|v| SymValue {
            scalar: false,
            elems: v.concat(),
        })
    } else {
        None
    };
    Ok(vec![Inferred::tensor(dtype, Some(shape)).with_value(value)])
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    match (domain, op_type) {
        ("", "Concat") => Some(run),
        _ => None,
    }
}

/// Concatenation of tensors of one rank and type along `axis` (possibly negative).
pub fn concat(ts: &[&Tensor], axis: i64) -> Result<Tensor> {
    let Some(first) = ts.first() else {
        return Err("Concat needs at least one input".into());
    };
    let rank = first.rank();
    if rank == 0 {
        return Err("cannot concatenate scalars".into());
    }
    let axis = crate::kernel::norm_axis(axis, rank)?;
    let mut shape = first.shape.clone();
    shape[axis] = 0;
    for (k, t) in ts.iter().enumerate() {
        movement::check_len(t, "input")?;
        let same = t.rank() == rank && (0..rank).all(|d| d == axis || t.shape[d] == first.shape[d]);
        if !same {
            return Err(format!(
                "input {k} has shape {:?}, which does not match {:?} outside axis {axis}",
                t.shape, first.shape
            ));
        }
        shape[axis] += t.shape[axis];
    }
    let n = movement::numel(&shape)?;
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let mut runs = Vec::with_capacity(outer * ts.len());
    for o in 0..outer {
        for (k, t) in ts.iter().enumerate() {
            let block = t.shape[axis] * inner;
            if block > 0 {
                runs.push((k, o * block, block));
            }
        }
    }
    debug_assert_eq!(runs.iter().map(|r| r.2).sum::<usize>(), n);
    let f32s: Option<Vec<&[f32]>> = ts.iter().map(|t| t.as_slice::<f32>()).collect();
    if let Some(f) = f32s.filter(|_| n >= PAR_MIN) {
        return Ok(Tensor::from_vec(shape, copy_runs_par(&f, &runs, n)));
    }
    let srcs: Vec<&Data> = ts.iter().map(|t| &t.data).collect();
    Ok(Tensor::new(shape, movement::copy_runs(&srcs, &runs)?))
}

/// Outputs of at least this many floats are copied by all workers.
const PAR_MIN: usize = 1 << 15;

/// The f32 runs `(source, start, len)`, in output order, copied into a new buffer of `n`
/// values in pieces of at most `PAR_MIN` spread over the threads (DenseNet's 58 channel
/// Concats, copied on one thread, were 7% of its run).
fn copy_runs_par(srcs: &[&[f32]], runs: &[(usize, usize, usize)], n: usize) -> Vec<f32> {
    use rayon::prelude::*;
    let mut out: Vec<f32> = Vec::with_capacity(n);
    let mut rest = &mut out.spare_capacity_mut()[..n];
    let mut pieces = Vec::new();
    for &(k, start, len) in runs {
        for at in (0..len).step_by(PAR_MIN) {
            let m = PAR_MIN.min(len - at);
            let (dst, tail) = std::mem::take(&mut rest).split_at_mut(m);
            rest = tail;
            pieces.push((dst, &srcs[k][start + at..start + at + m]));
        }
    }
    debug_assert!(rest.is_empty());
    pieces.into_par_iter().for_each(|(dst, src)| {
        // SAFETY: `dst` and `src` have the same length and do not overlap (`dst` is part of
        // the new buffer).
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr() as *mut f32, src.len())
        };
    });
    // SAFETY: the pieces cover all `n` values (the runs' lengths sum to `n`).
    unsafe { out.set_len(n) };
    out
}

fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let ts = (0..ctx.inputs.len())
        .map(|i| ctx.tensor(i))
        .collect::<Result<Vec<_>>>()?;
    let axis = match ctx.attr("axis") {
        Some(_) => ctx.int_attr("axis", 0),
        None if ctx.opset < 4 => 1,
        None => return Err("axis attribute is required".into()),
    };
    one(concat(&ts, axis)?)
}

#[cfg(test)]
mod kernel_tests {
    use crate::ops::movement::testing::*;
    use crate::value::{Data, Tensor};
    use kiln_ir::Attribute;

    #[test]
    fn large_f32_concats_match_the_generic_copy() {
        // Past the parallel threshold, with runs longer than one piece and several outer
        // rows; the same values as f64 take the generic path.
        let a = iota(&[3, 5, 90, 80]);
        let b = iota(&[3, 2, 90, 80]);
        let y = super::concat(&[&a, &b, &a], 1).unwrap();
        let z = super::concat(&[&widened(&a), &widened(&b), &widened(&a)], 1).unwrap();
        assert_eq!(y.shape, vec![3, 12, 90, 80]);
        assert_eq!(vals(&y), narrowed(&z));
    }

    #[test]
    fn concat_kernel() {
        let a = iota(&[2, 2]);
        let b = f32s(&[2, 1], &[10., 11.]);
        let y = run(
            "Concat",
            &[Attribute::int("axis", -1)],
            &[a.clone(), b.clone()],
        )
        .unwrap();
        assert_eq!(y.shape, vec![2, 3]);
        assert_eq!(vals(&y), vec![0., 1., 10., 2., 3., 11.]);
        let y = run(
            "Concat",
            &[Attribute::int("axis", 0)],
            &[a.clone(), a.clone()],
        )
        .unwrap();
        assert_eq!(y.shape, vec![4, 2]);
        assert!(run("Concat", &[Attribute::int("axis", 0)], &[a.clone(), b]).is_err());
        let e = f32s(&[2, 0], &[]);
        let y = run("Concat", &[Attribute::int("axis", 1)], &[e, a.clone()]).unwrap();
        assert_eq!(vals(&y), vals(&a));
        let s = Tensor::new(vec![1], Data::Str(vec!["x".into()]));
        let y = run("Concat", &[Attribute::int("axis", 0)], &[s.clone(), s]).unwrap();
        assert_eq!(y.data, Data::Str(vec!["x".into(), "x".into()]));
        assert!(run(
            "Concat",
            &[Attribute::int("axis", 0)],
            &[a, i64s(&[2, 2], &[0; 4])]
        )
        .is_err());
    }
}
