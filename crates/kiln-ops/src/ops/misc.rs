//! Ops that fit no family: TopK, NonZero, Unique, OneHot, Trilu, CumSum/CumProd, EyeLike,
//! Compress, ReverseSequence and Det.
use std::cmp::Ordering;

use kiln_ir::DataType;

use crate::kernel::{one, strides, KernelCtx, KernelFn, Result};
use crate::ops::movement::{check_len, numel, take, take_from};
use crate::ops::num::Num;
use crate::value::{Data, Elem, Tensor, Value};
use crate::with_numeric;

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    if !domain.is_empty() {
        return None;
    }
    Some(match op_type {
        "TopK" => topk,
        "NonZero" => nonzero,
        "Unique" => unique,
        "OneHot" => onehot,
        "Trilu" => trilu,
        "CumSum" | "CumProd" => cumulative,
        "EyeLike" => eyelike,
        "Compress" => compress,
        "ReverseSequence" => reverse_sequence,
        "Det" => det,
        _ => return None,
    })
}

/// A total order on any element type: NaN (the element that is not equal to itself) sorts
/// after everything and equals NaN, as numpy's sort and unique.
pub(crate) fn total<T: PartialOrd>(a: &T, b: &T) -> Ordering {
    match a.partial_cmp(b) {
        Some(o) => o,
        None => {
            let an = a.partial_cmp(a).is_none();
            let bn = b.partial_cmp(b).is_none();
            an.cmp(&bn)
        }
    }
}

/// `(outer, len, inner)` around an axis of `shape`.
fn around(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    )
}

/// A scalar (or one-element) integer input.
fn scalar_int(t: &Tensor, what: &str) -> Result<i64> {
    let v = t.to_i64s()?;
    match v.as_slice() {
        [x] => Ok(*x),
        _ => Err(format!(
            "{what} must have one element, got shape {:?}",
            t.shape
        )),
    }
}

/// `v` (f64) as a tensor storage of `dtype`, rounding as `as` does.
pub(crate) fn data_from_f64(dtype: DataType, v: &[f64]) -> Result<Data> {
    let mut d = Data::zeros(dtype, v.len())?;
    fn fill<T: Num>(out: &mut [T], v: &[f64]) {
        for (o, &x) in out.iter_mut().zip(v) {
            *o = T::from_f64(x);
        }
    }
    match &mut d {
        Data::Bool(b) => b.iter_mut().zip(v).for_each(|(o, &x)| *o = x != 0.0),
        Data::Str(_) => return Err("cannot compute with string tensors".into()),
        d => {
            with_numeric!(d, o => fill(o, v), _ => return Err(format!("cannot compute with {dtype} tensors")))
        }
    }
    Ok(d)
}

// ----- TopK -----------------------------------------------------------------------------------

fn topk_typed<T: PartialOrd + Copy>(
    v: &[T],
    (outer, len, inner): (usize, usize, usize),
    k: usize,
    largest: bool,
) -> (Vec<usize>, Vec<i64>) {
    let mut src = Vec::with_capacity(outer * k * inner);
    let mut ind = Vec::with_capacity(outer * k * inner);
    let mut order: Vec<usize> = Vec::with_capacity(len);
    let mut picked = vec![(0usize, 0i64); k * inner];
    for o in 0..outer {
        for i in 0..inner {
            let base = o * len * inner + i;
            order.clear();
            order.extend(0..len);
            let at = |j: usize| &v[base + j * inner];
            // Stable sorts keep equal values in index order.
            if largest {
                order.sort_by(|&a, &b| total(at(b), at(a)));
            } else {
                order.sort_by(|&a, &b| total(at(a), at(b)));
            }
            for (r, &j) in order.iter().take(k).enumerate() {
                picked[r * inner + i] = (base + j * inner, j as i64);
            }
        }
        for &(s, j) in &picked {
            src.push(s);
            ind.push(j);
        }
    }
    (src, ind)
}

fn topk(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    check_len(x, "input")?;
    let k = if ctx.opset < 10 {
        ctx.int_attr("k", -1)
    } else {
        scalar_int(ctx.tensor(1)?, "K")?
    };
    let axis = ctx.axis(ctx.int_attr("axis", -1), x.rank())?;
    let l = around(&x.shape, axis);
    if k < 0 || k as usize > l.1 {
        return Err(format!("K {k} is out of range for an axis of size {}", l.1));
    }
    let k = k as usize;
    let largest = ctx.int_attr("largest", 1) != 0;
    let (src, ind) = with_numeric!(&x.data, v => topk_typed(v, l, k, largest),
        _ => return Err(format!("TopK does not take {} tensors", x.dtype())));
    let mut shape = x.shape.clone();
    shape[axis] = k;
    let values = Tensor::new(shape.clone(), take(&x.data, &src)?);
    let indices = Tensor::from_vec(shape, ind);
    Ok(vec![Value::Tensor(values), Value::Tensor(indices)])
}

// ----- NonZero --------------------------------------------------------------------------------

fn nonzero(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    check_len(x, "input")?;
    let nz: Vec<bool> = match &x.data {
        Data::Bool(v) => v.clone(),
        Data::Str(v) => v.iter().map(|s| !s.is_empty()).collect(),
        d => with_numeric!(d, v => v.iter().map(|&e| e != Num::zero()).collect(),
            _ => return Err(format!("NonZero does not take {} tensors", x.dtype()))),
    };
    let n = nz.iter().filter(|&&b| b).count();
    let rank = x.rank();
    if rank == 0 {
        return one(Tensor::from_vec(vec![0, n], Vec::<i64>::new()));
    }
    let st = strides(&x.shape);
    let mut out = vec![0i64; rank * n];
    for (c, flat) in nz
        .iter()
        .enumerate()
        .filter(|(_, &b)| b)
        .map(|(i, _)| i)
        .enumerate()
    {
        for d in 0..rank {
            out[d * n + c] = ((flat / st[d]) % x.shape[d]) as i64;
        }
    }
    one(Tensor::from_vec(vec![rank, n], out))
}

// ----- Unique ---------------------------------------------------------------------------------

/// Unique slices: `(first index of each, inverse, counts)` in output order.
fn unique_groups<T: PartialOrd>(
    v: &[T],
    slices: &[Vec<usize>],
    sorted: bool,
) -> (Vec<usize>, Vec<i64>, Vec<i64>) {
    let cmp = |a: usize, b: usize| -> Ordering {
        for (&i, &j) in slices[a].iter().zip(&slices[b]) {
            match total(&v[i], &v[j]) {
                Ordering::Equal => {}
                o => return o,
            }
        }
        Ordering::Equal
    };
    let mut order: Vec<usize> = (0..slices.len()).collect();
    order.sort_by(|&a, &b| cmp(a, b));
    // Groups of equal slices, each led by its first occurrence (the sort is stable).
    let mut groups: Vec<(usize, i64)> = Vec::new();
    let mut group_of = vec![0usize; slices.len()];
    for (p, &s) in order.iter().enumerate() {
        if p == 0 || cmp(order[p - 1], s) != Ordering::Equal {
            groups.push((s, 0));
        }
        let g = groups.len() - 1;
        groups[g].1 += 1;
        group_of[s] = g;
    }
    let mut rank: Vec<usize> = (0..groups.len()).collect();
    if !sorted {
        rank.sort_by_key(|&g| groups[g].0);
    }
    let mut pos = vec![0usize; groups.len()];
    for (p, &g) in rank.iter().enumerate() {
        pos[g] = p;
    }
    let first = rank.iter().map(|&g| groups[g].0).collect();
    let counts = rank.iter().map(|&g| groups[g].1).collect();
    let inverse = group_of.iter().map(|&g| pos[g] as i64).collect();
    (first, inverse, counts)
}

fn unique(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let n = check_len(x, "input")?;
    let sorted = ctx.int_attr("sorted", 1) != 0;
    let axis = match ctx.attr("axis") {
        Some(_) => Some(ctx.axis(ctx.int_attr("axis", 0), x.rank())?),
        None => None,
    };
    // The element indices of each slice along the axis (single elements without an axis).
    let slices: Vec<Vec<usize>> = match axis {
        None => (0..n).map(|i| vec![i]).collect(),
        Some(a) => {
            let (outer, len, inner) = around(&x.shape, a);
            (0..len)
                .map(|s| {
                    (0..outer)
                        .flat_map(|o| (0..inner).map(move |i| (o * len + s) * inner + i))
                        .collect()
                })
                .collect()
        }
    };
    let (first, inverse, counts) = crate::with_any!(&x.data, v => unique_groups(v, &slices, sorted),
        _ => return Err(format!("Unique does not take {} tensors", x.dtype())));
    let u = first.len();
    let y = match axis {
        None => Tensor::new(vec![u], take(&x.data, &first)?),
        Some(a) => {
            let (outer, len, inner) = around(&x.shape, a);
            let mut idx = Vec::with_capacity(outer * u * inner);
            for o in 0..outer {
                for &s in &first {
                    idx.extend((0..inner).map(|i| (o * len + s) * inner + i));
                }
            }
            let mut shape = x.shape.clone();
            shape[a] = u;
            Tensor::new(shape, take(&x.data, &idx)?)
        }
    };
    let nslices = inverse.len();
    let outs = [
        y,
        Tensor::from_vec(vec![u], first.iter().map(|&f| f as i64).collect::<Vec<_>>()),
        Tensor::from_vec(vec![nslices], inverse),
        Tensor::from_vec(vec![u], counts),
    ];
    Ok(outs
        .into_iter()
        .take(ctx.num_outputs)
        .map(Value::Tensor)
        .collect())
}

// ----- OneHot ---------------------------------------------------------------------------------

fn onehot(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (ind, depth, values) = (ctx.tensor(0)?, ctx.tensor(1)?, ctx.tensor(2)?);
    check_len(ind, "indices")?;
    let depth = match depth.to_f64s()?.as_slice() {
        [d] if *d >= 0.0 && d.is_finite() => *d as usize,
        _ => {
            return Err(format!(
                "depth must be one non-negative number, got shape {:?}",
                depth.shape
            ))
        }
    };
    if check_len(values, "values")? != 2 {
        return Err(format!(
            "values must hold [off, on], got shape {:?}",
            values.shape
        ));
    }
    let r = ind.rank() as i64;
    let a = ctx.int_attr("axis", -1);
    if a < -r - 1 || a > r {
        return Err(format!(
            "axis {a} is out of range for output rank {}",
            r + 1
        ));
    }
    let axis = if a < 0 { a + r + 1 } else { a } as usize;
    let iv = ind.to_f64s()?;
    let (outer, inner): (usize, usize) = (
        ind.shape[..axis].iter().product(),
        ind.shape[axis..].iter().product(),
    );
    let mut shape = ind.shape.clone();
    shape.insert(axis, depth);
    let total_n = numel(&shape)?;
    let mut idx = vec![0usize; total_n];
    for o in 0..outer {
        for i in 0..inner {
            let mut k = iv[o * inner + i].trunc();
            if k < 0.0 {
                k += depth as f64;
            }
            if k >= 0.0 && k < depth as f64 {
                idx[(o * depth + k as usize) * inner + i] = 1;
            }
        }
    }
    one(Tensor::new(shape, take(&values.data, &idx)?))
}

// ----- Trilu ----------------------------------------------------------------------------------

fn trilu(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let n = check_len(x, "input")?;
    if x.rank() < 2 {
        return Err(format!(
            "Trilu needs rank 2 or more, got shape {:?}",
            x.shape
        ));
    }
    let k = match ctx.opt_tensor(1)? {
        Some(t) => scalar_int(t, "k")?,
        None => 0,
    };
    let upper = ctx.int_attr("upper", 1) != 0;
    let (rows, cols) = (x.shape[x.rank() - 2], x.shape[x.rank() - 1]);
    let zero = Data::zeros(x.dtype(), 1)?;
    let idx: Vec<(usize, usize)> = (0..n)
        .map(|f| {
            let (i, j) = (((f / cols) % rows) as i64, (f % cols) as i64);
            let keep = if upper { j - i >= k } else { j - i <= k };
            if keep {
                (0, f)
            } else {
                (1, 0)
            }
        })
        .collect();
    one(Tensor::new(
        x.shape.clone(),
        take_from(&[&x.data, &zero], &idx)?,
    ))
}

// ----- CumSum / CumProd -----------------------------------------------------------------------

fn cumulate<T: Num>(
    v: &[T],
    (outer, len, inner): (usize, usize, usize),
    prod: bool,
    exclusive: bool,
    reverse: bool,
) -> Vec<T> {
    let mut out = vec![T::zero(); v.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| o * len * inner + j * inner + i;
            let (mut accf, mut acct) = if prod {
                (1.0f64, T::one())
            } else {
                (0.0f64, T::zero())
            };
            for s in 0..len {
                let j = if reverse { len - 1 - s } else { s };
                let x = v[at(j)];
                if exclusive {
                    out[at(j)] = if T::IS_FLOAT { T::from_f64(accf) } else { acct };
                }
                if prod {
                    accf *= x.to_f64();
                    acct = acct.mul(x);
                } else {
                    accf += x.to_f64();
                    acct = acct.add(x);
                }
                if !exclusive {
                    out[at(j)] = if T::IS_FLOAT { T::from_f64(accf) } else { acct };
                }
            }
        }
    }
    out
}

fn cumulative(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    check_len(x, "input")?;
    let axis = ctx.axis(scalar_int(ctx.tensor(1)?, "axis")?, x.rank())?;
    let l = around(&x.shape, axis);
    let prod = ctx.op_type == "CumProd";
    let (ex, rev) = (
        ctx.int_attr("exclusive", 0) != 0,
        ctx.int_attr("reverse", 0) != 0,
    );
    let data = with_numeric!(&x.data, v => Elem::wrap(cumulate(v, l, prod, ex, rev)),
        _ => return Err(format!("{} does not take {} tensors", ctx.op_type, x.dtype())));
    one(Tensor::new(x.shape.clone(), data))
}

// ----- EyeLike --------------------------------------------------------------------------------

fn eyelike(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let (r, c) = match x.shape.as_slice() {
        [r, c] => (*r, *c),
        s => return Err(format!("EyeLike takes a 2-D input, got shape {s:?}")),
    };
    let dtype = match ctx.attr("dtype") {
        Some(_) => DataType::from_onnx(ctx.int_attr("dtype", 1) as i32)
            .ok_or_else(|| format!("unknown dtype {}", ctx.int_attr("dtype", 1)))?,
        None => x.dtype(),
    };
    let k = ctx.int_attr("k", 0);
    let n = numel(&x.shape)?;
    let v: Vec<f64> = (0..n)
        .map(|f| {
            if (f % c) as i64 - (f / c) as i64 == k {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    let _ = r;
    one(Tensor::new(x.shape.clone(), data_from_f64(dtype, &v)?))
}

// ----- Compress -------------------------------------------------------------------------------

fn compress(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (x, cond) = (ctx.tensor(0)?, ctx.tensor(1)?);
    let n = check_len(x, "input")?;
    let cond = match &cond.data {
        Data::Bool(v) if cond.rank() == 1 => v,
        _ => {
            return Err(format!(
                "condition must be a 1-D bool tensor, got {} {:?}",
                cond.dtype(),
                cond.shape
            ))
        }
    };
    let (shape, (outer, len, inner)) = match ctx.attr("axis") {
        None => (vec![n], (1, n, 1)),
        Some(_) => {
            let a = ctx.axis(ctx.int_attr("axis", 0), x.rank())?;
            (x.shape.clone(), around(&x.shape, a))
        }
    };
    let picked: Vec<usize> = cond
        .iter()
        .enumerate()
        .filter(|(_, &b)| b)
        .map(|(i, _)| i)
        .collect();
    if let Some(&p) = picked.last() {
        if p >= len {
            return Err(format!(
                "condition selects index {p} of an axis of size {len}"
            ));
        }
    }
    let mut idx = Vec::with_capacity(outer * picked.len() * inner);
    for o in 0..outer {
        for &s in &picked {
            idx.extend((0..inner).map(|i| (o * len + s) * inner + i));
        }
    }
    let mut out_shape = shape;
    let a = match ctx.attr("axis") {
        None => 0,
        Some(_) => ctx.axis(ctx.int_attr("axis", 0), x.rank())?,
    };
    out_shape[a] = picked.len();
    one(Tensor::new(out_shape, take(&x.data, &idx)?))
}

// ----- ReverseSequence ------------------------------------------------------------------------

fn reverse_sequence(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (x, lens) = (ctx.tensor(0)?, ctx.tensor(1)?);
    let n = check_len(x, "input")?;
    let (ta, ba) = (ctx.int_attr("time_axis", 0), ctx.int_attr("batch_axis", 1));
    if x.rank() < 2 || !matches!((ta, ba), (0, 1) | (1, 0)) {
        return Err(format!("time_axis {ta} and batch_axis {ba} must be 0 and 1 (in some order) of a rank >= 2 input"));
    }
    let (ta, ba) = (ta as usize, ba as usize);
    let lens = lens.to_i64s()?;
    if lens.len() != x.shape[ba] {
        return Err(format!(
            "sequence_lens has {} entries for a batch of {}",
            lens.len(),
            x.shape[ba]
        ));
    }
    let st = strides(&x.shape);
    let mut idx = Vec::with_capacity(n);
    for f in 0..n {
        let t = (f / st[ta]) % x.shape[ta];
        let b = (f / st[ba]) % x.shape[ba];
        let l = lens[b];
        if l < 0 || l as usize > x.shape[ta] {
            return Err(format!(
                "sequence length {l} is out of range for a time axis of {}",
                x.shape[ta]
            ));
        }
        let l = l as usize;
        idx.push(if t < l {
            f - t * st[ta] + (l - 1 - t) * st[ta]
        } else {
            f
        });
    }
    one(Tensor::new(x.shape.clone(), take(&x.data, &idx)?))
}

// ----- Det ------------------------------------------------------------------------------------

/// Determinant by LU decomposition with partial pivoting.
fn det_of(a: &mut [f64], m: usize) -> f64 {
    let mut d = 1.0;
    for c in 0..m {
        let p = (c..m)
            .max_by(|&i, &j| total(&a[i * m + c].abs(), &a[j * m + c].abs()))
            .unwrap_or(c);
        if a[p * m + c] == 0.0 {
            return 0.0;
        }
        if p != c {
            for j in 0..m {
                a.swap(p * m + j, c * m + j);
            }
            d = -d;
        }
        let piv = a[c * m + c];
        d *= piv;
        for i in c + 1..m {
            let f = a[i * m + c] / piv;
            if f != 0.0 {
                for j in c..m {
                    a[i * m + j] -= f * a[c * m + j];
                }
            }
        }
    }
    d
}

fn det(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    check_len(x, "input")?;
    let r = x.rank();
    if r < 2 || x.shape[r - 1] != x.shape[r - 2] {
        return Err(format!("Det takes [..., M, M], got shape {:?}", x.shape));
    }
    if !x.dtype().is_float() {
        return Err(format!("Det takes floats, got {}", x.dtype()));
    }
    let m = x.shape[r - 1];
    let v = x.to_f64s()?;
    let out: Vec<f64> = if m == 0 {
        vec![1.0; x.shape[..r - 2].iter().product()]
    } else {
        v.chunks(m * m)
            .map(|c| det_of(&mut c.to_vec(), m))
            .collect()
    };
    one(Tensor::new(
        x.shape[..r - 2].to_vec(),
        data_from_f64(x.dtype(), &out)?,
    ))
}

#[cfg(test)]
mod tests {
    use crate::ops::movement::testing::{f32s, i64s, run, run_opset, vals};
    use crate::value::Tensor;
    use kiln_ir::Attribute;

    #[test]
    fn topk_ties_and_order() {
        let x = f32s(&[2, 4], &[1.0, 3.0, 3.0, 2.0, 0.0, -1.0, 5.0, 0.0]);
        let r = run_opset(
            "TopK",
            11,
            &[],
            &[Some(x.clone()), Some(i64s(&[1], &[2]))],
            2,
        )
        .unwrap();
        assert_eq!(vals(&r[0]), vec![3.0, 3.0, 5.0, 0.0]);
        assert_eq!(r[1].to_i64s().unwrap(), vec![1, 2, 2, 0]);
        let small = [Attribute::int("largest", 0), Attribute::int("axis", 0)];
        let r = run_opset("TopK", 11, &small, &[Some(x), Some(i64s(&[1], &[1]))], 2).unwrap();
        assert_eq!(vals(&r[0]), vec![0.0, -1.0, 3.0, 0.0]);
        assert_eq!(r[1].to_i64s().unwrap(), vec![1, 1, 0, 1]);
    }

    #[test]
    fn unique_sorted_and_not() {
        let x = f32s(&[6], &[2.0, 1.0, 1.0, 3.0, 4.0, 3.0]);
        let r = run_opset(
            "Unique",
            11,
            &[Attribute::int("sorted", 0)],
            &[Some(x.clone())],
            4,
        )
        .unwrap();
        assert_eq!(vals(&r[0]), vec![2.0, 1.0, 3.0, 4.0]);
        assert_eq!(r[1].to_i64s().unwrap(), vec![0, 1, 3, 4]);
        assert_eq!(r[2].to_i64s().unwrap(), vec![0, 1, 1, 2, 3, 2]);
        assert_eq!(r[3].to_i64s().unwrap(), vec![1, 2, 2, 1]);
        let r = run_opset("Unique", 11, &[], &[Some(x)], 4).unwrap();
        assert_eq!(vals(&r[0]), vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(r[1].to_i64s().unwrap(), vec![1, 0, 3, 4]);
        let m = f32s(&[3, 2], &[1.0, 0.0, 0.0, 1.0, 1.0, 0.0]);
        let r = run_opset("Unique", 11, &[Attribute::int("axis", 0)], &[Some(m)], 1).unwrap();
        assert_eq!(
            (r[0].shape.clone(), vals(&r[0])),
            (vec![2, 2], vec![0.0, 1.0, 1.0, 0.0])
        );
    }

    #[test]
    fn small_ops() {
        let r = run("NonZero", &[], &[f32s(&[2, 2], &[1.0, 0.0, 0.0, 2.0])]).unwrap();
        assert_eq!(
            (r.shape.clone(), r.to_i64s().unwrap()),
            (vec![2, 2], vec![0, 1, 0, 1])
        );
        let vals3 = f32s(&[2], &[0.0, 5.0]);
        let r = run(
            "OneHot",
            &[],
            &[i64s(&[2], &[1, -1]), i64s(&[], &[3]), vals3],
        )
        .unwrap();
        assert_eq!(vals(&r), vec![0.0, 5.0, 0.0, 0.0, 0.0, 5.0]);
        let x = f32s(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let r = run("Trilu", &[Attribute::int("upper", 0)], &[x.clone()]).unwrap();
        assert_eq!(vals(&r), vec![1.0, 0.0, 0.0, 4.0, 5.0, 0.0]);
        let ex = [Attribute::int("exclusive", 1), Attribute::int("reverse", 1)];
        let r = run("CumSum", &ex, &[x.clone(), i64s(&[], &[1])]).unwrap();
        assert_eq!(vals(&r), vec![5.0, 3.0, 0.0, 11.0, 6.0, 0.0]);
        let r = run(
            "Compress",
            &[Attribute::int("axis", 1)],
            &[x.clone(), Tensor::from_vec(vec![2], vec![false, true])],
        )
        .unwrap();
        assert_eq!((r.shape.clone(), vals(&r)), (vec![2, 1], vec![2.0, 5.0]));
        let r = run("EyeLike", &[Attribute::int("k", 1)], &[x]).unwrap();
        assert_eq!(vals(&r), vec![0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
        let r = run("Det", &[], &[f32s(&[2, 2], &[1.0, 2.0, 3.0, 4.0])]).unwrap();
        assert!((vals(&r)[0] + 2.0).abs() < 1e-6);
        let rs = [
            Attribute::int("time_axis", 1),
            Attribute::int("batch_axis", 0),
        ];
        let r = run(
            "ReverseSequence",
            &rs,
            &[
                f32s(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
                i64s(&[2], &[2, 3]),
            ],
        )
        .unwrap();
        assert_eq!(vals(&r), vec![2.0, 1.0, 3.0, 6.0, 5.0, 4.0]);
    }
}
