//! Normalizations over axes: LRN, InstanceNormalization, LayerNormalization, RMSNormalization,
//! GroupNormalization, MeanVarianceNormalization, LpNormalization. Statistics accumulate in f64;
//! f16/bf16 tensors compute in f32.
use kiln_ir::{DataType, Dim};

use super::linalg::{float_dispatch, load_any, store_f64, Real};
use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{
    broadcast_index, broadcast_shape, broadcast_strides, one, KernelCtx, KernelFn,
};
use crate::value::{Data, Tensor, Value};

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    let f: KernelFn = match (domain, op_type) {
        ("", "LRN") => run_lrn,
        ("", "InstanceNormalization") => run_instance_norm,
        ("", "LayerNormalization" | "RMSNormalization") => run_layer_norm,
        ("", "GroupNormalization") => run_group_norm,
        ("", "MeanVarianceNormalization") => run_mvn,
        ("", "LpNormalization") => run_lp_norm,
        _ => return None,
    };
    Some(f)
}

/// LayerNormalization: Y like X; Mean and InvStdDev keep X's leading dims (before `axis`)
/// and have 1 for the normalized ones, in the stash type (float unless X is double).
pub fn infer_layer_norm(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let mut out = vec![ctx.same_as(0)];
    let stat_type = ctx.dtype(0).map(stat_dtype);
    let shape = match ctx.shape(0) {
        Some(s) => {
            let axis = ctx.axis(ctx.int_attr("axis", -1), s.len())?;
            Some(
                s.iter()
                    .enumerate()
                    .map(|(i, d)| if i < axis { d.clone() } else { Dim::Known(1) })
                    .collect(),
            )
        }
        None => None,
    };
    for _ in 1..ctx.num_outputs {
        out.push(Inferred::tensor(stat_type, shape.clone()));
    }
    Ok(out)
}

/// GroupNormalization keeps X's type and shape.
pub fn infer_same(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    Ok(vec![ctx.same_as(0)])
}

/// The element type of LayerNormalization's statistics outputs.
fn stat_dtype(x: DataType) -> DataType {
    if x == DataType::F64 {
        DataType::F64
    } else {
        DataType::F32
    }
}

fn float_input<'a>(ctx: &KernelCtx<'a>, i: usize) -> Result<&'a Tensor> {
    let t = ctx.tensor(i)?;
    match t.dtype() {
        DataType::F32 | DataType::F64 | DataType::F16 | DataType::BF16 => Ok(t),
        other => Err(format!("input {i} must be a float tensor, got {other}")),
    }
}

/// Mean and population variance of a slice, in f64.
fn moments<T: Real>(v: &[T]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let n = v.len() as f64;
    let mean = v.iter().map(|x| x.f64()).sum::<f64>() / n;
    let var = v.iter().map(|x| (x.f64() - mean).powi(2)).sum::<f64>() / n;
    (mean, var)
}

fn run_lrn(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = float_input(ctx, 0)?;
    if x.rank() < 3 {
        return Err(format!("LRN needs X of rank >= 3, got shape {:?}", x.shape));
    }
    let size = ctx.int_attr("size", 0);
    if !(1..=1 << 30).contains(&size) {
        return Err(format!("size must be a positive integer, got {size}"));
    }
    let alpha = ctx.float_attr("alpha", 1e-4) as f64;
    let beta = ctx.float_attr("beta", 0.75) as f64;
    let bias = ctx.float_attr("bias", 1.0) as f64;
    let data = float_dispatch!(x.dtype(), lrn(x, size as usize, alpha, beta, bias))?;
    one(Tensor::new(x.shape.clone(), data))
}

fn lrn<T: Real>(x: &Tensor, size: usize, alpha: f64, beta: f64, bias: f64) -> Result<Data> {
    let xv = T::load(x)?;
    let (n, c) = (x.shape[0], x.shape[1]);
    let inner: usize = x.shape[2..].iter().product();
    let (before, after) = ((size - 1) / 2, (size - 1).div_ceil(2));
    let mut y = vec![T::zero(); xv.len()];
    let mut sq = vec![0.0f64; inner];
    for b in 0..n {
        let base = b * c * inner;
        for ch in 0..c {
            let lo = ch.saturating_sub(before);
            let hi = (ch + after).min(c - 1);
            sq.fill(0.0);
            for cc in lo..=hi {
                let plane = &xv[base + cc * inner..base + (cc + 1) * inner];
                for (s, v) in sq.iter_mut().zip(plane) {
                    *s += v.f64() * v.f64();
                }
            }
            let o = base + ch * inner;
            for i in 0..inner {
                let scale = bias + alpha / size as f64 * sq[i];
                y[o + i] = T::of(xv[o + i].f64() / scale.powf(beta));
            }
        }
    }
    Ok(T::store(y, x.dtype()))
}

/// Per (n, c) normalization over the spatial dims, then per-channel scale and bias.
fn run_instance_norm(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = float_input(ctx, 0)?;
    if x.rank() < 3 {
        return Err(format!(
            "InstanceNormalization needs X of rank >= 3, got shape {:?}",
            x.shape
        ));
    }
    let c = x.shape[1];
    let scale = load_any::<f64>(ctx.tensor(1)?)?;
    let bias = load_any::<f64>(ctx.tensor(2)?)?;
    if scale.len() != c || bias.len() != c {
        return Err(format!("scale and B must have {c} elements (X's channels)"));
    }
    let eps = ctx.float_attr("epsilon", 1e-5) as f64;
    let inner: usize = x.shape[2..].iter().product();
    let data = float_dispatch!(
        x.dtype(),
        normalize_groups(x, inner, eps, |plane| (scale[plane % c], bias[plane % c]))
    )?;
    one(Tensor::new(x.shape.clone(), data))
}

/// Normalizes consecutive groups of `len` elements, each then scaled and shifted by
/// `affine(group index)`.
fn normalize_groups<T: Real>(
    x: &Tensor,
    len: usize,
    eps: f64,
    affine: impl Fn(usize) -> (f64, f64),
) -> Result<Data> {
    let xv = T::load(x)?;
    let mut y = vec![T::zero(); xv.len()];
    if len > 0 {
        for (g, (src, dst)) in xv.chunks(len).zip(y.chunks_mut(len)).enumerate() {
            let (mean, var) = moments(src);
            let inv = 1.0 / (var + eps).sqrt();
            let (s, b) = affine(g);
            for (d, v) in dst.iter_mut().zip(src) {
                *d = T::of((v.f64() - mean) * inv * s + b);
            }
        }
    }
    Ok(T::store(y, x.dtype()))
}

fn run_group_norm(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = float_input(ctx, 0)?;
    if x.rank() < 2 {
        return Err(format!(
            "GroupNormalization needs X of rank >= 2, got shape {:?}",
            x.shape
        ));
    }
    let c = x.shape[1];
    let groups = ctx.int_attr("num_groups", 0);
    if groups < 1 || groups as u64 > c as u64 || c % groups as usize != 0 {
        return Err(format!(
            "num_groups {groups} must be positive and divide the {c} channels"
        ));
    }
    let groups = groups as usize;
    let scale = load_any::<f64>(ctx.tensor(1)?)?;
    let bias = load_any::<f64>(ctx.tensor(2)?)?;
    if scale.len() != bias.len() {
        return Err("scale and bias differ in length".into());
    }
    // Opset 21 has one scale per channel; opset 18 had one per group.
    let per_channel = if scale.len() == c {
        true
    } else if scale.len() == groups && ctx.opset < 21 {
        false
    } else {
        return Err(format!(
            "scale has {} elements; expected {c} (per channel){}",
            scale.len(),
            if ctx.opset < 21 {
                format!(" or {groups} (per group)")
            } else {
                String::new()
            }
        ));
    };
    let eps = ctx.float_attr("epsilon", 1e-5) as f64;
    let cg = c / groups;
    let inner: usize = x.shape[2..].iter().product();
    let data = float_dispatch!(
        x.dtype(),
        group_norm(x, groups, cg, inner, eps, &scale, &bias, per_channel)
    )?;
    one(Tensor::new(x.shape.clone(), data))
}

#[allow(clippy::too_many_arguments)]
fn group_norm<T: Real>(
    x: &Tensor,
    groups: usize,
    cg: usize,
    inner: usize,
    eps: f64,
    scale: &[f64],
    bias: &[f64],
    per_channel: bool,
) -> Result<Data> {
    let xv = T::load(x)?;
    let len = cg * inner;
    let mut y = vec![T::zero(); xv.len()];
    if len > 0 {
        for (g, (src, dst)) in xv.chunks(len).zip(y.chunks_mut(len)).enumerate() {
            let gi = g % groups;
            let (mean, var) = moments(src);
            let inv = 1.0 / (var + eps).sqrt();
            for (ci, (s, d)) in src.chunks(inner).zip(dst.chunks_mut(inner)).enumerate() {
                let p = if per_channel { gi * cg + ci } else { gi };
                let (sc, b) = (scale[p], bias[p]);
                for (o, v) in d.iter_mut().zip(s) {
                    *o = T::of((v.f64() - mean) * inv * sc + b);
                }
            }
        }
    }
    Ok(T::store(y, x.dtype()))
}

/// For each element of `shape` (row-major), the index of its element in a tensor of
/// `pshape` broadcast to `shape` (which must not grow).
fn param_index(pshape: &[usize], shape: &[usize], what: &str) -> Result<Vec<usize>> {
    match broadcast_shape(&[shape, pshape]) {
        Ok(s) if s == shape => Ok(broadcast_index(shape, &broadcast_strides(pshape, shape))),
        _ => Err(format!(
            "{what} of shape {pshape:?} does not broadcast to {shape:?}"
        )),
    }
}

fn run_layer_norm(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = float_input(ctx, 0)?;
    let rank = x.rank();
    if rank == 0 {
        return Err("LayerNormalization needs X of rank >= 1".into());
    }
    let axis = ctx.axis(ctx.int_attr("axis", -1), rank)?;
    let eps = ctx.float_attr("epsilon", 1e-5) as f64;
    let scale = float_input(ctx, 1)?;
    let bias = match ctx.opt_tensor(2)? {
        Some(_) => Some(float_input(ctx, 2)?),
        None => None,
    };
    let rms = ctx.op_type == "RMSNormalization";
    let (y, mean, inv) = float_dispatch!(x.dtype(), layer_norm(x, axis, eps, scale, bias, rms))?;
    let mut out = vec![Value::Tensor(Tensor::new(x.shape.clone(), y))];
    let stat_shape: Vec<usize> = x
        .shape
        .iter()
        .enumerate()
        .map(|(i, &d)| if i < axis { d } else { 1 })
        .collect();
    let dt = stat_dtype(x.dtype());
    for v in [mean, inv]
        .into_iter()
        .take(ctx.num_outputs.saturating_sub(1))
    {
        out.push(Value::Tensor(Tensor::new(
            stat_shape.clone(),
            store_f64(v, dt)?,
        )));
    }
    Ok(out)
}

pub(crate) type LayerNormOut = (Data, Vec<f64>, Vec<f64>);

/// Layer normalization over `axis..`; `rms` skips centering (RMS normalization: the mean of
/// squares stands for the variance).
pub(crate) fn layer_norm<T: Real>(
    x: &Tensor,
    axis: usize,
    eps: f64,
    scale: &Tensor,
    bias: Option<&Tensor>,
    rms: bool,
) -> Result<LayerNormOut> {
    let len: usize = x.shape[axis..].iter().product();
    if let Some(out) = layer_norm_f32(x, len, eps, scale, bias, rms) {
        return Ok(out);
    }
    let xv = T::load(x)?;
    let norm_shape = &x.shape[axis..];
    // Scale and bias usually have the normalized shape; otherwise broadcast them over X.
    let params = |t: &Tensor, what: &str| -> Result<(Vec<f64>, Option<Vec<usize>>)> {
        let v = load_any::<f64>(t)?;
        let trimmed: Vec<usize> = {
            let first = t
                .shape
                .iter()
                .position(|&d| d != 1)
                .unwrap_or(t.shape.len());
            t.shape[first..].to_vec()
        };
        if trimmed.len() <= norm_shape.len() && norm_shape.ends_with(&trimmed) && v.len() == len {
            return Ok((v, None));
        }
        if t.rank() <= norm_shape.len() {
            let idx = param_index(&t.shape, norm_shape, what)?;
            return Ok((idx.iter().map(|&i| v[i]).collect(), None));
        }
        Ok((v, Some(param_index(&t.shape, &x.shape, what)?)))
    };
    let (sv, sidx) = params(scale, "Scale")?;
    let bp = bias.map(|b| params(b, "B")).transpose()?;
    let mut y = vec![T::zero(); xv.len()];
    let rows = xv.len().checked_div(len).unwrap_or(0);
    let mut means = Vec::with_capacity(rows);
    let mut invs = Vec::with_capacity(rows);
    if len > 0 {
        for (r, (src, dst)) in xv.chunks(len).zip(y.chunks_mut(len)).enumerate() {
            let (mean, var) = if rms {
                let n = src.len() as f64;
                (0.0, src.iter().map(|v| v.f64() * v.f64()).sum::<f64>() / n)
            } else {
                moments(src)
            };
            let inv = 1.0 / (var + eps).sqrt();
            means.push(mean);
            invs.push(inv);
            for (j, (d, v)) in dst.iter_mut().zip(src).enumerate() {
                let flat = r * len + j;
                let s = match &sidx {
                    Some(ix) => sv[ix[flat]],
                    None => sv[j],
                };
                let b = match &bp {
                    Some((bv, Some(ix))) => bv[ix[flat]],
                    Some((bv, None)) => bv[j],
                    None => 0.0,
                };
                *d = T::of((v.f64() - mean) * inv * s + b);
            }
        }
    }
    Ok((T::store(y, x.dtype()), means, invs))
}

/// The common case on kiln-kernels' vectorized rows: f32 throughout, and scale and bias holding
/// exactly the normalized elements (any leading 1s).
fn layer_norm_f32(
    x: &Tensor,
    len: usize,
    eps: f64,
    scale: &Tensor,
    bias: Option<&Tensor>,
    rms: bool,
) -> Option<LayerNormOut> {
    fn param(t: &Tensor, len: usize) -> Option<&[f32]> {
        match &t.data {
            Data::F32(v) if v.len() == len && len > 0 => Some(v.as_slice()),
            _ => None,
        }
    }
    let param = |t| param(t, len);
    let Data::F32(xv) = &x.data else { return None };
    let gamma = param(scale)?;
    let beta = match bias {
        Some(b) => param(b)?,
        None => &[],
    };
    // Every row is written.
    let mut y = kiln_kernels::vecmath::unfilled(xv.len(), f32::NAN);
    let stats = kiln_kernels::vecmath::layer_norm(xv, gamma, beta, eps as f32, rms, &mut y);
    let (means, invs) = stats.iter().map(|&(m, i)| (m as f64, i as f64)).unzip();
    Some((Data::F32(y), means, invs))
}

/// MeanVarianceNormalization: `(X - mean) / (sqrt(var) + 1e-9)` over `axes`.
fn run_mvn(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = float_input(ctx, 0)?;
    let rank = x.rank();
    let axes = ctx.ints_or("axes", 0, 0);
    let axes: Vec<i64> = if ctx.ints_attr("axes").is_none() {
        vec![0, 2, 3]
    } else {
        axes
    };
    let mut reduce = vec![false; rank];
    for &a in &axes {
        reduce[ctx.axis(a, rank)?] = true;
    }
    // Each element's group: its index over the kept dims.
    let kept: Vec<usize> = x
        .shape
        .iter()
        .zip(&reduce)
        .map(|(&d, &r)| if r { 1 } else { d })
        .collect();
    let keys = broadcast_index(&x.shape, &broadcast_strides(&kept, &x.shape));
    let groups: usize = kept.iter().product();
    let data = float_dispatch!(x.dtype(), mvn(x, &keys, groups))?;
    one(Tensor::new(x.shape.clone(), data))
}

fn mvn<T: Real>(x: &Tensor, keys: &[usize], groups: usize) -> Result<Data> {
    let xv = T::load(x)?;
    let mut sum = vec![0.0f64; groups];
    let mut cnt = vec![0usize; groups];
    for (&k, v) in keys.iter().zip(xv.iter()) {
        sum[k] += v.f64();
        cnt[k] += 1;
    }
    let mean: Vec<f64> = sum
        .iter()
        .zip(&cnt)
        .map(|(&s, &c)| s / c.max(1) as f64)
        .collect();
    let mut var = vec![0.0f64; groups];
    for (&k, v) in keys.iter().zip(xv.iter()) {
        var[k] += (v.f64() - mean[k]).powi(2);
    }
    let den: Vec<f64> = var
        .iter()
        .zip(&cnt)
        .map(|(&v, &c)| (v / c.max(1) as f64).sqrt() + 1e-9)
        .collect();
    let y = keys
        .iter()
        .zip(xv.iter())
        .map(|(&k, v)| T::of((v.f64() - mean[k]) / den[k]))
        .collect();
    Ok(T::store(y, x.dtype()))
}

/// LpNormalization: divides by the L1 or L2 norm along `axis` (a zero norm gives zeros).
fn run_lp_norm(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = float_input(ctx, 0)?;
    let rank = x.rank();
    if rank == 0 {
        return Err("LpNormalization needs X of rank >= 1".into());
    }
    let axis = ctx.axis(ctx.int_attr("axis", -1), rank)?;
    let p = ctx.int_attr("p", 2);
    if p != 1 && p != 2 {
        return Err(format!("p must be 1 or 2, got {p}"));
    }
    let data = float_dispatch!(x.dtype(), lp_norm(x, axis, p))?;
    one(Tensor::new(x.shape.clone(), data))
}

fn lp_norm<T: Real>(x: &Tensor, axis: usize, p: i64) -> Result<Data> {
    let xv = T::load(x)?;
    let d = x.shape[axis];
    let inner: usize = x.shape[axis + 1..].iter().product();
    let outer: usize = x.shape[..axis].iter().product();
    let mut y = vec![T::zero(); xv.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| o * d * inner + k * inner + i;
            let norm = if p == 1 {
                (0..d).map(|k| xv[at(k)].f64().abs()).sum::<f64>()
            } else {
                (0..d).map(|k| xv[at(k)].f64().powi(2)).sum::<f64>().sqrt()
            };
            for k in 0..d {
                y[at(k)] = if norm == 0.0 {
                    T::zero()
                } else {
                    T::of(xv[at(k)].f64() / norm)
                };
            }
        }
    }
    Ok(T::store(y, x.dtype()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_ir::Attribute;

    fn call(
        op: &str,
        ins: &[Tensor],
        attrs: &[Attribute],
        outs: usize,
        opset: i64,
    ) -> Result<Vec<Tensor>> {
        let vals: Vec<Value> = ins.iter().cloned().map(Value::Tensor).collect();
        let ctx = KernelCtx {
            op_type: op,
            domain: "",
            opset,
            attrs,
            inputs: vals.iter().map(Some).collect(),
            num_outputs: outs,
            subgraphs: None,
            donated: Default::default(),
        };
        let f = kernel("", op).unwrap();
        Ok(f(&ctx)?
            .into_iter()
            .map(|v| v.into_tensor().unwrap())
            .collect())
    }

    fn f(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(shape.to_vec(), v.to_vec())
    }

    fn close(a: &[f32], b: &[f64]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((*x as f64 - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }

    /// Random shapes and attributes (many invalid): every call returns, none panics.
    #[test]
    fn random_inputs_never_panic() {
        let mut seed = 3u64;
        let mut r = move |n: i64| -> i64 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as i64).rem_euclid(n)
        };
        let ops = [
            "LRN",
            "InstanceNormalization",
            "LayerNormalization",
            "GroupNormalization",
            "MeanVarianceNormalization",
            "LpNormalization",
        ];
        let mut ok = 0;
        for _ in 0..5000 {
            let rank = r(5) as usize;
            let xs: Vec<usize> = (0..rank).map(|_| r(4) as usize).collect();
            let n: usize = xs.iter().product();
            let mut ins = vec![f(&xs, &(0..n).map(|v| v as f32).collect::<Vec<_>>())];
            for _ in 0..r(3) {
                let ps: Vec<usize> = if r(2) == 0 && rank > 1 {
                    vec![xs[1]]
                } else {
                    (0..r(3) as usize).map(|_| r(4) as usize).collect()
                };
                let pn: usize = ps.iter().product();
                ins.push(f(&ps, &vec![1.0; pn]));
            }
            let attrs = [
                Attribute::int("axis", r(7) - 3),
                Attribute::int("size", r(4) - 1),
                Attribute::int("p", r(4)),
                Attribute::int("num_groups", r(4) - 1),
                Attribute::ints("axes", &[r(6) - 3, r(6) - 3]),
            ];
            let op = ops[r(ops.len() as i64) as usize];
            ok += call(
                op,
                &ins,
                &attrs[..r(6) as usize],
                1 + r(3) as usize,
                18 + r(4),
            )
            .is_ok() as usize;
        }
        assert!(ok > 300, "only {ok} valid cases");
    }

    #[test]
    fn lrn_hand_computed() {
        // Channels 1, 2, 3 at one pixel, size 2: window [c - 0, c + 1].
        let x = f(&[1, 3, 1, 1], &[1.0, 2.0, 3.0]);
        let attrs = [
            Attribute::int("size", 2),
            Attribute::float("alpha", 2.0),
            Attribute::float("beta", 1.0),
            Attribute::float("bias", 1.0),
        ];
        let y = call("LRN", &[x], &attrs, 1, 13).unwrap();
        close(
            y[0].as_slice().unwrap(),
            &[1.0 / (1.0 + 5.0), 2.0 / (1.0 + 13.0), 3.0 / (1.0 + 9.0)],
        );
    }

    #[test]
    fn instance_and_group_norm() {
        let x = f(&[1, 2, 2], &[1.0, 3.0, 10.0, 20.0]);
        let attrs = [Attribute::float("epsilon", 0.0)];
        let y = call(
            "InstanceNormalization",
            &[x.clone(), f(&[2], &[1.0, 2.0]), f(&[2], &[0.0, 1.0])],
            &attrs,
            1,
            6,
        )
        .unwrap();
        close(y[0].as_slice().unwrap(), &[-1.0, 1.0, -1.0, 3.0]);
        // Groups of one channel are instance norm; one group spans both channels.
        let attrs = [
            Attribute::float("epsilon", 0.0),
            Attribute::int("num_groups", 1),
        ];
        let y = call(
            "GroupNormalization",
            &[x.clone(), f(&[2], &[1.0, 1.0]), f(&[2], &[0.0, 0.0])],
            &attrs,
            1,
            21,
        )
        .unwrap();
        let m = 8.5f64;
        let sd =
            ((7.5f64.powi(2) + 5.5f64.powi(2) + 1.5f64.powi(2) + 11.5f64.powi(2)) / 4.0).sqrt();
        close(
            y[0].as_slice().unwrap(),
            &[
                (1.0 - m) / sd,
                (3.0 - m) / sd,
                (10.0 - m) / sd,
                (20.0 - m) / sd,
            ],
        );
        // Opset 18: one scale per group.
        let attrs = [
            Attribute::float("epsilon", 0.0),
            Attribute::int("num_groups", 2),
        ];
        let y = call(
            "GroupNormalization",
            &[x.clone(), f(&[2], &[1.0, 2.0]), f(&[2], &[0.0, 1.0])],
            &attrs,
            1,
            18,
        )
        .unwrap();
        close(y[0].as_slice().unwrap(), &[-1.0, 1.0, -1.0, 3.0]);
        assert!(call(
            "GroupNormalization",
            &[x.clone(), f(&[3], &[1.0; 3]), f(&[3], &[0.0; 3])],
            &attrs,
            1,
            21
        )
        .is_err());
        let bad = [Attribute::int("num_groups", 3)];
        assert!(call(
            "GroupNormalization",
            &[x, f(&[2], &[1.0; 2]), f(&[2], &[0.0; 2])],
            &bad,
            1,
            21
        )
        .is_err());
    }

    #[test]
    fn layer_norm_outputs() {
        let x = f(&[2, 2], &[1.0, 3.0, 2.0, 2.0]);
        let attrs = [Attribute::float("epsilon", 0.0)];
        let out = call(
            "LayerNormalization",
            &[x.clone(), f(&[2], &[1.0, 2.0]), f(&[2], &[0.5, 0.0])],
            &attrs,
            3,
            17,
        )
        .unwrap();
        let y = out[0].as_slice::<f32>().unwrap();
        close(&y[..2], &[-0.5, 2.0]);
        assert!(y[2].is_nan()); // zero variance with epsilon 0
        assert_eq!(out[1].shape, vec![2, 1]);
        close(out[1].as_slice().unwrap(), &[2.0, 2.0]);
        close(&out[2].as_slice::<f32>().unwrap()[..1], &[1.0]);
        // axis 0 normalizes everything; scale broadcast from a scalar-like [1].
        let out = call(
            "LayerNormalization",
            &[x, f(&[1], &[1.0])],
            &[Attribute::int("axis", 0), Attribute::float("epsilon", 0.0)],
            1,
            17,
        )
        .unwrap();
        let sd = 0.5f64.sqrt();
        close(out[0].as_slice().unwrap(), &[-1.0 / sd, 1.0 / sd, 0.0, 0.0]);
    }

    #[test]
    fn mvn_and_lp_norm() {
        let x = f(&[2, 1, 1, 1], &[1.0, 3.0]);
        let y = call("MeanVarianceNormalization", &[x.clone()], &[], 1, 13).unwrap();
        close(y[0].as_slice().unwrap(), &[-1.0, 1.0]);
        let x = f(&[2, 2], &[3.0, 4.0, 0.0, 0.0]);
        let y = call("LpNormalization", &[x.clone()], &[], 1, 1).unwrap();
        close(y[0].as_slice().unwrap(), &[0.6, 0.8, 0.0, 0.0]);
        let y = call(
            "LpNormalization",
            &[x.clone()],
            &[Attribute::int("axis", 0), Attribute::int("p", 1)],
            1,
            1,
        )
        .unwrap();
        close(y[0].as_slice().unwrap(), &[1.0, 1.0, 0.0, 0.0]);
        assert!(call("LpNormalization", &[x], &[Attribute::int("p", 3)], 1, 1).is_err());
    }
}
