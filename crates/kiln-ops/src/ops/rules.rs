//! Inference rules of the ops whose kernels live in misc, einsum, loss, sample, quant,
//! spectral, spatial and text: output types always, shapes where they follow from input
//! shapes and constant inputs (data-dependent sizes stay unknown). Rules never fail on a valid
//! node; an input they cannot read leaves the output unknown.
use kiln_ir::{DataType, Dim};

use crate::ctx::{InferCtx, Inferred, Result};
use crate::ops::InferFn;

pub fn infer_rule(op: &str) -> Option<InferFn> {
    Some(match op {
        "CumProd" | "ReverseSequence" => same,
        "TopK" => topk,
        "NonZero" => nonzero,
        "Unique" => unique,
        "OneHot" => onehot,
        "EyeLike" => eyelike,
        "Compress" => compress,
        "Det" => det,
        "Einsum" | "DFT" | "STFT" | "Col2Im" => type_only,
        "NegativeLogLikelihoodLoss" | "SoftmaxCrossEntropyLoss" => loss,
        "GridSample" => grid_sample,
        "RoiAlign" => roi_align,
        "QLinearConv" => crate::ops::conv::infer_qlinear,
        "QLinearMatMul" => crate::ops::matmul::infer_qlinear,
        "QuantizeLinear" => quantize,
        "DequantizeLinear" => dequantize,
        "DynamicQuantizeLinear" => dynamic_quantize,
        "HannWindow" | "HammingWindow" | "BlackmanWindow" => window,
        "MelWeightMatrix" => mel,
        "CenterCropPad" => center_crop_pad,
        "MaxUnpool" => max_unpool,
        "NonMaxSuppression" => nms,
        "StringNormalizer" => string_normalizer,
        "StringConcat" => string_concat,
        "StringSplit" => string_split,
        "RegexFullMatch" => regex_full_match,
        _ => return None,
    })
}

fn unknown_dims(n: usize) -> Vec<Dim> {
    vec![Dim::Unknown; n]
}

/// The output type of the `output_datatype` / `dtype` style attribute, or `default`.
fn attr_type(ctx: &InferCtx, name: &str, default: Option<DataType>) -> Option<DataType> {
    match ctx.attr(name) {
        Some(_) => DataType::from_onnx(ctx.int_attr(name, 0) as i32),
        None => default,
    }
}

fn norm(ctx: &InferCtx, axis: i64, rank: usize) -> Option<usize> {
    ctx.axis(axis, rank).ok()
}

fn same(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    Ok(vec![ctx.same_as(0)])
}

fn type_only(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let dt = match ctx.op_type {
        _ => ctx.dtype(0),
    };
    Ok(vec![Inferred::tensor(dt, None)])
}

fn topk(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let shape = ctx.shape(0).and_then(|s| {
        let a = norm(ctx, ctx.int_attr("axis", -1), s.len())?;
        let k = if ctx.opset < 10 {
            Some(Dim::Known(ctx.int_attr("k", 0)))
        } else {
            ctx.int_values(1).and_then(|v| v.first().cloned())
        };
        let k = k.filter(|d| d.known().is_none_or(|v| v >= 0));
        let mut s = s.to_vec();
        s[a] = k.unwrap_or(Dim::Unknown);
        Some(s)
    });
    Ok(vec![
        Inferred::tensor(ctx.dtype(0), shape.clone()),
        Inferred::tensor(Some(DataType::I64), shape),
    ])
}

fn nonzero(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let shape = ctx
        .rank(0)
        .map(|r| vec![Dim::Known(r as i64), Dim::Unknown]);
    Ok(vec![Inferred::tensor(Some(DataType::I64), shape)])
}

fn unique(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let y = match ctx.attr("axis") {
        None => Some(unknown_dims(1)),
        Some(_) => ctx.shape(0).and_then(|s| {
            let a = norm(ctx, ctx.int_attr("axis", 0), s.len())?;
            let mut s = s.to_vec();
            s[a] = Dim::Unknown;
            Some(s)
        }),
    };
    let mut out = vec![Inferred::tensor(ctx.dtype(0), y)];
    for _ in 1..ctx.num_outputs {
        out.push(Inferred::tensor(Some(DataType::I64), Some(unknown_dims(1))));
    }
    Ok(out)
}

fn onehot(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let shape = ctx.shape(0).and_then(|s| {
        let r = s.len() as i64;
        let a = ctx.int_attr("axis", -1);
        if a < -r - 1 || a > r {
            return None;
        }
        let a = if a < 0 { a + r + 1 } else { a } as usize;
        let depth = ctx
            .integral_values(1)
            .and_then(|v| v.first().cloned())
            .filter(|d| d.known().is_none_or(|v| v >= 0))
            .unwrap_or(Dim::Unknown);
        let mut s = s.to_vec();
        s.insert(a, depth);
        Some(s)
    });
    Ok(vec![Inferred::tensor(ctx.dtype(2), shape)])
}

fn eyelike(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let dt = attr_type(ctx, "dtype", ctx.dtype(0));
    Ok(vec![Inferred::tensor(dt, ctx.shape(0).map(|s| s.to_vec()))])
}

fn compress(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let shape = match ctx.attr("axis") {
        None => Some(unknown_dims(1)),
        Some(_) => ctx.shape(0).and_then(|s| {
            let a = norm(ctx, ctx.int_attr("axis", 0), s.len())?;
            let mut s = s.to_vec();
            s[a] = Dim::Unknown;
            Some(s)
        }),
    };
    Ok(vec![Inferred::tensor(ctx.dtype(0), shape)])
}

fn det(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let shape = ctx
        .shape(0)
        .filter(|s| s.len() >= 2)
        .map(|s| s[..s.len() - 2].to_vec());
    Ok(vec![Inferred::tensor(ctx.dtype(0), shape)])
}

fn loss(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let shape = match ctx.str_attr("reduction").unwrap_or("mean") {
        "none" => ctx.shape(1).map(|s| s.to_vec()),
        _ => Some(vec![]),
    };
    let mut out = vec![Inferred::tensor(ctx.dtype(0), shape)];
    if ctx.num_outputs > 1 {
        out.push(ctx.same_as(0));
    }
    Ok(out)
}

fn grid_sample(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let shape = match (ctx.shape(0), ctx.shape(1)) {
        (Some(x), Some(g)) if x.len() >= 2 && g.len() >= 2 => {
            let mut s = x[..2].to_vec();
            s.extend_from_slice(&g[1..g.len() - 1]);
            Some(s)
        }
        _ => None,
    };
    Ok(vec![Inferred::tensor(ctx.dtype(0), shape)])
}

fn roi_align(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let r = ctx
        .shape(1)
        .and_then(|s| s.first().cloned())
        .unwrap_or(Dim::Unknown);
    let c = ctx
        .shape(0)
        .and_then(|s| s.get(1).cloned())
        .unwrap_or(Dim::Unknown);
    let (h, w) = (
        ctx.int_attr("output_height", 1),
        ctx.int_attr("output_width", 1),
    );
    Ok(vec![Inferred::tensor(
        ctx.dtype(0),
        Some(vec![r, c, Dim::Known(h), Dim::Known(w)]),
    )])
}

fn quantize(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let dt = if ctx.has_input(2) {
        ctx.dtype(2)
    } else {
        match ctx.int_attr("output_dtype", 0) {
            0 => Some(DataType::U8),
            o => DataType::from_onnx(o as i32),
        }
    };
    Ok(vec![Inferred::tensor(dt, ctx.shape(0).map(|s| s.to_vec()))])
}

fn dequantize(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let dt = match ctx.int_attr("output_dtype", 0) {
        0 => ctx.dtype(1),
        o => DataType::from_onnx(o as i32),
    };
    Ok(vec![Inferred::tensor(dt, ctx.shape(0).map(|s| s.to_vec()))])
}

fn dynamic_quantize(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    Ok(vec![
        Inferred::tensor(Some(DataType::U8), ctx.shape(0).map(|s| s.to_vec())),
        Inferred::tensor(Some(DataType::F32), Some(vec![])),
        Inferred::tensor(Some(DataType::U8), Some(vec![])),
    ])
}

fn window(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let n = ctx
        .int_values(0)
        .and_then(|v| v.first().cloned())
        .unwrap_or(Dim::Unknown);
    let dt = attr_type(ctx, "output_datatype", Some(DataType::F32));
    Ok(vec![Inferred::tensor(dt, Some(vec![n]))])
}

fn mel(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let bins = ctx
        .int_values(0)
        .and_then(|v| v.first().cloned())
        .unwrap_or(Dim::Unknown);
    let spec = match ctx.known_ints(1).as_deref() {
        Some([n]) if *n > 0 => Dim::Known(n / 2 + 1),
        _ => Dim::Unknown,
    };
    let dt = attr_type(ctx, "output_datatype", Some(DataType::F32));
    Ok(vec![Inferred::tensor(dt, Some(vec![spec, bins]))])
}

fn center_crop_pad(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let shape = ctx.shape(0).and_then(|s| {
        let r = s.len();
        let axes: Vec<usize> = match ctx.ints_attr("axes") {
            Some(a) => a.iter().map(|&a| norm(ctx, a, r)).collect::<Option<_>>()?,
            None => (0..r).collect(),
        };
        let want = ctx.int_values(1);
        let mut out = s.to_vec();
        for (k, &a) in axes.iter().enumerate() {
            out[a] = want
                .as_ref()
                .and_then(|w| w.get(k).cloned())
                .unwrap_or(Dim::Unknown);
        }
        Some(out)
    });
    Ok(vec![Inferred::tensor(ctx.dtype(0), shape)])
}

fn max_unpool(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let shape = ctx.rank(0).map(unknown_dims);
    Ok(vec![Inferred::tensor(ctx.dtype(0), shape)])
}

fn nms(_ctx: &InferCtx) -> Result<Vec<Inferred>> {
    Ok(vec![Inferred::tensor(
        Some(DataType::I64),
        Some(vec![Dim::Unknown, Dim::Known(3)]),
    )])
}

fn string_normalizer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let shape = ctx.shape(0).map(|s| {
        let mut s = s.to_vec();
        if let Some(last) = s.last_mut() {
            *last = Dim::Unknown;
        }
        s
    });
    Ok(vec![Inferred::tensor(Some(DataType::String), shape)])
}

fn string_concat(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let shape = match (ctx.shape(0), ctx.shape(1)) {
        (Some(a), Some(b)) => Some(crate::ctx::broadcast(&[a, b])?),
        _ => None,
    };
    Ok(vec![Inferred::tensor(Some(DataType::String), shape)])
}

fn string_split(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let shape = ctx.shape(0).map(|s| s.to_vec());
    let parts = shape.clone().map(|mut s| {
        s.push(Dim::Unknown);
        s
    });
    Ok(vec![
        Inferred::tensor(Some(DataType::String), parts),
        Inferred::tensor(Some(DataType::I64), shape),
    ])
}

fn regex_full_match(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    Ok(vec![Inferred::tensor(
        Some(DataType::Bool),
        ctx.shape(0).map(|s| s.to_vec()),
    )])
}
