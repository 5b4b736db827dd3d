//! LinearClassifier and LinearRegressor: `X · coefficientsᵀ + intercepts`, then ONNX
//! Runtime's post transforms. As in ORT, a single score column applies only PROBIT, and a
//! one-score classifier with two labels writes `[1 - s, s]` (`s` through LOGISTIC when that is
//! the transform) and picks label 1 when `s > 0`.
use kiln_ir::{AttrList, AttrValue, DataType, Dim};

use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::KernelCtx;
use crate::value::{Tensor, Value};

use super::forest::{post_transform_code, rows_of};
use super::tree_ensemble::post_transform;
use super::tree_legacy::{class_labels, pick_labels};
use super::{classifier_types, rows_dim};

/// `[N, outputs]` of `X · Wᵀ + b`, W row-major `[outputs, F]`.
fn affine(x: &Tensor, w: &[f32], b: Option<&[f32]>, outputs: usize) -> Result<(usize, Vec<f64>)> {
    let (n, f) = rows_of(&x.shape)?;
    crate::ops::movement::numel(&[n, outputs])?;
    if Some(w.len()) != outputs.checked_mul(f) {
        return Err(format!(
            "{} coefficients for {outputs} outputs of {f} features",
            w.len()
        ));
    }
    let xv = x.to_f64s()?;
    let mut out = Vec::with_capacity(n * outputs);
    for r in 0..n {
        let row = &xv[r * f..(r + 1) * f];
        for o in 0..outputs {
            let dot: f64 = row
                .iter()
                .zip(&w[o * f..(o + 1) * f])
                .map(|(&a, &c)| a * c as f64)
                .sum();
            out.push(dot + b.map_or(0.0, |b| b[o] as f64));
        }
    }
    Ok((n, out))
}

fn coefficients<'a>(ctx: &'a KernelCtx) -> Result<&'a [f32]> {
    ctx.attrs
        .get_floats("coefficients")
        .ok_or_else(|| "the attribute coefficients is required".into())
}

pub fn infer_regressor(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    Ok(vec![Inferred::tensor(
        Some(DataType::F32),
        Some(vec![rows_dim(ctx), Dim::Known(ctx.int_attr("targets", 1))]),
    )])
}

pub fn regressor(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let targets = usize::try_from(ctx.int_attr("targets", 1))
        .ok()
        .filter(|&t| t > 0)
        .ok_or("targets must be positive")?;
    let w = coefficients(ctx)?;
    // Intercepts of another length than the targets are ignored, as ORT does.
    let b = ctx
        .attrs
        .get_floats("intercepts")
        .filter(|b| b.len() == targets);
    let post = post_transform_code(ctx.str_attr("post_transform"))?;
    let (n, mut y) = affine(x, w, b, targets)?;
    if targets > 1 || post == 4 {
        for row in y.chunks_mut(targets) {
            post_transform(row, post)?;
        }
    }
    Ok(vec![Value::Tensor(Tensor::from_vec(
        vec![n, targets],
        y.iter().map(|&v| v as f32).collect(),
    ))])
}

/// Y: labels `[N]`; Z: `[N, classes]` (2 for a one-score binary model).
pub fn infer_classifier(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let classes = match ctx.attr("intercepts") {
        Some(AttrValue::Floats(b)) => b.len(),
        _ => 0,
    };
    classifier_types(ctx, "classlabels_ints", |labels| match (classes, labels) {
        (1, 2) => Dim::Known(2),
        (0, _) => Dim::Unknown,
        (c, _) => Dim::Known(c as i64),
    })
}

pub fn classifier(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let labels = class_labels(ctx, "classlabels_ints")?;
    let w = coefficients(ctx)?;
    let b = ctx
        .attrs
        .get_floats("intercepts")
        .ok_or("the attribute intercepts is required (it sets the class count)")?;
    let c = b.len();
    if c == 0 {
        return Err("intercepts is empty".into());
    }
    if c > 1 && labels.len() < c {
        return Err(format!("{} class labels for {c} classes", labels.len()));
    }
    let post = post_transform_code(ctx.str_attr("post_transform"))?;
    let (n, s) = affine(x, w, Some(b), c)?;
    let mut ys = Vec::with_capacity(n);
    let mut z = Vec::with_capacity(n * c.max(2));
    for row in s.chunks(c) {
        if c == 1 {
            let v = row[0];
            ys.push(usize::from(v > 0.0));
            if labels.len() == 2 {
                // ORT applies LOGISTIC here and ignores the softmax forms.
                let p = if post == 1 {
                    1.0 / (1.0 + (-v).exp())
                } else {
                    v
                };
                z.extend([1.0 - p, p]);
            } else {
                let mut r = vec![v];
                if post == 4 {
                    post_transform(&mut r, post)?;
                }
                z.extend(r);
            }
        } else {
            let best = (0..c).fold(0, |b, k| if row[k] > row[b] { k } else { b });
            ys.push(best);
            let mut r = row.to_vec();
            post_transform(&mut r, post)?;
            z.extend(r);
        }
    }
    let width = if c == 1 && labels.len() == 2 { 2 } else { c };
    Ok(vec![
        Value::Tensor(pick_labels(&labels, &ys)),
        Value::Tensor(Tensor::from_vec(
            vec![n, width],
            z.iter().map(|&v| v as f32).collect(),
        )),
    ])
}
