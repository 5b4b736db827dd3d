//! The blocked channel layout's ops (domain `ai.kiln`), written by the optimizer's layout pass
//! (`kiln-opt`'s `nchwc.rs`) inside sessions only: a blocked tensor has the shape
//! `[n, padded(c), h, w]` and the memory order `[n][c/B][h][w][B]` of
//! `kiln_kernels::nchwc`. Every node carries its `block`, which must be this CPU's.
//!
//! - `ReorderInput`: NCHW → blocked (padding channels with zeros).
//! - `ReorderOutput` (`channels`): blocked → NCHW, dropping the padding.
//! - `NchwcConv`: Conv's attributes and inputs (X, W, B, and FusedConv's Z, blocked like the
//!   output), FusedConv's `activation`/`activation_params` (or `SiLU` with `alpha`), `channels`
//!   (the real input channels) and `plain_input` (X is NCHW: a first layer).
//! - `NchwcMaxPool`, `NchwcAveragePool`: the 2-D pools' attributes, blocked in and out.
//! - `NchwcGlobalAveragePool`, `NchwcGlobalMaxPool` (`channels`): blocked in, NCHW out.
//! - `NchwcUpsample` (`scales`: whole factors `[sh, sw]`): nearest-neighbour upsampling
//!   (output pixel `(y, x)` is input pixel `(y / sh, x / sw)`), blocked in and out.
use kiln_ir::{AttrList, Attribute, Dim};
use kiln_kernels::nchwc::{self, pool::Reduce, Input, NchwcConv};

use super::conv::{kernel_of, window_output, ConvGeom};
use super::conv_fast::conv2d_of;
use super::kiln_fused::DOMAIN;
use super::linalg::Act;
use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{KernelCtx, KernelFn, PrepareCtx, PreparedKernel};
use crate::value::{Data, Tensor, Value};

pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    let f: KernelFn = match (domain, op_type) {
        (DOMAIN, "ReorderInput") => reorder_input,
        (DOMAIN, "ReorderOutput") => reorder_output,
        (DOMAIN, "NchwcConv") => conv,
        (DOMAIN, "NchwcMaxPool") => max_pool,
        (DOMAIN, "NchwcAveragePool") => average_pool,
        (DOMAIN, "NchwcGlobalAveragePool") => global_average,
        (DOMAIN, "NchwcGlobalMaxPool") => global_max,
        (DOMAIN, "NchwcUpsample") => upsample,
        _ => return None,
    };
    Some(f)
}

pub fn infer_rule(op_type: &str) -> Option<super::InferFn> {
    let f: super::InferFn = match op_type {
        "ReorderInput" => infer_reorder_input,
        "ReorderOutput" => infer_reorder_output,
        "NchwcConv" => infer_conv,
        "NchwcMaxPool" | "NchwcAveragePool" => super::pool::infer,
        "NchwcGlobalAveragePool" | "NchwcGlobalMaxPool" => infer_global,
        "NchwcUpsample" => infer_upsample,
        _ => return None,
    };
    Some(f)
}

/// The convolution's activation: FusedConv's, or kiln's SiLU.
fn activation(attrs: &[Attribute]) -> Result<Act> {
    match attrs.get_str("activation") {
        Some("SiLU") => Ok(Act::Silu(attrs.get_float("alpha").unwrap_or(1.0))),
        _ => Act::fused_conv(attrs),
    }
}

/// What the CPU provider checks before claiming an `NchwcConv`.
pub fn check_conv(attrs: &[Attribute], _opset: i64) -> Result<()> {
    activation(attrs)?
        .fast()
        .map(|_| ())
        .ok_or_else(|| "NchwcConv's activation has no fast kernel".to_string())
}

fn block_of(attrs: &[Attribute]) -> Result<usize> {
    let b = attrs
        .get_int("block")
        .ok_or("the block attribute is required")?;
    let have = nchwc::block();
    if b != have as i64 {
        return Err(format!(
            "laid out for blocks of {b} channels, but this CPU's kernels use {have}"
        ));
    }
    Ok(have)
}

fn channels_of(attrs: &[Attribute]) -> Result<usize> {
    match attrs.get_int("channels") {
        Some(c) if c > 0 && c < 1 << 24 => Ok(c as usize),
        other => Err(format!("channels must be a positive count, got {other:?}")),
    }
}

fn padded_dim(d: &Dim, b: usize) -> Result<Dim> {
    match d.known() {
        Some(c) if c > 0 => Ok(Dim::Known((c as usize).div_ceil(b) as i64 * b as i64)),
        _ => Err("the channel count must be known".into()),
    }
}

fn infer_reorder_input(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let b = block_of(ctx.attrs)?;
    let shape = match ctx.shape(0) {
        Some(x) if x.len() == 4 => {
            let mut s = x.to_vec();
            s[1] = padded_dim(&x[1], b)?;
            Some(s)
        }
        Some(x) => return Err(format!("input must have rank 4, got {}", x.len())),
        None => None,
    };
    Ok(vec![Inferred::tensor(ctx.dtype(0), shape)])
}

fn infer_reorder_output(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let c = channels_of(ctx.attrs)?;
    let shape = ctx.shape(0).map(|x| {
        let mut s = x.to_vec();
        if s.len() > 1 {
            s[1] = Dim::Known(c as i64);
        }
        s
    });
    Ok(vec![Inferred::tensor(ctx.dtype(0), shape)])
}

/// `NchwcUpsample`'s whole factors `[sh, sw]`.
fn scales_of(attrs: &[Attribute]) -> Result<[usize; 2]> {
    match attrs.get_ints("scales") {
        Some(&[sh, sw])
            if (1..=crate::ctx::MAX_ATTR).contains(&sh)
                && (1..=crate::ctx::MAX_ATTR).contains(&sw) =>
        {
            Ok([sh as usize, sw as usize])
        }
        other => Err(format!(
            "scales must be two positive whole factors, got {other:?}"
        )),
    }
}

fn infer_upsample(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    block_of(ctx.attrs)?;
    let [sh, sw] = scales_of(ctx.attrs)?;
    let shape = match ctx.shape(0) {
        Some(x) if x.len() == 4 => Some(vec![
            x[0].clone(),
            x[1].clone(),
            x[2].mul(&Dim::Known(sh as i64)),
            x[3].mul(&Dim::Known(sw as i64)),
        ]),
        Some(x) => return Err(format!("input must have rank 4, got {}", x.len())),
        None => None,
    };
    Ok(vec![Inferred::tensor(ctx.dtype(0), shape)])
}

fn infer_global(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let c = channels_of(ctx.attrs)?;
    let shape = ctx.shape(0).map(|x| {
        vec![
            x[0].clone(),
            Dim::Known(c as i64),
            Dim::Known(1),
            Dim::Known(1),
        ]
    });
    Ok(vec![Inferred::tensor(ctx.dtype(0), shape)])
}

fn infer_conv(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let b = block_of(ctx.attrs)?;
    let (Some(x), Some(w)) = (ctx.shape(0), ctx.shape(1)) else {
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None)]);
    };
    if x.len() != 4 || w.len() != 4 {
        return Err(format!(
            "NchwcConv needs rank-4 X and W, got ranks {} and {}",
            x.len(),
            w.len()
        ));
    }
    let Some(kernel) = kernel_of(ctx, w) else {
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None)]);
    };
    let mut shape = vec![x[0].clone(), padded_dim(&w[0], b)?];
    shape.extend(window_output(ctx, &x[2..], &kernel, false)?);
    Ok(vec![Inferred::tensor(ctx.dtype(0), Some(shape))])
}

fn f32s(t: &Tensor) -> Result<&[f32]> {
    match &t.data {
        Data::F32(v) => Ok(v),
        _ => Err(format!("expected float32, got {:?}", t.data.dtype())),
    }
}

fn rank4(t: &Tensor, what: &str) -> Result<[usize; 4]> {
    <[usize; 4]>::try_from(t.shape.as_slice())
        .map_err(|_| format!("{what} must have rank 4, got shape {:?}", t.shape))
}

fn reorder_input(ctx: &KernelCtx) -> Result<Vec<Value>> {
    block_of(ctx.attrs)?;
    let x = ctx.tensor(0)?;
    let [n, c, h, w] = rank4(x, "input")?;
    let mut out = kiln_kernels::vecmath::zeros(n * nchwc::padded(c) * h * w);
    nchwc::reorder_in(f32s(x)?, n, c, h * w, &mut out);
    let shape = vec![n, nchwc::padded(c), h, w];
    Ok(vec![Value::Tensor(Tensor::new(shape, Data::F32(out)))])
}

fn reorder_output(ctx: &KernelCtx) -> Result<Vec<Value>> {
    block_of(ctx.attrs)?;
    let c = channels_of(ctx.attrs)?;
    let x = ctx.tensor(0)?;
    let [n, cp, h, w] = rank4(x, "input")?;
    if cp != nchwc::padded(c) {
        return Err(format!("{cp} blocked channels do not hold {c}"));
    }
    let mut out = kiln_kernels::vecmath::zeros(n * c * h * w);
    nchwc::reorder_out(f32s(x)?, n, c, h * w, &mut out);
    Ok(vec![Value::Tensor(Tensor::new(
        vec![n, c, h, w],
        Data::F32(out),
    ))])
}

/// The convolution's geometry from X's blocked shape and the node's real channel count.
fn geometry(ctx: &KernelCtx, x: &Tensor, w: &Tensor) -> Result<(ConvGeom, Input)> {
    let c = channels_of(ctx.attrs)?;
    let input = if ctx.int_attr("plain_input", 0) != 0 {
        Input::Plain
    } else {
        Input::Blocked
    };
    let [n, cx, h, wd] = rank4(x, "X")?;
    let want = match input {
        Input::Plain => c,
        Input::Blocked => nchwc::padded(c),
    };
    if cx != want {
        return Err(format!(
            "X has {cx} channels, expected {want} for {c} real ones"
        ));
    }
    Ok((ConvGeom::new(ctx, &[n, c, h, wd], &w.shape)?, input))
}

fn run_packed(
    ctx: &KernelCtx,
    packed: &NchwcConv,
    g: &ConvGeom,
    act: kiln_kernels::Activation,
) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let geom = conv2d_of(g).ok_or("NchwcConv is two-dimensional")?;
    let z = ctx.opt_tensor(3)?;
    let mut shape = g.out_shape();
    shape[1] = nchwc::padded(shape[1]);
    if let Some(z) = z {
        if z.shape != shape {
            return Err(format!("Z has shape {:?}, expected {shape:?}", z.shape));
        }
    }
    let zv = z.map(f32s).transpose()?;
    let len = shape.iter().product();
    let mut out = Vec::with_capacity(len);
    let [h, w] = [g.win.input[0], g.win.input[1]];
    packed
        .run_uninit(
            &geom,
            f32s(x)?,
            [g.n, h, w],
            zv,
            act,
            &mut out.spare_capacity_mut()[..len],
        )
        .map_err(|e| e.to_string())?;
    // SAFETY: `run_uninit` succeeded, so it wrote all `len` values.
    unsafe { out.set_len(len) };
    Ok(vec![Value::Tensor(Tensor::new(shape, Data::F32(out)))])
}

fn fast_act(attrs: &[Attribute]) -> Result<kiln_kernels::Activation> {
    activation(attrs)?
        .fast()
        .ok_or_else(|| "NchwcConv's activation has no fast kernel".into())
}

fn conv(ctx: &KernelCtx) -> Result<Vec<Value>> {
    block_of(ctx.attrs)?;
    let (x, w) = (ctx.tensor(0)?, ctx.tensor(1)?);
    let (g, input) = geometry(ctx, x, w)?;
    let geom = conv2d_of(&g).ok_or("NchwcConv is two-dimensional")?;
    let bias = ctx.opt_tensor(2)?.map(f32s).transpose()?;
    let packed = NchwcConv::new(geom, f32s(w)?, bias, input).map_err(|e| e.to_string())?;
    run_packed(ctx, &packed, &g, fast_act(ctx.attrs)?)
}

/// An `NchwcConv` whose weights (and bias) are constants, laid out once per session.
struct Prepared {
    packed: NchwcConv,
    act: kiln_kernels::Activation,
}

pub fn prepare(ctx: &PrepareCtx) -> Option<Box<dyn PreparedKernel>> {
    block_of(ctx.attrs).ok()?;
    let act = fast_act(ctx.attrs).ok()?;
    let w = ctx.constant(1)?;
    if w.shape.len() != 4 {
        return None;
    }
    let bias = match ctx.optional_constant(2)? {
        None => None,
        Some(b) => Some(f32s(b).ok()?),
    };
    let groups = usize::try_from(ctx.attrs.get_int("group").unwrap_or(1)).ok()?;
    let input = if ctx.attrs.get_int("plain_input").unwrap_or(0) != 0 {
        Input::Plain
    } else {
        Input::Blocked
    };
    let geom = kiln_kernels::Conv2d {
        c_in: w.shape[1].checked_mul(groups)?,
        c_out: w.shape[0],
        groups,
        kernel: [w.shape[2], w.shape[3]],
        strides: [1, 1],
        dilations: [1, 1],
        pads: [0; 4],
    };
    let packed = NchwcConv::new(geom, f32s(w).ok()?, bias, input).ok()?;
    Some(Box::new(Prepared { packed, act }))
}

impl PreparedKernel for Prepared {
    fn run(&self, ctx: &KernelCtx) -> Result<Vec<Value>> {
        let (x, w) = (ctx.tensor(0)?, ctx.tensor(1)?);
        let (g, _) = geometry(ctx, x, w)?;
        run_packed(ctx, &self.packed, &g, self.act)
    }
}

fn pool(ctx: &KernelCtx, r: Reduce) -> Result<Vec<Value>> {
    block_of(ctx.attrs)?;
    let x = ctx.tensor(0)?;
    let [n, cp, h, w] = rank4(x, "X")?;
    if cp % nchwc::block() != 0 {
        return Err(format!("{cp} channels are not whole blocks"));
    }
    let t = super::pool::taps(ctx, x)?;
    // Row offsets in the plane back to row indices.
    let rows: Vec<Vec<usize>> = t
        .lead
        .iter()
        .map(|r| r.iter().map(|o| o / w).collect())
        .collect();
    let include_pad = ctx.int_attr("count_include_pad", 0) != 0;
    let (row_div, col_div): (Vec<usize>, Vec<usize>) = if include_pad {
        (t.lead_incl.clone(), t.last_incl.clone())
    } else {
        (
            t.lead.iter().map(|r| r.len()).collect(),
            t.last.iter().map(|c| c.len()).collect(),
        )
    };
    let win = nchwc::pool::Windows {
        rows: &rows,
        cols: &t.last,
        row_div: &row_div,
        col_div: &col_div,
    };
    let (oh, ow) = (rows.len(), t.last.len());
    let mut out = kiln_kernels::vecmath::zeros(n * cp * oh * ow);
    nchwc::pool::pool2d(f32s(x)?, [n, cp, h, w], &win, r, &mut out);
    Ok(vec![Value::Tensor(Tensor::new(
        vec![n, cp, oh, ow],
        Data::F32(out),
    ))])
}

fn max_pool(ctx: &KernelCtx) -> Result<Vec<Value>> {
    pool(ctx, Reduce::Max)
}

fn average_pool(ctx: &KernelCtx) -> Result<Vec<Value>> {
    pool(ctx, Reduce::Mean)
}

fn global(ctx: &KernelCtx, r: Reduce) -> Result<Vec<Value>> {
    block_of(ctx.attrs)?;
    let c = channels_of(ctx.attrs)?;
    let x = ctx.tensor(0)?;
    let [n, cp, h, w] = rank4(x, "X")?;
    if cp != nchwc::padded(c) {
        return Err(format!("{cp} blocked channels do not hold {c}"));
    }
    let mut out = vec![0f32; n * c];
    nchwc::pool::global2d(f32s(x)?, [n, c, h * w], r, &mut out);
    Ok(vec![Value::Tensor(Tensor::new(
        vec![n, c, 1, 1],
        Data::F32(out),
    ))])
}

fn upsample(ctx: &KernelCtx) -> Result<Vec<Value>> {
    block_of(ctx.attrs)?;
    let [sh, sw] = scales_of(ctx.attrs)?;
    let x = ctx.tensor(0)?;
    let [n, cp, h, w] = rank4(x, "X")?;
    if cp % nchwc::block() != 0 {
        return Err(format!("{cp} channels are not whole blocks"));
    }
    let len = [n, cp, h, w, sh, sw]
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("the upsampled size overflows")?;
    let mut out = vec![0f32; len];
    nchwc::upsample_nearest(f32s(x)?, [n, cp, h, w], [sh, sw], &mut out);
    Ok(vec![Value::Tensor(Tensor::new(
        vec![n, cp, h * sh, w * sw],
        Data::F32(out),
    ))])
}

fn global_average(ctx: &KernelCtx) -> Result<Vec<Value>> {
    global(ctx, Reduce::Mean)
}

fn global_max(ctx: &KernelCtx) -> Result<Vec<Value>> {
    global(ctx, Reduce::Max)
}
