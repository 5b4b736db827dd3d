//! Binarizer, ArrayFeatureExtractor, Scaler and Normalizer.
use kiln_ir::{AttrList, DataType, Dim};

use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{one, KernelCtx};
use crate::ops::movement;
use crate::value::{Tensor, Value};

/// `x > threshold` as 1 or 0, in X's type.
pub fn binarizer(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let t = ctx.float_attr("threshold", 0.0) as f64;
    let v: Vec<f64> = x
        .to_f64s()?
        .into_iter()
        .map(|e| (e > t) as u8 as f64)
        .collect();
    one(super::super::cast::from_f64s_saturating(
        v,
        x.shape.clone(),
        x.dtype(),
    )?)
}

/// Scaler/Normalizer give float X's shape.
pub fn infer_float_like(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    Ok(vec![Inferred::tensor(
        Some(DataType::F32),
        ctx.shape(0).map(|s| s.to_vec()),
    )])
}

/// ArrayFeatureExtractor: `[..., len(indices)]` (a 1-D X gives `[1, len]`).
pub fn infer_array_feature_extractor(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let shape = match (ctx.shape(0), ctx.shape(1)) {
        (Some(x), Some(i)) => {
            let n = i
                .iter()
                .try_fold(1i64, |a, d| d.known().map(|v| a * v))
                .map_or(Dim::Unknown, Dim::Known);
            let mut s = if x.len() <= 1 {
                vec![Dim::Known(1)]
            } else {
                x[..x.len() - 1].to_vec()
            };
            s.push(n);
            Some(s)
        }
        _ => None,
    };
    Ok(vec![Inferred::tensor(ctx.dtype(0), shape)])
}

/// Picks the given positions of X's last axis, as ONNX Runtime does.
pub fn array_feature_extractor(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let idx = ctx.tensor(1)?.to_i64s()?;
    let last = *x.shape.last().ok_or("X must have rank >= 1")?;
    for &i in &idx {
        if i < 0 || i as usize >= last {
            return Err(format!("index {i} is outside X's last axis of {last}"));
        }
    }
    let rows = x.len().checked_div(last).unwrap_or(0);
    let pairs: Vec<(usize, usize)> = (0..rows)
        .flat_map(|r| idx.iter().map(move |&i| (0, r * last + i as usize)))
        .collect();
    let mut shape = if x.rank() == 1 {
        vec![1]
    } else {
        x.shape[..x.rank() - 1].to_vec()
    };
    shape.push(idx.len());
    one(Tensor::new(shape, movement::take_from(&[&x.data], &pairs)?))
}

fn per_column(v: Option<&[f32]>, cols: usize, what: &str, default: f32) -> Result<Vec<f64>> {
    match v {
        None => Ok(vec![default as f64; cols]),
        Some([one]) => Ok(vec![*one as f64; cols]),
        Some(v) if v.len() == cols => Ok(v.iter().map(|&e| e as f64).collect()),
        Some(v) => Err(format!("{what} has {} values for {cols} columns", v.len())),
    }
}

/// `(x - offset) * scale` per column.
pub fn scaler(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let cols = *x.shape.last().unwrap_or(&1);
    let off = per_column(ctx.attrs.get_floats("offset"), cols, "offset", 0.0)?;
    let sc = per_column(ctx.attrs.get_floats("scale"), cols, "scale", 1.0)?;
    let v: Vec<f32> = x
        .to_f64s()?
        .iter()
        .enumerate()
        .map(|(i, &e)| ((e - off[i % cols.max(1)]) * sc[i % cols.max(1)]) as f32)
        .collect();
    one(Tensor::from_vec(x.shape.clone(), v))
}

/// Each row divided by its MAX, L1 or L2 norm.
pub fn normalizer(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let cols = *x.shape.last().unwrap_or(&1);
    let norm = ctx.str_attr("norm").unwrap_or("MAX");
    let v = x.to_f64s()?;
    let mut out = Vec::with_capacity(v.len());
    for row in v.chunks(cols.max(1)) {
        let d = match norm {
            "MAX" => row.iter().fold(f64::NEG_INFINITY, |m, &e| m.max(e)),
            "L1" => row.iter().map(|e| e.abs()).sum(),
            "L2" => row.iter().map(|e| e * e).sum::<f64>().sqrt(),
            n => return Err(format!("norm must be MAX, L1 or L2, got '{n}'")),
        };
        out.extend(
            row.iter()
                .map(|&e| if d == 0.0 { e as f32 } else { (e / d) as f32 }),
        );
    }
    one(Tensor::from_vec(x.shape.clone(), out))
}
