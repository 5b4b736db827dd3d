//! Rotary position embeddings: ONNX `RotaryEmbedding` (opset 23) and `com.microsoft`'s
//! `RotaryEmbedding`, on one kernel over `[batch, seq, heads, head_size]` rows.
//!
//! Each head's first `rotary_dim` values are rotated pairwise by the angle of their position
//! (pairs are the two halves, or neighbours when `interleaved`); the rest pass through.
use kiln_ir::DataType;

use super::linalg::{float_dispatch, Real};
use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{KernelCtx, KernelFn};
use crate::value::{Tensor, Value};

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    match (domain, op_type) {
        ("" | "com.microsoft", "RotaryEmbedding") => Some(run),
        _ => None,
    }
}

/// Y is like X.
pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    Ok(vec![ctx.same_as(0)])
}

/// How X's axes map onto `[batch, seq, heads, head]`.
struct Layout {
    b: usize,
    s: usize,
    h: usize,
    d: usize,
    /// X is `[batch, heads, seq, head]`.
    heads_first: bool,
}

impl Layout {
    fn offset(&self, b: usize, s: usize, h: usize) -> usize {
        if self.heads_first {
            ((b * self.h + h) * self.s + s) * self.d
        } else {
            ((b * self.s + s) * self.h + h) * self.d
        }
    }
}

fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    match x.dtype() {
        DataType::F32 | DataType::F64 | DataType::F16 | DataType::BF16 => {}
        other => return Err(format!("X must be a float tensor, got {other}")),
    }
    float_dispatch!(x.dtype(), run_typed(ctx, x))
}

fn run_typed<T: Real>(ctx: &KernelCtx, x: &Tensor) -> Result<Vec<Value>> {
    let ms = ctx.domain == "com.microsoft";
    // ONNX: (X, cos, sin, position_ids?); com.microsoft: (X, position_ids, cos, sin).
    let (cos_t, sin_t, pos_t) = if ms {
        (ctx.tensor(2)?, ctx.tensor(3)?, Some(ctx.tensor(1)?))
    } else {
        (ctx.tensor(1)?, ctx.tensor(2)?, ctx.opt_tensor(3)?)
    };
    let heads_attr = ctx.int_attr("num_heads", 0);
    let lay = match x.rank() {
        4 => Layout {
            b: x.shape[0],
            h: x.shape[1],
            s: x.shape[2],
            d: x.shape[3],
            heads_first: true,
        },
        3 => {
            let hidden = x.shape[2];
            let rot = ctx.int_attr("rotary_embedding_dim", 0);
            let heads = if heads_attr > 0 {
                heads_attr as usize
            } else if ms && cos_t.rank() == 2 {
                // com.microsoft infers the heads from the cache when the rotation is full.
                let half = cos_t.shape[1];
                if rot > 0 || half == 0 || hidden % (2 * half) != 0 {
                    return Err("num_heads is needed for 3-D input".into());
                }
                hidden / (2 * half)
            } else {
                return Err("num_heads must be given for a 3-D input".into());
            };
            if heads == 0 || hidden % heads != 0 {
                return Err(format!(
                    "hidden size {hidden} is not a multiple of num_heads {heads}"
                ));
            }
            Layout {
                b: x.shape[0],
                s: x.shape[1],
                h: heads,
                d: hidden / heads,
                heads_first: false,
            }
        }
        r => return Err(format!("X must have rank 3 or 4, got {r}")),
    };
    let rot = match ctx.int_attr("rotary_embedding_dim", 0) {
        0 => lay.d,
        r if r > 0 && (r as usize) <= lay.d => r as usize,
        r => {
            return Err(format!(
                "rotary_embedding_dim {r} is outside [0, {}] (the head size)",
                lay.d
            ))
        }
    };
    if rot % 2 != 0 {
        return Err(format!("the rotated size {rot} must be even"));
    }
    let half = rot / 2;
    let interleaved = ctx.int_attr("interleaved", 0) != 0;
    let cos = T::load(cos_t)?;
    let sin = T::load(sin_t)?;
    if cos_t.shape != sin_t.shape || cos_t.shape.last() != Some(&half) {
        return Err(format!(
            "cos_cache {:?} and sin_cache {:?} must agree and end in {half} (half the rotated size)",
            cos_t.shape, sin_t.shape
        ));
    }
    // Row of the caches for each (batch, position).
    let rows: Vec<usize> = match pos_t {
        Some(p) => {
            let ids = p.to_i64s()?;
            let max = cos_t.len() / half.max(1);
            let at = |b: usize, s: usize| -> Result<usize> {
                // com.microsoft also takes one scalar offset for every row.
                let id = if ids.len() == 1 {
                    ids[0] + s as i64
                } else {
                    *ids.get(b * lay.s + s).ok_or_else(|| {
                        format!(
                            "position_ids has {} values, need {}",
                            ids.len(),
                            lay.b * lay.s
                        )
                    })?
                };
                if id < 0 || id as usize >= max {
                    return Err(format!(
                        "position id {id} is outside the cache of {max} rows"
                    ));
                }
                Ok(id as usize)
            };
            let mut v = Vec::with_capacity(lay.b * lay.s);
            for b in 0..lay.b {
                for s in 0..lay.s {
                    v.push(at(b, s)?);
                }
            }
            v
        }
        None => {
            if cos_t.rank() != 3 || cos_t.shape[0] != lay.b || cos_t.shape[1] != lay.s {
                return Err(format!(
                    "without position_ids the caches must be [batch, seq, {half}], got {:?}",
                    cos_t.shape
                ));
            }
            (0..lay.b * lay.s).collect()
        }
    };
    let xv = T::load(x)?;
    let mut y = xv.to_vec();
    for b in 0..lay.b {
        for s in 0..lay.s {
            let row = rows[b * lay.s + s] * half;
            let (c, sn) = (&cos[row..row + half], &sin[row..row + half]);
            for h in 0..lay.h {
                let o = lay.offset(b, s, h);
                let src = &xv[o..o + lay.d];
                let dst = &mut y[o..o + lay.d];
                for i in 0..half {
                    let (a, bb) = if interleaved {
                        (2 * i, 2 * i + 1)
                    } else {
                        (i, i + half)
                    };
                    let (x1, x2) = (src[a], src[bb]);
                    dst[a] = c[i] * x1 - sn[i] * x2;
                    dst[bb] = sn[i] * x1 + c[i] * x2;
                }
            }
        }
    }
    Ok(vec![Value::Tensor(Tensor::new(
        x.shape.clone(),
        T::store(y, x.dtype()),
    ))])
}
