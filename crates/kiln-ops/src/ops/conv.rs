//! Conv (and com.microsoft FusedConv, which has Conv's shapes) and ConvTranspose, with the
//! spatial output size rule shared with pooling.
use kiln_ir::Dim;

use rayon::prelude::*;

use super::linalg::{filled, float_dispatch, gemm, product, same_dtype, Act, Mat, Real, Scalar};
use crate::ctx::{small, InferCtx, Inferred, Result, MAX_ATTR};
use crate::kernel::{one, strides, KernelCtx};
use crate::value::{Data, Tensor, Value};

/// The spatial output sizes of a sliding window over `input` (spatial dims only).
pub fn window_output(
    ctx: &InferCtx,
    input: &[Dim],
    kernel: &[i64],
    ceil_mode: bool,
) -> Result<Vec<Dim>> {
    let n = input.len();
    if kernel.len() != n {
        return Err(format!(
            "kernel has {} spatial dims but the input has {n}",
            kernel.len()
        ));
    }
    let strides = ctx.ints_or("strides", 1, n);
    let dilations = ctx.ints_or("dilations", 1, n);
    if strides.len() != n || dilations.len() != n {
        return Err("strides or dilations do not match the number of spatial dims".into());
    }
    if strides.iter().chain(&dilations).any(|&s| s < 1) {
        return Err("strides and dilations must be positive".into());
    }
    if kernel.iter().any(|&k| k < 1) {
        return Err(format!("kernel sizes must be positive, got {kernel:?}"));
    }
    let auto_pad = ctx.str_attr("auto_pad").unwrap_or("NOTSET");
    let pads = ctx.ints_or("pads", 0, 2 * n);
    if pads.len() != 2 * n {
        return Err(format!(
            "pads has {} entries, expected {}",
            pads.len(),
            2 * n
        ));
    }
    small("kernel_shape", kernel)?;
    small("strides", &strides)?;
    small("dilations", &dilations)?;
    small("pads", &pads)?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let span = dilations[i] * (kernel[i] - 1) + 1;
        let d = match auto_pad {
            "SAME_UPPER" | "SAME_LOWER" => input[i].ceil_div(strides[i]),
            "VALID" => input[i].add_const(-span).floor_div(strides[i]).add_const(1),
            "NOTSET" | "" => {
                let padded = input[i].add_const(pads[i] + pads[i + n] - span);
                if ceil_mode {
                    let mut o = padded.ceil_div(strides[i]).add_const(1);
                    // The last window must start inside the input or its left padding.
                    if let (Some(ov), Some(iv)) = (o.known(), input[i].known()) {
                        if (ov - 1).saturating_mul(strides[i]) >= iv.saturating_add(pads[i]) {
                            o = Dim::Known(ov - 1);
                        }
                    }
                    o
                } else {
                    padded.floor_div(strides[i]).add_const(1)
                }
            }
            other => return Err(format!("unknown auto_pad '{other}'")),
        };
        if d.known().is_some_and(|v| v < 1) {
            return Err(format!(
                "the window (span {span}) does not fit in spatial dim {i} of size {}",
                input[i]
            ));
        }
        out.push(d);
    }
    Ok(out)
}

/// The kernel's spatial sizes: the attribute, or the weights' trailing dims when known.
pub(crate) fn kernel_of(ctx: &InferCtx, w: &[Dim]) -> Option<Vec<i64>> {
    match ctx.ints_attr("kernel_shape") {
        Some(k) => Some(k.to_vec()),
        None => w[2..].iter().map(|d| d.known()).collect(),
    }
}

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    infer_with(ctx, 1, ctx.dtype(0))
}

/// QLinearConv: the weights are input 3; the output has y_zero_point's type (uint8 without).
pub fn infer_qlinear(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let dt = if ctx.has_input(7) {
        ctx.dtype(7)
    } else {
        Some(kiln_ir::DataType::U8)
    };
    infer_with(ctx, 3, dt)
}

fn infer_with(
    ctx: &InferCtx,
    w_slot: usize,
    dt: Option<kiln_ir::DataType>,
) -> Result<Vec<Inferred>> {
    let (Some(x), Some(w)) = (ctx.shape(0), ctx.shape(w_slot)) else {
        return Ok(vec![Inferred::tensor(dt, None)]);
    };
    if x.len() < 3 {
        return Err(format!("input X must have rank >= 3, got {}", x.len()));
    }
    if w.len() != x.len() {
        return Err(format!(
            "weights W have rank {} but X has rank {}",
            w.len(),
            x.len()
        ));
    }
    let group = ctx.int_attr("group", 1);
    if group < 1 {
        return Err(format!("group must be positive, got {group}"));
    }
    if let (Some(c), Some(wc)) = (x[1].known(), w[1].known()) {
        if c != wc * group {
            return Err(format!(
                "X has {c} channels but W expects {} ({wc} per group x {group} groups)",
                wc * group
            ));
        }
    }
    let Some(kernel) = kernel_of(ctx, w) else {
        return Ok(vec![Inferred::tensor(dt, None)]);
    };
    let mut shape = vec![x[0].clone(), w[0].clone()];
    shape.extend(window_output(ctx, &x[2..], &kernel, false)?);
    Ok(vec![Inferred::tensor(dt, Some(shape))])
}

pub fn infer_transpose(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let (Some(x), Some(w)) = (ctx.shape(0), ctx.shape(1)) else {
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None)]);
    };
    if x.len() < 3 || w.len() != x.len() {
        return Err(format!(
            "X rank {} and W rank {} do not fit",
            x.len(),
            w.len()
        ));
    }
    let n = x.len() - 2;
    let group = ctx.int_attr("group", 1);
    let channels = w[1].mul(&Dim::Known(group));
    let mut shape = vec![x[0].clone(), channels];
    if let Some(os) = ctx.ints_attr("output_shape") {
        let os = &os[os.len().saturating_sub(n)..];
        shape.extend(os.iter().map(|&d| Dim::Known(d)));
        return Ok(vec![Inferred::tensor(ctx.dtype(0), Some(shape))]);
    }
    let Some(kernel) = kernel_of(ctx, w) else {
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None)]);
    };
    let strides = ctx.ints_or("strides", 1, n);
    let dilations = ctx.ints_or("dilations", 1, n);
    let out_pad = ctx.ints_or("output_padding", 0, n);
    let pads = ctx.ints_or("pads", 0, 2 * n);
    if kernel.len() != n
        || strides.len() != n
        || dilations.len() != n
        || out_pad.len() != n
        || pads.len() != 2 * n
    {
        return Err("ConvTranspose attributes do not match the number of spatial dims".into());
    }
    for (name, v) in [
        ("kernel_shape", &kernel),
        ("strides", &strides),
        ("dilations", &dilations),
        ("output_padding", &out_pad),
        ("pads", &pads),
    ] {
        small(name, v)?;
    }
    let auto_pad = ctx.str_attr("auto_pad").unwrap_or("NOTSET");
    for i in 0..n {
        let d = if matches!(auto_pad, "SAME_UPPER" | "SAME_LOWER") {
            x[i + 2].mul(&Dim::Known(strides[i]))
        } else {
            let span = dilations[i] * (kernel[i] - 1) + 1;
            x[i + 2]
                .add_const(-1)
                .mul(&Dim::Known(strides[i]))
                .add_const(out_pad[i] + span - pads[i] - pads[i + n])
        };
        shape.push(d);
    }
    Ok(vec![Inferred::tensor(ctx.dtype(0), Some(shape))])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctx::testing::{ctx, f32_ty};
    use kiln_ir::Attribute;

    fn conv(x: &[Dim], w: &[i64], attrs: &[Attribute]) -> Result<Vec<Dim>> {
        let w: Vec<Dim> = w.iter().map(|&d| Dim::Known(d)).collect();
        let types = [f32_ty(x), f32_ty(&w)];
        let out = infer(&ctx("Conv", &types, &[], attrs))?;
        Ok(out[0].ty.as_ref().unwrap().shape().unwrap().to_vec())
    }

    #[test]
    fn symbolic_and_known_sizes() {
        let h = Dim::sym("h");
        let attrs = [
            Attribute::ints("strides", &[2, 2]),
            Attribute::ints("pads", &[1, 1, 1, 1]),
        ];
        let s = conv(
            &[Dim::sym("n"), 3.into(), h.clone(), 224.into()],
            &[16, 3, 3, 3],
            &attrs,
        )
        .unwrap();
        assert_eq!(
            s,
            vec![
                Dim::sym("n"),
                16.into(),
                h.add_const(1).floor_div(2),
                112.into()
            ]
        );
        let same = [
            Attribute::string("auto_pad", "SAME_UPPER"),
            Attribute::ints("strides", &[2, 2]),
        ];
        let s = conv(
            &[1.into(), 3.into(), 15.into(), 15.into()],
            &[8, 3, 3, 3],
            &same,
        )
        .unwrap();
        assert_eq!(&s[2..], &[Dim::Known(8), Dim::Known(8)]);
        // Depthwise: 32 channels in 32 groups of 1.
        let dw = [Attribute::int("group", 32)];
        let s = conv(
            &[1.into(), 32.into(), 10.into(), 10.into()],
            &[32, 1, 3, 3],
            &dw,
        )
        .unwrap();
        assert_eq!(&s[1..], &[Dim::Known(32), Dim::Known(8), Dim::Known(8)]);
    }

    #[test]
    fn refusals() {
        let x = [1.into(), 3.into(), 8.into(), 8.into()];
        assert!(conv(&x, &[16, 4, 3, 3], &[])
            .unwrap_err()
            .contains("channels"));
        assert!(conv(&x, &[16, 3, 3], &[]).unwrap_err().contains("rank"));
        let huge = [Attribute::ints("dilations", &[i64::MAX, 1])];
        assert!(conv(&x, &[16, 3, 3, 3], &huge)
            .unwrap_err()
            .contains("out of range"));
        let neg = [Attribute::ints("strides", &[0, 1])];
        assert!(conv(&x, &[16, 3, 3, 3], &neg)
            .unwrap_err()
            .contains("positive"));
        assert!(conv(&x, &[16, 3, 9, 9], &[])
            .unwrap_err()
            .contains("does not fit"));
    }
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    match (domain, op_type) {
        ("", "Conv") => Some(run_conv),
        ("", "ConvTranspose") => Some(run_conv_transpose),
        ("", "ConvInteger") => Some(run_conv_integer),
        ("com.microsoft", "FusedConv") => Some(run_fused_conv),
        _ => None,
    }
}

/// FusedConv runs only the activations (and parameter counts) ONNX Runtime defines.
pub fn check_fused(attrs: &[kiln_ir::Attribute], _opset: i64) -> Result<()> {
    Act::fused_conv(attrs).map(|_| ())
}

/// ConvInteger outputs int32.
pub fn infer_integer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let mut out = infer(ctx)?;
    if let Some(kiln_ir::ValueType::Tensor { dtype, .. }) = out[0].ty.as_mut() {
        *dtype = Some(kiln_ir::DataType::I32);
    }
    Ok(out)
}

/// A sliding window resolved against concrete spatial input sizes.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Window {
    pub input: Vec<usize>,
    pub kernel: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilations: Vec<usize>,
    /// Padding before each spatial dim (after resolving `auto_pad`).
    pub pads: Vec<usize>,
    /// Padding after each spatial dim.
    pub pads_end: Vec<usize>,
    pub output: Vec<usize>,
}

/// Reads `strides`, `dilations`, `pads` and `auto_pad` for `n` spatial dims, validated.
/// `strides`, `dilations`, `pads` and `auto_pad`.
type WindowAttrs = (Vec<i64>, Vec<i64>, Vec<i64>, String);

fn window_attrs(ctx: &KernelCtx, n: usize) -> Result<WindowAttrs> {
    let strides = ctx.ints_or("strides", 1, n);
    let dilations = ctx.ints_or("dilations", 1, n);
    let pads = ctx.ints_or("pads", 0, 2 * n);
    if strides.len() != n || dilations.len() != n || pads.len() != 2 * n {
        return Err(format!(
            "strides, dilations or pads do not match the {n} spatial dims"
        ));
    }
    if strides
        .iter()
        .chain(&dilations)
        .any(|&v| !(1..=MAX_ATTR).contains(&v))
    {
        return Err("strides and dilations must be positive and reasonable".into());
    }
    if pads.iter().any(|&v| !(0..=MAX_ATTR).contains(&v)) {
        return Err(format!("pads must be non-negative, got {pads:?}"));
    }
    let auto_pad = ctx.str_attr("auto_pad").unwrap_or("NOTSET").to_string();
    Ok((strides, dilations, pads, auto_pad))
}

fn to_usize(v: i64, what: &str) -> Result<usize> {
    usize::try_from(v).map_err(|_| format!("{what} {v} is out of range"))
}

/// The window of Conv and the pools over `input` (spatial sizes) with `kernel`.
pub(crate) fn window(
    ctx: &KernelCtx,
    input: &[usize],
    kernel: &[usize],
    ceil_mode: bool,
) -> Result<Window> {
    let n = input.len();
    if kernel.len() != n {
        return Err(format!(
            "kernel has {} spatial dims but the input has {n}",
            kernel.len()
        ));
    }
    let (strides, dilations, pads, auto_pad) = window_attrs(ctx, n)?;
    let mut w = Window {
        input: input.to_vec(),
        kernel: kernel.to_vec(),
        strides: strides.iter().map(|&v| v as usize).collect(),
        dilations: dilations.iter().map(|&v| v as usize).collect(),
        pads: vec![0; n],
        pads_end: vec![0; n],
        output: vec![0; n],
    };
    for i in 0..n {
        let (inp, k, s, d) = (
            input[i] as i128,
            kernel[i] as i128,
            strides[i] as i128,
            dilations[i] as i128,
        );
        if k < 1 || k > MAX_ATTR as i128 {
            return Err(format!("kernel size {k} is out of range"));
        }
        let span = d * (k - 1) + 1;
        let (out, pb, pe) = match auto_pad.as_str() {
            "SAME_UPPER" | "SAME_LOWER" => {
                let out = (inp + s - 1) / s;
                let total = ((out - 1) * s + span - inp).max(0);
                let small = total / 2;
                if auto_pad == "SAME_UPPER" {
                    (out, small, total - small)
                } else {
                    (out, total - small, small)
                }
            }
            "VALID" => {
                let padded = inp - span;
                if padded < 0 {
                    return Err(format!(
                        "the window (span {span}) does not fit in spatial dim {i} of size {inp}"
                    ));
                }
                (padded / s + 1, 0, 0)
            }
            "NOTSET" | "" => {
                let (pb, pe) = (pads[i] as i128, pads[i + n] as i128);
                let padded = inp + pb + pe - span;
                // With ceil_mode a window larger than the padded input still gives one
                // (clipped) window when the stride reaches past it, as ONNX Runtime computes.
                let mut out = if ceil_mode {
                    -((-padded).div_euclid(s)) + 1
                } else {
                    padded.div_euclid(s) + 1
                };
                if padded < 0 && (!ceil_mode || out < 1) {
                    return Err(format!("the window (span {span}) does not fit in spatial dim {i} of size {inp} with pads {pb}+{pe}"));
                }
                // With ceil_mode the last window must start inside the input or its left padding.
                if ceil_mode && (out - 1) * s >= inp + pb {
                    out -= 1;
                }
                (out, pb, pe)
            }
            other => return Err(format!("unknown auto_pad '{other}'")),
        };
        w.output[i] = to_usize(out as i64, "output size")?;
        w.pads[i] = pb as usize;
        w.pads_end[i] = pe as usize;
    }
    Ok(w)
}

/// `coords[d][o]`: for output index `o` along dim `d` and kernel offset `k[d]`, the input
/// coordinate, or -1 when it falls in the padding.
fn tap_coords(w: &Window, k: &[usize], ranges: &[std::ops::Range<usize>]) -> Vec<Vec<isize>> {
    (0..ranges.len())
        .map(|d| {
            ranges[d]
                .clone()
                .map(|o| {
                    let c =
                        (o * w.strides[d] + k[d] * w.dilations[d]) as isize - w.pads[d] as isize;
                    if c >= 0 && (c as usize) < w.input[d] {
                        c
                    } else {
                        -1
                    }
                })
                .collect()
        })
        .collect()
}

/// Visits the points of a grid in row-major order (`coords[d]` along dim `d`), with the flat
/// target offset (strides `tstrides`) when every coordinate is valid (not -1).
fn for_each_point(
    coords: &[Vec<isize>],
    tstrides: &[usize],
    mut f: impl FnMut(usize, Option<usize>),
) {
    let nd = coords.len();
    if nd == 0 || coords.iter().any(|c| c.is_empty()) {
        return;
    }
    let last = &coords[nd - 1];
    let ls = tstrides[nd - 1];
    let mut idx = vec![0usize; nd - 1];
    let mut pos = 0usize;
    loop {
        let mut base = Some(0usize);
        for d in 0..nd - 1 {
            let c = coords[d][idx[d]];
            base = match base {
                Some(b) if c >= 0 => Some(b + c as usize * tstrides[d]),
                _ => None,
            };
        }
        for &c in last {
            f(pos, base.filter(|_| c >= 0).map(|b| b + c as usize * ls));
            pos += 1;
        }
        // Advance the odometer over the leading dims.
        let mut d = nd - 1;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            if idx[d] < coords[d].len() {
                break;
            }
            idx[d] = 0;
        }
    }
}

/// Advances a row-major multi-index over `dims`; false after the last.
fn next_index(idx: &mut [usize], dims: &[usize]) -> bool {
    for d in (0..dims.len()).rev() {
        idx[d] += 1;
        if idx[d] < dims[d] {
            return true;
        }
        idx[d] = 0;
    }
    false
}

/// One kernel offset's view of the output: per leading spatial dim the input coordinate of
/// every output index (-1 in the padding); along the last dim, the outputs `lo..hi` (relative
/// to the range start) that read input `first`, `first + stride`, ...
struct KernelOffset {
    lead: Vec<Vec<isize>>,
    lo: usize,
    hi: usize,
    first: usize,
}

/// im2col for output rows `rows` (along the first spatial dim): `col` is
/// `[channels * kernel size, positions]`, row `c * ksz + kernel offset`.
fn im2col<T: Copy + Send + Sync>(
    x: &[T],
    channels: usize,
    w: &Window,
    rows: std::ops::Range<usize>,
    col: &mut [T],
    zero: T,
) {
    let nd = w.input.len();
    let in_sp: usize = w.input.iter().product();
    let in_strides = strides(&w.input);
    let mut ranges: Vec<std::ops::Range<usize>> = w.output.iter().map(|&o| 0..o).collect();
    ranges[0] = rows;
    let cols: usize = ranges.iter().map(|r| r.len()).product();
    let ksz: usize = w.kernel.iter().product();
    if cols == 0 || ksz == 0 || channels == 0 {
        return;
    }
    let last = nd - 1;
    let (r0, r1) = (ranges[last].start, ranges[last].end);
    let width = r1 - r0;
    let (s, inl) = (w.strides[last] as isize, w.input[last] as isize);
    let mut offsets = Vec::with_capacity(ksz);
    let mut k = vec![0usize; nd];
    loop {
        let coords = tap_coords(w, &k, &ranges[..last]);
        // Outputs o with 0 <= o * s - t < inl, t = pad - k * dilation.
        let t = w.pads[last] as isize - (k[last] * w.dilations[last]) as isize;
        let lo_abs = if t <= 0 { 0 } else { (t + s - 1) / s };
        let hi_abs = if inl + t <= 0 {
            0
        } else {
            (inl + t + s - 1) / s
        };
        let clamp = |v: isize| (v.max(r0 as isize).min(r1 as isize) as usize) - r0;
        let lo = clamp(lo_abs);
        let hi = clamp(hi_abs).max(lo);
        let first = if hi > lo {
            ((r0 + lo) as isize * s - t) as usize
        } else {
            0
        };
        offsets.push(KernelOffset {
            lead: coords,
            lo,
            hi,
            first,
        });
        if !next_index(&mut k, &w.kernel) {
            break;
        }
    }
    let lead_dims: Vec<usize> = ranges[..last].iter().map(|r| r.len()).collect();
    let step = w.strides[last];
    let fill = |(c, cc): (usize, &mut [T])| {
        let xc = &x[c * in_sp..(c + 1) * in_sp];
        let mut idx = vec![0usize; last];
        for (ko, dst) in offsets.iter().zip(cc.chunks_exact_mut(cols)) {
            idx.fill(0);
            for drow in dst.chunks_exact_mut(width) {
                let mut base = Some(0usize);
                for d in 0..last {
                    let cd = ko.lead[d][idx[d]];
                    base = match base {
                        Some(b) if cd >= 0 => Some(b + cd as usize * in_strides[d]),
                        _ => None,
                    };
                }
                match base {
                    Some(b) if ko.hi > ko.lo => {
                        drow[..ko.lo].fill(zero);
                        drow[ko.hi..].fill(zero);
                        let src0 = b + ko.first;
                        let run = &mut drow[ko.lo..ko.hi];
                        if step == 1 {
                            run.copy_from_slice(&xc[src0..src0 + run.len()]);
                        } else {
                            for (i, v) in run.iter_mut().enumerate() {
                                *v = xc[src0 + i * step];
                            }
                        }
                    }
                    _ => drow.fill(zero),
                }
                next_index(&mut idx, &lead_dims);
            }
        }
    };
    let per = ksz * cols;
    if col.len() >= 1 << 16 && channels > 1 {
        col.par_chunks_mut(per)
            .take(channels)
            .enumerate()
            .for_each(fill);
    } else {
        col.chunks_mut(per)
            .take(channels)
            .enumerate()
            .for_each(fill);
    }
}

/// The shapes of a Conv node, checked.
pub(crate) struct ConvGeom {
    pub n: usize,
    pub c: usize,
    pub m: usize,
    pub group: usize,
    pub win: Window,
}

impl ConvGeom {
    pub fn new(ctx: &KernelCtx, x: &[usize], w: &[usize]) -> Result<ConvGeom> {
        if x.len() < 3 {
            return Err(format!("input X must have rank >= 3, got shape {x:?}"));
        }
        if w.len() != x.len() {
            return Err(format!("weights W {w:?} do not match the rank of X {x:?}"));
        }
        let group = ctx.int_attr("group", 1);
        if !(1..=MAX_ATTR).contains(&group) {
            return Err(format!("group must be positive, got {group}"));
        }
        let group = group as usize;
        let (n, c, m) = (x[0], x[1], w[0]);
        if w[1].checked_mul(group) != Some(c) {
            return Err(format!(
                "X has {c} channels but W {w:?} expects {} per group x {group} groups",
                w[1]
            ));
        }
        if m % group != 0 {
            return Err(format!(
                "{m} output channels do not split into {group} groups"
            ));
        }
        if let Some(ks) = ctx.ints_attr("kernel_shape") {
            if ks.len() != w.len() - 2 || ks.iter().zip(&w[2..]).any(|(&a, &b)| a != b as i64) {
                return Err(format!("kernel_shape {ks:?} does not match W {w:?}"));
            }
        }
        let win = window(ctx, &x[2..], &w[2..], false)?;
        let g = ConvGeom {
            n,
            c,
            m,
            group,
            win,
        };
        // Every buffer size must be representable.
        g.out_shape()
            .iter()
            .chain(&[g.kdim(), 1])
            .try_fold(1usize, |a, &b| a.checked_mul(b))
            .ok_or("Conv output is too large")?;
        Ok(g)
    }

    fn ksz(&self) -> usize {
        self.win.kernel.iter().product()
    }

    fn kdim(&self) -> usize {
        self.c / self.group * self.ksz()
    }

    pub fn out_shape(&self) -> Vec<usize> {
        let mut s = vec![self.n, self.m];
        s.extend(&self.win.output);
        s
    }
}

fn run_conv(ctx: &KernelCtx) -> Result<Vec<Value>> {
    conv_common(ctx, Act::Identity, None)
}

fn run_fused_conv(ctx: &KernelCtx) -> Result<Vec<Value>> {
    conv_common(ctx, Act::fused_conv(ctx.attrs)?, ctx.opt_tensor(3)?)
}

pub(crate) fn conv_common(ctx: &KernelCtx, act: Act, z: Option<&Tensor>) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let w = ctx.tensor(1)?;
    let b = ctx.opt_tensor(2)?;
    let g = ConvGeom::new(ctx, &x.shape, &w.shape)?;
    let mut ts = vec![("X", x), ("W", w)];
    if let Some(b) = b {
        if b.shape != [g.m] {
            return Err(format!(
                "bias B has shape {:?}, expected [{}]",
                b.shape, g.m
            ));
        }
        ts.push(("B", b));
    }
    if let Some(z) = z {
        if z.shape != g.out_shape() {
            return Err(format!(
                "Z has shape {:?}, expected the output shape {:?}",
                z.shape,
                g.out_shape()
            ));
        }
        ts.push(("Z", z));
    }
    same_dtype(&ts)?;
    if let Some(out) = super::conv_fast::run_unprepared(&g, x, w, b, z, act) {
        return one(out?);
    }
    let data = float_dispatch!(x.dtype(), conv_float(&g, x, w, b, z, act))?;
    one(Tensor::new(g.out_shape(), data))
}

fn conv_float<T: Real>(
    g: &ConvGeom,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    z: Option<&Tensor>,
    act: Act,
) -> Result<Data> {
    let xv = T::load(x)?;
    let wv = T::load(w)?;
    let mut y = conv_core(g, &xv, &wv, T::zero())?;
    let out_sp: usize = g.win.output.iter().product();
    if let Some(b) = b {
        let bv = T::load(b)?;
        if out_sp > 0 {
            for (i, plane) in y.chunks_mut(out_sp).enumerate() {
                let bias = bv[i % g.m];
                plane.iter_mut().for_each(|v| *v = *v + bias);
            }
        }
    }
    if let Some(z) = z {
        let zv = T::load(z)?;
        y.iter_mut().zip(zv.iter()).for_each(|(v, &z)| *v = *v + z);
    }
    act.apply_all(&mut y);
    Ok(T::store(y, x.dtype()))
}

/// The convolution itself (no bias) for any GEMM element type.
fn conv_core<T: Scalar>(g: &ConvGeom, x: &[T], w: &[T], zero: T) -> Result<Vec<T>> {
    let in_sp: usize = g.win.input.iter().product();
    let out_sp: usize = g.win.output.iter().product();
    let (cg, mg) = (g.c / g.group, g.m / g.group);
    let kdim = g.kdim();
    if x.len() != g.n * g.c * in_sp || w.len() != g.m * kdim {
        return Err("X or W holds fewer elements than its shape".into());
    }
    let mut y = filled(product(&[g.n, g.m, out_sp])?, zero)?;
    if y.is_empty() {
        return Ok(y);
    }
    let pointwise = g.ksz() == 1
        && g.win.strides.iter().all(|&s| s == 1)
        && g.win.pads.iter().chain(&g.win.pads_end).all(|&p| p == 0);
    let rows0 = g.win.output[0];
    let inner = out_sp / rows0.max(1);
    // Bound the im2col buffer (about 16 MB of f32) by splitting along the first spatial dim.
    let rows_per = ((1usize << 22) / kdim.max(1) / inner.max(1)).clamp(1, rows0.max(1));
    let task = |(idx, yg): (usize, &mut [T])| -> Result<()> {
        let (ni, gi) = (idx / g.group, idx % g.group);
        let xs = (ni * g.c + gi * cg) * in_sp;
        let xg = &x[xs..xs + cg * in_sp];
        let wg = Mat::rows(&w[gi * mg * kdim..(gi + 1) * mg * kdim], kdim);
        if pointwise {
            return gemm(
                mg,
                out_sp,
                cg,
                T::ONE,
                wg,
                Mat::rows(xg, in_sp),
                T::ZERO,
                yg,
                out_sp,
            );
        }
        let mut col = filled(product(&[kdim, rows_per, inner])?, zero)?;
        let mut r0 = 0;
        while r0 < rows0 {
            let r1 = (r0 + rows_per).min(rows0);
            let cols = (r1 - r0) * inner;
            im2col(xg, cg, &g.win, r0..r1, &mut col[..kdim * cols], zero);
            gemm(
                mg,
                cols,
                kdim,
                T::ONE,
                wg,
                Mat::rows(&col[..kdim * cols], cols),
                T::ZERO,
                &mut yg[r0 * inner..],
                out_sp,
            )?;
            r0 = r1;
        }
        Ok(())
    };
    let chunk = mg * out_sp;
    if chunk == 0 {
        return Ok(y);
    }
    if g.n * g.group > 1 {
        y.par_chunks_mut(chunk).enumerate().try_for_each(task)?;
    } else {
        task((0, &mut y))?;
    }
    Ok(y)
}

/// ConvInteger: `(X - x_zero_point) conv (W - w_zero_point)` in int32; the padding holds
/// `x_zero_point`, so it contributes nothing.
fn run_conv_integer(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let w = ctx.tensor(1)?;
    let g = ConvGeom::new(ctx, &x.shape, &w.shape)?;
    let widen = |t: &Tensor, what: &str| -> Result<Vec<i32>> {
        match &t.data {
            Data::U8(v) => Ok(v.iter().map(|&x| x as i32).collect()),
            Data::I8(v) => Ok(v.iter().map(|&x| x as i32).collect()),
            other => Err(format!(
                "{what} must be uint8 or int8, got {}",
                other.dtype()
            )),
        }
    };
    let mut xv = widen(x, "X")?;
    let mut wv = widen(w, "W")?;
    if let Some(z) = ctx.opt_tensor(2)? {
        let z = widen(z, "x_zero_point")?;
        if z.len() != 1 {
            return Err("x_zero_point must be a scalar".into());
        }
        xv.iter_mut().for_each(|v| *v -= z[0]);
    }
    if let Some(z) = ctx.opt_tensor(3)? {
        let z = widen(z, "w_zero_point")?;
        let per = wv.len() / g.m.max(1);
        if z.len() == 1 {
            wv.iter_mut().for_each(|v| *v -= z[0]);
        } else if z.len() == g.m && per > 0 {
            for (oc, ws) in wv.chunks_mut(per).enumerate() {
                ws.iter_mut().for_each(|v| *v -= z[oc]);
            }
        } else {
            return Err(format!(
                "w_zero_point has {} elements; expected 1 or {}",
                z.len(),
                g.m
            ));
        }
    }
    let y = conv_core(&g, &xv, &wv, 0i32)?;
    one(Tensor::from_vec(g.out_shape(), y))
}

/// The resolved shapes of a ConvTranspose node.
struct TransGeom {
    n: usize,
    c: usize,
    m: usize,
    group: usize,
    input: Vec<usize>,
    kernel: Vec<usize>,
    strides: Vec<usize>,
    dilations: Vec<usize>,
    /// Padding before each output dim (negative: the output starts before the first tap).
    pads: Vec<isize>,
    output: Vec<usize>,
}

impl TransGeom {
    fn new(ctx: &KernelCtx, x: &[usize], w: &[usize]) -> Result<TransGeom> {
        if x.len() < 3 || w.len() != x.len() {
            return Err(format!(
                "X {x:?} and W {w:?} do not fit (rank >= 3, equal ranks)"
            ));
        }
        let nd = x.len() - 2;
        let group = ctx.int_attr("group", 1);
        if !(1..=MAX_ATTR).contains(&group) {
            return Err(format!("group must be positive, got {group}"));
        }
        let group = group as usize;
        let c = x[1];
        if w[0] != c || !c.is_multiple_of(group) {
            return Err(format!(
                "W {w:?} must have X's {c} channels first, in {group} groups"
            ));
        }
        let m = w[1].checked_mul(group).ok_or("too many output channels")?;
        if w[2..].contains(&0) {
            return Err(format!("W {w:?} has an empty kernel"));
        }
        if let Some(ks) = ctx.ints_attr("kernel_shape") {
            if ks.len() != nd || ks.iter().zip(&w[2..]).any(|(&a, &b)| a != b as i64) {
                return Err(format!("kernel_shape {ks:?} does not match W {w:?}"));
            }
        }
        let (strides, dilations, pads, auto_pad) = window_attrs(ctx, nd)?;
        let out_pad = ctx.ints_or("output_padding", 0, nd);
        if out_pad.len() != nd || out_pad.iter().any(|&v| !(0..=MAX_ATTR).contains(&v)) {
            return Err(format!("output_padding {out_pad:?} is invalid"));
        }
        let out_shape = match ctx.ints_attr("output_shape") {
            Some(os) if os.len() == nd || os.len() == nd + 2 => {
                let os = &os[os.len() - nd..];
                if os.iter().any(|&v| !(0..=MAX_ATTR).contains(&v)) {
                    return Err(format!("output_shape {os:?} is invalid"));
                }
                Some(os.to_vec())
            }
            Some(os) => {
                return Err(format!(
                    "output_shape {os:?} does not match {nd} spatial dims"
                ))
            }
            None => None,
        };
        let mut g = TransGeom {
            n: x[0],
            c,
            m,
            group,
            input: x[2..].to_vec(),
            kernel: w[2..].to_vec(),
            strides: strides.iter().map(|&v| v as usize).collect(),
            dilations: dilations.iter().map(|&v| v as usize).collect(),
            pads: vec![0; nd],
            output: vec![0; nd],
        };
        for i in 0..nd {
            let (inp, k) = (x[i + 2] as i128, w[i + 2] as i128);
            let (s, d) = (strides[i] as i128, dilations[i] as i128);
            let natural = s * (inp - 1).max(0) + out_pad[i] as i128 + d * (k - 1).max(0) + 1;
            let same = matches!(auto_pad.as_str(), "SAME_UPPER" | "SAME_LOWER");
            let target = match &out_shape {
                Some(os) => Some(os[i] as i128),
                None if same => Some(inp * s),
                None => None,
            };
            let (out, pb) = match target {
                Some(out) => {
                    let total = natural - out;
                    let half = total.div_euclid(2);
                    let pb = if auto_pad == "SAME_UPPER" {
                        half
                    } else {
                        total - half
                    };
                    (out, pb)
                }
                None => {
                    if !matches!(auto_pad.as_str(), "NOTSET" | "" | "VALID") {
                        return Err(format!("unknown auto_pad '{auto_pad}'"));
                    }
                    let (pb, pe) = if auto_pad == "VALID" {
                        (0, 0)
                    } else {
                        (pads[i] as i128, pads[i + nd] as i128)
                    };
                    (natural - pb - pe, pb)
                }
            };
            if out < 0 {
                return Err(format!("output size {out} of spatial dim {i} is negative"));
            }
            g.output[i] = to_usize(out as i64, "output size")?;
            g.pads[i] = pb as isize;
        }
        let mut all = vec![g.n, g.m];
        all.extend(&g.output);
        all.push(g.m / g.group * g.kernel.iter().product::<usize>());
        all.push(g.input.iter().product());
        all.iter()
            .try_fold(1usize, |a, &b| a.checked_mul(b))
            .ok_or("ConvTranspose output is too large")?;
        Ok(g)
    }

    pub fn out_shape(&self) -> Vec<usize> {
        let mut s = vec![self.n, self.m];
        s.extend(&self.output);
        s
    }
}

fn run_conv_transpose(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let w = ctx.tensor(1)?;
    let b = ctx.opt_tensor(2)?;
    let g = TransGeom::new(ctx, &x.shape, &w.shape)?;
    let mut ts = vec![("X", x), ("W", w)];
    if let Some(b) = b {
        if b.shape != [g.m] {
            return Err(format!(
                "bias B has shape {:?}, expected [{}]",
                b.shape, g.m
            ));
        }
        ts.push(("B", b));
    }
    same_dtype(&ts)?;
    let data = float_dispatch!(x.dtype(), conv_transpose_float(&g, x, w, b))?;
    one(Tensor::new(g.out_shape(), data))
}

fn conv_transpose_float<T: Real>(
    g: &TransGeom,
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
) -> Result<Data> {
    let xv = T::load(x)?;
    let wv = T::load(w)?;
    let nd = g.input.len();
    let in_sp: usize = g.input.iter().product();
    let out_sp: usize = g.output.iter().product();
    let ksz: usize = g.kernel.iter().product();
    let (cg, mg) = (g.c / g.group, g.m / g.group);
    let rows = mg * ksz;
    if xv.len() != g.n * g.c * in_sp || wv.len() != g.c * rows {
        return Err("X or W holds fewer elements than its shape".into());
    }
    let mut y = filled(product(&[g.n, g.m, out_sp])?, T::zero())?;
    let chunk = mg * out_sp;
    if y.is_empty() || chunk == 0 {
        return Ok(T::store(y, x.dtype()));
    }
    let out_strides = strides(&g.output);
    let task = |(idx, yg): (usize, &mut [T])| -> Result<()> {
        let (ni, gi) = (idx / g.group, idx % g.group);
        let xs = (ni * g.c + gi * cg) * in_sp;
        let xg = Mat::rows(&xv[xs..xs + cg * in_sp], in_sp);
        // W_g is [cg, mg * ksz]; col = W_g^T * X_g is [mg * ksz, in_sp].
        let wg = Mat::rows(&wv[gi * cg * rows..(gi + 1) * cg * rows], rows).t();
        let mut col = filled(product(&[rows, in_sp])?, T::zero())?;
        gemm(rows, in_sp, cg, T::ONE, wg, xg, T::ZERO, &mut col, in_sp)?;
        // col2im: scatter-add every tap into the output.
        let mut k = vec![0usize; nd];
        let mut kf = 0;
        loop {
            let coords: Vec<Vec<isize>> = (0..nd)
                .map(|d| {
                    (0..g.input[d])
                        .map(|i| {
                            let o = (i * g.strides[d] + k[d] * g.dilations[d]) as isize - g.pads[d];
                            if o >= 0 && (o as usize) < g.output[d] {
                                o
                            } else {
                                -1
                            }
                        })
                        .collect()
                })
                .collect();
            for oc in 0..mg {
                let src = &col[(oc * ksz + kf) * in_sp..(oc * ksz + kf + 1) * in_sp];
                let dst = &mut yg[oc * out_sp..(oc + 1) * out_sp];
                for_each_point(&coords, &out_strides, |p, o| {
                    if let Some(o) = o {
                        dst[o] = dst[o] + src[p];
                    }
                });
            }
            kf += 1;
            if !next_index(&mut k, &g.kernel) {
                break;
            }
        }
        Ok(())
    };
    if g.n * g.group > 1 {
        y.par_chunks_mut(chunk).enumerate().try_for_each(task)?;
    } else {
        task((0, &mut y))?;
    }
    if let Some(b) = b {
        let bv = T::load(b)?;
        if out_sp > 0 {
            for (i, plane) in y.chunks_mut(out_sp).enumerate() {
                let bias = bv[i % g.m];
                plane.iter_mut().for_each(|v| *v = *v + bias);
            }
        }
    }
    Ok(T::store(y, x.dtype()))
}

#[cfg(test)]
mod kernel_tests {
    use super::*;
    use kiln_ir::Attribute;

    fn call(op: &str, domain: &str, ins: &[Option<Tensor>], attrs: &[Attribute]) -> Result<Tensor> {
        let vals: Vec<Option<Value>> = ins.iter().map(|t| t.clone().map(Value::Tensor)).collect();
        let ctx = KernelCtx {
            op_type: op,
            domain,
            opset: 17,
            attrs,
            inputs: vals.iter().map(|v| v.as_ref()).collect(),
            num_outputs: 1,
            subgraphs: None,
            donated: Default::default(),
        };
        let f = kernel(domain, op).unwrap();
        Ok(f(&ctx)?.remove(0).into_tensor().unwrap())
    }

    fn t(shape: &[usize], v: Vec<f32>) -> Option<Tensor> {
        Some(Tensor::from_vec(shape.to_vec(), v))
    }

    fn vals(t: &Tensor) -> Vec<f32> {
        t.as_slice::<f32>().unwrap().to_vec()
    }

    /// Direct convolution, for comparison.
    #[allow(clippy::too_many_arguments)]
    fn naive2d(
        x: &[f32],
        xs: [usize; 4],
        w: &[f32],
        ws: [usize; 4],
        stride: usize,
        pad: usize,
        dil: usize,
        group: usize,
    ) -> (Vec<usize>, Vec<f32>) {
        let [n, c, h, wd] = xs;
        let [m, cg, kh, kw] = ws;
        let oh = (h + 2 * pad - dil * (kh - 1) - 1) / stride + 1;
        let ow = (wd + 2 * pad - dil * (kw - 1) - 1) / stride + 1;
        let mg = m / group;
        let mut y = vec![0.0; n * m * oh * ow];
        for b in 0..n {
            for oc in 0..m {
                let gi = oc / mg;
                for i in 0..oh {
                    for j in 0..ow {
                        let mut s = 0.0;
                        for ci in 0..cg {
                            for a in 0..kh {
                                for bb in 0..kw {
                                    let ih = (i * stride + a * dil) as isize - pad as isize;
                                    let iw = (j * stride + bb * dil) as isize - pad as isize;
                                    if ih < 0 || iw < 0 || ih >= h as isize || iw >= wd as isize {
                                        continue;
                                    }
                                    let xi = ((b * c + gi * cg + ci) * h + ih as usize) * wd
                                        + iw as usize;
                                    s += x[xi] * w[((oc * cg + ci) * kh + a) * kw + bb];
                                }
                            }
                        }
                        y[((b * m + oc) * oh + i) * ow + j] = s;
                    }
                }
            }
        }
        (vec![n, m, oh, ow], y)
    }

    #[test]
    fn conv_matches_direct_convolution() {
        let mut seed = 3u32;
        let mut rnd = move || {
            seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        for &(xs, ws, stride, pad, dil, group) in &[
            ([1, 3, 7, 7], [4, 3, 3, 3], 1, 1, 1, 1),
            ([2, 4, 9, 8], [6, 2, 3, 2], 2, 1, 1, 2),
            ([1, 6, 10, 10], [6, 1, 3, 3], 1, 2, 2, 6),
            ([2, 8, 5, 5], [16, 8, 1, 1], 1, 0, 1, 1),
            ([1, 2, 6, 6], [3, 2, 2, 2], 3, 0, 1, 1),
        ] {
            let x: Vec<f32> = (0..xs.iter().product::<usize>()).map(|_| rnd()).collect();
            let w: Vec<f32> = (0..ws.iter().product::<usize>()).map(|_| rnd()).collect();
            let (shape, want) = naive2d(&x, xs, &w, ws, stride, pad, dil, group);
            let attrs = [
                Attribute::ints("strides", &[stride as i64; 2]),
                Attribute::ints("pads", &[pad as i64; 4]),
                Attribute::ints("dilations", &[dil as i64; 2]),
                Attribute::int("group", group as i64),
            ];
            let y = call("Conv", "", &[t(&xs, x), t(&ws, w)], &attrs).unwrap();
            assert_eq!(y.shape, shape);
            for (a, b) in vals(&y).iter().zip(&want) {
                assert!((a - b).abs() < 1e-5, "{xs:?} {ws:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn conv_hand_computed_with_bias_and_same_padding() {
        // 1x1x3x3 input 1..9, 2x2 kernel of ones, SAME_UPPER: pads end by 1.
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
        let attrs = [Attribute::string("auto_pad", "SAME_UPPER")];
        let y = call(
            "Conv",
            "",
            &[
                t(&[1, 1, 3, 3], x.clone()),
                t(&[1, 1, 2, 2], vec![1.0; 4]),
                t(&[1], vec![0.5]),
            ],
            &attrs,
        )
        .unwrap();
        assert_eq!(y.shape, vec![1, 1, 3, 3]);
        assert_eq!(
            vals(&y),
            vec![12.5, 16.5, 9.5, 24.5, 28.5, 15.5, 15.5, 17.5, 9.5]
        );
        // 1-D and 3-D.
        let y = call(
            "Conv",
            "",
            &[
                t(&[1, 1, 4], vec![1., 2., 3., 4.]),
                t(&[1, 1, 2], vec![1., -1.]),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(vals(&y), vec![-1.0, -1.0, -1.0]);
        let y = call(
            "Conv",
            "",
            &[
                t(&[1, 1, 2, 2, 2], (0..8).map(|v| v as f32).collect()),
                t(&[1, 1, 2, 2, 2], vec![1.0; 8]),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(y.shape, vec![1, 1, 1, 1, 1]);
        assert_eq!(vals(&y), vec![28.0]);
    }

    #[test]
    fn fused_conv_is_conv_then_activation() {
        let x: Vec<f32> = (0..2 * 5 * 5)
            .map(|v| ((v * 7 % 11) as f32 - 5.0) / 3.0)
            .collect();
        let w: Vec<f32> = (0..3 * 2 * 3 * 3)
            .map(|v| ((v * 5 % 7) as f32 - 3.0) / 4.0)
            .collect();
        let b = vec![0.1, -0.2, 0.3];
        let z: Vec<f32> = (0..3 * 3 * 3).map(|v| (v as f32 - 13.0) / 10.0).collect();
        let ins = [t(&[1, 2, 5, 5], x), t(&[3, 2, 3, 3], w), t(&[3], b)];
        let base = vals(&call("Conv", "", &ins, &[]).unwrap());
        let cases: Vec<(&str, Vec<f32>, Box<dyn Fn(f32) -> f32>)> = vec![
            ("Relu", vec![], Box::new(|v: f32| v.max(0.0))),
            ("Tanh", vec![], Box::new(|v: f32| v.tanh())),
            (
                "Sigmoid",
                vec![],
                Box::new(|v: f32| 1.0 / (1.0 + (-v).exp())),
            ),
            (
                "LeakyRelu",
                vec![0.2],
                Box::new(|v: f32| if v < 0.0 { 0.2 * v } else { v }),
            ),
            (
                "Clip",
                vec![-1.0, 1.5],
                Box::new(|v: f32| v.clamp(-1.0, 1.5)),
            ),
            (
                "HardSigmoid",
                vec![0.3, 0.4],
                Box::new(|v: f32| (0.3 * v + 0.4).clamp(0.0, 1.0)),
            ),
        ];
        for (name, params, f) in cases {
            let mut attrs = vec![Attribute::string("activation", name)];
            if !params.is_empty() {
                attrs.push(Attribute::floats("activation_params", &params));
            }
            assert!(check_fused(&attrs, 1).is_ok());
            let y = vals(&call("FusedConv", "com.microsoft", &ins, &attrs).unwrap());
            for (a, b) in y.iter().zip(&base) {
                assert!((a - f(*b)).abs() < 1e-6, "{name}");
            }
            // With Z added before the activation.
            let mut ins_z = ins.to_vec();
            ins_z.push(t(&[1, 3, 3, 3], z.clone()));
            let y = vals(&call("FusedConv", "com.microsoft", &ins_z, &attrs).unwrap());
            for ((a, b), zz) in y.iter().zip(&base).zip(&z) {
                assert!((a - f(b + zz)).abs() < 1e-6, "{name} with Z");
            }
        }
        let bad = [Attribute::string("activation", "Elu")];
        assert!(check_fused(&bad, 1).is_err());
        let bad = [Attribute::string("activation", "LeakyRelu")];
        assert!(check_fused(&bad, 1).is_err());
    }

    #[test]
    fn conv_refusals() {
        let x = t(&[1, 3, 4, 4], vec![0.0; 48]);
        assert!(call(
            "Conv",
            "",
            &[x.clone(), t(&[2, 2, 3, 3], vec![0.0; 36])],
            &[]
        )
        .is_err());
        assert!(call(
            "Conv",
            "",
            &[x.clone(), t(&[2, 3, 5, 5], vec![0.0; 150])],
            &[]
        )
        .is_err());
        let neg = [Attribute::ints("pads", &[-1, 0, 0, 0])];
        assert!(call(
            "Conv",
            "",
            &[x.clone(), t(&[2, 3, 3, 3], vec![0.0; 54])],
            &neg
        )
        .is_err());
        let bad_b = t(&[3], vec![0.0; 3]);
        assert!(call(
            "Conv",
            "",
            &[x.clone(), t(&[2, 3, 3, 3], vec![0.0; 54]), bad_b],
            &[]
        )
        .is_err());
        let x64 = Some(Tensor::from_vec(vec![1, 3, 4, 4], vec![0.0f64; 48]));
        assert!(call("Conv", "", &[x64, t(&[2, 3, 3, 3], vec![0.0; 54])], &[]).is_err());
    }

    /// Random shapes and attribute values (many invalid): every call returns, none panics.
    #[test]
    fn random_attributes_never_panic() {
        let mut g = Lcg(5);
        let mut ok = 0;
        for _ in 0..20000 {
            let op = ["Conv", "ConvTranspose"][g.r(2) as usize];
            let nd = 1 + g.r(2) as usize;
            let group = 1 + g.r(2) as usize;
            let c = group * (1 + g.r(2) as usize);
            let mut xs = vec![1 + g.r(2) as usize, c];
            xs.extend((0..nd).map(|_| g.r(6) as usize));
            let mut ws = if op == "Conv" {
                vec![group * (1 + g.r(2) as usize), c / group]
            } else {
                vec![c, 1 + g.r(2) as usize]
            };
            ws.extend((0..nd).map(|_| 1 + g.r(3) as usize));
            // Some invalid shapes.
            if g.r(5) == 0 {
                let d = g.r(ws.len() as i64) as usize;
                ws[d] = g.r(4) as usize;
            }
            if g.r(8) == 0 {
                ws.pop();
            }
            let attrs_group = if group > 1 || g.r(4) == 0 {
                let off = g.r(2) - (g.r(4) == 0) as i64;
                Some(group as i64 + off)
            } else {
                None
            };
            let n: usize = xs.iter().product();
            let m: usize = ws.iter().product();
            let x = t(&xs, (0..n).map(|v| v as f32).collect());
            let w = t(&ws, (0..m).map(|v| v as f32 - 3.0).collect());
            let mut attrs = vec![];
            if g.r(2) == 0 {
                let lo = -((g.r(9) == 0) as i64);
                attrs.push(Attribute::ints("strides", &g.pick(nd, lo, 3)));
            }
            if g.r(2) == 0 {
                let lo = -((g.r(9) == 0) as i64);
                attrs.push(Attribute::ints("pads", &g.pick(2 * nd, lo, 3)));
            }
            if g.r(2) == 0 {
                let lo = (g.r(9) != 0) as i64;
                attrs.push(Attribute::ints("dilations", &g.pick(nd, lo, 3)));
            }
            if let Some(gr) = attrs_group {
                attrs.push(Attribute::int("group", gr));
            }
            if g.r(4) == 0 {
                attrs.push(Attribute::ints("output_padding", &g.pick(nd, -1, 2)));
            }
            if g.r(4) == 0 {
                attrs.push(Attribute::ints("output_shape", &g.pick(nd, -1, 9)));
            }
            if g.r(4) == 0 {
                attrs.push(Attribute::ints("kernel_shape", &g.pick(nd, 0, 3)));
            }
            if g.r(4) == 0 {
                let pad = ["SAME_UPPER", "SAME_LOWER", "VALID", "BOGUS"][g.r(4) as usize];
                attrs.push(Attribute::string("auto_pad", pad));
            }
            let mut ins = vec![x, w];
            if g.r(2) == 0 {
                let b = g.r(4) as usize;
                ins.push(t(&[b], vec![1.0; b]));
            }
            ok += call(op, "", &ins, &attrs).is_ok() as usize;
        }
        // Enough valid cases to run the kernels, not only the checks.
        assert!(ok > 500, "only {ok} valid cases");
    }
    struct Lcg(u64);

    impl Lcg {
        fn r(&mut self, n: i64) -> i64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) as i64).rem_euclid(n)
        }

        fn pick(&mut self, len: usize, lo: i64, hi: i64) -> Vec<i64> {
            (0..len).map(|_| lo + self.r(hi - lo + 1)).collect()
        }
    }

    #[test]
    fn conv_transpose_hand_computed() {
        // 1-D: x = [1, 2], w = [1, 1, 1], stride 2 -> [1, 1, 3, 2, 2]
        let y = call(
            "ConvTranspose",
            "",
            &[t(&[1, 1, 2], vec![1., 2.]), t(&[1, 1, 3], vec![1., 1., 1.])],
            &[Attribute::ints("strides", &[2])],
        )
        .unwrap();
        assert_eq!(y.shape, vec![1, 1, 5]);
        assert_eq!(vals(&y), vec![1., 1., 3., 2., 2.]);
        // Pads crop, output_padding extends, bias adds; two output channels.
        let y = call(
            "ConvTranspose",
            "",
            &[
                t(&[1, 1, 2], vec![1., 2.]),
                t(&[1, 2, 3], vec![1., 1., 1., 1., 0., -1.]),
                t(&[2], vec![10., 20.]),
            ],
            &[
                Attribute::ints("strides", &[2]),
                Attribute::ints("pads", &[1, 1]),
                Attribute::ints("output_padding", &[1]),
            ],
        )
        .unwrap();
        assert_eq!(y.shape, vec![1, 2, 4]);
        // channel 0 full: [1,1,3,2,2,0] -> crop 1..5 = [1,3,2,2]; channel 1: [1,0,1,0,-2,0] -> [0,1,0,-2]
        assert_eq!(vals(&y), vec![11., 13., 12., 12., 20., 21., 20., 18.]);
        // output_shape and groups.
        let y = call(
            "ConvTranspose",
            "",
            &[
                t(&[1, 2, 2], vec![1., 2., 3., 4.]),
                t(&[2, 1, 2], vec![1., 1., 1., -1.]),
            ],
            &[
                Attribute::int("group", 2),
                Attribute::ints("output_shape", &[3]),
            ],
        )
        .unwrap();
        assert_eq!(y.shape, vec![1, 2, 3]);
        assert_eq!(vals(&y), vec![1., 3., 2., 3., 1., -4.]);
        // Absurd sizes fail cleanly.
        let x = t(&[1, 1, 2, 2], vec![1.; 4]);
        let w = t(&[1, 1, 2, 2], vec![1.; 4]);
        let huge = [Attribute::ints("output_shape", &[1 << 40, 1 << 40])];
        assert!(call("ConvTranspose", "", &[x.clone(), w.clone()], &huge).is_err());
        let huge = [Attribute::ints("strides", &[1 << 40, 1 << 40])];
        assert!(call("ConvTranspose", "", &[x.clone(), w.clone()], &huge).is_err());
        let huge = [Attribute::ints(
            "pads",
            &[1 << 40, 1 << 40, 1 << 40, 1 << 40],
        )];
        assert!(call("Conv", "", &[x, w], &huge).is_err());
    }

    #[test]
    fn conv_integer_zero_points() {
        let x = Tensor::from_vec(vec![1, 1, 2, 2], vec![2u8, 3, 4, 5]);
        let w = Tensor::from_vec(vec![1, 1, 1, 1], vec![3u8]);
        let y = call(
            "ConvInteger",
            "",
            &[
                Some(x),
                Some(w),
                Some(Tensor::scalar(1u8)),
                Some(Tensor::scalar(1u8)),
            ],
            &[Attribute::ints("pads", &[1, 0, 0, 0])],
        )
        .unwrap();
        assert_eq!(y.shape, vec![1, 1, 3, 2]);
        assert_eq!(y.as_slice::<i32>().unwrap(), &[0, 0, 2, 4, 6, 8]);
    }
}
