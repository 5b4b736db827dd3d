//! LinearAttention (opset 27): the recurrent state `S` (`[b, kv_heads, d_k, d_v]`) updated
//! token by token with the `linear`, `gated`, `delta` or `gated_delta` rule, and read by each
//! query head (`o_t = scale·q_tᵀ·S_t`; query head `h` reads kv head `h / group`). Computes in
//! f32 (f64 for f64 inputs) whatever the storage type, as the spec's reference does.
use super::linalg::{filled, float_dispatch, product, Real};
use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{KernelCtx, KernelFn};
use crate::ops::attention::Heads;
use crate::value::{Tensor, Value};
use kiln_ir::Dim;

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    match (domain, op_type) {
        ("", "LinearAttention") => Some(run),
        _ => None,
    }
}

/// output: `[b, t, q_heads·d_v]`; present_state: `[b, kv_heads, d_k, d_v]`.
pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let qh = ctx.int_attr("q_num_heads", 0);
    let kvh = ctx.int_attr("kv_num_heads", 0);
    let (mut y, mut st) = (None, None);
    if let (Some(q), Some(v)) = (ctx.shape(0), ctx.shape(2)) {
        if q.len() == 3 && v.len() == 3 && qh > 0 && kvh > 0 {
            let per = |d: &Dim, h: i64| match d {
                Dim::Known(n) => Dim::Known(n / h),
                _ => Dim::Unknown,
            };
            let dv = per(&v[2], kvh);
            let out = match &dv {
                Dim::Known(n) => Dim::Known(n * qh),
                _ => Dim::Unknown,
            };
            y = Some(vec![q[0].clone(), q[1].clone(), out]);
            st = Some(vec![q[0].clone(), Dim::Known(kvh), per(&q[2], qh), dv]);
        }
    }
    let state_type = if ctx.has_input(3) {
        ctx.dtype(3)
    } else {
        ctx.dtype(0)
    };
    Ok(vec![
        Inferred::tensor(ctx.dtype(0), y),
        Inferred::tensor(state_type, st),
    ])
}

fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    float_dispatch!(ctx.tensor(0)?.dtype(), run_typed(ctx))
}

fn run_typed<T: Real>(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (qt, kt, vt) = (ctx.tensor(0)?, ctx.tensor(1)?, ctx.tensor(2)?);
    let rule = ctx.str_attr("update_rule").unwrap_or("gated_delta");
    let (gating, delta) = match rule {
        "linear" => (false, false),
        "gated" => (true, false),
        "delta" => (false, true),
        "gated_delta" => (true, true),
        r => {
            return Err(format!(
                "update_rule must be linear, gated, delta or gated_delta, got '{r}'"
            ))
        }
    };
    let qh = ctx.int_attr("q_num_heads", 0);
    let kvh = ctx.int_attr("kv_num_heads", 0);
    if qh <= 0 || kvh <= 0 || qh % kvh != 0 {
        return Err(format!(
            "q_num_heads ({qh}) must be a positive multiple of kv_num_heads ({kvh})"
        ));
    }
    let (qh, kvh) = (qh as usize, kvh as usize);
    for (t, what) in [(qt, "query"), (kt, "key"), (vt, "value")] {
        if t.rank() != 3 {
            return Err(format!(
                "{what} must be [B, T, H*D], got shape {:?}",
                t.shape
            ));
        }
    }
    let (b, steps) = (qt.shape[0], qt.shape[1]);
    let split = |t: &Tensor, h: usize, what: &str| -> Result<Heads<T>> {
        if t.shape[0] != b || t.shape[1] != steps || t.shape[2] % h != 0 {
            return Err(format!(
                "{what} of shape {:?} does not split into {h} heads over [{b}, {steps}]",
                t.shape
            ));
        }
        Ok(Heads::from_3d(&T::load(t)?, b, steps, h, t.shape[2] / h))
    };
    let q = split(qt, qh, "query")?;
    let k = split(kt, kvh, "key")?;
    let v = split(vt, kvh, "value")?;
    let (dk, dv) = (q.d, v.d);
    if k.d != dk {
        return Err(format!("key head size {} differs from query's {dk}", k.d));
    }
    let decay = ctx.opt_tensor(4)?;
    let beta = ctx.opt_tensor(5)?;
    if gating != decay.is_some() || delta != beta.is_some() {
        return Err(format!(
            "update_rule '{rule}' {} decay and {} beta",
            if gating { "needs" } else { "takes no" },
            if delta { "needs" } else { "takes no" }
        ));
    }
    // Decay per (batch, step, kv head, key dim): stride 0 over the key dim for a per-head decay.
    let decay = match decay {
        Some(t) => {
            let last = t.shape.last().copied().unwrap_or(0);
            if t.rank() != 3
                || t.shape[0] != b
                || t.shape[1] != steps
                || (last != kvh && last != kvh * dk)
            {
                return Err(format!(
                    "decay must be [{b}, {steps}, {kvh}] or [{b}, {steps}, {}], got {:?}",
                    kvh * dk,
                    t.shape
                ));
            }
            Some((T::load(t)?.into_owned(), last == kvh * dk))
        }
        None => None,
    };
    let beta = match beta {
        Some(t) => {
            let last = t.shape.last().copied().unwrap_or(0);
            if t.rank() != 3 || t.shape[0] != b || t.shape[1] != steps || (last != kvh && last != 1)
            {
                return Err(format!(
                    "beta must be [{b}, {steps}, {kvh}] or [{b}, {steps}, 1], got {:?}",
                    t.shape
                ));
            }
            Some((T::load(t)?.into_owned(), last))
        }
        None => None,
    };
    let state_len = product(&[b, kvh, dk, dv])?;
    let past = ctx.opt_tensor(3)?;
    let mut state = match past {
        Some(t) => {
            if t.shape != [b, kvh, dk, dv] {
                return Err(format!(
                    "past_state has shape {:?}, expected {:?}",
                    t.shape,
                    [b, kvh, dk, dv]
                ));
            }
            T::load(t)?.into_owned()
        }
        None => filled(state_len, T::zero())?,
    };
    let scale = match ctx.float_attr("scale", 0.0) {
        s if s == 0.0 => 1.0 / (dk as f64).sqrt(),
        s => s as f64,
    };
    let scale = T::of(scale);
    let group = qh / kvh;
    let mut out = filled(b * qh * steps * dv, T::zero())?;
    let mut vt_buf = vec![T::zero(); dv];
    for bi in 0..b {
        for h in 0..kvh {
            let s = &mut state[(bi * kvh + h) * dk * dv..][..dk * dv];
            for t in 0..steps {
                let kt = &k.data[((bi * kvh + h) * steps + t) * dk..][..dk];
                let vrow = &v.data[((bi * kvh + h) * steps + t) * dv..][..dv];
                if let Some((g, per_dim)) = &decay {
                    let base = (bi * steps + t) * if *per_dim { kvh * dk } else { kvh };
                    for i in 0..dk {
                        let gi = if *per_dim {
                            g[base + h * dk + i]
                        } else {
                            g[base + h]
                        };
                        let e = gi.exp();
                        for x in &mut s[i * dv..(i + 1) * dv] {
                            *x = *x * e;
                        }
                    }
                }
                vt_buf.copy_from_slice(vrow);
                if let Some((bv, last)) = &beta {
                    let bt = bv[(bi * steps + t) * last + if *last == 1 { 0 } else { h }];
                    for m in 0..dv {
                        let mut r = T::zero();
                        for i in 0..dk {
                            r = r + s[i * dv + m] * kt[i];
                        }
                        vt_buf[m] = bt * (vrow[m] - r);
                    }
                }
                for i in 0..dk {
                    for m in 0..dv {
                        s[i * dv + m] = s[i * dv + m] + kt[i] * vt_buf[m];
                    }
                }
                for g in 0..group {
                    let qhead = h * group + g;
                    let qrow = &q.data[((bi * qh + qhead) * steps + t) * dk..][..dk];
                    let o = &mut out[((bi * qh + qhead) * steps + t) * dv..][..dv];
                    for m in 0..dv {
                        let mut acc = T::zero();
                        for i in 0..dk {
                            acc = acc + qrow[i] * s[i * dv + m];
                        }
                        o[m] = scale * acc;
                    }
                }
            }
        }
    }
    let heads = Heads {
        data: out,
        b,
        h: qh,
        s: steps,
        d: dv,
    };
    let state_dt = past.map_or(qt.dtype(), |t| t.dtype());
    Ok(vec![
        Value::Tensor(Tensor::new(
            vec![b, steps, qh * dv],
            T::store(heads.to_3d(), qt.dtype()),
        )),
        Value::Tensor(Tensor::new(vec![b, kvh, dk, dv], T::store(state, state_dt))),
    ])
}
