//! Sequence ops: SequenceEmpty, SequenceConstruct, SequenceAt, SequenceInsert, SequenceErase,
//! SequenceLength, SplitToSequence, ConcatFromSequence, SequenceMap.
use kiln_ir::DataType;

use super::control_flow::{select, stack};
use super::movement::take_from;
use crate::kernel::{norm_axis, KernelCtx, KernelFn, Result};
use crate::value::{Tensor, Value};

pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    if !domain.is_empty() {
        return None;
    }
    Some(match op_type {
        "SequenceEmpty" => empty,
        "SequenceConstruct" => construct,
        "SequenceAt" => at,
        "SequenceInsert" => insert,
        "SequenceErase" => erase,
        "SequenceLength" => length,
        "SplitToSequence" => split_to_sequence,
        "ConcatFromSequence" => concat_from_sequence,
        "SequenceMap" => map,
        _ => return None,
    })
}

fn seq<'a>(ctx: &KernelCtx<'a>, i: usize) -> Result<(Option<DataType>, &'a [Tensor])> {
    match ctx.value(i)? {
        Value::Sequence(dt, ts) => Ok((*dt, ts)),
        _ => Err(format!("input {i} must be a sequence")),
    }
}

fn position(ctx: &KernelCtx, i: usize, len: usize, inclusive_end: bool) -> Result<Option<usize>> {
    let Some(t) = ctx.opt_tensor(i)? else {
        return Ok(None);
    };
    let p = *t
        .to_i64s()?
        .first()
        .ok_or("position must hold one element")?;
    let n = len as i64;
    let hi = if inclusive_end { n } else { n - 1 };
    if p < -n || p > hi {
        return Err(format!(
            "position {p} is out of range for a sequence of {len}"
        ));
    }
    Ok(Some(if p < 0 { p + n } else { p } as usize))
}

fn empty(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let dt = DataType::from_onnx(ctx.int_attr("dtype", 1) as i32).ok_or("unknown dtype")?;
    Ok(vec![Value::Sequence(Some(dt), Vec::new())])
}

fn construct(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let ts: Vec<Tensor> = (0..ctx.inputs.len())
        .map(|i| ctx.tensor(i).cloned())
        .collect::<Result<_>>()?;
    let dt = ts.first().map(|t| t.dtype());
    if ts.iter().any(|t| Some(t.dtype()) != dt) {
        return Err("SequenceConstruct inputs must share one element type".into());
    }
    Ok(vec![Value::Sequence(dt, ts)])
}

fn at(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (_, ts) = seq(ctx, 0)?;
    let p = position(ctx, 1, ts.len(), false)?.ok_or("SequenceAt needs a position")?;
    Ok(vec![Value::Tensor(ts[p].clone())])
}

fn insert(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (dt, ts) = seq(ctx, 0)?;
    let t = ctx.tensor(1)?.clone();
    if dt.is_some_and(|d| d != t.dtype()) {
        return Err(format!(
            "cannot insert {} into a sequence of {}",
            t.dtype(),
            dt.unwrap()
        ));
    }
    let mut v = ts.to_vec();
    let p = position(ctx, 2, v.len(), true)?.unwrap_or(v.len());
    v.insert(p, t);
    Ok(vec![Value::Sequence(dt.or(Some(v[p].dtype())), v)])
}

fn erase(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (dt, ts) = seq(ctx, 0)?;
    if ts.is_empty() {
        return Err("cannot erase from an empty sequence".into());
    }
    let mut v = ts.to_vec();
    let p = position(ctx, 1, v.len(), false)?.unwrap_or(v.len() - 1);
    v.remove(p);
    Ok(vec![Value::Sequence(dt, v)])
}

fn length(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (_, ts) = seq(ctx, 0)?;
    Ok(vec![Value::Tensor(Tensor::scalar(ts.len() as i64))])
}

/// Consecutive slices of `t` along `axis` with the given sizes.
fn chunks(t: &Tensor, axis: usize, sizes: &[usize]) -> Result<Vec<Tensor>> {
    let dim = t.shape[axis];
    if sizes.iter().sum::<usize>() != dim {
        return Err(format!("split sizes {sizes:?} do not add up to {dim}"));
    }
    let outer: usize = t.shape[..axis].iter().product();
    let inner: usize = t.shape[axis + 1..].iter().product();
    let mut out = Vec::with_capacity(sizes.len());
    let mut start = 0;
    for &s in sizes {
        let mut idx = Vec::with_capacity(outer * s * inner);
        for o in 0..outer {
            let base = (o * dim + start) * inner;
            idx.extend((base..base + s * inner).map(|i| (0, i)));
        }
        let mut shape = t.shape.clone();
        shape[axis] = s;
        out.push(Tensor::new(shape, take_from(&[&t.data], &idx)?));
        start += s;
    }
    Ok(out)
}

fn split_to_sequence(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let t = ctx.tensor(0)?;
    let axis = norm_axis(ctx.int_attr("axis", 0), t.rank())?;
    let dim = t.shape[axis];
    let parts = match ctx.opt_tensor(1)? {
        None => {
            let parts: Result<Vec<Tensor>> = (0..dim).map(|i| select(t, axis, i)).collect();
            let parts = parts?;
            if ctx.int_attr("keepdims", 1) != 0 {
                parts
                    .into_iter()
                    .map(|p| {
                        let mut shape = p.shape.clone();
                        shape.insert(axis, 1);
                        Tensor::new(shape, p.data)
                    })
                    .collect()
            } else {
                parts
            }
        }
        Some(s) => {
            let v = s.to_i64s()?;
            if v.iter().any(|&x| x < 0) {
                return Err("split sizes must be non-negative".into());
            }
            let sizes: Vec<usize> = if s.rank() == 0 {
                let k = v[0] as usize;
                if k == 0 {
                    return Err("split size must be positive".into());
                }
                let mut sz = vec![k; dim / k];
                if dim % k != 0 {
                    sz.push(dim % k);
                }
                sz
            } else {
                v.iter().map(|&x| x as usize).collect()
            };
            chunks(t, axis, &sizes)?
        }
    };
    Ok(vec![Value::Sequence(Some(t.dtype()), parts)])
}

fn concat_from_sequence(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (_, ts) = seq(ctx, 0)?;
    let first = ts.first().ok_or("cannot concatenate an empty sequence")?;
    let new_axis = ctx.int_attr("new_axis", 0) != 0;
    let rank = first.rank() + usize::from(new_axis);
    let axis = norm_axis(ctx.int_attr("axis", 0), rank)?;
    if new_axis {
        return Ok(vec![Value::Tensor(stack(ts, axis)?)]);
    }
    for t in ts {
        if t.rank() != first.rank()
            || t.shape
                .iter()
                .enumerate()
                .any(|(i, &d)| i != axis && d != first.shape[i])
        {
            return Err(format!(
                "cannot concatenate {:?} and {:?}",
                first.shape, t.shape
            ));
        }
    }
    let outer: usize = first.shape[..axis].iter().product();
    let mut idx = Vec::new();
    for o in 0..outer {
        for (s, t) in ts.iter().enumerate() {
            let chunk: usize = t.shape[axis..].iter().product();
            idx.extend((o * chunk..(o + 1) * chunk).map(|i| (s, i)));
        }
    }
    let srcs: Vec<_> = ts.iter().map(|t| &t.data).collect();
    let mut shape = first.shape.clone();
    shape[axis] = ts.iter().map(|t| t.shape[axis]).sum();
    Ok(vec![Value::Tensor(Tensor::new(
        shape,
        take_from(&srcs, &idx)?,
    ))])
}

/// SequenceMap: the body runs once per element of the first input; sequence inputs give their
/// i-th element, tensor inputs are passed whole; each body output becomes a sequence.
fn map(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let Some(kiln_ir::AttrValue::Graph(g)) = ctx.attr("body") else {
        return Err("SequenceMap needs a body".into());
    };
    let runner = ctx
        .subgraphs
        .ok_or("this runtime cannot run subgraphs here")?;
    let (_, first) = seq(ctx, 0)?;
    let n = first.len();
    let mut outs: Vec<Vec<Tensor>> = vec![Vec::new(); g.outputs().len()];
    for i in 0..n {
        let mut ins = Vec::with_capacity(ctx.inputs.len());
        for j in 0..ctx.inputs.len() {
            match ctx.value(j)? {
                Value::Sequence(_, ts) => {
                    let t = ts.get(i).ok_or("SequenceMap inputs differ in length")?;
                    ins.push(Value::Tensor(t.clone()));
                }
                v => ins.push(v.clone()),
            }
        }
        for (k, v) in runner.run(g, ins)?.into_iter().enumerate() {
            let t = v
                .into_tensor()
                .ok_or("SequenceMap body outputs must be tensors")?;
            outs.get_mut(k)
                .ok_or("SequenceMap body gave too many outputs")?
                .push(t);
        }
    }
    Ok(outs
        .into_iter()
        .enumerate()
        .map(|(k, ts)| {
            let dt = ts.first().map(|t| t.dtype()).or_else(|| {
                g.value(g.outputs()[k]).ty.as_ref().and_then(|t| match t {
                    kiln_ir::ValueType::Sequence(e) => e.dtype(),
                    other => other.dtype(),
                })
            });
            Value::Sequence(dt, ts)
        })
        .collect())
}
