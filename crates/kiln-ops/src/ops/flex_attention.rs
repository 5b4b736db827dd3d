//! ai.onnx.preview FlexAttention: attention over `[b, heads, seq, head]` whose scores and
//! probabilities may each pass through a user subgraph (`score_mod`, `prob_mod`) that the
//! executor runs on the whole `[b, q_heads, q_seq, kv_seq]` tensor. Scores and probabilities
//! are f32 (f64 for f64 inputs, or as `softmax_precision` says).
use kiln_ir::{AttrValue, DataType, Graph};

use super::linalg::{gemm, Mat, Real};
use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{KernelCtx, KernelFn};
use crate::value::{Data, Tensor, Value};

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    match (domain, op_type) {
        ("ai.onnx.preview", "FlexAttention") => Some(run),
        _ => None,
    }
}

/// Y: `[b, q_heads, q_seq, v_head]`.
pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let shape = match (ctx.shape(0), ctx.shape(2)) {
        (Some(q), Some(v)) if q.len() == 4 && v.len() == 4 => {
            Some(vec![q[0].clone(), q[1].clone(), q[2].clone(), v[3].clone()])
        }
        _ => None,
    };
    Ok(vec![Inferred::tensor(ctx.dtype(0), shape)])
}

fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let q = ctx.tensor(0)?;
    let precision = match ctx.attrs.iter().any(|a| a.name == "softmax_precision") {
        true => DataType::from_onnx(ctx.int_attr("softmax_precision", 1) as i32)
            .ok_or("softmax_precision is not a tensor type")?,
        false if q.dtype() == DataType::F64 => DataType::F64,
        false => DataType::F32,
    };
    match precision {
        DataType::F64 => run_typed::<f64>(ctx, precision),
        DataType::F32 | DataType::F16 | DataType::BF16 => run_typed::<f32>(ctx, precision),
        other => Err(format!("softmax_precision {other} is not a float type")),
    }
}

/// Runs a modifier subgraph on `[b, h, l, s]` values and checks it kept the shape.
fn modify<T: Real>(
    ctx: &KernelCtx,
    g: &Graph,
    what: &str,
    v: Vec<T>,
    shape: &[usize],
    dt: DataType,
) -> Result<Vec<T>> {
    let runner = ctx
        .subgraphs
        .ok_or("this runtime cannot run subgraphs here")?;
    let input = Tensor::new(shape.to_vec(), T::store(v, dt));
    let mut outs = runner.run(g, vec![Value::Tensor(input)])?;
    if outs.len() != 1 {
        return Err(format!("{what} gave {} outputs, expected 1", outs.len()));
    }
    let t = outs
        .remove(0)
        .into_tensor()
        .ok_or_else(|| format!("{what} did not give a tensor"))?;
    if t.shape != shape {
        return Err(format!(
            "{what} changed the shape from {shape:?} to {:?}",
            t.shape
        ));
    }
    Ok(T::load(&t)?.into_owned())
}

fn run_typed<T: Real>(ctx: &KernelCtx, precision: DataType) -> Result<Vec<Value>> {
    let (qt, kt, vt) = (ctx.tensor(0)?, ctx.tensor(1)?, ctx.tensor(2)?);
    for (t, what) in [(qt, "Q"), (kt, "K"), (vt, "V")] {
        if t.rank() != 4 {
            return Err(format!("{what} must have rank 4, got shape {:?}", t.shape));
        }
    }
    let (b, qh, l, d) = (qt.shape[0], qt.shape[1], qt.shape[2], qt.shape[3]);
    let (kvh, s, vd) = (kt.shape[1], kt.shape[2], vt.shape[3]);
    if kt.shape[0] != b
        || vt.shape[0] != b
        || kt.shape[3] != d
        || vt.shape[1] != kvh
        || vt.shape[2] != s
        || kvh == 0
        || qh % kvh != 0
    {
        return Err(format!(
            "Q {:?}, K {:?} and V {:?} do not fit together",
            qt.shape, kt.shape, vt.shape
        ));
    }
    let group = qh / kvh;
    let scale = match ctx.attrs.iter().any(|a| a.name == "scale") {
        true => ctx.float_attr("scale", 1.0) as f64,
        false => 1.0 / (d as f64).sqrt(),
    };
    let q = super::linalg::load_any::<T>(qt)?;
    let k = super::linalg::load_any::<T>(kt)?;
    let v = super::linalg::load_any::<T>(vt)?;
    let mut scores = super::linalg::filled(b * qh * l * s, T::zero())?;
    for bh in 0..b * qh {
        let (bi, hi) = (bh / qh, bh % qh);
        let kv = bi * kvh + hi / group;
        gemm(
            l,
            s,
            d,
            T::of(scale),
            Mat::rows(&q[bh * l * d..][..l * d], d),
            Mat::rows(&k[kv * s * d..][..s * d], d).t(),
            T::zero(),
            &mut scores[bh * l * s..][..l * s],
            s,
        )?;
    }
    let shape = [b, qh, l, s];
    let graph = |name: &str| match ctx.attr(name) {
        Some(AttrValue::Graph(g)) => Some(g.as_ref()),
        _ => None,
    };
    if let Some(g) = graph("score_mod") {
        scores = modify(ctx, g, "score_mod", scores, &shape, precision)?;
    }
    for row in scores.chunks_mut(s.max(1)) {
        let max = row.iter().fold(T::neg_infinity(), |m, &x| m.max(x));
        if max == T::neg_infinity() {
            row.fill(T::zero());
            continue;
        }
        let mut sum = T::zero();
        for x in row.iter_mut() {
            *x = (*x - max).exp();
            sum = sum + *x;
        }
        for x in row.iter_mut() {
            *x = *x / sum;
        }
    }
    if let Some(g) = graph("prob_mod") {
        scores = modify(ctx, g, "prob_mod", scores, &shape, precision)?;
    }
    let mut y = super::linalg::filled(b * qh * l * vd, T::zero())?;
    for bh in 0..b * qh {
        let (bi, hi) = (bh / qh, bh % qh);
        let kv = bi * kvh + hi / group;
        gemm(
            l,
            vd,
            s,
            T::one(),
            Mat::rows(&scores[bh * l * s..][..l * s], s),
            Mat::rows(&v[kv * s * vd..][..s * vd], vd),
            T::zero(),
            &mut y[bh * l * vd..][..l * vd],
            vd,
        )?;
    }
    let data: Data =
        super::linalg::store_f64(y.into_iter().map(|x| x.f64()).collect(), qt.dtype())?;
    Ok(vec![Value::Tensor(Tensor::new(vec![b, qh, l, vd], data))])
}
