//! com.microsoft GroupQueryAttention, the attention onnxruntime-genai's model builder writes
//! for decoder LLMs: grouped query heads over a BNSH key/value cache, the new tokens' keys and
//! values appended at each batch row's length, rotary embeddings inside, causal attention with
//! an optional sliding window, softcap, smooth softmax or per-head sinks, and an additive bias.
//!
//! Inputs: query (`[B, S, N·H]`, or Q, K and V packed along the last axis when key and value
//! are absent), key, value (`[B, S, Nk·H]`), past_key, past_value (`[B, Nk, P, H]`), seqlens_k
//! (`[B]`, each row's total length less one), total_sequence_length (the batch's longest),
//! cos_cache, sin_cache (`[max positions, R/2]`), position_ids, attention_bias
//! (`[B|1, N|1, S, T]`), head_sink (`[N]`). Outputs: `[B, S, N·H]`, present_key and
//! present_value (`[B, Nk, max(T, P), H]`: the past rows of each batch row, then its new ones,
//! zeros after).
use rayon::prelude::*;

use crate::ctx::{InferCtx, Inferred};
use crate::kernel::{KernelCtx, KernelFn, Result};
use crate::value::{Data, Tensor, Value};
use kiln_ir::{DataType, Dim};

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    match (domain, op_type) {
        ("com.microsoft", "GroupQueryAttention") => Some(run),
        _ => None,
    }
}

/// The output is `[B, S, N·H]`; the caches' lengths depend on total_sequence_length, a value.
pub fn infer(ctx: &InferCtx) -> crate::ctx::Result<Vec<Inferred>> {
    let dt = ctx.dtype(0);
    let n = ctx.int_attr("num_heads", 0);
    let nk = ctx.int_attr("kv_num_heads", 0);
    let y = ctx.shape(0).filter(|q| q.len() == 3).map(|q| {
        let d = match q[2].known() {
            Some(d) if !ctx.has_input(1) && n > 0 && nk > 0 => {
                let h = d as i64 / (n + 2 * nk);
                Dim::Known(h * n)
            }
            _ => q[2].clone(),
        };
        vec![q[0].clone(), q[1].clone(), d]
    });
    let mut out = vec![Inferred::tensor(dt, y)];
    for _ in 1..ctx.num_outputs {
        out.push(Inferred::tensor(dt, None));
    }
    Ok(out)
}

/// The op's attributes and sizes, checked.
struct Geom {
    b: usize,
    s: usize,
    n: usize,
    nk: usize,
    h: usize,
    /// Rows per batch row in the present caches.
    p_out: usize,
    scale: f32,
    softcap: f32,
    window: Option<usize>,
    smooth: bool,
}

fn f32s<'a>(t: &'a Tensor, what: &str) -> Result<&'a [f32]> {
    match &t.data {
        Data::F32(v) => Ok(v),
        _ => Err(format!(
            "{what} must be float32 (kiln runs GroupQueryAttention in float32), got {}",
            t.dtype()
        )),
    }
}

fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let q_t = ctx.tensor(0)?;
    if q_t.dtype() != DataType::F32 {
        return Err(format!(
            "query must be float32 (kiln runs GroupQueryAttention in float32), got {}",
            q_t.dtype()
        ));
    }
    let n = ctx.int_attr("num_heads", 0);
    let nk = ctx.int_attr("kv_num_heads", 0);
    if n <= 0 || nk <= 0 || n % nk != 0 {
        return Err(format!(
            "num_heads ({n}) must be a positive multiple of kv_num_heads ({nk})"
        ));
    }
    let (n, nk) = (n as usize, nk as usize);
    let [b, s, d] = q_t.shape[..] else {
        return Err(format!("query must be [B, S, hidden], got {:?}", q_t.shape));
    };
    let packed = !ctx.has_input(1);
    if packed && ctx.has_input(2) {
        return Err("value is given without key".into());
    }
    let h = if packed {
        if d % (n + 2 * nk) != 0 {
            return Err(format!(
                "packed QKV of width {d} does not split into {n} + 2·{nk} heads"
            ));
        }
        d / (n + 2 * nk)
    } else {
        if d % n != 0 {
            return Err(format!("query width {d} does not split into {n} heads"));
        }
        d / n
    };
    if h == 0 {
        return Err("the head size is 0".into());
    }
    let kv_in = if packed {
        None
    } else {
        let (k, v) = (ctx.tensor(1)?, ctx.tensor(2)?);
        for (t, what) in [(k, "key"), (v, "value")] {
            if t.shape != [b, s, nk * h] {
                return Err(format!(
                    "{what} must be [{b}, {s}, {}] ({nk} heads of {h}), got {:?}",
                    nk * h,
                    t.shape
                ));
            }
        }
        Some((f32s(k, "key")?, f32s(v, "value")?))
    };
    // Caches the runner handed over (this node is their last reader) take the new rows in
    // place when they already hold every row: the shared past/present buffer, no copy.
    let owned = (ctx.take_input(3), ctx.take_input(4));
    let past = match (given(ctx, &owned.0, 3)?, given(ctx, &owned.1, 4)?) {
        (None, None) => None,
        (Some(k), Some(v)) => {
            if k.rank() != 4 || k.shape != v.shape || k.shape[0] != b || k.shape[1] != nk {
                return Err(format!(
                    "past_key and past_value must both be [{b}, {nk}, P, {h}], got {:?} and {:?}",
                    k.shape, v.shape
                ));
            }
            if k.shape[3] != h {
                return Err(format!(
                    "the past's head size {} is not the query's {h}",
                    k.shape[3]
                ));
            }
            Some((f32s(k, "past_key")?, f32s(v, "past_value")?, k.shape[2]))
        }
        _ => return Err("past_key and past_value must be given together".into()),
    };
    let p_buf = past.map_or(0, |p| p.2);
    let seqlens = ctx.tensor(5)?.to_i64s()?;
    if seqlens.len() != b {
        return Err(format!(
            "seqlens_k has {} values for a batch of {b}",
            seqlens.len()
        ));
    }
    let total = match ctx.tensor(6)?.to_i64s()?[..] {
        [t] if t >= 0 => t as usize,
        ref v => {
            return Err(format!(
                "total_sequence_length must be one non-negative value, got {v:?}"
            ))
        }
    };
    let first = s == total;
    if !first && s > 1 && b != 1 {
        return Err(format!(
            "a prompt of {s} tokens after a past needs a batch of 1, got {b}"
        ));
    }
    let p_out = total.max(p_buf);
    // Each batch row's total length and the rows it had before these tokens.
    let mut lens = Vec::with_capacity(b);
    for (bi, &sk) in seqlens.iter().enumerate() {
        let len = sk + 1;
        if len < 1 || len as usize > p_out {
            return Err(format!("seqlens_k[{bi}] = {sk} is outside [0, {p_out})"));
        }
        let len = len as usize;
        // A first prompt starts at 0 (a right-padded row's padding tokens are written too).
        let past_rows = match (first, len.checked_sub(s)) {
            (true, _) => 0,
            (false, Some(p)) => p,
            (false, None) => {
                return Err(format!(
                    "seqlens_k[{bi}] + 1 = {len} is shorter than the {s} new tokens"
                ))
            }
        };
        if past_rows > p_buf {
            return Err(format!(
                "batch row {bi} needs {past_rows} past rows, the cache has {p_buf}"
            ));
        }
        lens.push((len, past_rows));
    }
    let scale = match ctx.float_attr("scale", 0.0) {
        x if x == 0.0 => 1.0 / (h as f32).sqrt(),
        x => x,
    };
    let head_sink = match ctx.opt_tensor(11)? {
        None => None,
        Some(t) if t.shape == [n] => Some(f32s(t, "head_sink")?),
        Some(t) => return Err(format!("head_sink must be [{n}], got {:?}", t.shape)),
    };
    let smooth = ctx.int_attr("smooth_softmax", -1) == 1;
    if smooth && head_sink.is_some() {
        return Err("head_sink and smooth_softmax together".into());
    }
    if ctx.int_attr("qk_output", 0) != 0 {
        return Err("qk_output is not supported".into());
    }
    let w = ctx.int_attr("local_window_size", -1);
    let g = Geom {
        b,
        s,
        n,
        nk,
        h,
        p_out,
        scale,
        softcap: ctx.float_attr("softcap", 0.0),
        window: (w >= 0).then_some(w as usize),
        smooth: smooth || head_sink.is_some(),
    };
    let bias = match ctx.opt_tensor(10)? {
        None => None,
        Some(t) => {
            let ok = t.rank() == 4
                && (t.shape[0] == b || t.shape[0] == 1)
                && (t.shape[1] == n || t.shape[1] == 1)
                && t.shape[2] == s
                && t.shape[3] == total;
            if !ok {
                return Err(format!(
                    "attention_bias must be [{b}|1, {n}|1, {s}, {total}], got {:?}",
                    t.shape
                ));
            }
            Some((
                f32s(t, "attention_bias")?,
                [t.shape[0], t.shape[1], t.shape[3]],
            ))
        }
    };
    let q_all = f32s(q_t, "query")?;
    // Q, K and V of the new tokens as [B, heads, S, H].
    let heads = |src: &[f32], width: usize, first_head: usize, count: usize| {
        // Every row of every head is copied in.
        let mut out = kiln_kernels::vecmath::unfilled(b * count * s * h, f32::NAN);
        for bi in 0..b {
            for si in 0..s {
                let row = &src[(bi * s + si) * width..][..width];
                for hi in 0..count {
                    let dst = ((bi * count + hi) * s + si) * h;
                    out[dst..dst + h].copy_from_slice(&row[(first_head + hi) * h..][..h]);
                }
            }
        }
        out
    };
    let (mut q, mut k, v) = match kv_in {
        None => (
            heads(q_all, d, 0, n),
            heads(q_all, d, n, nk),
            heads(q_all, d, n + nk, nk),
        ),
        Some((kd, vd)) => (
            heads(q_all, d, 0, n),
            heads(kd, nk * h, 0, nk),
            heads(vd, nk * h, 0, nk),
        ),
    };
    if ctx.int_attr("do_rotary", 0) == 1 {
        let pos = positions(ctx, &g, &lens, first)?;
        let rot = Rotary::new(ctx, h, &pos)?;
        rot.apply(&mut q, n, &g);
        rot.apply(&mut k, nk, &g);
    }
    // The present caches: each row's past, then its new tokens.
    let (mut pk, mut pv) = match owned {
        (Some(Value::Tensor(tk)), Some(Value::Tensor(tv))) if p_buf == g.p_out => {
            match (tk.data, tv.data) {
                (Data::F32(pk), Data::F32(pv)) => (pk, pv),
                _ => unreachable!("the past caches were checked to be float32"),
            }
        }
        _ => {
            let cache = g.nk * g.p_out * h;
            let mut pk = vec![0f32; b * cache];
            let mut pv = vec![0f32; b * cache];
            if let Some((past_k, past_v, _)) = past {
                for (bi, &(_, past_rows)) in lens.iter().enumerate() {
                    for kh in 0..nk {
                        let at = (bi * nk + kh) * g.p_out * h;
                        let from = (bi * nk + kh) * p_buf * h;
                        let len = past_rows * h;
                        pk[at..at + len].copy_from_slice(&past_k[from..from + len]);
                        pv[at..at + len].copy_from_slice(&past_v[from..from + len]);
                    }
                }
            }
            (pk, pv)
        }
    };
    for (bi, &(_, past_rows)) in lens.iter().enumerate() {
        for kh in 0..nk {
            let new = ((bi * nk + kh) * s) * h;
            let dst = (bi * nk + kh) * g.p_out * h + past_rows * h;
            pk[dst..dst + s * h].copy_from_slice(&k[new..new + s * h]);
            pv[dst..dst + s * h].copy_from_slice(&v[new..new + s * h]);
        }
    }
    // Both attention paths write every (token, head) row.
    let mut y = kiln_kernels::vecmath::unfilled(b * s * n * h, f32::NAN);
    if g.softcap == 0.0 && !g.smooth && bias.is_none() {
        attend_fast(&g, &lens, &q, &pk, &pv, &mut y)?;
    } else {
        attend(&g, &lens, &q, &pk, &pv, bias, head_sink, &mut y);
    }
    let mut out = vec![Value::Tensor(Tensor::new(vec![b, s, n * h], Data::F32(y)))];
    let present = [b, nk, g.p_out, h];
    if ctx.num_outputs > 1 {
        out.push(Value::Tensor(Tensor::new(present.to_vec(), Data::F32(pk))));
    }
    if ctx.num_outputs > 2 {
        out.push(Value::Tensor(Tensor::new(present.to_vec(), Data::F32(pv))));
    }
    Ok(out)
}

/// Input `i`: the value the runner handed over, or the borrowed one.
fn given<'a>(
    ctx: &KernelCtx<'a>,
    owned: &'a Option<Value>,
    i: usize,
) -> Result<Option<&'a Tensor>> {
    match owned {
        Some(Value::Tensor(t)) => Ok(Some(t)),
        Some(_) => Err(format!("input {i} is not a tensor")),
        None => ctx.opt_tensor(i),
    }
}

/// Each new token's position `[B, S]`: its place in its row, or position_ids.
fn positions(
    ctx: &KernelCtx,
    g: &Geom,
    lens: &[(usize, usize)],
    first: bool,
) -> Result<Vec<usize>> {
    let ids = match ctx.opt_tensor(9)? {
        None => None,
        Some(t) => {
            if t.rank() != 2 || t.shape[0] != g.b || t.shape[1] < g.s {
                return Err(format!(
                    "position_ids must be [{}, ≥{}], got {:?}",
                    g.b, g.s, t.shape
                ));
            }
            Some(t.to_i64s()?)
        }
    };
    let mut pos = Vec::with_capacity(g.b * g.s);
    for (bi, &(_, past_rows)) in lens.iter().enumerate() {
        for si in 0..g.s {
            let p = match &ids {
                // A first prompt counts from its first position id, as ORT does.
                Some(ids) if first => ids[0] + si as i64,
                Some(ids) => ids[bi * g.s + si],
                None => (past_rows + si) as i64,
            };
            if p < 0 {
                return Err(format!(
                    "position {p} of token {si} in row {bi} is negative"
                ));
            }
            pos.push(p as usize);
        }
    }
    Ok(pos)
}

/// The rotation of each token's heads by its position's angles.
struct Rotary<'a> {
    cos: &'a [f32],
    sin: &'a [f32],
    half: usize,
    interleaved: bool,
    pos: &'a [usize],
}

impl<'a> Rotary<'a> {
    fn new(ctx: &'a KernelCtx, h: usize, pos: &'a [usize]) -> Result<Rotary<'a>> {
        let (cos_t, sin_t) = match (ctx.opt_tensor(7)?, ctx.opt_tensor(8)?) {
            (Some(c), Some(s)) => (c, s),
            _ => return Err("do_rotary needs cos_cache and sin_cache".into()),
        };
        if cos_t.rank() != 2 || cos_t.shape != sin_t.shape {
            return Err(format!(
                "cos_cache and sin_cache must be one [positions, rotary_dim/2] shape, got {:?} and {:?}",
                cos_t.shape, sin_t.shape
            ));
        }
        let half = cos_t.shape[1];
        if half == 0 || 2 * half > h {
            return Err(format!(
                "a rotary dimension of {} does not fit a head of {h}",
                2 * half
            ));
        }
        if let Some(&p) = pos.iter().find(|&&p| p >= cos_t.shape[0]) {
            return Err(format!(
                "position {p} is past the rotary caches' {} positions",
                cos_t.shape[0]
            ));
        }
        Ok(Rotary {
            cos: f32s(cos_t, "cos_cache")?,
            sin: f32s(sin_t, "sin_cache")?,
            half,
            interleaved: ctx.int_attr("rotary_interleaved", 0) == 1,
            pos,
        })
    }

    /// Rotates `x` (`[B, heads, S, H]`) in place.
    fn apply(&self, x: &mut [f32], heads: usize, g: &Geom) {
        let half = self.half;
        for (i, row) in x.chunks_exact_mut(g.h).enumerate() {
            let (bi, si) = (i / (heads * g.s), i % g.s);
            let p = self.pos[bi * g.s + si];
            let (c, s) = (&self.cos[p * half..][..half], &self.sin[p * half..][..half]);
            for j in 0..half {
                let (a, b) = if self.interleaved {
                    (2 * j, 2 * j + 1)
                } else {
                    (j, j + half)
                };
                let (xa, xb) = (row[a], row[b]);
                row[a] = xa * c[j] - xb * s[j];
                row[b] = xb * c[j] + xa * s[j];
            }
        }
    }
}

/// New tokens up to which attention runs on rows straight over the cache, not the GEMM.
const FEW_ROWS: usize = 4;

/// [`attend`] on the packed-GEMM attention kernel (query rows in blocks, keys of the cache read
/// in place), for the plain softmax: causal over each row's length, with the sliding window.
fn attend_fast(
    g: &Geom,
    lens: &[(usize, usize)],
    q: &[f32],
    pk: &[f32],
    pv: &[f32],
    y: &mut [f32],
) -> Result<()> {
    use kiln_kernels::attention::{few_rows, Causal, Sdpa, Strided4};
    let (s, n, nk, h, rows) = (g.s, g.n, g.nk, g.h, g.p_out);
    let group = n / nk;
    if s <= FEW_ROWS {
        // A decode step: each key head's query rows straight over its cache rows, one task
        // per (batch row, key head) so a head's keys are read by one thread.
        let task = |t: usize| {
            let (bi, kh) = (t / nk, t % nk);
            let (len, past_rows) = lens[bi];
            let c = Causal {
                offset: past_rows,
                window: g.window,
            };
            let ranges: Vec<_> = (0..group)
                .flat_map(|_| (0..s).map(|si| c.keys(si, len)))
                .collect();
            let qs = &q[(bi * n + kh * group) * s * h..][..group * s * h];
            let at = (bi * nk + kh) * rows * h;
            let mut out = vec![0f32; group * s * h];
            let (k, v) = (&pk[at..at + len * h], &pv[at..at + len * h]);
            few_rows(qs, k, v, h, g.scale, &ranges, &mut Vec::new(), &mut out);
            out
        };
        let outs: Vec<Vec<f32>> = if g.b * nk == 1 {
            vec![task(0)]
        } else {
            (0..g.b * nk).into_par_iter().map(task).collect()
        };
        for (t, out) in outs.iter().enumerate() {
            let (bi, kh) = (t / nk, t % nk);
            for (r, row) in out.chunks_exact(h).enumerate() {
                let (ni, si) = (kh * group + r / s, r % s);
                y[((bi * s + si) * n + ni) * h..][..h].copy_from_slice(row);
            }
        }
        return Ok(());
    }
    for (bi, &(len, past_rows)) in lens.iter().enumerate() {
        fn view(c: &[f32], at: usize, dims: [usize; 4], rows: usize) -> Result<Strided4<'_>> {
            let [_, nk, _, h] = dims;
            Strided4::new(&c[at..at + nk * rows * h], dims, [0, rows * h, h, 1])
        }
        let cache = |c| view(c, bi * nk * rows * h, [1, nk, len, h], rows);
        let a = Sdpa {
            isa: kiln_kernels::Isa::detect(),
            q: Strided4::dense(&q[bi * n * s * h..(bi + 1) * n * s * h], [1, n, s, h])?,
            k: cache(pk)?,
            v: cache(pv)?,
            bias: None,
            scale: g.scale,
            causal: Some(Causal {
                offset: past_rows,
                window: g.window,
            }),
        };
        a.run(
            &mut y[bi * s * n * h..(bi + 1) * s * n * h],
            [0, h, n * h, 1],
        )?;
    }
    Ok(())
}

/// `y [B, S, N·H]` from Q `[B, N, S, H]` over the present caches, one (batch row, head) per task.
#[allow(clippy::too_many_arguments)]
fn attend(
    g: &Geom,
    lens: &[(usize, usize)],
    q: &[f32],
    pk: &[f32],
    pv: &[f32],
    bias: Option<(&[f32], [usize; 3])>,
    sink: Option<&[f32]>,
    y: &mut [f32],
) {
    let (s, n, h) = (g.s, g.n, g.h);
    let group = n / g.nk;
    let results: Vec<(usize, usize, Vec<f32>)> = (0..g.b * n)
        .into_par_iter()
        .map(|task| {
            let (bi, ni) = (task / n, task % n);
            let (len, past_rows) = lens[bi];
            let kv = (bi * g.nk + ni / group) * g.p_out * h;
            let (keys, vals) = (&pk[kv..kv + g.p_out * h], &pv[kv..kv + g.p_out * h]);
            let mut out = vec![0f32; s * h];
            let mut scores = vec![0f32; g.p_out];
            for si in 0..s {
                let qr = &q[((bi * n + ni) * s + si) * h..][..h];
                let end = (past_rows + si + 1).min(len);
                let start = match g.window {
                    Some(w) if end > w => end - w,
                    _ => 0,
                };
                let row = &mut scores[start..end];
                for (j, x) in row.iter_mut().enumerate() {
                    let kr = &keys[(start + j) * h..][..h];
                    let dot: f32 = qr.iter().zip(kr).map(|(a, b)| a * b).sum();
                    *x = dot * g.scale;
                }
                if g.softcap > 0.0 {
                    row.iter_mut()
                        .for_each(|x| *x = g.softcap * (*x / g.softcap).tanh());
                }
                if let Some((bv, [b0, b1, tb])) = bias {
                    let at = (if b0 == 1 { 0 } else { bi * b1 * s * tb })
                        + (if b1 == 1 { 0 } else { ni * s * tb })
                        + si * tb;
                    for (j, x) in row.iter_mut().enumerate() {
                        *x += bv[at + start + j];
                    }
                }
                // Softmax over the window; smooth softmax and sinks add one more logit.
                let extra = if g.smooth {
                    Some(sink.map_or(0.0, |sk| sk[ni]))
                } else {
                    None
                };
                let mut m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                if let Some(e) = extra {
                    m = m.max(e);
                }
                let mut sum = 0f32;
                for x in row.iter_mut() {
                    *x = (*x - m).exp();
                    sum += *x;
                }
                if let Some(e) = extra {
                    sum += (e - m).exp();
                }
                let o = &mut out[si * h..(si + 1) * h];
                for (j, &p) in row.iter().enumerate() {
                    let p = p / sum;
                    let vr = &vals[(start + j) * h..][..h];
                    for (a, &v) in o.iter_mut().zip(vr) {
                        *a += p * v;
                    }
                }
            }
            (bi, ni, out)
        })
        .collect();
    for (bi, ni, out) in results {
        for si in 0..s {
            let dst = ((bi * s + si) * n + ni) * h;
            y[dst..dst + h].copy_from_slice(&out[si * h..(si + 1) * h]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_ir::Attribute;

    fn f(shape: &[usize]) -> Option<Tensor> {
        let n: usize = shape.iter().product();
        let v = (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        Some(Tensor::new(shape.to_vec(), Data::F32(v)))
    }

    fn i32s(shape: &[usize], v: &[i32]) -> Option<Tensor> {
        Some(Tensor::new(shape.to_vec(), Data::I32(v.to_vec())))
    }

    fn call(ins: &[Option<Tensor>], attrs: &[Attribute]) -> Result<Vec<Value>> {
        let vals: Vec<Option<Value>> = ins.iter().map(|t| t.clone().map(Value::Tensor)).collect();
        let ctx = KernelCtx {
            op_type: "GroupQueryAttention",
            domain: "com.microsoft",
            opset: 1,
            attrs,
            inputs: vals.iter().map(|v| v.as_ref()).collect(),
            num_outputs: 3,
            subgraphs: None,
            donated: Default::default(),
        };
        run(&ctx)
    }

    fn heads(n: i64, nk: i64) -> Vec<Attribute> {
        vec![
            Attribute::int("num_heads", n),
            Attribute::int("kv_num_heads", nk),
        ]
    }

    #[test]
    fn a_decode_step_appends_at_each_rows_length() {
        // Batch of 2, packed QKV of 4 + 2·2 heads of 8, a cache of 4 rows; row 1 is shorter.
        let ins = [
            f(&[2, 1, 64]),
            None,
            None,
            f(&[2, 2, 4, 8]),
            f(&[2, 2, 4, 8]),
            i32s(&[2], &[4, 2]),
            i32s(&[], &[5]),
        ];
        let out = call(&ins, &heads(4, 2)).unwrap();
        let Value::Tensor(pk) = &out[1] else { panic!() };
        assert_eq!(pk.shape, [2, 2, 5, 8]);
        let (Data::F32(pk), Data::F32(past), Data::F32(q)) = (
            &pk.data,
            &ins[3].as_ref().unwrap().data,
            &ins[0].as_ref().unwrap().data,
        ) else {
            panic!()
        };
        // Row 0, KV head 1: its 4 past rows, then the new key (Q's 4 heads come first).
        let at = 5 * 8;
        assert_eq!(pk[at..at + 32], past[32..64]);
        assert_eq!(pk[at + 32..at + 40], q[5 * 8..6 * 8]);
        // Row 1 had 2 past rows: the new key lands at row 2, zeros after.
        let at = (2 + 0) * 5 * 8;
        assert_eq!(pk[at + 16..at + 24], q[64 + 4 * 8..64 + 5 * 8]);
        assert!(pk[at + 24..at + 40].iter().all(|&x| x == 0.0));
    }

    #[test]
    fn bad_inputs_are_errors() {
        let base = || {
            vec![
                f(&[1, 3, 64]),
                None,
                None,
                None,
                None,
                i32s(&[1], &[2]),
                i32s(&[], &[3]),
            ]
        };
        let err = |ins: &[Option<Tensor>], attrs: &[Attribute]| call(ins, attrs).unwrap_err();
        assert!(err(&base(), &heads(3, 2)).contains("multiple of kv_num_heads"));
        assert!(err(&base(), &heads(5, 1)).contains("does not split"));
        let mut ins = base();
        ins[5] = i32s(&[1], &[7]);
        assert!(err(&ins, &heads(4, 2)).contains("seqlens_k[0] = 7"));
        let mut ins = base();
        ins[6] = i32s(&[2], &[3, 3]);
        assert!(err(&ins, &heads(4, 2)).contains("total_sequence_length"));
        let mut ins = base();
        ins[3] = f(&[1, 2, 4, 8]);
        assert!(err(&ins, &heads(4, 2)).contains("given together"));
        // Rotary without caches, and positions past them.
        let mut a = heads(4, 2);
        a.push(Attribute::int("do_rotary", 1));
        assert!(err(&base(), &a).contains("cos_cache and sin_cache"));
        let mut ins = base();
        ins.push(f(&[2, 4]));
        ins.push(f(&[2, 4]));
        assert!(err(&ins, &a).contains("past the rotary caches"));
        // A later chunk of several tokens needs a batch of one.
        let ins = vec![
            f(&[2, 2, 64]),
            None,
            None,
            f(&[2, 2, 3, 8]),
            f(&[2, 2, 3, 8]),
            i32s(&[2], &[4, 4]),
            i32s(&[], &[5]),
        ];
        assert!(err(&ins, &heads(4, 2)).contains("batch of 1"));
    }
}
