//! com.microsoft EmbedLayerNormalization, as ONNX Runtime's transformer optimizer writes BERT's
//! embeddings: word + position (+ segment) embedding rows, layer-normalized over the hidden
//! axis; the second output is each sequence's mask length (`mask_index`).
use kiln_ir::{DataType, Dim};

use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{KernelCtx, KernelFn};
use crate::ops::linalg::{float_dispatch, Real};
use crate::ops::norm::layer_norm;
use crate::value::{Tensor, Value};

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    match (domain, op_type) {
        ("com.microsoft", "EmbedLayerNormalization") => Some(run),
        _ => None,
    }
}

/// output `[B, S, H]` like the word embedding; mask_index `[B]` int32; embedding_sum like output.
pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let (b, s) = match ctx.shape(0) {
        Some([b, s]) => (b.clone(), s.clone()),
        _ => (Dim::Unknown, Dim::Unknown),
    };
    let h = ctx
        .shape(2)
        .and_then(|w| w.get(1).cloned())
        .unwrap_or(Dim::Unknown);
    let dt = ctx.dtype(2);
    let mut out = vec![
        Inferred::tensor(dt, Some(vec![b.clone(), s.clone(), h.clone()])),
        Inferred::tensor(Some(DataType::I32), Some(vec![b.clone()])),
    ];
    if ctx.num_outputs > 2 {
        out.push(Inferred::tensor(dt, Some(vec![b, s, h])));
    }
    Ok(out)
}

fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    float_dispatch!(ctx.tensor(2)?.dtype(), run_typed(ctx))
}

fn run_typed<'a, T: Real>(ctx: &KernelCtx<'a>) -> Result<Vec<Value>> {
    let ids_t = ctx.tensor(0)?;
    let [b, s] = ids_t.shape[..] else {
        return Err(format!(
            "input_ids must be [batch, sequence], got {:?}",
            ids_t.shape
        ));
    };
    let ids = ids_t.to_i64s()?;
    let segs = ctx.opt_tensor(1)?.map(|t| t.to_i64s()).transpose()?;
    if segs.as_ref().is_some_and(|v| v.len() != b * s) {
        return Err(format!("segment_ids must be [{b}, {s}] like input_ids"));
    }
    let word = ctx.tensor(2)?;
    let pos = ctx.tensor(3)?;
    let seg = ctx.opt_tensor(4)?;
    let (gamma, beta) = (ctx.tensor(5)?, ctx.tensor(6)?);
    let h = *word
        .shape
        .get(1)
        .ok_or("word_embedding must be [vocab, hidden]")?;
    let rows = |t: &'a Tensor, what: &str| -> Result<(std::borrow::Cow<'a, [T]>, usize)> {
        if t.rank() != 2 || t.shape[1] != h {
            return Err(format!("{what} must be [rows, {h}], got {:?}", t.shape));
        }
        // Borrowed for f32: the word table is large (tens of MB) and is only read.
        Ok((T::load(t)?, t.shape[0]))
    };
    let (wv, vocab) = rows(word, "word_embedding")?;
    let (pv, npos) = rows(pos, "position_embedding")?;
    let sv = seg.map(|t| rows(t, "segment_embedding")).transpose()?;
    let position_ids = ctx.opt_tensor(8)?.map(|t| t.to_i64s()).transpose()?;
    let row = |count: usize, id: i64, what: &str| -> Result<usize> {
        if id < 0 || id as usize >= count {
            return Err(format!(
                "{what} id {id} is outside the {count} rows of its table"
            ));
        }
        Ok(id as usize * h)
    };
    let mut sum = vec![T::zero(); b * s * h];
    for bi in 0..b {
        for si in 0..s {
            let o = (bi * s + si) * h;
            let w0 = row(vocab, ids[bi * s + si], "input")?;
            let p_id = match &position_ids {
                Some(p) if p.len() == s => p[si],
                Some(p) => *p
                    .get(bi * s + si)
                    .ok_or("position_ids is shorter than [B, S]")?,
                None => si as i64,
            };
            let p0 = row(npos, p_id, "position")?;
            for j in 0..h {
                sum[o + j] = wv[w0 + j] + pv[p0 + j];
            }
            if let (Some((tab, n)), Some(sg)) = (&sv, &segs) {
                let s0 = row(*n, sg[bi * s + si], "segment")?;
                for j in 0..h {
                    sum[o + j] = sum[o + j] + tab[s0 + j];
                }
            }
        }
    }
    let dt = word.dtype();
    let sum_t = Tensor::new(vec![b, s, h], T::store(sum, dt));
    let eps = ctx.float_attr("epsilon", 1e-12) as f64;
    let (y, _, _) = float_dispatch!(dt, layer_norm(&sum_t, 2, eps, gamma, Some(beta), false))?;
    let mask_index: Vec<i32> = match ctx.opt_tensor(7)? {
        Some(m) => {
            let v = m.to_i64s()?;
            if v.len() != b * s {
                return Err(format!("mask has shape {:?}, expected [{b}, {s}]", m.shape));
            }
            v.chunks(s.max(1))
                .map(|r| r.iter().filter(|&&x| x != 0).count() as i32)
                .collect()
        }
        None => vec![0; b],
    };
    let mut out = vec![
        Value::Tensor(Tensor::new(vec![b, s, h], y)),
        Value::Tensor(Tensor::from_vec(vec![b], mask_index)),
    ];
    if ctx.num_outputs > 2 {
        out.push(Value::Tensor(sum_t));
    }
    Ok(out)
}
