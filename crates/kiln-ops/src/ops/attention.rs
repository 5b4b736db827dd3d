//! Scaled dot-product attention: ONNX `Attention` (opsets 23-25) on a shared core that the
//! `com.microsoft` attention ops also use.
//!
//! The core works on `[batch, heads, seq, head_size]` arrays, one (batch, head) pair at a time
//! (in parallel): `S = scale·Q·Kᵀ`, optional softcap, an additive bias built per row from the
//! mask, causal frontier, sliding window and key padding, a softmax whose fully-masked rows are
//! zero (never NaN), and `Y = P·V`. Grouped-query attention maps query head `h` to key/value
//! head `h / (q_heads / kv_heads)`. f16/bf16 compute in f32.
use kiln_ir::{DataType, Dim};
use rayon::prelude::*;

use super::linalg::{as_f32_mut, filled, float_dispatch, gemm, product, Mat, Real};
use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{broadcast_strides, KernelCtx, KernelFn};
use crate::value::{Data, Tensor, Value};

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    match (domain, op_type) {
        ("", "Attention") => Some(run_onnx),
        _ => None,
    }
}

/// Attention's outputs: Y like Q with V's head size; present key/value `[b, kv_heads, total,
/// head]`; the QK output `[b, q_heads, q_seq, total]`.
pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let dt = ctx.dtype(0);
    let q = ctx.shape(0);
    let k = ctx.shape(1);
    let v = ctx.shape(2);
    let past = ctx.shape(4).filter(|_| ctx.has_input(4));
    let mut y = None;
    let (mut pk, mut pv, mut qk) = (None, None, None);
    if let (Some(q), Some(k), Some(v)) = (q, k, v) {
        let kv_seq = match k.len() {
            4 => k[2].clone(),
            3 => k[1].clone(),
            _ => Dim::Unknown,
        };
        let total = match past.and_then(|p| p.get(2)) {
            Some(p) => p.add(&kv_seq),
            None => kv_seq,
        };
        if q.len() == 4 && k.len() == 4 && v.len() == 4 {
            y = Some(vec![q[0].clone(), q[1].clone(), q[2].clone(), v[3].clone()]);
            pk = Some(vec![
                k[0].clone(),
                k[1].clone(),
                total.clone(),
                k[3].clone(),
            ]);
            pv = Some(vec![
                v[0].clone(),
                v[1].clone(),
                total.clone(),
                v[3].clone(),
            ]);
            qk = Some(vec![q[0].clone(), q[1].clone(), q[2].clone(), total]);
        } else if q.len() == 3 && k.len() == 3 && v.len() == 3 {
            let qh = ctx.int_attr("q_num_heads", 0);
            let kvh = ctx.int_attr("kv_num_heads", 0);
            let vh = match (&v[2], kvh) {
                (Dim::Known(n), h) if h > 0 => Dim::Known(n / h),
                _ => Dim::Unknown,
            };
            let kh = match (&k[2], kvh) {
                (Dim::Known(n), h) if h > 0 => Dim::Known(n / h),
                _ => Dim::Unknown,
            };
            let y_hidden = match &vh {
                Dim::Known(n) if qh > 0 => Dim::Known(n * qh),
                _ => Dim::Unknown,
            };
            y = Some(vec![q[0].clone(), q[1].clone(), y_hidden]);
            let heads = |n: i64| if n > 0 { Dim::Known(n) } else { Dim::Unknown };
            pk = Some(vec![k[0].clone(), heads(kvh), total.clone(), kh]);
            pv = Some(vec![v[0].clone(), heads(kvh), total.clone(), vh]);
            qk = Some(vec![q[0].clone(), heads(qh), q[1].clone(), total]);
        }
    }
    let out = [y, pk, pv, qk];
    Ok((0..ctx.num_outputs)
        .map(|i| Inferred::tensor(dt, out.get(i).cloned().flatten()))
        .collect())
}

/// The mask's contribution, broadcast over `[batch, q_heads, q_seq, total]`.
pub enum Mask<'a> {
    None,
    /// `true` attends.
    Bool(&'a [bool], Vec<usize>, Vec<usize>),
    /// Added to the scores.
    Float(Vec<f64>, Vec<usize>, Vec<usize>),
}

/// What the core needs besides Q, K and V.
pub struct Params<'a> {
    pub scale: f64,
    pub softcap: f64,
    pub causal: bool,
    pub left_window: i64,
    pub right_window: i64,
    /// Keys before the query block (the past length); per batch with an external cache.
    pub offset: Vec<i64>,
    /// Valid keys per batch row (the rest is padding).
    pub kv_valid: Option<Vec<usize>>,
    pub mask: Mask<'a>,
    /// 0..=3: which stage of the scores to hand back as `qk_matmul_output`.
    pub qk_mode: i64,
    pub want_qk: bool,
}

/// `[b, h, s, d]` arrays.
pub struct Heads<T> {
    pub data: Vec<T>,
    pub b: usize,
    pub h: usize,
    pub s: usize,
    pub d: usize,
}

impl<T: Copy> Heads<T> {
    fn head(&self, b: usize, h: usize) -> &[T] {
        let n = self.s * self.d;
        &self.data[(b * self.h + h) * n..][..n]
    }

    /// From `[b, s, h*d]` (3-D inputs).
    pub fn from_3d(v: &[T], b: usize, s: usize, h: usize, d: usize) -> Heads<T> {
        let mut data = Vec::with_capacity(v.len());
        for bi in 0..b {
            for hi in 0..h {
                for si in 0..s {
                    data.extend_from_slice(&v[(bi * s + si) * h * d + hi * d..][..d]);
                }
            }
        }
        Heads { data, b, h, s, d }
    }

    /// To `[b, s, h*d]`.
    pub fn to_3d(&self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.data.len());
        for bi in 0..self.b {
            for si in 0..self.s {
                for hi in 0..self.h {
                    out.extend_from_slice(&self.head(bi, hi)[si * self.d..][..self.d]);
                }
            }
        }
        out
    }

    /// Appends `next` after `self` along the sequence axis.
    pub fn concat_seq(&self, next: &Heads<T>) -> Heads<T> {
        let s = self.s + next.s;
        let mut data = Vec::with_capacity(self.data.len() + next.data.len());
        for bi in 0..self.b {
            for hi in 0..self.h {
                data.extend_from_slice(self.head(bi, hi));
                data.extend_from_slice(next.head(bi, hi));
            }
        }
        Heads {
            data,
            b: self.b,
            h: self.h,
            s,
            d: self.d,
        }
    }
}

/// The additive bias of one query row: `-inf` where a key is not attended.
fn row_bias(p: &Params, b: usize, h: usize, i: usize, total: usize, out: &mut [f64]) {
    let off = p.offset.get(b).or(p.offset.first()).copied().unwrap_or(0);
    let pos = i as i64 + off;
    for (j, o) in out.iter_mut().enumerate().take(total) {
        let jj = j as i64;
        let mut v = 0.0;
        if p.causal && jj > pos {
            v = f64::NEG_INFINITY;
        }
        if p.left_window >= 0 && pos - jj > p.left_window {
            v = f64::NEG_INFINITY;
        }
        if p.right_window >= 0 && jj - pos > p.right_window {
            v = f64::NEG_INFINITY;
        }
        if let Some(valid) = &p.kv_valid {
            if j >= valid[b] {
                v = f64::NEG_INFINITY;
            }
        }
        *o = v;
    }
    let at = |shape: &[usize], st: &[usize], j: usize| -> Option<usize> {
        // The mask's last axis may be shorter than `total`: the rest is masked out.
        let last = *shape.last()?;
        if j >= last {
            return None;
        }
        let idx = [b, h, i, j];
        Some(idx.iter().zip(st).map(|(a, s)| a * s).sum())
    };
    match &p.mask {
        Mask::None => {}
        Mask::Bool(m, shape, st) => {
            for (j, o) in out.iter_mut().enumerate().take(total) {
                if !at(shape, st, j).is_some_and(|k| m[k]) {
                    *o = f64::NEG_INFINITY;
                }
            }
        }
        Mask::Float(m, shape, st) => {
            for (j, o) in out.iter_mut().enumerate().take(total) {
                *o += at(shape, st, j).map_or(f64::NEG_INFINITY, |k| m[k]);
            }
        }
    }
}

/// The core: `(Y [b, q_heads, q_seq, v_head], qk output [b, q_heads, q_seq, total])`.
pub fn sdpa<T: Real>(
    q: &Heads<T>,
    k: &Heads<T>,
    v: &Heads<T>,
    p: &Params,
) -> Result<(Vec<T>, Vec<T>)> {
    let (b, qh, qs, d) = (q.b, q.h, q.s, q.d);
    let (kvh, total, vd) = (k.h, k.s, v.d);
    if kvh == 0 || qh % kvh != 0 || v.h != kvh {
        return Err(format!(
            "{qh} query heads cannot share {kvh} key and {} value heads",
            v.h
        ));
    }
    if k.d != d {
        return Err(format!("Q's head size {d} differs from K's {}", k.d));
    }
    if v.s != total || k.b != b || v.b != b {
        return Err(format!(
            "K and V disagree: K [{}, {kvh}, {total}, {}], V [{}, {}, {}, {vd}], batch {b}",
            k.b, k.d, v.b, v.h, v.s
        ));
    }
    let group = qh / kvh;
    product(&[b, qh, qs, total.max(1), vd.max(1)])?;
    let mut y = filled(b * qh * qs * vd, T::zero())?;
    let mut qk = if p.want_qk {
        filled(b * qh * qs * total, T::zero())?
    } else {
        Vec::new()
    };
    // Q and K each take the square root of the scale (as the spec's graph does).
    let root = T::of(p.scale.sqrt());
    let scaled = |x: &Heads<T>| -> Vec<T> { x.data.iter().map(|&v| v * root).collect() };
    let (qsc, ksc) = (scaled(q), scaled(k));
    let head = |bh: usize, yo: &mut [T], qko: &mut [T]| -> Result<()> {
        let (bi, hi) = (bh / qh, bh % qh);
        let kv = hi / group;
        let mut s = vec![T::zero(); qs * total];
        gemm(
            qs,
            total,
            d,
            T::one(),
            Mat::rows(&qsc[(bi * qh + hi) * qs * d..][..qs * d], d),
            Mat::rows(&ksc[(bi * kvh + kv) * total * d..][..total * d], d).t(),
            T::zero(),
            &mut s,
            total,
        )?;
        if p.softcap > 0.0 {
            let c = T::of(p.softcap);
            for x in &mut s {
                *x = c * (*x / c).tanh();
            }
        }
        if p.want_qk && p.qk_mode <= 1 {
            qko.copy_from_slice(&s);
        }
        let mut bias = vec![0.0f64; total];
        // Without causal or window limits, and with a mask that broadcasts over query rows,
        // every row of this head has the same bias (BERT's key-padding mask).
        let same_rows = !p.causal
            && p.left_window < 0
            && p.right_window < 0
            && match &p.mask {
                Mask::None => true,
                Mask::Bool(_, _, st) | Mask::Float(_, _, st) => st[2] == 0,
            };
        let mut bias32 = Vec::new();
        let fast = !(p.want_qk && p.qk_mode == 2) && as_f32_mut(&mut s[..]).is_some();
        for i in 0..qs {
            if i == 0 || !same_rows {
                row_bias(p, bi, hi, i, total, &mut bias);
                if fast {
                    bias32 = bias.iter().map(|&v| v as f32).collect();
                }
            }
            let row = &mut s[i * total..(i + 1) * total];
            if let Some(r32) = as_f32_mut(row).filter(|_| fast) {
                // f32: the bias added in f32 (the same rounding as through f64), then the
                // vectorized softmax; a row with every key masked attends to nothing.
                let mut live = false;
                for (x, &bv) in r32.iter_mut().zip(&bias32) {
                    *x += bv;
                    live |= bv != f32::NEG_INFINITY;
                }
                let max = r32.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                if !live || max == f32::NEG_INFINITY {
                    r32.fill(0.0);
                } else {
                    kiln_kernels::vecmath::softmax_block(r32, 1);
                }
                if p.want_qk && p.qk_mode == 3 {
                    qko[i * total..(i + 1) * total].copy_from_slice(row);
                }
                continue;
            }
            for (x, &bv) in row.iter_mut().zip(&bias) {
                *x = T::of(x.f64() + bv);
            }
            if p.want_qk && p.qk_mode == 2 {
                qko[i * total..(i + 1) * total].copy_from_slice(row);
            }
            let masked = bias.iter().all(|v| *v == f64::NEG_INFINITY);
            let max = row.iter().fold(T::neg_infinity(), |m, &x| m.max(x));
            if masked || max == T::neg_infinity() {
                row.fill(T::zero());
            } else {
                let mut sum = T::zero();
                for x in row.iter_mut() {
                    *x = (*x - max).exp();
                    sum = sum + *x;
                }
                for x in row.iter_mut() {
                    *x = *x / sum;
                }
            }
            if p.want_qk && p.qk_mode == 3 {
                qko[i * total..(i + 1) * total].copy_from_slice(row);
            }
        }
        gemm(
            qs,
            vd,
            total,
            T::one(),
            Mat::rows(&s, total),
            Mat::rows(v.head(bi, kv), vd),
            T::zero(),
            yo,
            vd,
        )
    };
    let ychunks = y.chunks_mut((qs * vd).max(1));
    if p.want_qk {
        ychunks
            .zip(qk.chunks_mut((qs * total).max(1)))
            .enumerate()
            .par_bridge()
            .try_for_each(|(bh, (yo, qko))| kiln_kernels::gemm::serial(|| head(bh, yo, qko)))?;
    } else {
        ychunks
            .enumerate()
            .par_bridge()
            .try_for_each(|(bh, yo)| kiln_kernels::gemm::serial(|| head(bh, yo, &mut [])))?;
    }
    Ok((y, qk))
}

/// The mask input as the core reads it: its shape right-aligned to `[b, h, q, total]`
/// (a shorter last axis keeps its own length; positions past it are masked).
fn mask_of<'a>(t: Option<&'a Tensor>, out: [usize; 4]) -> Result<Mask<'a>> {
    let Some(t) = t else { return Ok(Mask::None) };
    if t.rank() > 4 || t.rank() == 0 {
        return Err(format!(
            "attn_mask must have rank 1 to 4, got shape {:?}",
            t.shape
        ));
    }
    let mut shape = vec![1usize; 4 - t.rank()];
    shape.extend_from_slice(&t.shape);
    for a in 0..3 {
        if shape[a] != 1 && shape[a] != out[a] {
            return Err(format!(
                "attn_mask of shape {:?} does not broadcast to {out:?}",
                t.shape
            ));
        }
    }
    if shape[3] > out[3] {
        return Err(format!(
            "attn_mask's last axis {} is longer than the {} keys",
            shape[3], out[3]
        ));
    }
    let mut target = out.to_vec();
    target[3] = shape[3];
    let st = broadcast_strides(&shape, &target);
    Ok(match &t.data {
        Data::Bool(v) => Mask::Bool(v, shape, st),
        _ => Mask::Float(t.to_f64s()?, shape, st),
    })
}

fn run_onnx(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let q = ctx.tensor(0)?;
    float_dispatch!(compute_type(ctx, q.dtype()), run_typed(ctx))
}

/// f64 when the inputs are, or when `softmax_precision` asks for double.
fn compute_type(ctx: &KernelCtx, dt: DataType) -> DataType {
    if ctx.int_attr("softmax_precision", 0) == 11 {
        DataType::F64
    } else {
        dt
    }
}

fn load_heads<T: Real>(t: &Tensor, what: &str, rank: usize, heads: i64) -> Result<Heads<T>> {
    if t.rank() != rank {
        return Err(format!("{what} has rank {}, Q has rank {rank}", t.rank()));
    }
    let v = super::linalg::load_any::<T>(t)?;
    if rank == 4 {
        let s = &t.shape;
        return Ok(Heads {
            data: v,
            b: s[0],
            h: s[1],
            s: s[2],
            d: s[3],
        });
    }
    if heads <= 0 {
        return Err(format!(
            "3-D inputs need q_num_heads and kv_num_heads, {what} has no head count"
        ));
    }
    let h = heads as usize;
    let hidden = t.shape[2];
    if hidden % h != 0 {
        return Err(format!(
            "{what}'s hidden size {hidden} is not a multiple of {h} heads"
        ));
    }
    Ok(Heads::from_3d(&v, t.shape[0], t.shape[1], h, hidden / h))
}

fn run_typed<T: Real>(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (qt, kt, vt) = (ctx.tensor(0)?, ctx.tensor(1)?, ctx.tensor(2)?);
    let rank = qt.rank();
    if rank != 3 && rank != 4 {
        return Err(format!("Q must have rank 3 or 4, got shape {:?}", qt.shape));
    }
    let qh_attr = ctx.int_attr("q_num_heads", 0);
    let kvh_attr = ctx.int_attr("kv_num_heads", 0);
    let q = load_heads::<T>(qt, "Q", rank, qh_attr)?;
    let mut k = load_heads::<T>(kt, "K", rank, kvh_attr)?;
    let mut v = load_heads::<T>(vt, "V", rank, kvh_attr)?;
    let past_k = ctx.opt_tensor(4)?;
    let past_v = ctx.opt_tensor(5)?;
    let nonpad = ctx.opt_tensor(6)?;
    if past_k.is_some() != past_v.is_some() {
        return Err("past_key and past_value must be given together".into());
    }
    if nonpad.is_some() && past_k.is_some() {
        return Err("nonpad_kv_seqlen cannot be combined with past_key/past_value".into());
    }
    let mut past_len = 0;
    if let (Some(pk), Some(pv)) = (past_k, past_v) {
        let pk = load_heads::<T>(pk, "past_key", 4, 0)?;
        let pv = load_heads::<T>(pv, "past_value", 4, 0)?;
        if pk.b != k.b || pk.h != k.h || pk.d != k.d || pv.b != v.b || pv.h != v.h || pv.d != v.d {
            return Err("past_key/past_value do not match K/V's batch, heads and head size".into());
        }
        past_len = pk.s;
        k = pk.concat_seq(&k);
        v = pv.concat_seq(&v);
    }
    let total = k.s;
    let kv_valid = match nonpad {
        Some(t) => {
            let lens = t.to_i64s()?;
            if lens.len() != q.b {
                return Err(format!(
                    "nonpad_kv_seqlen has {} values for a batch of {}",
                    lens.len(),
                    q.b
                ));
            }
            Some(
                lens.iter()
                    .map(|&l| l.clamp(0, total as i64) as usize)
                    .collect::<Vec<_>>(),
            )
        }
        None => None,
    };
    let offset = match (&kv_valid, nonpad) {
        (Some(_), Some(t)) => t.to_i64s()?.iter().map(|&l| l - q.s as i64).collect(),
        _ => vec![past_len as i64],
    };
    let scale = match ctx.attrs.iter().any(|a| a.name == "scale") {
        true => ctx.float_attr("scale", 1.0) as f64,
        false => 1.0 / (q.d as f64).sqrt(),
    };
    let mask = mask_of(ctx.opt_tensor(3)?, [q.b, q.h, q.s, total])?;
    let qk_mode = ctx.int_attr("qk_matmul_output_mode", 0);
    if !(0..=3).contains(&qk_mode) {
        return Err(format!(
            "qk_matmul_output_mode must be 0 to 3, got {qk_mode}"
        ));
    }
    let dt = qt.dtype();
    let p = Params {
        scale,
        softcap: ctx.float_attr("softcap", 0.0) as f64,
        causal: ctx.int_attr("is_causal", 0) != 0,
        left_window: ctx.int_attr("left_window_size", -1),
        right_window: ctx.int_attr("right_window_size", -1),
        offset,
        kv_valid,
        mask,
        qk_mode,
        want_qk: ctx.num_outputs > 3,
    };
    let (y, qk) = sdpa(&q, &k, &v, &p)?;
    let store = |v: Vec<T>| -> Result<Data> {
        super::linalg::store_f64(v.into_iter().map(|x| x.f64()).collect(), dt)
    };
    let y_heads = Heads {
        data: y,
        b: q.b,
        h: q.h,
        s: q.s,
        d: v.d,
    };
    let (y_shape, y) = if rank == 4 {
        (vec![q.b, q.h, q.s, v.d], y_heads.data)
    } else {
        (vec![q.b, q.s, q.h * v.d], y_heads.to_3d())
    };
    let mut out = vec![Value::Tensor(Tensor::new(y_shape, store(y)?))];
    if ctx.num_outputs > 1 {
        out.push(Value::Tensor(Tensor::new(
            vec![k.b, k.h, k.s, k.d],
            store(k.data)?,
        )));
    }
    if ctx.num_outputs > 2 {
        let vdt = vt.dtype();
        let data = super::linalg::store_f64(v.data.into_iter().map(|x| x.f64()).collect(), vdt)?;
        out.push(Value::Tensor(Tensor::new(vec![v.b, v.h, v.s, v.d], data)));
    }
    if ctx.num_outputs > 3 {
        out.push(Value::Tensor(Tensor::new(
            vec![q.b, q.h, q.s, total],
            store(qk)?,
        )));
    }
    Ok(out)
}
