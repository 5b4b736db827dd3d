//! If, Loop and Scan. Their bodies run through the executor (`KernelCtx::subgraphs`); these
//! kernels only choose branches, carry state and slice or stack scanned tensors.
use kiln_ir::{AttrValue, Graph};

use super::movement::{take, take_from};
use crate::kernel::{KernelCtx, KernelFn, Result};
use crate::value::{Tensor, Value};

pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    if !domain.is_empty() {
        return None;
    }
    Some(match op_type {
        "If" => if_op,
        "Loop" => loop_op,
        "Scan" => scan,
        _ => return None,
    })
}

fn body<'a>(ctx: &KernelCtx<'a>, name: &str) -> Result<&'a Graph> {
    match ctx.attr(name) {
        Some(AttrValue::Graph(g)) => Ok(g),
        _ => Err(format!(
            "{} needs the graph attribute '{name}'",
            ctx.op_type
        )),
    }
}

fn run_body(ctx: &KernelCtx, g: &Graph, inputs: Vec<Value>) -> Result<Vec<Value>> {
    let runner = ctx
        .subgraphs
        .ok_or("this runtime cannot run subgraphs here")?;
    let outs = runner.run(g, inputs)?;
    if outs.len() != g.outputs().len() {
        return Err(format!("body '{}' gave {} outputs", g.name, outs.len()));
    }
    Ok(outs)
}

fn scalar_bool(v: &Value, what: &str) -> Result<bool> {
    let t = v
        .tensor()
        .ok_or_else(|| format!("{what} must be a tensor"))?;
    if t.len() != 1 {
        return Err(format!(
            "{what} must hold one element, got shape {:?}",
            t.shape
        ));
    }
    Ok(t.to_i64s()?[0] != 0)
}

fn if_op(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let cond = scalar_bool(ctx.value(0)?, "If's condition")?;
    let g = body(ctx, if cond { "then_branch" } else { "else_branch" })?;
    run_body(ctx, g, Vec::new())
}

/// Element `i` of `t` along `axis` (that axis removed).
pub fn select(t: &Tensor, axis: usize, i: usize) -> Result<Tensor> {
    let dim = t.shape[axis];
    let outer: usize = t.shape[..axis].iter().product();
    let inner: usize = t.shape[axis + 1..].iter().product();
    let mut idx = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        let base = (o * dim + i) * inner;
        idx.extend(base..base + inner);
    }
    let mut shape = t.shape.clone();
    shape.remove(axis);
    Ok(Tensor::new(shape, take(&t.data, &idx)?))
}

/// Stacks equally shaped tensors along a new `axis`.
pub fn stack(ts: &[Tensor], axis: usize) -> Result<Tensor> {
    let first = ts.first().ok_or("nothing to stack")?;
    if let Some(t) = ts.iter().find(|t| t.shape != first.shape) {
        return Err(format!(
            "cannot stack shapes {:?} and {:?}",
            first.shape, t.shape
        ));
    }
    let outer: usize = first.shape[..axis].iter().product();
    let inner: usize = first.shape[axis..].iter().product();
    let mut idx = Vec::with_capacity(outer * inner * ts.len());
    for o in 0..outer {
        for s in 0..ts.len() {
            idx.extend((0..inner).map(|k| (s, o * inner + k)));
        }
    }
    let srcs: Vec<_> = ts.iter().map(|t| &t.data).collect();
    let mut shape = first.shape.clone();
    shape.insert(axis, ts.len());
    Ok(Tensor::new(shape, take_from(&srcs, &idx)?))
}

fn loop_op(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let g = body(ctx, "body")?;
    let max_trips = match ctx.opt_tensor(0)? {
        Some(t) => Some(*t.to_i64s()?.first().ok_or("M must hold one element")?),
        None => None,
    };
    let mut cond = match ctx.inputs.get(1).copied().flatten() {
        Some(v) => scalar_bool(v, "Loop's condition")?,
        None => true,
    };
    let mut carried: Vec<Value> = (2..ctx.inputs.len())
        .map(|i| ctx.value(i).cloned())
        .collect::<Result<_>>()?;
    let n = carried.len();
    let body_outputs = g.outputs().len();
    if body_outputs < 1 + n {
        return Err(format!(
            "Loop body gives {body_outputs} outputs for {n} carried values"
        ));
    }
    let mut scans: Vec<Vec<Tensor>> = vec![Vec::new(); body_outputs - 1 - n];
    let mut i: i64 = 0;
    while cond && max_trips.is_none_or(|m| i < m) {
        let mut ins = vec![
            Value::Tensor(Tensor::scalar(i)),
            Value::Tensor(Tensor::scalar(cond)),
        ];
        ins.extend(carried.iter().cloned());
        let mut outs = run_body(ctx, g, ins)?.into_iter();
        cond = scalar_bool(&outs.next().expect("checked count"), "the body's condition")?;
        carried = outs.by_ref().take(n).collect();
        for (k, v) in outs.enumerate() {
            let t = v.into_tensor().ok_or("Loop scan outputs must be tensors")?;
            scans[k].push(t);
        }
        i += 1;
        if i > 1 << 31 {
            return Err("Loop ran more than 2^31 iterations".into());
        }
    }
    let mut out = carried;
    for (k, s) in scans.into_iter().enumerate() {
        if s.is_empty() {
            // No iteration ran: an empty stack of the declared element type.
            let dt = g
                .value(g.outputs()[1 + n + k])
                .ty
                .as_ref()
                .and_then(|t| t.dtype())
                .unwrap_or(kiln_ir::DataType::F32);
            out.push(Value::Tensor(Tensor::new(
                vec![0],
                crate::Data::zeros(dt, 0)?,
            )));
        } else {
            out.push(Value::Tensor(stack(&s, 0)?));
        }
    }
    Ok(out)
}

fn scan(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let g = body(ctx, "body")?;
    let m = ctx.int_attr("num_scan_inputs", 0);
    if m < 1 {
        return Err("Scan needs num_scan_inputs >= 1".into());
    }
    let m = m as usize;
    if ctx.opset < 9 {
        return scan8(ctx, g, m);
    }
    let total = ctx.inputs.len();
    if total < m {
        return Err(format!("Scan has {total} inputs for {m} scan inputs"));
    }
    let n = total - m;
    let states: Vec<Value> = (0..n)
        .map(|i| ctx.value(i).cloned())
        .collect::<Result<_>>()?;
    let scan_in: Vec<&Tensor> = (n..total).map(|i| ctx.tensor(i)).collect::<Result<_>>()?;
    let outs = scan_loop(ctx, g, states, &scan_in)?;
    Ok(outs)
}

/// The shared iteration of Scan: states carried, scan inputs sliced, scan outputs stacked.
fn scan_loop(
    ctx: &KernelCtx,
    g: &Graph,
    mut states: Vec<Value>,
    scan_in: &[&Tensor],
) -> Result<Vec<Value>> {
    let m = scan_in.len();
    let n = states.len();
    let in_axes = ctx.ints_or("scan_input_axes", 0, m);
    let in_dirs = ctx.ints_or("scan_input_directions", 0, m);
    let k = g
        .outputs()
        .len()
        .checked_sub(n)
        .ok_or("Scan body has too few outputs")?;
    let out_axes = ctx.ints_or("scan_output_axes", 0, k);
    let out_dirs = ctx.ints_or("scan_output_directions", 0, k);
    if in_axes.len() != m || in_dirs.len() != m || out_axes.len() != k || out_dirs.len() != k {
        return Err("Scan axis/direction attributes do not match the inputs and outputs".into());
    }
    let mut axes = Vec::with_capacity(m);
    let mut len = None;
    for (t, &a) in scan_in.iter().zip(&in_axes) {
        let a = crate::kernel::norm_axis(a, t.rank())?;
        let l = t.shape[a];
        if len.is_some_and(|x| x != l) {
            return Err("scan inputs differ in sequence length".into());
        }
        len = Some(l);
        axes.push(a);
    }
    let len = len.unwrap_or(0);
    let mut scans: Vec<Vec<Tensor>> = vec![Vec::new(); k];
    for step in 0..len {
        let mut ins = states.clone();
        for (j, t) in scan_in.iter().enumerate() {
            let at = if in_dirs[j] != 0 {
                len - 1 - step
            } else {
                step
            };
            ins.push(Value::Tensor(select(t, axes[j], at)?));
        }
        let mut outs = run_body(ctx, g, ins)?.into_iter();
        states = outs.by_ref().take(n).collect();
        for (j, v) in outs.enumerate() {
            scans[j].push(v.into_tensor().ok_or("Scan outputs must be tensors")?);
        }
    }
    let mut out = states;
    for (j, mut s) in scans.into_iter().enumerate() {
        if out_dirs[j] != 0 {
            s.reverse();
        }
        if s.is_empty() {
            return Err("Scan over an empty sequence has no output shape".into());
        }
        let axis = crate::kernel::norm_axis(out_axes[j], s[0].rank() + 1)?;
        out.push(Value::Tensor(stack(&s, axis)?));
    }
    Ok(out)
}

/// Scan-8: a leading batch axis and an optional `sequence_lens` input; each batch runs alone.
fn scan8(ctx: &KernelCtx, g: &Graph, m: usize) -> Result<Vec<Value>> {
    if ctx.has_input(0) {
        return Err("Scan-8 with sequence_lens is not supported".into());
    }
    let total = ctx.inputs.len();
    let n = total - 1 - m;
    let states: Vec<&Tensor> = (1..1 + n).map(|i| ctx.tensor(i)).collect::<Result<_>>()?;
    let scan_in: Vec<&Tensor> = (1 + n..total)
        .map(|i| ctx.tensor(i))
        .collect::<Result<_>>()?;
    let batch = scan_in.first().map(|t| t.shape[0]).unwrap_or(0);
    let mut per_out: Vec<Vec<Tensor>> = Vec::new();
    for b in 0..batch {
        let st: Vec<Value> = states
            .iter()
            .map(|t| select(t, 0, b).map(Value::Tensor))
            .collect::<Result<_>>()?;
        let sc: Vec<Tensor> = scan_in
            .iter()
            .map(|t| select(t, 0, b))
            .collect::<Result<_>>()?;
        let sc_refs: Vec<&Tensor> = sc.iter().collect();
        let outs = scan_loop(ctx, g, st, &sc_refs)?;
        if per_out.is_empty() {
            per_out = vec![Vec::new(); outs.len()];
        }
        for (j, v) in outs.into_iter().enumerate() {
            per_out[j].push(v.into_tensor().ok_or("Scan outputs must be tensors")?);
        }
    }
    per_out
        .into_iter()
        .map(|ts| stack(&ts, 0).map(Value::Tensor))
        .collect()
}
