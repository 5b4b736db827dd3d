//! com.microsoft Attention (BERT-style, with the QKV projection inside) and MultiHeadAttention,
//! on the shared scaled-dot-product core of `attention.rs`.
//!
//! As ONNX Runtime, masked positions get `mask_filter_value` (default -10000) added to their
//! scores rather than being removed, so a fully masked row attends uniformly; `unidirectional`
//! masks later keys the same way. Supported masks: key lengths `[B]`, start and end `[2B]`, 0/1
//! `[B, T]` and `[B, S, T]`; `attention_bias` (`[B or 1, N, S, T]`) is added as well.
use kiln_ir::{AttrList, Dim};

use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{KernelCtx, KernelFn, PrepareCtx, PreparedKernel};
use crate::ops::attention::{sdpa, Heads, Mask, Params};
use crate::ops::linalg::{
    as_f32, as_f32_mut, filled, float_dispatch, gemm, load_any, store_f64, Mat, Real,
};
use crate::value::{Data, Tensor, Value};

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    match (domain, op_type) {
        ("com.microsoft", "Attention") => Some(run_attention),
        ("com.microsoft", "MultiHeadAttention") => Some(run_mha),
        _ => None,
    }
}

/// Output `[B, S, Dv]`; presents as their inputs grow (left unknown along the sequence).
pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let dt = ctx.dtype(0);
    let y = match ctx.op_type {
        "Attention" => ctx.shape(0).filter(|x| !x.is_empty()).map(|x| {
            let dv = match ctx.ints_attr("qkv_hidden_sizes") {
                Some(s) if s.len() == 3 => Dim::Known(s[2]),
                _ => match ctx.shape(1).and_then(|w| w.get(1)).and_then(|d| d.known()) {
                    Some(n) => Dim::Known(n / 3),
                    None => Dim::Unknown,
                },
            };
            vec![x[0].clone(), x.get(1).cloned().unwrap_or(Dim::Unknown), dv]
        }),
        _ => match (ctx.shape(0), ctx.shape(2)) {
            (Some(q), Some(v)) if q.len() == 3 && v.len() == 3 => {
                Some(vec![q[0].clone(), q[1].clone(), v[2].clone()])
            }
            (Some(q), Some(v)) if q.len() == 3 && v.len() == 4 => {
                let dv = match (v[1].known(), v[3].known()) {
                    (Some(n), Some(h)) => Dim::Known(n * h),
                    _ => Dim::Unknown,
                };
                Some(vec![q[0].clone(), q[1].clone(), dv])
            }
            _ => None,
        },
    };
    let mut out = vec![Inferred::tensor(dt, y)];
    for _ in 1..ctx.num_outputs {
        out.push(Inferred::tensor(dt, None));
    }
    Ok(out)
}

/// Attributes of these ops that kiln does not implement: refused rather than ignored.
fn unsupported(ctx: &KernelCtx) -> Result<()> {
    for a in ["do_rotary", "past_present_share_buffer"] {
        if ctx.int_attr(a, 0) != 0 {
            return Err(format!("{a} is not supported"));
        }
    }
    if ctx.op_type == "MultiHeadAttention" && ctx.has_input(8) {
        return Err("cache_indirection is not supported".into());
    }
    Ok(())
}

pub(crate) fn heads_attr(ctx: &KernelCtx) -> Result<usize> {
    unsupported(ctx)?;
    match ctx.int_attr("num_heads", 0) {
        n if n > 0 => Ok(n as usize),
        n => Err(format!("num_heads must be positive, got {n}")),
    }
}

/// The additive mask `[B, N, S, T]` from a key mask, `unidirectional`, and `attention_bias`.
#[allow(clippy::too_many_arguments)]
fn additive_mask(
    key_mask: Option<&Tensor>,
    bias: Option<&Tensor>,
    causal: bool,
    filter: f64,
    (b, n, s, t): (usize, usize, usize, usize),
    past: usize,
) -> Result<Option<(Vec<f64>, [usize; 4])>> {
    if key_mask.is_none() && bias.is_none() && !causal {
        return Ok(None);
    }
    // A key mask alone that does not vary by query row (BERT's padding mask) is built once
    // per batch row, `[B, 1, 1, T]`, instead of once per head and query.
    let per_key = !causal && bias.is_none() && key_mask.is_some_and(|k| k.rank() <= 2);
    let (n, s_rows) = if per_key { (1, 1) } else { (n, s) };
    let dims = [b, n, s_rows, t];
    let s = s_rows;
    let mut m = filled(b * n * s * t, 0.0f64)?;
    if let Some(k) = key_mask {
        let v = k.to_i64s()?;
        // allowed(b, i, j)
        let allowed: Box<dyn Fn(usize, usize, usize) -> bool> = match k.shape.as_slice() {
            [x] if *x == b => Box::new(move |bi, _, j| (j as i64) < v[bi]),
            [x] if *x == 2 * b => Box::new(move |bi, _, j| (j as i64) < v[bi] && (j as i64) >= v[b + bi]),
            [x, y] if *x == b && *y == t => Box::new(move |bi, _, j| v[bi * t + j] != 0),
            [x, y, z] if *x == b && *y == s && *z == t => Box::new(move |bi, i, j| v[(bi * s + i) * t + j] != 0),
            other => {
                return Err(format!(
                    "mask of shape {other:?} is not [B], [2B], [B, T] or [B, S, T] for B={b}, S={s}, T={t}"
                ))
            }
        };
        for bi in 0..b {
            for h in 0..n {
                for i in 0..s {
                    for j in 0..t {
                        if !allowed(bi, i, j) {
                            m[((bi * n + h) * s + i) * t + j] += filter;
                        }
                    }
                }
            }
        }
    }
    if causal {
        // A key both padded and in the future is masked once.
        for row in 0..b * n {
            for i in 0..s {
                for j in (i + past + 1).min(t)..t {
                    let o = &mut m[(row * s + i) * t + j];
                    if *o == 0.0 {
                        *o = filter;
                    }
                }
            }
        }
    }
    if let Some(ab) = bias {
        let v = load_any::<f64>(ab)?;
        let bb = match ab.shape.as_slice() {
            [x, y, z, w] if (*x == b || *x == 1) && *y == n && *z == s && *w == t => *x,
            other => {
                return Err(format!(
                    "attention_bias of shape {other:?} is not [{b} or 1, {n}, {s}, {t}]"
                ))
            }
        };
        for bi in 0..b {
            let src = &v[(if bb == 1 { 0 } else { bi }) * n * s * t..][..n * s * t];
            for (o, &x) in m[bi * n * s * t..][..n * s * t].iter_mut().zip(src) {
                *o += x;
            }
        }
    }
    Ok(Some((m, dims)))
}

fn params(ctx: &KernelCtx, head: usize, mask: Option<(Vec<f64>, [usize; 4])>) -> Params<'static> {
    let scale = match ctx.attrs.get_float("scale") {
        Some(s) if s != 0.0 => s as f64,
        _ => 1.0 / (head as f64).sqrt(),
    };
    Params {
        scale,
        softcap: 0.0,
        causal: false,
        left_window: -1,
        right_window: -1,
        offset: vec![0],
        kv_valid: None,
        mask: match mask {
            Some((m, shape)) => {
                // Row-major strides, 0 along the dims of size 1 (broadcast).
                let dense = [
                    shape[1] * shape[2] * shape[3],
                    shape[2] * shape[3],
                    shape[3],
                    1,
                ];
                let strides = dense
                    .iter()
                    .zip(&shape)
                    .map(|(&st, &d)| if d == 1 { 0 } else { st })
                    .collect();
                Mask::Float(m, shape.to_vec(), strides)
            }
            None => Mask::None,
        },
        qk_mode: 0,
        want_qk: false,
    }
}

/// Masks (the key mask and attention bias at input positions `masks`), attends, and returns
/// the output as `[B, S, N·Hv]`.
fn attend<T: Real>(
    ctx: &KernelCtx,
    q: &Heads<T>,
    k: &Heads<T>,
    v: &Heads<T>,
    masks: (usize, usize),
    past_len: usize,
) -> Result<Vec<T>> {
    let (b, n, s, t) = (q.b, q.h, q.s, k.s);
    let filter = ctx.float_attr("mask_filter_value", -10000.0) as f64;
    let causal = ctx.int_attr("unidirectional", 0) != 0;
    let mask = additive_mask(
        ctx.opt_tensor(masks.0)?,
        ctx.opt_tensor(masks.1)?,
        causal,
        filter,
        (b, n, s, t),
        past_len,
    )?;
    let p = params(ctx, q.d, mask);
    let (y, _) = sdpa(q, k, v, &p)?;
    Ok(Heads {
        data: y,
        b,
        h: n,
        s,
        d: v.d,
    }
    .to_3d())
}

fn run_attention(ctx: &KernelCtx) -> Result<Vec<Value>> {
    float_dispatch!(ctx.tensor(0)?.dtype(), attention_typed(ctx, None))
}

/// An Attention whose QKV weights are a constant f32 matrix, packed once at session creation
/// (unpacked, the projection packed 1.7 MB of weights on every call of a BERT layer).
struct PreparedAttention {
    packed: kiln_kernels::PackedB,
    shape: Vec<usize>,
}

/// Packs constant 2-D f32 QKV weights; `None` leaves the node to the plain kernel.
pub fn prepare(ctx: &PrepareCtx) -> Option<Box<dyn PreparedKernel>> {
    let w = ctx.constant(1)?;
    let Data::F32(wv) = &w.data else { return None };
    if w.rank() != 2 || w.shape.contains(&0) {
        return None;
    }
    let (r, c) = (w.shape[0], w.shape[1]);
    let view = kiln_kernels::View::new(wv, r, c, c, 1);
    Some(Box::new(PreparedAttention {
        packed: kiln_kernels::PackedB::with_precision(
            kiln_kernels::Isa::detect(),
            view,
            ctx.precision,
        ),
        shape: w.shape.clone(),
    }))
}

impl PreparedKernel for PreparedAttention {
    fn run(&self, ctx: &KernelCtx) -> Result<Vec<Value>> {
        let (x, w) = (ctx.tensor(0)?, ctx.tensor(1)?);
        // A feed that overrides the weights, or other element types: the plain kernel.
        if w.shape != self.shape || !matches!((&x.data, &w.data), (Data::F32(_), Data::F32(_))) {
            return run_attention(ctx);
        }
        attention_typed::<f32>(ctx, Some(&self.packed))
    }
}

/// Q, K and V's widths within the projection's `total` columns (`qkv_hidden_sizes`, else
/// thirds), checked to split into `n` heads.
pub(crate) fn hidden_sizes(
    ctx: &KernelCtx,
    total: usize,
    n: usize,
) -> Result<(usize, usize, usize)> {
    let sizes = match ctx.ints_attr("qkv_hidden_sizes") {
        Some([a, bb, c])
            if [*a, *bb, *c].iter().all(|&v| v > 0)
                && a.checked_add(*bb).and_then(|x| x.checked_add(*c)) == Some(total as i64) =>
        {
            (*a as usize, *bb as usize, *c as usize)
        }
        Some(v) => {
            return Err(format!(
                "qkv_hidden_sizes {v:?} do not add up to the weights' {total} columns"
            ))
        }
        None if total % 3 == 0 => (total / 3, total / 3, total / 3),
        None => {
            return Err(format!(
                "the weights' {total} columns do not split into Q, K and V"
            ))
        }
    };
    let (dq, dk, dv) = sizes;
    if dq == 0 || dv == 0 || dq != dk || dq % n != 0 || dv % n != 0 {
        return Err(format!(
            "hidden sizes {dq}/{dk}/{dv} do not split into {n} heads"
        ));
    }
    Ok(sizes)
}

/// Where the optional inputs sit: Attention's, or QAttention's (after its scales).
#[derive(Clone, Copy)]
pub(crate) struct Slots {
    pub mask: usize,
    pub bias: usize,
    pub past: usize,
}

const ATTENTION: Slots = Slots {
    mask: 3,
    bias: 5,
    past: 4,
};

/// `packed`: the weights (input 1) packed for the GEMM, when the caller has them.
fn attention_typed<T: Real>(
    ctx: &KernelCtx,
    packed: Option<&kiln_kernels::PackedB>,
) -> Result<Vec<Value>> {
    let (x, w) = (ctx.tensor(0)?, ctx.tensor(1)?);
    let n = heads_attr(ctx)?;
    if x.rank() != 3 || w.rank() != 2 || w.shape[0] != x.shape[2] {
        return Err(format!(
            "input {:?} and weights {:?} must be [B, S, D] and [D, Dq+Dk+Dv]",
            x.shape, w.shape
        ));
    }
    let (b, s, din) = (x.shape[0], x.shape[1], x.shape[2]);
    let total = w.shape[1];
    let (dq, dk, dv) = hidden_sizes(ctx, total, n)?;
    let xv = T::load(x)?;
    let wv = T::load(w)?;
    let mut qkv = filled(b * s * total, T::zero())?;
    match (packed, as_f32(&xv), as_f32_mut(&mut qkv)) {
        (Some(pw), Some(x32), Some(q32)) if b * s > 0 && din > 0 => {
            let xm = kiln_kernels::View::new(x32, b * s, din, din, 1);
            kiln_kernels::sgemm_view(1.0, xm, pw, 0.0, q32, total);
        }
        _ => gemm(
            b * s,
            total,
            din,
            T::one(),
            Mat::rows(&xv, din),
            Mat::rows(&wv, total),
            T::zero(),
            &mut qkv,
            total,
        )?,
    }
    if let Some(bias) = ctx.opt_tensor(2)? {
        let bv = T::load(bias)?;
        if bv.len() != total {
            return Err(format!("bias has {} values for {total} columns", bv.len()));
        }
        for row in qkv.chunks_mut(total) {
            for (o, &v) in row.iter_mut().zip(bv.iter()) {
                *o = *o + v;
            }
        }
    }
    attend_projected(ctx, qkv, (b, s, n), (dq, dk, dv), ATTENTION, x.dtype())
}

/// Attention after the projection: `qkv` `[B·S, Dq+Dk+Dv]`, the optional inputs at `slots`,
/// outputs (and present) stored as `dt`.
pub(crate) fn attend_projected<T: Real>(
    ctx: &KernelCtx,
    qkv: Vec<T>,
    (b, s, n): (usize, usize, usize),
    (dq, dk, dv): (usize, usize, usize),
    slots: Slots,
    dt: kiln_ir::DataType,
) -> Result<Vec<Value>> {
    let total = dq + dk + dv;
    let plain_f32 = dt == kiln_ir::DataType::F32;
    if plain_f32 && ctx.opt_tensor(slots.past)?.is_none() && ctx.num_outputs == 1 {
        if let Some(q32) = as_f32(&qkv) {
            if let Some(y) = fast_attention(ctx, q32, (b, s, n), (dq, dk, dv), slots)? {
                return Ok(vec![Value::Tensor(Tensor::new(
                    vec![b, s, dv],
                    Data::F32(y),
                ))]);
            }
        }
    }
    let split = |off: usize, width: usize| -> Heads<T> {
        let mut v = Vec::with_capacity(b * s * width);
        for row in qkv.chunks(total) {
            v.extend_from_slice(&row[off..off + width]);
        }
        Heads::from_3d(&v, b, s, n, width / n)
    };
    let q = split(0, dq);
    let mut k = split(dq, dk);
    let mut v = split(dq + dk, dv);
    let mut past_len = 0;
    if let Some(p) = ctx.opt_tensor(slots.past)? {
        // past: [2, B, N, P, H] (keys then values).
        let (h, hv) = (dk / n, dv / n);
        if p.rank() != 5
            || p.shape[0] != 2
            || p.shape[1] != b
            || p.shape[2] != n
            || p.shape[4] != h
            || h != hv
        {
            return Err(format!(
                "past has shape {:?}, expected [2, {b}, {n}, P, {h}]",
                p.shape
            ));
        }
        past_len = p.shape[3];
        let pv = T::load(p)?;
        let half = pv.len() / 2;
        let pk = Heads {
            data: pv[..half].to_vec(),
            b,
            h: n,
            s: past_len,
            d: h,
        };
        let pvv = Heads {
            data: pv[half..].to_vec(),
            b,
            h: n,
            s: past_len,
            d: h,
        };
        k = pk.concat_seq(&k);
        v = pvv.concat_seq(&v);
    }
    let t = k.s;
    let y = attend(ctx, &q, &k, &v, (slots.mask, slots.bias), past_len)?;
    let store = |v: Vec<T>| store_f64(v.into_iter().map(|e| e.f64()).collect(), dt);
    let mut out = vec![Value::Tensor(Tensor::new(vec![b, s, dv], store(y)?))];
    if ctx.num_outputs > 1 {
        let mut present = k.data.clone();
        present.extend_from_slice(&v.data);
        out.push(Value::Tensor(Tensor::new(
            vec![2, b, n, t, k.d],
            store(present)?,
        )));
    }
    Ok(out)
}

/// Attention without a past, in f32, on kiln's strided kernel: the heads read where they
/// lie in the `[B·S, Dq+Dk+Dv]` projection and written straight into `[B, S, Dv]`. `None`
/// leaves a mask with `-inf` in it (rows that attend to nothing) to the general core.
fn fast_attention(
    ctx: &KernelCtx,
    qkv: &[f32],
    (b, s, n): (usize, usize, usize),
    (dq, dk, dv): (usize, usize, usize),
    slots: Slots,
) -> Result<Option<Vec<f32>>> {
    use kiln_kernels::attention::{Sdpa, Strided4};
    let total = dq + dk + dv;
    let filter = ctx.float_attr("mask_filter_value", -10000.0) as f64;
    let causal = ctx.int_attr("unidirectional", 0) != 0;
    let mask = additive_mask(
        ctx.opt_tensor(slots.mask)?,
        ctx.opt_tensor(slots.bias)?,
        causal,
        filter,
        (b, n, s, s),
        0,
    )?;
    let bias: Option<(Vec<f32>, [usize; 4])> = match mask {
        Some((m, _)) if m.iter().any(|v| v.is_infinite() || v.is_nan()) => return Ok(None),
        Some((m, dims)) => Some((m.iter().map(|&v| v as f32).collect(), dims)),
        None => None,
    };
    let (hq, hv) = (dq / n, dv / n);
    let heads =
        |off: usize, h: usize| Strided4::new(&qkv[off..], [b, n, s, h], [s * total, h, total, 1]);
    let a = Sdpa {
        isa: kiln_kernels::Isa::detect(),
        q: heads(0, hq)?,
        k: heads(dq, dk / n)?,
        v: heads(dq + dk, hv)?,
        bias: match &bias {
            Some((m, dims)) => Some(Strided4::dense(m, *dims)?),
            None => None,
        },
        scale: params(ctx, hq, None).scale as f32,
        causal: None,
    };
    let mut y = kiln_kernels::vecmath::zeros(b * s * dv);
    a.run(&mut y, [s * dv, hv, dv, 1])?;
    Ok(Some(y))
}

fn run_mha(ctx: &KernelCtx) -> Result<Vec<Value>> {
    float_dispatch!(ctx.tensor(0)?.dtype(), mha_typed(ctx))
}

fn mha_typed<T: Real>(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let qt = ctx.tensor(0)?;
    let n = heads_attr(ctx)?;
    if qt.rank() != 3 {
        return Err(format!(
            "query must be [B, S, D] (packed QKV is not supported), got {:?}",
            qt.shape
        ));
    }
    let (kt, vt) = (ctx.tensor(1)?, ctx.tensor(2)?);
    let (b, s, dq) = (qt.shape[0], qt.shape[1], qt.shape[2]);
    if dq == 0 || dq % n != 0 {
        return Err(format!("query's {dq} does not split into {n} heads"));
    }
    let mut qv = T::load(qt)?.into_owned();
    let bias = ctx.opt_tensor(3)?.map(T::load).transpose()?;
    let heads_3d = |t: &Tensor, what: &str, off: usize| -> Result<Heads<T>> {
        match t.rank() {
            3 => {
                let d = t.shape[2];
                if d == 0 {
                    return Err(format!("{what} has hidden size 0"));
                }
                let mut v = T::load(t)?.into_owned();
                if let Some(bv) = &bias {
                    let bseg = bv
                        .get(off..off + d)
                        .ok_or("bias is shorter than D + D + Dv")?;
                    for row in v.chunks_mut(d) {
                        for (o, &x) in row.iter_mut().zip(bseg) {
                            *o = *o + x;
                        }
                    }
                }
                if d == 0 || d % n != 0 || t.shape[0] != b {
                    return Err(format!(
                        "{what} of shape {:?} does not split into {n} heads",
                        t.shape
                    ));
                }
                Ok(Heads::from_3d(&v, b, t.shape[1], n, d / n))
            }
            // Already in heads (BNSH), as for cross attention with a cached key/value.
            4 if t.shape[0] == b && t.shape[1] == n => Ok(Heads {
                data: T::load(t)?.into_owned(),
                b,
                h: n,
                s: t.shape[2],
                d: t.shape[3],
            }),
            _ => Err(format!(
                "{what} of shape {:?} is not [B, L, D] or [B, N, L, H]",
                t.shape
            )),
        }
    };
    if let Some(bv) = &bias {
        for row in qv.chunks_mut(dq) {
            for (o, &x) in row.iter_mut().zip(bv.iter()) {
                *o = *o + x;
            }
        }
    }
    if dq == 0 || dq % n != 0 {
        return Err(format!("query's {dq} does not split into {n} heads"));
    }
    let q = Heads::from_3d(&qv, b, s, n, dq / n);
    let dk = if kt.rank() == 3 { kt.shape[2] } else { 0 };
    let mut k = heads_3d(kt, "key", dq)?;
    let mut v = heads_3d(vt, "value", dq + dk)?;
    let mut past_len = 0;
    if let (Some(pk), Some(pv)) = (ctx.opt_tensor(6)?, ctx.opt_tensor(7)?) {
        let as_heads = |t: &Tensor| -> Result<Heads<T>> {
            if t.rank() != 4 || t.shape[0] != b || t.shape[1] != n {
                return Err(format!(
                    "past key/value of shape {:?} is not [B, N, P, H]",
                    t.shape
                ));
            }
            Ok(Heads {
                data: T::load(t)?.into_owned(),
                b,
                h: n,
                s: t.shape[2],
                d: t.shape[3],
            })
        };
        let (pk, pv) = (as_heads(pk)?, as_heads(pv)?);
        if pk.d != k.d || pv.d != v.d || pk.s != pv.s {
            return Err(format!(
                "past key/value [{b}, {n}, {}, {}] / [{b}, {n}, {}, {}] do not match key/value head sizes {} / {}",
                pk.s, pk.d, pv.s, pv.d, k.d, v.d
            ));
        }
        past_len = pk.s;
        k = pk.concat_seq(&k);
        v = pv.concat_seq(&v);
    }
    let t = k.s;
    let y = attend(ctx, &q, &k, &v, (4, 5), past_len)?;
    let dt = qt.dtype();
    let store = |v: Vec<T>| store_f64(v.into_iter().map(|e| e.f64()).collect(), dt);
    let mut out = vec![Value::Tensor(Tensor::new(vec![b, s, n * v.d], store(y)?))];
    if ctx.num_outputs > 1 {
        out.push(Value::Tensor(Tensor::new(
            vec![b, n, t, k.d],
            store(k.data.clone())?,
        )));
    }
    if ctx.num_outputs > 2 {
        out.push(Value::Tensor(Tensor::new(
            vec![b, n, t, v.d],
            store(v.data.clone())?,
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_ir::Attribute;

    /// QKV weights packed at preparation give what the plain kernel gives, with a bias, a
    /// key-length mask and the `present` output; integer weights stay on the plain kernel.
    #[test]
    fn prepared_matches_plain() {
        let val = |n: usize, s: usize| -> Vec<f32> {
            (0..n)
                .map(|i| ((i * 7919 + s * 31) % 1001) as f32 / 500.0 - 1.0)
                .collect()
        };
        let (b, s, d, heads) = (2, 37, 40, 4);
        let x = Tensor::from_vec(vec![b, s, d], val(b * s * d, 1));
        let w = Tensor::from_vec(vec![d, 3 * d], val(d * 3 * d, 2));
        let bias = Tensor::from_vec(vec![3 * d], val(3 * d, 3));
        let lens = Tensor::from_vec(vec![b], vec![30i32, 37]);
        let attrs = [Attribute::int("num_heads", heads)];
        let vals = [x, w.clone(), bias, lens].map(Value::Tensor);
        let ctx = KernelCtx {
            op_type: "Attention",
            domain: "com.microsoft",
            opset: 1,
            attrs: &attrs,
            inputs: vals.iter().map(Some).collect(),
            num_outputs: 2,
            subgraphs: None,
            donated: Default::default(),
        };
        let want = run_attention(&ctx).unwrap();
        let prep = prepare(&PrepareCtx {
            op_type: "Attention",
            domain: "com.microsoft",
            opset: 1,
            attrs: &attrs,
            constants: vec![None, Some(&w)],
            absent: vec![],
            precision: kiln_kernels::Precision::F32,
        })
        .expect("prepared");
        let got = prep.run(&ctx).unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.into_iter().zip(want) {
            let (g, w) = (g.into_tensor().unwrap(), w.into_tensor().unwrap());
            assert_eq!(g.shape, w.shape);
            for (x, y) in g
                .as_slice::<f32>()
                .unwrap()
                .iter()
                .zip(w.as_slice::<f32>().unwrap())
            {
                assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{x} vs {y}");
            }
        }
        let int_w = Tensor::from_vec(vec![2, 6], vec![1i64; 12]);
        let c = PrepareCtx {
            op_type: "Attention",
            domain: "com.microsoft",
            opset: 1,
            attrs: &attrs,
            constants: vec![None, Some(&int_w)],
            absent: vec![],
            precision: kiln_kernels::Precision::F32,
        };
        assert!(
            prepare(&c).is_none(),
            "integer weights stay on the plain kernel"
        );
    }
}
