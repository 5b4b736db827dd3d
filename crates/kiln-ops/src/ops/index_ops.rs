//! Index-based gathers: GatherElements, GatherND.
use kiln_ir::Dim;

use crate::ctx::{InferCtx, Inferred};
use crate::kernel::{one, strides, KernelCtx, KernelFn, Result};
use crate::ops::movement;
use crate::value::{Tensor, Value};

/// GatherElements: the shape of the indices, the type of the data.
pub fn infer_gather_elements(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    Ok(vec![Inferred::tensor(
        ctx.dtype(0),
        ctx.shape(1).map(|s| s.to_vec()),
    )])
}

/// GatherND: `indices.shape[:-1] + data.shape[batch_dims + k:]`.
pub fn infer_gather_nd(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let (Some(data), Some(idx)) = (ctx.shape(0), ctx.shape(1)) else {
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None)]);
    };
    let b = ctx.int_attr("batch_dims", 0);
    let Some(k) = idx.last().and_then(|d| d.known()) else {
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None)]);
    };
    if b < 0 || k < 0 || (b + k) as usize > data.len() || b as usize >= idx.len() {
        return Err(format!(
            "indices of shape {idx:?} (batch_dims {b}) do not fit data of rank {}",
            data.len()
        ));
    }
    let mut shape: Vec<Dim> = idx[..idx.len() - 1].to_vec();
    shape.extend(data[(b + k) as usize..].iter().cloned());
    Ok(vec![Inferred::tensor(ctx.dtype(0), Some(shape))])
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    match (domain, op_type) {
        ("", "GatherElements") => Some(run_gather_elements),
        ("", "GatherND") => Some(run_gather_nd),
        _ => None,
    }
}

/// For every position of `indices` (read along `axis` of `data`), the flat index into
/// `data` it selects. Shared with ScatterElements.
pub fn element_positions(data: &[usize], indices: &Tensor, axis: usize) -> Result<Vec<usize>> {
    let rank = data.len();
    if indices.rank() != rank {
        return Err(format!(
            "indices have rank {} but data has rank {rank}",
            indices.rank()
        ));
    }
    if let Some(d) = (0..rank).find(|&d| d != axis && indices.shape[d] > data[d]) {
        return Err(format!(
            "indices shape {:?} exceeds data shape {data:?} in dimension {d}",
            indices.shape
        ));
    }
    movement::check_len(indices, "indices")?;
    let ix = indices.to_i64s()?;
    let st = strides(data);
    let mut walk: Vec<isize> = st.iter().map(|&s| s as isize).collect();
    walk[axis] = 0;
    let base = movement::strided(&indices.shape, 0, &walk);
    base.iter()
        .zip(&ix)
        .map(|(&b, &i)| Ok(b + movement::norm_index(i, data[axis], "index")? * st[axis]))
        .collect()
}

fn run_gather_elements(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let data = ctx.tensor(0)?;
    let indices = ctx.tensor(1)?;
    if data.rank() == 0 {
        return Err("data must have rank >= 1".into());
    }
    movement::check_len(data, "data")?;
    let axis = ctx.axis(ctx.int_attr("axis", 0), data.rank())?;
    let idx = element_positions(&data.shape, indices, axis)?;
    one(Tensor::new(
        indices.shape.clone(),
        movement::take(&data.data, &idx)?,
    ))
}

/// The flat data offset of every index tuple of GatherND / ScatterND, and the size of the
/// slice each one selects. `indices` has shape `batch + tuples + [k]`.
pub fn nd_offsets(
    data: &[usize],
    indices: &Tensor,
    batch_dims: usize,
) -> Result<(Vec<usize>, usize)> {
    let q = indices.rank();
    if q == 0 || data.is_empty() {
        return Err("data and indices must have rank >= 1".into());
    }
    let k = indices.shape[q - 1];
    if batch_dims >= q || batch_dims + k > data.len() {
        return Err(format!(
            "indices of shape {:?} (batch_dims {batch_dims}) do not fit data of shape {data:?}",
            indices.shape
        ));
    }
    if data[..batch_dims] != indices.shape[..batch_dims] {
        return Err(format!(
            "batch dims of data {data:?} and indices {:?} differ",
            indices.shape
        ));
    }
    movement::check_len(indices, "indices")?;
    let ix = indices.to_i64s()?;
    let st = strides(data);
    let inner: usize = data[batch_dims + k..].iter().product();
    let batch_size: usize = data[batch_dims..].iter().product();
    let tuples: usize = indices.shape[..q - 1].iter().product();
    let per_batch: usize = indices.shape[batch_dims..q - 1].iter().product();
    let mut out = Vec::with_capacity(tuples);
    for t in 0..tuples {
        let mut off = (t / per_batch) * batch_size;
        for j in 0..k {
            let d = batch_dims + j;
            off += movement::norm_index(ix[t * k + j], data[d], "index")? * st[d];
        }
        out.push(off);
    }
    Ok((out, inner))
}

fn run_gather_nd(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let data = ctx.tensor(0)?;
    let indices = ctx.tensor(1)?;
    movement::check_len(data, "data")?;
    let b = ctx.int_attr("batch_dims", 0);
    let b = usize::try_from(b).map_err(|_| format!("batch_dims {b} is negative"))?;
    let (offsets, inner) = nd_offsets(&data.shape, indices, b)?;
    let k = indices.shape[indices.rank() - 1];
    let mut shape = indices.shape[..indices.rank() - 1].to_vec();
    shape.extend_from_slice(&data.shape[b + k..]);
    movement::numel(&shape)?;
    let idx: Vec<usize> = offsets.iter().flat_map(|&o| o..o + inner).collect();
    one(Tensor::new(shape, movement::take(&data.data, &idx)?))
}

#[cfg(test)]
mod tests {
    use crate::ops::movement::testing::*;
    use kiln_ir::Attribute;

    #[test]
    fn gather_elements() {
        let x = iota(&[3, 3]);
        let a = [Attribute::int("axis", 1)];
        let y = run(
            "GatherElements",
            &a,
            &[x.clone(), i64s(&[2, 2], &[0, 0, 1, -1])],
        )
        .unwrap();
        assert_eq!(y.shape, vec![2, 2]);
        assert_eq!(vals(&y), vec![0., 0., 4., 5.]);
        let y = run(
            "GatherElements",
            &[],
            &[x.clone(), i64s(&[1, 3], &[2, 0, 1])],
        )
        .unwrap();
        assert_eq!(vals(&y), vec![6., 1., 5.]);
        let e = run("GatherElements", &[], &[x, i64s(&[1, 1], &[3])]).unwrap_err();
        assert!(e.contains("index 3"), "{e}");
    }

    #[test]
    fn gather_nd() {
        let x = iota(&[2, 2]);
        let y = run("GatherND", &[], &[x.clone(), i64s(&[2, 2], &[0, 0, 1, 1])]).unwrap();
        assert_eq!(y.shape, vec![2]);
        assert_eq!(vals(&y), vec![0., 3.]);
        let y = run("GatherND", &[], &[x.clone(), i64s(&[2, 1], &[1, 0])]).unwrap();
        assert_eq!(y.shape, vec![2, 2]);
        assert_eq!(vals(&y), vec![2., 3., 0., 1.]);
        // batch_dims 1: data [2,2,2], indices [2,1] → rows data[b][idx[b]].
        let x3 = iota(&[2, 2, 2]);
        let a = [Attribute::int("batch_dims", 1)];
        let y = run("GatherND", &a, &[x3, i64s(&[2, 1], &[1, 0])]).unwrap();
        assert_eq!(y.shape, vec![2, 2]);
        assert_eq!(vals(&y), vec![2., 3., 4., 5.]);
        assert!(run("GatherND", &[], &[x, i64s(&[1, 3], &[0, 0, 0])]).is_err());
    }
}
