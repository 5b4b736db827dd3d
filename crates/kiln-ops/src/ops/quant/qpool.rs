//! com.microsoft's QLinear pools and QLinearConcat: QLinearGlobalAveragePool sums the integer
//! differences of each plane and requantizes `sum · sx / (sy · count)` as ORT does;
//! QLinearAveragePool dequantizes, runs AveragePool and quantizes; QLinearConcat copies the
//! inputs whose scale and zero point are the output's and maps the others through a table.
use kiln_ir::{Attribute, Dim};
use rayon::prelude::*;

use super::{byte_value, bytes, call, out_signed, quantize_f32, scale, tensor_of, zero};
use crate::ctx::{InferCtx, Inferred};
use crate::kernel::{norm_axis, one, KernelCtx, KernelFn, Result};
use crate::value::{Tensor, Value};

pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    if domain != "com.microsoft" {
        return None;
    }
    Some(match op_type {
        "QLinearGlobalAveragePool" => global_average,
        "QLinearAveragePool" => average,
        "QLinearConcat" => concat,
        "NhwcMaxPool" => nhwc_max_pool,
        _ => return None,
    })
}

pub fn infer_rule(op_type: &str) -> Option<crate::ops::InferFn> {
    Some(match op_type {
        "QLinearGlobalAveragePool" => infer_global,
        "QLinearAveragePool" => infer_average,
        "QLinearConcat" => infer_concat,
        "NhwcMaxPool" => infer_nhwc_max_pool,
        _ => return None,
    })
}

fn channels_last(ctx_attr: i64) -> bool {
    ctx_attr != 0
}

fn infer_global(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let last = channels_last(ctx.int_attr("channels_last", 0));
    let shape = ctx.shape(0).filter(|x| x.len() >= 3).map(|x| {
        let r = x.len();
        x.iter()
            .enumerate()
            .map(|(i, d)| {
                let keep = i == 0 || if last { i == r - 1 } else { i == 1 };
                if keep {
                    d.clone()
                } else {
                    Dim::Known(1)
                }
            })
            .collect()
    });
    Ok(vec![Inferred::tensor(ctx.dtype(0), shape)])
}

fn infer_average(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    if channels_last(ctx.int_attr("channels_last", 0)) {
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None)]);
    }
    crate::ops::pool::infer(ctx)
}

fn infer_concat(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let n = ctx.inputs.len();
    let dt = ctx.dtype(2);
    if n < 5 || (n - 2) % 3 != 0 {
        return Err(format!("QLinearConcat takes 2 + 3k inputs, got {n}"));
    }
    let shapes: Option<Vec<&[Dim]>> = (2..n).step_by(3).map(|i| ctx.shape(i)).collect();
    let shape = shapes.and_then(|s| {
        let r = s[0].len();
        let axis = norm_axis(ctx.int_attr("axis", 0), r).ok()?;
        let mut out = s[0].to_vec();
        out[axis] = s[1..].iter().try_fold(s[0][axis].clone(), |acc, x| {
            (x.len() == r).then(|| acc.add(&x[axis]))
        })?;
        Some(out)
    });
    Ok(vec![Inferred::tensor(dt, shape)])
}

/// `[N, H, W, C]` pooled over H and W by MaxPool's window rule.
fn infer_nhwc_max_pool(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let shape = match (ctx.shape(0), ctx.ints_attr("kernel_shape")) {
        (Some(x), Some(k)) if x.len() >= 3 => {
            let r = x.len();
            let ceil = ctx.int_attr("ceil_mode", 0) != 0;
            let sp = crate::ops::conv::window_output(ctx, &x[1..r - 1], k, ceil)?;
            let mut s = vec![x[0].clone()];
            s.extend(sp);
            s.push(x[r - 1].clone());
            Some(s)
        }
        _ => None,
    };
    Ok(vec![Inferred::tensor(ctx.dtype(0), shape)])
}

/// com.microsoft NhwcMaxPool on 8-bit data: each output pixel's channels are the maximum of
/// its window's pixels, padding skipped.
fn nhwc_max_pool(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let (v, signed) = bytes(x).ok_or("X must be uint8 or int8")?;
    if x.rank() != 4 {
        return Err(format!("X must be [N, H, W, C], got {:?}", x.shape));
    }
    let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]);
    let k: Vec<usize> = ctx
        .ints_attr("kernel_shape")
        .ok_or("kernel_shape is required")?
        .iter()
        .map(|&k| k.max(1) as usize)
        .collect();
    let win = crate::ops::conv::window(ctx, &[h, w], &k, ctx.int_attr("ceil_mode", 0) != 0)?;
    let (oh, ow) = (win.output[0], win.output[1]);
    let mut out = vec![0u8; n * oh * ow * c];
    if out.is_empty() {
        return one(tensor_of(vec![n, oh, ow, c], out, signed));
    }
    // Signed bytes compare as unsigned once their sign bit is flipped.
    let flip = if signed { 0x80u8 } else { 0 };
    // The window's taps inside the input along one axis, for output position `o`.
    let (k, win) = (&k, &win);
    let taps = move |o: usize, axis: usize, len: usize| {
        (0..k[axis]).filter_map(move |i| {
            let p = (o * win.strides[axis] + i * win.dilations[axis]) as isize
                - win.pads[axis] as isize;
            (0..len as isize).contains(&p).then_some(p as usize)
        })
    };
    // One output row per task.
    out.par_chunks_mut(ow * c)
        .enumerate()
        .for_each(|(row, dst_row)| {
            let (img, oy) = (row / oh, row % oh);
            let src = &v[img * h * w * c..(img + 1) * h * w * c];
            for (ox, dst) in dst_row.chunks_exact_mut(c).enumerate() {
                dst.fill(0);
                for iy in taps(oy, 0, h) {
                    for ix in taps(ox, 1, w) {
                        let px = &src[(iy * w + ix) * c..][..c];
                        for (d, &s) in dst.iter_mut().zip(px) {
                            *d = (*d).max(s ^ flip);
                        }
                    }
                }
                if flip != 0 {
                    dst.iter_mut().for_each(|d| *d ^= flip);
                }
            }
        });
    one(tensor_of(vec![n, oh, ow, c], out, signed))
}

fn global_average(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let q = super::q_input(ctx, 0, "x")?;
    let (x, v, signed, sx, zx) = (q.t, q.v, q.signed, q.scale, q.zero);
    let (sy, zy, ys) = super::q_output(ctx, 3, "y")?;
    if x.rank() < 3 {
        return Err(format!("X must have rank >= 3, got {:?}", x.shape));
    }
    let last = channels_last(ctx.int_attr("channels_last", 0));
    let r = x.rank();
    let (n, c) = (x.shape[0], if last { x.shape[r - 1] } else { x.shape[1] });
    let plane = x.len() / (n * c).max(1);
    let scale = sx / (sy * plane as f32);
    let (lo, hi) = if ys { (-128, 127) } else { (0, 255) };
    let mut out = vec![0u8; n * c];
    // Sums of the raw bytes (sign bit flipped for s8, undone with the zero point); a plane of
    // up to 2^23 bytes cannot overflow the i32 lanes.
    let flip = if signed { 0x80u8 } else { 0 };
    let zx = zx + if signed { 128 } else { 0 };
    let mut sums = vec![0i64; c];
    for img in 0..n {
        let image = &v[img * plane * c..(img + 1) * plane * c];
        if last {
            for block in image.chunks(c << 23) {
                let mut acc = vec![0i32; c];
                for px in block.chunks_exact(c) {
                    for (a, &b) in acc.iter_mut().zip(px) {
                        *a += (b ^ flip) as i32;
                    }
                }
                for (s, a) in sums.iter_mut().zip(&acc) {
                    *s += *a as i64;
                }
            }
        } else {
            for (s, ch) in sums.iter_mut().zip(image.chunks_exact(plane)) {
                *s = ch.iter().map(|&b| (b ^ flip) as i64).sum();
            }
        }
        for (ch, s) in sums.iter_mut().enumerate() {
            let acc = (*s - zx as i64 * plane as i64) as i32;
            out[img * c + ch] = kiln_kernels::qgemm::requantize(acc, scale, zy, lo, hi) as u8;
            *s = 0;
        }
    }
    let mut shape = vec![1; r];
    shape[0] = n;
    shape[if last { r - 1 } else { 1 }] = c;
    one(tensor_of(shape, out, ys))
}

fn average(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let q = super::q_input(ctx, 0, "x")?;
    let (x, v, signed, sx, zx) = (q.t, q.v, q.signed, q.scale, q.zero);
    let (sy, zy, ys) = super::q_output(ctx, 3, "y")?;
    let r = x.rank();
    if r < 3 {
        return Err(format!("X must have rank >= 3, got {:?}", x.shape));
    }
    let last = channels_last(ctx.int_attr("channels_last", 0));
    let f: Vec<f32> = v
        .iter()
        .map(|&b| sx * (byte_value(b, signed) - zx) as f32)
        .collect();
    let mut xf = Tensor::from_vec(x.shape.clone(), f);
    let perm_in: Vec<usize> = std::iter::once(0)
        .chain(std::iter::once(r - 1))
        .chain(1..r - 1)
        .collect();
    if last {
        xf = permute(&xf, &perm_in)?;
    }
    let attrs: Vec<Attribute> = ctx
        .attrs
        .iter()
        .filter(|a| a.name != "channels_last")
        .cloned()
        .collect();
    let mut y = call(ctx, "AveragePool", &attrs, &[Some(&xf)])?;
    if last {
        let back: Vec<usize> = std::iter::once(0)
            .chain(2..r)
            .chain(std::iter::once(1))
            .collect();
        y = permute(&y, &back)?;
    }
    let yv = y.as_slice::<f32>().ok_or("AveragePool gave no float32")?;
    let q = yv.iter().map(|&e| quantize_f32(e, sy, zy, ys)).collect();
    one(tensor_of(y.shape.clone(), q, ys))
}

fn permute(t: &Tensor, perm: &[usize]) -> Result<Tensor> {
    let p: Vec<i64> = perm.iter().map(|&p| p as i64).collect();
    call_with(t, "Transpose", &[Attribute::ints("perm", &p)])
}

fn call_with(t: &Tensor, op: &str, attrs: &[Attribute]) -> Result<Tensor> {
    super::call_op(op, 13, attrs, &[Some(t)])
}

fn concat(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let n = ctx.inputs.len();
    if n < 5 || (n - 2) % 3 != 0 {
        return Err(format!("QLinearConcat takes 2 + 3k inputs, got {n}"));
    }
    let sy = scale(ctx.tensor(0)?, "Y_scale")?;
    let ys = out_signed(ctx, 1)?;
    let zy = zero(ctx.opt_tensor(1)?, ys, "Y_zero_point")?;
    // Each input's bytes with the table that requantizes them (none when its scale and zero
    // point are the output's).
    let mut parts: Vec<(&Tensor, &[u8], Option<[u8; 256]>)> = Vec::new();
    for i in (2..n).step_by(3) {
        let x = ctx.tensor(i)?;
        let (v, signed) = bytes(x).ok_or_else(|| format!("input {i} must be uint8 or int8"))?;
        if signed != ys {
            return Err(format!("input {i} ({}) does not match Y's type", x.dtype()));
        }
        let sx = scale(ctx.tensor(i + 1)?, "x_scale")?;
        let zx = zero(ctx.opt_tensor(i + 2)?, signed, "x_zero_point")?;
        let table = (sx != sy || zx != zy).then(|| {
            let mut t = [0u8; 256];
            for (b, e) in t.iter_mut().enumerate() {
                let d = sx * (byte_value(b as u8, signed) - zx) as f32;
                *e = quantize_f32(d, sy, zy, ys);
            }
            t
        });
        parts.push((x, v, table));
    }
    let first = &parts[0].0.shape;
    let r = first.len();
    let axis = norm_axis(ctx.int_attr("axis", 0), r.max(1))?;
    let mut shape = first.clone();
    shape[axis] = 0;
    for (x, _, _) in &parts {
        let ok = x.shape.len() == r && (0..r).all(|d| d == axis || x.shape[d] == first[d]);
        if !ok {
            return Err(format!(
                "input shapes {:?} and {:?} do not concatenate along axis {axis}",
                first, x.shape
            ));
        }
        shape[axis] += x.shape[axis];
    }
    let total: usize = shape.iter().product();
    // Every row is filled with the inputs' runs side by side.
    let mut out = super::written_bytes(total);
    if total == 0 {
        return one(tensor_of(shape, out, ys));
    }
    let runs: Vec<usize> = parts
        .iter()
        .map(|(x, _, _)| x.shape[axis..].iter().product())
        .collect();
    let width: usize = runs.iter().sum();
    // Each outer index's output row is the inputs' runs side by side; rows split over threads
    // (channels-last Concat: one row per pixel, a few dozen bytes).
    let fill = |o: usize, row: &mut [u8]| {
        let mut at = 0;
        for ((_, v, table), &run) in parts.iter().zip(&runs) {
            let (src, dst) = (&v[o * run..(o + 1) * run], &mut row[at..at + run]);
            match table {
                None => dst.copy_from_slice(src),
                Some(t) => dst
                    .iter_mut()
                    .zip(src)
                    .for_each(|(d, &b)| *d = t[b as usize]),
            }
            at += run;
        }
    };
    let rows_per_task = (1 << 14) / width.max(1) + 1;
    if total < 1 << 16 {
        out.chunks_mut(width)
            .enumerate()
            .for_each(|(o, r)| fill(o, r));
    } else {
        out.par_chunks_mut(width * rows_per_task)
            .enumerate()
            .for_each(|(t, rows)| {
                for (i, r) in rows.chunks_mut(width).enumerate() {
                    fill(t * rows_per_task + i, r);
                }
            });
    }
    one(tensor_of(shape, out, ys))
}
