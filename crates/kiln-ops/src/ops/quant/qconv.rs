//! QLinearConv (ONNX's, and com.microsoft's with `channels_last`) on `kiln_kernels::qgemm`:
//! the input goes to channels-last once (unless it is already), each output pixel's window is
//! gathered as runs of channels (`im2col` in tap-major order; a 1×1 stride-1 layer reads the
//! input in place), and the product requantizes into the output, channel-first or -last.
//! Weights are packed per group once per session when constant. Depthwise layers (one input
//! channel per output channel) take `kiln_kernels::qdepthwise` on the same padded channels-last
//! image. 2-D only; other ranks and other narrow groups run the reference: ConvInteger, bias,
//! requantization.
use kiln_ir::AttrList;
use kiln_kernels::qdepthwise::{qdepthwise, DwGeom, DwInput, DwOut, DwWeights};
use kiln_kernels::qgemm::{
    qgemm, qgemm_conv, qgemm_gather, ConvRows, QInput, QOutput, QPost, QWeights,
};
use kiln_kernels::qvec::QBinary;

use super::{bytes, call, isa, out_signed, per_channel, scale, scales, tensor_of, zero, zeros};
use crate::ctx::{InferCtx, Inferred};
use crate::kernel::{one, KernelCtx, KernelFn, PrepareCtx, PreparedKernel, Result};
use crate::value::{Data, Tensor, Value};

pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    match (domain, op_type) {
        ("" | "com.microsoft", "QLinearConv")
        | (crate::ops::kiln_fused::DOMAIN, "QLinearConvAdd") => Some(|c| run(c, None)),
        _ => None,
    }
}

pub fn infer_rule(op_type: &str) -> Option<crate::ops::InferFn> {
    match op_type {
        "QLinearConv" => Some(infer_ms),
        _ => None,
    }
}

/// com.microsoft QLinearConv: ONNX's shapes, or channels-last ones.
pub(crate) fn infer_ms(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    if ctx.int_attr("channels_last", 0) == 0 {
        return crate::ops::conv::infer_qlinear(ctx);
    }
    let dt = if ctx.has_input(7) {
        ctx.dtype(7)
    } else {
        Some(kiln_ir::DataType::U8)
    };
    let shape = match (ctx.shape(0), ctx.shape(3)) {
        (Some(x), Some(w)) if x.len() >= 3 && w.len() == x.len() => {
            let n = x.len() - 2;
            let kernel: Option<Vec<i64>> = w[2..].iter().map(|d| d.known()).collect();
            match kernel {
                Some(k) => {
                    let sp = crate::ops::conv::window_output(ctx, &x[1..1 + n], &k, false)?;
                    let mut s = vec![x[0].clone()];
                    s.extend(sp);
                    s.push(w[0].clone());
                    Some(s)
                }
                None => None,
            }
        }
        _ => None,
    };
    Ok(vec![Inferred::tensor(dt, shape)])
}

/// The geometry of a 2-D convolution, from attributes and the input and weight shapes.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Geom {
    pub(super) n: usize,
    pub(super) c: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) m: usize,
    pub(super) group: usize,
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) sh: usize,
    pub(super) sw: usize,
    pub(super) dh: usize,
    pub(super) dw: usize,
    pub(super) pt: usize,
    pub(super) pl: usize,
    pub(super) oh: usize,
    pub(super) ow: usize,
}

impl Geom {
    pub(super) fn new(
        ctx: &KernelCtx,
        x: &[usize],
        wt: &[usize],
        last: bool,
    ) -> Result<Option<Geom>> {
        if x.len() != 4 || wt.len() != 4 {
            return Ok(None);
        }
        let (n, c, h, w) = if last {
            (x[0], x[3], x[1], x[2])
        } else {
            (x[0], x[1], x[2], x[3])
        };
        // The window rule of Conv, on a channel-first view of the shapes.
        let nchw = [n, c, h, w];
        let g = crate::ops::conv::ConvGeom::new(ctx, &nchw, wt)?;
        let win = &g.win;
        Ok(Some(Geom {
            n,
            c,
            h,
            w,
            m: wt[0],
            group: g.group,
            kh: wt[2],
            kw: wt[3],
            sh: win.strides[0],
            sw: win.strides[1],
            dh: win.dilations[0],
            dw: win.dilations[1],
            pt: win.pads[0],
            pl: win.pads[1],
            oh: win.output[0],
            ow: win.output[1],
        }))
    }

    /// The window rule as the depthwise kernel takes it.
    pub(super) fn dw_geom(&self) -> DwGeom {
        DwGeom {
            oh: self.oh,
            ow: self.ow,
            sh: self.sh,
            sw: self.sw,
            dh: self.dh,
            dw: self.dw,
            pt: self.pt,
            pl: self.pl,
        }
    }

    pub(super) fn cg(&self) -> usize {
        self.c / self.group
    }

    fn mg(&self) -> usize {
        self.m / self.group
    }

    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.sh == 1 && self.sw == 1 && self.pt == 0 && self.pl == 0
    }
}

/// Channels per tap in K: `C/g`, or with one group on the VNNI path rounded up to whole 4-byte
/// steps (an RGB input's 3 become 4, the fourth the input's zero point times a zero weight), so
/// that every layer reads its windows in place.
pub(super) fn tap_channels(cg: usize, group: usize) -> usize {
    if group == 1 && cg % 4 != 0 && isa().u8_by_s8() {
        cg.div_ceil(4) * 4
    } else {
        cg
    }
}

/// Weights `[M, C/g, kh, kw]` packed per group with K in tap-major order (`(i·kw + j)·cp + c`,
/// `cp` = [`tap_channels`]), the order of the channels-last windows.
pub(super) fn pack(w: &Tensor, wz: Option<&Tensor>, group: usize) -> Result<Vec<QWeights>> {
    let (wv, signed) = bytes(w).ok_or("W must be uint8 or int8")?;
    if w.rank() != 4 || group == 0 || w.shape[0] % group != 0 {
        return Err("W is not a 2-D convolution's weights".into());
    }
    let (m, cg, taps) = (w.shape[0], w.shape[1], w.shape[2] * w.shape[3]);
    let mg = m / group;
    let cp = tap_channels(cg, group);
    let k = cp * taps;
    let zw = per_channel(&zeros(wz, signed, "w_zero_point")?, m, "w_zero_point")?;
    (0..group)
        .map(|g| {
            QWeights::pack(
                k,
                mg,
                signed,
                |kk, j| {
                    let (tap, c) = (kk / cp, kk % cp);
                    if c < cg {
                        super::byte_value(wv[((g * mg + j) * cg + c) * taps + tap], signed)
                    } else {
                        0
                    }
                },
                |j| zw[g * mg + j],
                isa(),
            )
            .map_err(|e| e.0)
        })
        .collect()
}

/// Weights packed once: per group for the product, or for the depthwise kernel.
pub(super) enum Packed {
    Groups(Vec<QWeights>),
    Depthwise(DwWeights),
}

impl Packed {
    /// `w` (and its zero points) for the kernel that runs it, or None where the reference
    /// does (QLinearConv and ConvInteger alike).
    pub(super) fn new(w: &Tensor, wz: Option<&Tensor>, group: usize) -> Option<Packed> {
        if depthwise_weights(w, group) {
            Some(Packed::Depthwise(pack_depthwise(w, wz).ok()?))
        } else if fast_groups(w, group) {
            Some(Packed::Groups(pack(w, wz, group).ok()?))
        } else {
            None
        }
    }
}

struct Prepared {
    packed: Packed,
    shape: Vec<usize>,
}

pub fn prepare(ctx: &PrepareCtx) -> Option<Box<dyn PreparedKernel>> {
    let w = ctx.constant(3)?;
    let wz = ctx.optional_constant(5)?;
    let group = ctx.attrs.get_int("group").unwrap_or(1).max(1) as usize;
    Some(Box::new(Prepared {
        packed: Packed::new(w, wz, group)?,
        shape: w.shape.clone(),
    }))
}

impl PreparedKernel for Prepared {
    fn run(&self, ctx: &KernelCtx) -> Result<Vec<Value>> {
        if ctx.tensor(3)?.shape != self.shape {
            return run(ctx, None);
        }
        run(ctx, Some(&self.packed))
    }
}

/// One input channel per group and one output channel per group, a window the kernel sums
/// exactly.
pub(super) fn depthwise_weights(w: &Tensor, group: usize) -> bool {
    w.rank() == 4
        && group > 1
        && w.shape[0] == group
        && w.shape[1] == 1
        && w.shape[2] * w.shape[3] <= kiln_kernels::qdepthwise::MAX_TAPS
}

pub(super) fn pack_depthwise(w: &Tensor, wz: Option<&Tensor>) -> Result<DwWeights> {
    let (wv, signed) = bytes(w).ok_or("W must be uint8 or int8")?;
    let (m, kh, kw) = (w.shape[0], w.shape[2], w.shape[3]);
    let taps = kh * kw;
    let zw = per_channel(&zeros(wz, signed, "w_zero_point")?, m, "w_zero_point")?;
    Ok(DwWeights::pack(
        m,
        kh,
        kw,
        |c, t| super::byte_value(wv[c * taps + t], signed),
        |c| zw[c],
    ))
}

/// Groups the product path is worth it for: output channels per group fill part of a panel.
pub(super) fn fast_groups(w: &Tensor, group: usize) -> bool {
    w.rank() == 4 && group > 0 && w.shape[0] % group == 0 && (group == 1 || w.shape[0] / group >= 8)
}

/// ai.kiln QLinearConvAdd's second addend (inputs 9-13: B, its scale and zero point, the
/// sum's scale and zero point) as a QLinearAdd with the convolution's output as A.
fn fused_add<'a>(ctx: &KernelCtx<'a>) -> Result<Option<(&'a Tensor, QBinary)>> {
    if ctx.op_type != "QLinearConvAdd" {
        return Ok(None);
    }
    let b = super::q_input(ctx, 9, "B")?;
    let (sc, zc, c_signed) = super::q_output(ctx, 12, "C")?;
    let y_signed = out_signed(ctx, 7)?;
    if b.signed != y_signed || c_signed != y_signed {
        return Err("the convolution's output, B and C must have one 8-bit type".into());
    }
    let sy = scale(ctx.tensor(6)?, "y_scale")?;
    let zy = zero(ctx.opt_tensor(7)?, y_signed, "y_zero_point")?;
    let p = QBinary {
        mul: false,
        signed: y_signed,
        za: zy,
        zb: b.zero,
        zc,
        ra: sy / sc,
        rb: b.scale / sc,
    };
    Ok(Some((b.t, p)))
}

fn run(ctx: &KernelCtx, packed: Option<&Packed>) -> Result<Vec<Value>> {
    let add = fused_add(ctx)?;
    let y = conv(ctx, packed, add)?;
    match add {
        Some((b, _)) if b.shape != y.shape => Err(format!(
            "B has shape {:?}, the convolution's output {:?}",
            b.shape, y.shape
        )),
        _ => one(y),
    }
}

/// QLinearConv's quantization inputs: X's bytes and zero point, the output's type and zero
/// point, the bias, and per output channel the requantization scale `sx·sw / sy`.
struct Quant<'a> {
    xv: &'a [u8],
    x_signed: bool,
    zx: i32,
    y_signed: bool,
    zy: i32,
    bias: Option<Vec<i32>>,
    scale: Vec<f32>,
}

fn quant<'a>(ctx: &KernelCtx<'a>, m: usize) -> Result<Quant<'a>> {
    let (xv, x_signed) = bytes(ctx.tensor(0)?).ok_or("X must be uint8 or int8")?;
    let zx = zero(ctx.opt_tensor(2)?, x_signed, "x_zero_point")?;
    let sx = scale(ctx.tensor(1)?, "x_scale")?;
    let sw = per_channel(&scales(ctx.tensor(4)?, "w_scale")?, m, "w_scale")?;
    let sy = scale(ctx.tensor(6)?, "y_scale")?;
    let y_signed = out_signed(ctx, 7)?;
    let zy = zero(ctx.opt_tensor(7)?, y_signed, "y_zero_point")?;
    let bias = match ctx.opt_tensor(8)? {
        None => None,
        Some(b) => match &b.data {
            Data::I32(v) if v.len() == m => Some(v.clone()),
            _ => return Err(format!("B must be int32 with {m} values")),
        },
    };
    Ok(Quant {
        xv,
        x_signed,
        zx,
        y_signed,
        zy,
        bias,
        scale: sw.iter().map(|&s| (sx * s) / sy).collect(),
    })
}

/// The convolution (and the fused addend, laid out as the output).
fn conv(
    ctx: &KernelCtx,
    packed: Option<&Packed>,
    add: Option<(&Tensor, QBinary)>,
) -> Result<Tensor> {
    let last = ctx.int_attr("channels_last", 0) != 0;
    let (x, w) = (ctx.tensor(0)?, ctx.tensor(3)?);
    let group = ctx.int_attr("group", 1).max(1) as usize;
    let geom = Geom::new(ctx, &x.shape, &w.shape, last)?;
    let f32_scales = ctx.tensor(1)?.dtype() == kiln_ir::DataType::F32;
    if let Some(g) = geom
        .as_ref()
        .filter(|g| f32_scales && depthwise_weights(w, g.group))
    {
        let owned;
        let dw = match packed {
            Some(Packed::Depthwise(d)) => d,
            _ => {
                owned = pack_depthwise(w, ctx.opt_tensor(5)?)?;
                &owned
            }
        };
        return add_after(depthwise(ctx, g, dw, last)?, add);
    }
    let packed = match packed {
        Some(Packed::Groups(p)) => Some(&p[..]),
        _ => None,
    };
    let Some(g) = geom.filter(|g| {
        let k = tap_channels(g.cg(), g.group) * g.kh * g.kw;
        f32_scales && fast_groups(w, g.group) && k <= kiln_kernels::qgemm::MAX_K
    }) else {
        return add_after(reference(ctx, last)?, add);
    };
    let shape = if last {
        vec![g.n, g.oh, g.ow, g.m]
    } else {
        vec![g.n, g.m, g.oh, g.ow]
    };
    // The addend's bytes, laid out as the output.
    let addend = match add {
        Some((b, p)) if b.shape == shape => Some((bytes(b).ok_or("B must be 8-bit")?.0, p)),
        Some((b, _)) => {
            return Err(format!(
                "B has shape {:?}, the convolution's output {shape:?}",
                b.shape
            ))
        }
        None => None,
    };
    let Quant {
        xv,
        x_signed,
        zx,
        y_signed,
        zy,
        bias,
        scale,
    } = quant(ctx, g.m)?;
    let owned;
    let packed = match packed {
        Some(p) => p,
        None => {
            owned = pack(w, ctx.opt_tensor(5)?, group)?;
            &owned[..]
        }
    };
    let (plane, pixels) = (g.h * g.w, g.oh * g.ow);
    let mut y = super::written_bytes(g.n * g.m * pixels);
    let mut nhwc = Vec::new();
    for img in 0..g.n {
        // The image channels-last.
        let src = &xv[img * g.c * plane..(img + 1) * g.c * plane];
        let xl: &[u8] = if last {
            src
        } else {
            nhwc.resize(plane * g.c, 0);
            to_channels_last(src, g.c, plane, &mut nhwc);
            &nhwc
        };
        let dest = Dest::Quant {
            out: &mut y[img * g.m * pixels..(img + 1) * g.m * pixels],
            scale: &scale,
            zy,
            y_signed,
            bias: bias.as_deref(),
            addend: addend.map(|(b, p)| (&b[img * g.m * pixels..], p)),
        };
        image(&g, packed, xl, x_signed, zx, last, dest)?;
    }
    Ok(tensor_of(shape, y, y_signed))
}

/// Where one image's products go.
pub(super) enum Dest<'a> {
    /// Requantized bytes, with the fused addend laid out as the output.
    Quant {
        out: &'a mut [u8],
        scale: &'a [f32],
        zy: i32,
        y_signed: bool,
        bias: Option<&'a [i32]>,
        addend: Option<(&'a [u8], QBinary)>,
    },
    /// The i32 sums, channels-last (ConvInteger).
    I32(&'a mut [i32]),
}

/// One channels-last image `xl` through the packed groups into `dest` (channels-last when
/// `last`, else channel-first).
pub(super) fn image(
    g: &Geom,
    packed: &[QWeights],
    xl: &[u8],
    x_signed: bool,
    zx: i32,
    last: bool,
    mut dest: Dest,
) -> Result<()> {
    let (cg, mg) = (g.cg(), g.mg());
    let cp = tap_channels(cg, g.group);
    let k = cp * g.kh * g.kw;
    let pixels = g.oh * g.ow;
    // A 1x1 layer reads its input's rows as they are, unless K has padded channels.
    let direct = g.pointwise() && cp == cg;
    // Windows read in place from a padded (and, for s8, sign-flipped) copy when the kernel
    // takes them so: no gathered rows at all.
    let in_place = !direct && cp % 4 == 0 && packed.iter().all(kiln_kernels::qgemm::conv_in_place);
    let padded = in_place.then(|| Padded::new(g, cp, xl, x_signed, zx));
    for gi in 0..g.group {
        let kp = k.div_ceil(4) * 4;
        let input = QInput {
            data: if direct { &xl[gi * cg..] } else { &[] },
            m: pixels,
            k,
            lda: if direct { g.c } else { kp },
            signed: x_signed,
            zero: zx,
        };
        let c0 = gi * mg;
        let (at, rs, cs) = if last {
            (c0, g.m, 1)
        } else {
            (c0 * pixels, 1, pixels)
        };
        let q = match &mut dest {
            Dest::Quant {
                out,
                scale,
                zy,
                y_signed,
                bias,
                addend,
            } => QOutput::Quant {
                out: &mut out[at..],
                scale: &scale[c0..c0 + mg],
                zero: *zy,
                signed: *y_signed,
                bias: bias.map(|b| &b[c0..c0 + mg]),
                post: QPost {
                    add: addend.map(|(b, p)| (&b[at..], p)),
                    table: None,
                },
            },
            Dest::I32(out) => QOutput::I32 {
                out: &mut out[at..],
            },
        };
        if let Some(p) = &padded {
            let origin = |i: usize| p.origin(g, i) + gi * cg;
            let rows = ConvRows {
                data: &p.data,
                origin: &origin,
                taps: &p.taps,
                run: cp,
            };
            let input = QInput {
                signed: false,
                zero: p.zero,
                ..input
            };
            qgemm_conv(&input, &rows, &packed[gi], q, rs, cs)
        } else if direct {
            qgemm(&input, &packed[gi], q, rs, cs)
        } else {
            // Each task gathers its own pixels' windows.
            let gather = |i: usize, row: &mut [u8]| window(g, cp, xl, gi, zx as u8, i, row);
            qgemm_gather(&input, &gather, &packed[gi], q, rs, cs)
        }
        .map_err(|e| e.0)?;
    }
    Ok(())
}

/// A depthwise layer on `kiln_kernels::qdepthwise`, image by image.
fn depthwise(ctx: &KernelCtx, g: &Geom, dw: &DwWeights, last: bool) -> Result<Tensor> {
    let qp = quant(ctx, g.m)?;
    if dw.channels() != g.c || dw.window() != (g.kh, g.kw) {
        return Err("the packed depthwise weights do not fit this input".into());
    }
    let q = DwOut {
        scale: &qp.scale,
        bias: qp.bias.as_deref(),
        zero: qp.zy,
        signed: qp.y_signed,
    };
    let (plane, pixels) = (g.h * g.w, g.oh * g.ow);
    let mut y = super::written_bytes(g.n * g.m * pixels);
    let (mut nhwc, mut out_last) = (Vec::new(), Vec::new());
    let geom = g.dw_geom();
    for img in 0..g.n {
        let src = &qp.xv[img * g.c * plane..(img + 1) * g.c * plane];
        let xl: &[u8] = if last {
            src
        } else {
            nhwc.resize(plane * g.c, 0);
            to_channels_last(src, g.c, plane, &mut nhwc);
            &nhwc
        };
        let input = DwInput {
            x: xl,
            h: g.h,
            w: g.w,
            signed: qp.x_signed,
            zero: qp.zx,
        };
        let out = &mut y[img * g.m * pixels..(img + 1) * g.m * pixels];
        if last {
            qdepthwise(&input, dw, &geom, &q, out)?;
        } else {
            out_last.resize(pixels * g.m, 0);
            qdepthwise(&input, dw, &geom, &q, &mut out_last)?;
            kiln_kernels::transpose8::transpose_bytes(&out_last, pixels, g.m, out);
        }
    }
    let shape = if last {
        vec![g.n, g.oh, g.ow, g.m]
    } else {
        vec![g.n, g.m, g.oh, g.ow]
    };
    Ok(tensor_of(shape, y, qp.y_signed))
}

/// The fused addend applied to a finished output (the reference path).
fn add_after(y: Tensor, add: Option<(&Tensor, QBinary)>) -> Result<Tensor> {
    let Some((b, p)) = add else { return Ok(y) };
    if b.shape != y.shape {
        return Err(format!(
            "B has shape {:?}, the convolution's output {:?}",
            b.shape, y.shape
        ));
    }
    let (yv, signed) = bytes(&y).ok_or("the convolution gave no 8-bit output")?;
    let bv = bytes(b).ok_or("B must be 8-bit")?.0;
    let mut out = vec![0u8; yv.len()];
    kiln_kernels::qvec::qbinary(yv, bv, &mut out, &p);
    Ok(tensor_of(y.shape.clone(), out, signed))
}

/// The channels-last image inside a border of its zero point, wide enough that every window
/// lies inside, as unsigned bytes (s8 moved up by 128), pixels of `cp` ≥ C bytes (the extra
/// channels the zero point), with each tap's byte offset.
struct Padded {
    data: Vec<u8>,
    /// Padded width in pixels, bytes per pixel.
    wp: usize,
    cp: usize,
    taps: Vec<usize>,
    zero: i32,
}

impl Padded {
    fn new(g: &Geom, cp: usize, x: &[u8], signed: bool, zero: i32) -> Padded {
        let flip = if signed { 0x80u8 } else { 0 };
        let zero = if signed { zero + 128 } else { zero };
        let hp = (g.h + g.pt).max((g.oh - 1) * g.sh + (g.kh - 1) * g.dh + 1);
        let wp = (g.w + g.pl).max((g.ow - 1) * g.sw + (g.kw - 1) * g.dw + 1);
        let (c, cp) = (g.c, cp.max(g.c));
        // Every byte written once, in order (a zeroed buffer, then the rows, was two passes:
        // an allocator's zeroing of reused memory is a full write).
        let z = zero as u8;
        let mut data = Vec::with_capacity(hp * wp * cp);
        for py in 0..hp {
            if py < g.pt || py >= g.pt + g.h {
                data.resize(data.len() + wp * cp, z);
                continue;
            }
            let src = &x[(py - g.pt) * g.w * c..(py - g.pt + 1) * g.w * c];
            data.resize(data.len() + g.pl * cp, z);
            if cp == c && flip == 0 {
                data.extend_from_slice(src);
            } else {
                for px in src.chunks_exact(c) {
                    data.extend(px.iter().map(|&s| s ^ flip));
                    data.resize(data.len() + cp - c, z);
                }
            }
            data.resize(data.len() + (wp - g.pl - g.w) * cp, z);
        }
        let taps = (0..g.kh)
            .flat_map(|ky| (0..g.kw).map(move |kx| ((ky * g.dh) * wp + kx * g.dw) * cp))
            .collect();
        Padded {
            data,
            wp,
            cp,
            taps,
            zero,
        }
    }

    /// Byte offset of output pixel `i`'s window (its first tap, first channel).
    fn origin(&self, g: &Geom, i: usize) -> usize {
        let (oy, ox) = (i / g.ow, i % g.ow);
        ((oy * g.sh) * self.wp + ox * g.sw) * self.cp
    }
}

/// `[C, P]` to `[P, C]`.
pub(super) fn to_channels_last(src: &[u8], c: usize, p: usize, dst: &mut [u8]) {
    kiln_kernels::transpose8::transpose_bytes(&src[..c * p], c, p, &mut dst[..c * p]);
}

/// Output pixel `i`'s window of group `gi`, tap by tap, `cp` bytes per tap (`C/g` channels,
/// then the zero point), into `dst` (`K` bytes); taps outside the input read the zero point.
fn window(g: &Geom, cp: usize, x: &[u8], gi: usize, pad: u8, i: usize, dst: &mut [u8]) {
    let cg = g.cg();
    let (oy, ox) = (i / g.ow, i % g.ow);
    // With one group, no dilation along x and no padded channels, a window row's taps are one
    // run of the input.
    let runs = g.group == 1 && g.dw == 1 && cp == cg;
    let ix0 = (ox * g.sw) as isize - g.pl as isize;
    for ky in 0..g.kh {
        let iy = (oy * g.sh + ky * g.dh) as isize - g.pt as isize;
        let row = &mut dst[ky * g.kw * cp..(ky + 1) * g.kw * cp];
        if iy < 0 || iy >= g.h as isize {
            row.fill(pad);
            continue;
        }
        if runs && ix0 >= 0 && ix0 as usize + g.kw <= g.w {
            let at = (iy as usize * g.w + ix0 as usize) * g.c;
            row.copy_from_slice(&x[at..at + g.kw * cg]);
            continue;
        }
        for kx in 0..g.kw {
            let ix = (ox * g.sw + kx * g.dw) as isize - g.pl as isize;
            let tap = &mut row[kx * cp..(kx + 1) * cp];
            if ix < 0 || ix >= g.w as isize {
                tap.fill(pad);
            } else {
                let at = (iy as usize * g.w + ix as usize) * g.c + gi * cg;
                tap[..cg].copy_from_slice(&x[at..at + cg]);
                tap[cg..].fill(pad);
            }
        }
    }
}

/// ConvInteger, the bias, and requantization per output channel (channels-last by transposes).
fn reference(ctx: &KernelCtx, last: bool) -> Result<Tensor> {
    let (x, sx, xz) = (ctx.tensor(0)?, ctx.tensor(1)?, ctx.opt_tensor(2)?);
    let (w, sw, wz) = (ctx.tensor(3)?, ctx.tensor(4)?, ctx.opt_tensor(5)?);
    let x_first;
    let x = if last {
        x_first = permute(x, true)?;
        &x_first
    } else {
        x
    };
    let attrs: Vec<kiln_ir::Attribute> = ctx
        .attrs
        .iter()
        .filter(|a| a.name != "channels_last")
        .cloned()
        .collect();
    let acc = call(ctx, "ConvInteger", &attrs, &[Some(x), Some(w), xz, wz])?;
    let Data::I32(acc_v) = &acc.data else {
        return Err("ConvInteger gave no int32".into());
    };
    let m = acc.shape.get(1).copied().unwrap_or(1);
    let plane: usize = acc.shape[2..].iter().product();
    let bias = match ctx.opt_tensor(8)? {
        None => vec![0; m],
        Some(b) => match &b.data {
            Data::I32(v) if v.len() == m => v.clone(),
            _ => return Err(format!("B must be int32 with {m} values")),
        },
    };
    let (f, f32s) = super::factors(sx, sw, ctx.tensor(6)?, m)?;
    let signed = out_signed(ctx, 7)?;
    let zy = zero(ctx.opt_tensor(7)?, signed, "y_zero_point")?;
    let out: Vec<u8> = acc_v
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = (i / plane.max(1)) % m;
            super::requant(v.wrapping_add(bias[c]), f[c], f32s, zy, signed)
        })
        .collect();
    let y = tensor_of(acc.shape.clone(), out, signed);
    Ok(if last { permute(&y, false)? } else { y })
}

/// Channels-last to -first (`to_first`) or back, for any rank.
fn permute(t: &Tensor, to_first: bool) -> Result<Tensor> {
    let r = t.rank();
    if r < 3 {
        return Err(format!("expected rank >= 3, got {:?}", t.shape));
    }
    let perm: Vec<i64> = if to_first {
        std::iter::once(0)
            .chain(std::iter::once(r as i64 - 1))
            .chain(1..r as i64 - 1)
            .collect()
    } else {
        std::iter::once(0)
            .chain(2..r as i64)
            .chain(std::iter::once(1))
            .collect()
    };
    call_transpose(t, &perm)
}

fn call_transpose(t: &Tensor, perm: &[i64]) -> Result<Tensor> {
    let attrs = [kiln_ir::Attribute::ints("perm", perm)];
    super::call_op("Transpose", 13, &attrs, &[Some(t)])
}
