//! com.microsoft QEmbedLayerNormalization: BERT's embedding sum and LayerNorm with 8-bit tables,
//! as ONNX Runtime's `quantize_dynamic` writes it over an optimized transformer. Every table
//! (word, position, optional segment, gamma, beta) is u8 or s8 with one scale and zero point;
//! each looked-up value is dequantized `(q - z) · s` in f32, the sum normalized as ORT does
//! (`(x - mean) / sqrt(var + epsilon) · gamma + beta`), positions taken as `0..S`. The second
//! output counts each batch row's mask entries equal to 1 (zeros without a mask).
use kiln_ir::{DataType, Dim};

use crate::ctx::{InferCtx, Inferred};
use crate::kernel::{KernelCtx, Result};
use crate::value::{Tensor, Value};

/// `[B, S, H]` f32 and `[B]` int32.
pub fn infer(ctx: &InferCtx) -> crate::ctx::Result<Vec<Inferred>> {
    let (ids, w) = (ctx.shape(0), ctx.shape(2));
    let y = match (ids, w) {
        (Some(i), Some(w)) if i.len() == 2 && w.len() == 2 => {
            Some(vec![i[0].clone(), i[1].clone(), w[1].clone()])
        }
        _ => None,
    };
    let batch: Option<Vec<Dim>> = ids.filter(|i| i.len() == 2).map(|i| vec![i[0].clone()]);
    Ok(vec![
        Inferred::tensor(Some(DataType::F32), y),
        Inferred::tensor(Some(DataType::I32), batch),
    ])
}

/// A quantized table: bytes, signedness, scale, zero point, rows of `h`.
struct Table<'a> {
    v: &'a [u8],
    signed: bool,
    scale: f32,
    zero: i32,
}

impl Table<'_> {
    fn get(&self, i: usize) -> f32 {
        (super::byte_value(self.v[i], self.signed) - self.zero) as f32 * self.scale
    }
}

fn table<'a>(ctx: &KernelCtx<'a>, i: usize, si: usize, zi: usize, what: &str) -> Result<Table<'a>> {
    let t = ctx.tensor(i)?;
    let (v, signed) = super::bytes(t)
        .ok_or_else(|| format!("{what} must be uint8 or int8, got {}", t.dtype()))?;
    Ok(Table {
        v,
        signed,
        scale: super::scale(ctx.tensor(si)?, &format!("{what} scale"))?,
        zero: super::zero(Some(ctx.tensor(zi)?), signed, &format!("{what} zero point"))?,
    })
}

pub(super) fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let ids = ctx.tensor(0)?;
    if ids.rank() != 2 {
        return Err(format!("input_ids must be [B, S], got {:?}", ids.shape));
    }
    let (b, s) = (ids.shape[0], ids.shape[1]);
    let ids = ids.to_i64s()?;
    let segs = ctx.opt_tensor(1)?.map(|t| t.to_i64s()).transpose()?;
    let word_t = ctx.tensor(2)?;
    if word_t.rank() != 2 {
        return Err(format!(
            "word_embedding must be [V, H], got {:?}",
            word_t.shape
        ));
    }
    let (vocab, h) = (word_t.shape[0], word_t.shape[1]);
    let word = table(ctx, 2, 8, 13, "word_embedding")?;
    let pos = table(ctx, 3, 9, 14, "position_embedding")?;
    let seg = match &segs {
        Some(_) => Some(table(ctx, 4, 10, 15, "segment_embedding")?),
        None => None,
    };
    let gamma = table(ctx, 5, 11, 16, "gamma")?;
    let beta = table(ctx, 6, 12, 17, "beta")?;
    let rows = |t: &Table, what: &str| -> Result<usize> {
        if !t.v.len().is_multiple_of(h.max(1)) {
            return Err(format!("{what} has {} values, not rows of {h}", t.v.len()));
        }
        Ok(t.v.len() / h.max(1))
    };
    let (npos, nseg) = (
        rows(&pos, "position_embedding")?,
        seg.as_ref()
            .map(|t| rows(t, "segment_embedding"))
            .transpose()?,
    );
    if gamma.v.len() != h || beta.v.len() != h {
        return Err(format!(
            "gamma and beta need {h} values, have {} and {}",
            gamma.v.len(),
            beta.v.len()
        ));
    }
    if s > npos {
        return Err(format!("sequence length {s} exceeds the {npos} positions"));
    }
    let eps = ctx.float_attr("epsilon", 1e-12);
    let n = super::super::linalg::product(&[b, s, h])?;
    let mut out = super::super::linalg::filled(n, 0f32)?;
    for (t, row) in out.chunks_mut(h.max(1)).enumerate().take(b * s) {
        let wi = ids[t];
        if !(0..vocab as i64).contains(&wi) {
            return Err(format!(
                "input_ids[{}, {}] = {wi} is outside the {vocab} words",
                t / s,
                t % s
            ));
        }
        let si = match (&segs, nseg) {
            (Some(sv), Some(ns)) => {
                let v = sv[t];
                if !(0..ns as i64).contains(&v) {
                    return Err(format!(
                        "segment_ids[{}, {}] = {v} is outside the {ns} segments",
                        t / s,
                        t % s
                    ));
                }
                Some(v as usize * h)
            }
            _ => None,
        };
        let (wb, pb) = (wi as usize * h, (t % s) * h);
        let mut sum = 0f32;
        for (i, o) in row.iter_mut().enumerate() {
            let mut v = word.get(wb + i) + pos.get(pb + i);
            if let (Some(sb), Some(st)) = (si, &seg) {
                v += st.get(sb + i);
            }
            *o = v;
            sum += v;
        }
        let mean = sum / h as f32;
        let mut sq = 0f32;
        for o in row.iter_mut() {
            *o -= mean;
            sq += *o * *o;
        }
        let e = (sq / h as f32 + eps).sqrt();
        for (i, o) in row.iter_mut().enumerate() {
            *o = *o / e * gamma.get(i) + beta.get(i);
        }
    }
    let mask_index: Vec<i32> = match ctx.opt_tensor(7)? {
        Some(m) => {
            let mv = m.to_i64s()?;
            if mv.len() != b * s {
                return Err(format!("mask has shape {:?}, expected [{b}, {s}]", m.shape));
            }
            mv.chunks(s.max(1))
                .take(b)
                .map(|r| r.iter().filter(|&&v| v == 1).count() as i32)
                .collect()
        }
        None => vec![0; b],
    };
    Ok(vec![
        Value::Tensor(Tensor::from_vec(vec![b, s, h], out)),
        Value::Tensor(Tensor::from_vec(vec![b], mask_index)),
    ])
}
