//! Resize and Upsample: output sizes from `sizes`, or `floor(dim * scale)` from `scales`
//! (symbolic when the scale is a whole number or its inverse is).
use kiln_ir::Dim;

use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{one, strides, KernelCtx};
use crate::ops::{cast, movement};
use crate::value::{Data, Tensor, Value};

fn scaled(d: &Dim, s: f64) -> Dim {
    if let Some(n) = d.known() {
        return Dim::Known((n as f64 * s).floor() as i64);
    }
    if s >= 1.0 && s.fract() == 0.0 {
        return d.mul(&Dim::Known(s as i64));
    }
    let inv = 1.0 / s;
    if s > 0.0 && inv.fract() == 0.0 {
        return d.floor_div(inv as i64);
    }
    Dim::Unknown
}

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let Some(x) = ctx.shape(0) else {
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None)]);
    };
    let r = x.len();
    // Which input holds scales and sizes depends on the op and version.
    let (scales_in, sizes_in) = match (ctx.op_type, ctx.opset) {
        ("Upsample", v) if v < 9 => (None, None),
        ("Upsample", _) | ("Resize", 10) => (Some(1), None),
        _ => (Some(2), Some(3)),
    };
    let axes: Vec<usize> = match ctx.ints_attr("axes") {
        Some(a) => a.iter().map(|&a| ctx.axis(a, r)).collect::<Result<_>>()?,
        None => (0..r).collect(),
    };
    if let Some(si) = sizes_in.filter(|&i| ctx.has_input(i)) {
        let Some(sizes) = ctx.int_values(si) else {
            return Ok(vec![Inferred::tensor(
                ctx.dtype(0),
                Some(vec![Dim::Unknown; r]),
            )]);
        };
        if sizes.len() != axes.len() {
            return Err(format!(
                "sizes has {} entries for {} axes",
                sizes.len(),
                axes.len()
            ));
        }
        let mut out = x.to_vec();
        let policy = ctx
            .str_attr("keep_aspect_ratio_policy")
            .unwrap_or("stretch");
        if policy != "stretch" {
            return Ok(vec![Inferred::tensor(
                ctx.dtype(0),
                Some(vec![Dim::Unknown; r]),
            )]);
        }
        for (a, s) in axes.iter().zip(sizes) {
            out[*a] = s;
        }
        return Ok(vec![Inferred::tensor(ctx.dtype(0), Some(out))]);
    }
    let scales: Option<Vec<f64>> = match scales_in {
        Some(i) if ctx.has_input(i) => ctx.float_values(i),
        Some(_) => None,
        None => ctx.attrs.iter().find(|a| a.name == "scales").and_then(|_| {
            ctx.attrs.iter().find_map(|a| match &a.value {
                kiln_ir::AttrValue::Floats(f) if a.name == "scales" => {
                    Some(f.iter().map(|&x| x as f64).collect())
                }
                _ => None,
            })
        }),
    };
    let Some(scales) = scales.filter(|s| !s.is_empty()) else {
        return Ok(vec![Inferred::tensor(
            ctx.dtype(0),
            Some(vec![Dim::Unknown; r]),
        )]);
    };
    if scales.len() != axes.len() {
        return Err(format!(
            "scales has {} entries for {} axes",
            scales.len(),
            axes.len()
        ));
    }
    let mut out = x.to_vec();
    for (a, s) in axes.iter().zip(scales) {
        if s <= 0.0 {
            return Err(format!("scale {s} is not positive"));
        }
        out[*a] = scaled(&x[*a], s);
    }
    Ok(vec![Inferred::tensor(ctx.dtype(0), Some(out))])
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    match (domain, op_type) {
        ("", "Resize" | "Upsample") => Some(run),
        _ => None,
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Nearest,
    Linear,
    Cubic,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Coord {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfCropAndResize,
    /// Resize-11 only: `(y + 0.5) / scale`.
    TfHalfPixelForNn,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Nearest {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
    /// Resize-10 and Upsample (as ONNX Runtime runs them): floor when upsampling, ceil when
    /// downsampling.
    Simple,
}

#[derive(Clone, Copy, Debug)]
struct Params {
    mode: Mode,
    coord: Coord,
    nearest: Nearest,
    cubic_a: f32,
    exclude_outside: bool,
    antialias: bool,
}

/// How one axis is resized.
#[derive(Clone, Copy, Debug)]
struct AxisSpec {
    in_len: usize,
    out_len: usize,
    scale: f64,
    roi: (f64, f64),
}

impl AxisSpec {
    fn is_identity(&self) -> bool {
        (self.scale - 1.0).abs() <= 1e-9 * self.scale.abs().max(1.0)
            && self.out_len == self.in_len
            && self.roi.0.abs() <= 1e-9
            && (self.roi.1 - 1.0).abs() <= 1e-9
    }
}

/// The input coordinate of output index `y`, and whether it lies outside the crop (only
/// tf_crop_and_resize extrapolates).
fn source_coord(p: &Params, s: &AxisSpec, y: usize) -> (f64, bool) {
    let y = y as f64;
    let scale = s.scale;
    let in_len = s.in_len as f64;
    // align_corners and pytorch_half_pixel use the integer output length, as PyTorch and ONNX
    // Runtime do (ONNX's reference uses the unrounded scale x length, which differs whenever
    // the scale is fractional); models come from PyTorch and were validated on ORT.
    let out_len = s.out_len as f64;
    // The other modes keep the reference's real-valued output width.
    let out_w = scale * in_len;
    let x = match p.coord {
        Coord::AlignCorners => {
            if out_len <= 1.0 {
                0.0
            } else {
                y * (in_len - 1.0) / (out_len - 1.0)
            }
        }
        Coord::Asymmetric => y / scale,
        Coord::TfCropAndResize => {
            let (r0, r1) = s.roi;
            let x = if out_w == 1.0 {
                (r1 - r0) * (in_len - 1.0) / 2.0
            } else {
                y * (r1 - r0) * (in_len - 1.0) / (out_w - 1.0)
            };
            let x = x + r0 * (in_len - 1.0);
            return (x, x < 0.0 || x > in_len - 1.0);
        }
        Coord::PytorchHalfPixel => {
            if out_len <= 1.0 {
                0.0
            } else {
                (y + 0.5) / scale - 0.5
            }
        }
        Coord::HalfPixel => (y + 0.5) / scale - 0.5,
        Coord::TfHalfPixelForNn => (y + 0.5) / scale,
        Coord::HalfPixelSymmetric => {
            let adjustment = s.out_len as f64 / out_w;
            let center = in_len / 2.0;
            let offset = center * (1.0 - adjustment);
            offset + (y + 0.5) / scale - 0.5
        }
    };
    (x, false)
}

/// The cubic convolution kernel. Like ONNX's reference (where `a` is a float32 attribute and
/// numpy keeps float32 arithmetic), it is evaluated in f32 from an f64 distance.
fn cubic_weight(x: f64, a: f32) -> f64 {
    let x = x.abs();
    let (x1, x2, x3) = (x as f32, (x * x) as f32, (x * x * x) as f32);
    (if x <= 1.0 {
        (a + 2.0) * x3 - (a + 3.0) * x2 + 1.0
    } else if x < 2.0 {
        a * x3 - 5.0 * a * x2 + 8.0 * a * x1 - 4.0 * a
    } else {
        0.0
    }) as f64
}

/// Interpolation weights of the neighbors of a point at fractional offset `ratio` (in (0, 1];
/// 1 for a point on a sample), left to right.
fn coeffs(p: &Params, ratio: f64, scale: f64) -> Vec<f64> {
    match p.mode {
        Mode::Nearest => {
            if ratio == 1.0 {
                return vec![0.0, 1.0];
            }
            let right = match p.nearest {
                Nearest::RoundPreferFloor => ratio > 0.5,
                Nearest::RoundPreferCeil => ratio >= 0.5,
                Nearest::Floor => false,
                Nearest::Ceil => true,
                Nearest::Simple => scale < 1.0,
            };
            if right {
                vec![0.0, 1.0]
            } else {
                vec![1.0, 0.0]
            }
        }
        Mode::Linear if p.antialias => {
            let s = scale.min(1.0);
            let start = (-1.0 / s).floor() as i64 + 1;
            let n = 2 - 2 * start;
            let c: Vec<f64> = (start..start + n)
                .map(|i| (1.0 - ((i as f64 - ratio) * s).abs()).clamp(0.0, 1.0))
                .collect();
            let sum: f64 = c.iter().sum();
            c.into_iter().map(|x| x / sum).collect()
        }
        Mode::Linear => vec![1.0 - ratio, ratio],
        Mode::Cubic if p.antialias => {
            let s = scale.min(1.0);
            let start = (-2.0 / s).floor() as i64 + 1;
            let end = 2 - start;
            let c: Vec<f64> = (start..end)
                .map(|i| cubic_weight(s * (i as f64 - ratio), p.cubic_a))
                .collect();
            // The reference sums in f32, and divides in f32 unless a weight was a literal
            // zero (which makes its array f64).
            let sum = c.iter().fold(0f32, |acc, &x| acc + x as f32);
            let wide = (start..end).any(|i| (s * (i as f64 - ratio)).abs() >= 2.0);
            c.into_iter()
                .map(|x| {
                    if wide {
                        x / sum as f64
                    } else {
                        (x as f32 / sum) as f64
                    }
                })
                .collect()
        }
        Mode::Cubic => {
            // f32 arithmetic on f64 distances, as in `cubic_weight`.
            let a = p.cubic_a;
            let (r, r1, s, s1) = (
                ratio as f32,
                (ratio + 1.0) as f32,
                (1.0 - ratio) as f32,
                ((1.0 - ratio) + 1.0) as f32,
            );
            [
                ((a * r1 - 5.0 * a) * r1 + 8.0 * a) * r1 - 4.0 * a,
                ((a + 2.0) * r - (a + 3.0)) * r * r + 1.0,
                ((a + 2.0) * s - (a + 3.0)) * s * s + 1.0,
                ((a * s1 - 5.0 * a) * s1 + 8.0 * a) * s1 - 4.0 * a,
            ]
            .iter()
            .map(|&c| c as f64)
            .collect()
        }
    }
}

/// For every output index along an axis: `(input index, weight)` pairs, or `None` where the
/// output takes the extrapolation value.
fn axis_plan(p: &Params, s: &AxisSpec) -> Vec<Option<Vec<(usize, f64)>>> {
    let last = s.in_len as i64 - 1;
    (0..s.out_len)
        .map(|y| {
            let (x, outside) = source_coord(p, s, y);
            if outside {
                return None;
            }
            let fl = x.floor();
            let integral = x == fl;
            let ratio = if integral { 1.0 } else { x - fl };
            let mut c = coeffs(p, ratio, s.scale);
            let n = c.len() as i64;
            let frac = x - fl;
            // The n samples nearest to x, ties going to the smaller index.
            let offset = if n % 2 == 0 {
                if frac == 0.0 {
                    -(n / 2)
                } else {
                    -(n / 2) + 1
                }
            } else {
                let base = -((n - 1) / 2);
                if frac <= 0.5 {
                    base
                } else {
                    base + 1
                }
            };
            let start = fl as i64 + offset;
            if p.exclude_outside {
                for (k, w) in c.iter_mut().enumerate() {
                    let i = start + k as i64;
                    if i < 0 || i > last {
                        *w = 0.0;
                    }
                }
                let sum: f64 = c.iter().sum();
                let sum = if sum == 0.0 { 1.0 } else { sum };
                c.iter_mut().for_each(|w| *w /= sum);
            }
            Some(
                c.into_iter()
                    .enumerate()
                    .map(|(k, w)| ((start + k as i64).clamp(0, last.max(0)) as usize, w))
                    .collect(),
            )
        })
        .collect()
}

/// One separable pass: resize `data` (of `shape`) along `axis`.
fn interpolate_axis(
    data: &[f64],
    shape: &[usize],
    axis: usize,
    plan: &[Option<Vec<(usize, f64)>>],
    extrapolation: f64,
) -> Vec<f64> {
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let in_len = shape[axis];
    let mut out = vec![0.0; outer * plan.len() * inner];
    for o in 0..outer {
        let src = &data[o * in_len * inner..(o + 1) * in_len * inner];
        for (y, taps) in plan.iter().enumerate() {
            let dst = &mut out[(o * plan.len() + y) * inner..(o * plan.len() + y + 1) * inner];
            match taps {
                None => dst.iter_mut().for_each(|v| *v = extrapolation),
                Some(taps) => {
                    for &(i, w) in taps {
                        let row = &src[i * inner..(i + 1) * inner];
                        for (d, &s) in dst.iter_mut().zip(row) {
                            *d += w * s;
                        }
                    }
                }
            }
        }
    }
    out
}

fn float_input(ctx: &KernelCtx, i: usize) -> Result<Option<Vec<f64>>> {
    match ctx.opt_tensor(i)? {
        Some(t) if movement::numel(&t.shape)? > 0 => Ok(Some(cast::to_f64s(t)?)),
        _ => Ok(None),
    }
}

fn params(ctx: &KernelCtx, legacy: bool) -> Result<Params> {
    let mode = match ctx.str_attr("mode").unwrap_or("nearest") {
        "nearest" => Mode::Nearest,
        "linear" | "bilinear" if legacy => Mode::Linear,
        "linear" => Mode::Linear,
        "cubic" if !legacy => Mode::Cubic,
        other => return Err(format!("unknown mode '{other}'")),
    };
    if legacy {
        return Ok(Params {
            mode,
            coord: Coord::Asymmetric,
            nearest: Nearest::Simple,
            cubic_a: -0.75,
            exclude_outside: false,
            antialias: false,
        });
    }
    let coord = match ctx
        .str_attr("coordinate_transformation_mode")
        .unwrap_or("half_pixel")
    {
        "half_pixel" => Coord::HalfPixel,
        "half_pixel_symmetric" => Coord::HalfPixelSymmetric,
        "pytorch_half_pixel" => Coord::PytorchHalfPixel,
        "align_corners" => Coord::AlignCorners,
        "asymmetric" => Coord::Asymmetric,
        "tf_crop_and_resize" => Coord::TfCropAndResize,
        "tf_half_pixel_for_nn" => Coord::TfHalfPixelForNn,
        other => return Err(format!("unknown coordinate_transformation_mode '{other}'")),
    };
    let nearest = match ctx.str_attr("nearest_mode").unwrap_or("round_prefer_floor") {
        "round_prefer_floor" => Nearest::RoundPreferFloor,
        "round_prefer_ceil" => Nearest::RoundPreferCeil,
        "floor" => Nearest::Floor,
        "ceil" => Nearest::Ceil,
        other => return Err(format!("unknown nearest_mode '{other}'")),
    };
    let antialias = ctx.int_attr("antialias", 0) != 0;
    if antialias && mode == Mode::Nearest {
        return Err("antialias is not defined for nearest mode".into());
    }
    Ok(Params {
        mode,
        coord,
        nearest,
        cubic_a: ctx.float_attr("cubic_coeff_a", -0.75),
        exclude_outside: ctx.int_attr("exclude_outside", 0) != 0,
        antialias,
    })
}

/// Sizes, scales and crop of every axis.
fn axis_specs(ctx: &KernelCtx, shape: &[usize], p: &Params, legacy: bool) -> Result<Vec<AxisSpec>> {
    let r = shape.len();
    let (scales, sizes, roi) = if ctx.op_type == "Upsample" && ctx.opset < 9 {
        let s = ctx.attrs.iter().find_map(|a| match &a.value {
            kiln_ir::AttrValue::Floats(f) if a.name == "scales" => {
                Some(f.iter().map(|&x| x as f64).collect::<Vec<_>>())
            }
            _ => None,
        });
        (Some(s.ok_or("scales attribute is required")?), None, None)
    } else if legacy {
        (float_input(ctx, 1)?, None, None)
    } else {
        let sizes = match ctx.opt_tensor(3)? {
            Some(t) if movement::numel(&t.shape)? > 0 => Some(t.to_i64s()?),
            _ => None,
        };
        (float_input(ctx, 2)?, sizes, float_input(ctx, 1)?)
    };
    let axes: Vec<usize> = match ctx.ints_attr("axes") {
        Some(a) if !legacy => movement::norm_axes(a, r)?,
        _ => (0..r).collect(),
    };
    let k = axes.len();
    let mut specs: Vec<AxisSpec> = shape
        .iter()
        .map(|&d| AxisSpec {
            in_len: d,
            out_len: d,
            scale: 1.0,
            roi: (0.0, 1.0),
        })
        .collect();
    match (scales, sizes) {
        (Some(_), Some(_)) => return Err("only one of scales and sizes may be given".into()),
        (Some(sc), None) => {
            if sc.len() != k {
                return Err(format!("scales has {} entries for {k} axes", sc.len()));
            }
            for (&a, &s) in axes.iter().zip(&sc) {
                if !(s > 0.0 && s.is_finite()) {
                    return Err(format!("scale {s} is not a positive number"));
                }
                let out = (s * shape[a] as f64).floor();
                if out > movement::MAX_OUTPUT_ELEMENTS as f64 {
                    return Err(format!("scale {s} makes the output too large"));
                }
                specs[a].scale = s;
                specs[a].out_len = out as usize;
            }
        }
        (None, Some(sz)) => {
            if sz.len() != k {
                return Err(format!("sizes has {} entries for {k} axes", sz.len()));
            }
            let sz = movement::dims_of(&sz, "sizes")?;
            let ratio = |a: usize, s: usize| -> Result<f64> {
                if shape[a] == 0 {
                    return Err(format!("cannot resize the empty axis {a} to {s}"));
                }
                Ok(s as f64 / shape[a] as f64)
            };
            match ctx
                .str_attr("keep_aspect_ratio_policy")
                .unwrap_or("stretch")
            {
                "stretch" => {
                    for (&a, &s) in axes.iter().zip(&sz) {
                        specs[a].scale = ratio(a, s)?;
                        specs[a].out_len = s;
                    }
                }
                policy @ ("not_larger" | "not_smaller") => {
                    let rs = axes
                        .iter()
                        .zip(&sz)
                        .map(|(&a, &s)| ratio(a, s))
                        .collect::<Result<Vec<f64>>>()?;
                    let pick = if policy == "not_larger" {
                        f64::min
                    } else {
                        f64::max
                    };
                    let Some(scale) = rs.into_iter().reduce(pick) else {
                        return Ok(specs);
                    };
                    for &a in &axes {
                        specs[a].scale = scale;
                        specs[a].out_len = (scale * shape[a] as f64 + 0.5) as usize;
                    }
                }
                other => return Err(format!("unknown keep_aspect_ratio_policy '{other}'")),
            }
        }
        (None, None) => return Err("one of scales and sizes is required".into()),
    }
    if p.coord == Coord::TfCropAndResize {
        let roi = roi.ok_or("tf_crop_and_resize needs roi")?;
        if roi.len() != 2 * k {
            return Err(format!("roi has {} entries for {k} axes", roi.len()));
        }
        for (j, &a) in axes.iter().enumerate() {
            specs[a].roi = (roi[j], roi[j + k]);
        }
    }
    let out: Vec<usize> = specs.iter().map(|s| s.out_len).collect();
    movement::numel(&out)?;
    Ok(specs)
}

/// Nearest resizing of f32 NCHW planes (the upsampling in detection necks), plane by plane
/// in parallel; `None` when another axis than H and W moves or a table has extrapolated
/// entries.
fn nearest_planes_f32(x: &Tensor, tables: &[Vec<Option<usize>>]) -> Option<Vec<f32>> {
    use rayon::prelude::*;
    let Data::F32(v) = &x.data else { return None };
    let [n, c, h, w] = x.shape[..] else {
        return None;
    };
    let ident = |t: &Vec<Option<usize>>, len: usize, stride: usize| {
        t.len() == len && t.iter().enumerate().all(|(i, &o)| o == Some(i * stride))
    };
    if !ident(&tables[0], n, c * h * w) || !ident(&tables[1], c, h * w) {
        return None;
    }
    let rows: Vec<usize> = tables[2].iter().copied().collect::<Option<_>>()?;
    let cols: Vec<usize> = tables[3].iter().copied().collect::<Option<_>>()?;
    let (oh, ow) = (rows.len(), cols.len());
    if oh * ow == 0 {
        return Some(Vec::new());
    }
    let mut out = vec![0f32; n * c * oh * ow];
    out.par_chunks_mut(oh * ow).enumerate().for_each(|(p, y)| {
        let plane = &v[p * h * w..][..h * w];
        for (yrow, &r) in y.chunks_exact_mut(ow).zip(&rows) {
            let src = &plane[r..];
            for (o, &col) in yrow.iter_mut().zip(&cols) {
                *o = src[col];
            }
        }
    });
    Some(out)
}

/// The taps of every resized axis of an input of `shape`, for providers that interpolate
/// themselves with exactly the CPU kernel's coordinate rules: per axis `None` when the axis
/// keeps its size, else per output index its (input index, weight) pairs (nearest: one pair
/// of weight 1). Fails where outputs would take the extrapolation value.
#[allow(clippy::type_complexity)]
pub fn resize_taps(
    ctx: &KernelCtx,
    shape: &[usize],
) -> Result<Vec<Option<Vec<Vec<(usize, f64)>>>>> {
    let legacy = ctx.op_type == "Upsample" || ctx.opset < 11;
    let p = params(ctx, legacy)?;
    if p.antialias || p.mode == Mode::Cubic {
        return Err("only nearest and linear resizing without antialias".into());
    }
    let specs = axis_specs(ctx, shape, &p, legacy)?;
    specs
        .iter()
        .map(|s| {
            if s.is_identity() {
                return Ok(None);
            }
            axis_plan(&p, s)
                .into_iter()
                .map(|taps| {
                    let taps = taps.ok_or("resizing that extrapolates (tf_crop_and_resize)")?;
                    if p.mode == Mode::Nearest {
                        let best = taps
                            .iter()
                            .fold(None::<(usize, f64)>, |b, &(i, w)| match b {
                                Some((_, bw)) if bw >= w => b,
                                _ => Some((i, w)),
                            });
                        Ok(best.map(|(i, _)| vec![(i, 1.0)]).unwrap_or_default())
                    } else {
                        Ok(taps)
                    }
                })
                .collect::<Result<Vec<_>>>()
                .map(Some)
        })
        .collect()
}

fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    movement::check_len(x, "X")?;
    let legacy = ctx.op_type == "Upsample" || ctx.opset < 11;
    let p = params(ctx, legacy)?;
    let specs = axis_specs(ctx, &x.shape, &p, legacy)?;
    let extrapolation = ctx.float_attr("extrapolation_value", 0.0) as f64;
    let out_shape: Vec<usize> = specs.iter().map(|s| s.out_len).collect();
    if let Some(a) = specs.iter().position(|s| s.in_len == 0 && s.out_len > 0) {
        return Err(format!("cannot resize the empty axis {a}"));
    }
    if p.mode == Mode::Nearest {
        // Nearest picks elements: exact for every type.
        let st = strides(&x.shape);
        let tables: Vec<Vec<Option<usize>>> = specs
            .iter()
            .zip(&st)
            .map(|(s, &stride)| {
                if s.is_identity() {
                    return (0..s.in_len).map(|c| Some(c * stride)).collect();
                }
                axis_plan(&p, s)
                    .into_iter()
                    .map(|taps| {
                        let taps = taps?;
                        let best = taps
                            .iter()
                            .fold(None::<(usize, f64)>, |b, &(i, w)| match b {
                                Some((_, bw)) if bw >= w => b,
                                _ => Some((i, w)),
                            });
                        best.map(|(i, _)| i * stride)
                    })
                    .collect()
            })
            .collect();
        if let Some(out) = nearest_planes_f32(x, &tables) {
            return one(Tensor::new(out_shape, Data::F32(out)));
        }
        let fill = if tables.iter().any(|t| t.contains(&None)) {
            let e = Tensor::new(vec![1], Data::F64(vec![extrapolation]));
            Some(cast::cast(&e, x.dtype(), Default::default())?.data)
        } else {
            None
        };
        let out = movement::take_tables(&x.data, &tables, fill.as_ref())?;
        return one(Tensor::new(out_shape, out));
    }
    if matches!(x.data, Data::Str(_) | Data::Bool(_)) {
        return Err(format!(
            "{:?} resizing is not defined for {}",
            p.mode,
            x.dtype()
        ));
    }
    let mut data = cast::to_f64s(x)?;
    let mut shape = x.shape.clone();
    for (a, s) in specs.iter().enumerate() {
        if s.is_identity() {
            continue;
        }
        let plan = axis_plan(&p, s);
        data = interpolate_axis(&data, &shape, a, &plan, extrapolation);
        shape[a] = s.out_len;
    }
    one(cast::from_f64s_saturating(data, shape, x.dtype())?)
}

#[cfg(test)]
mod kernel_tests {
    use crate::ops::movement::testing::*;
    use kiln_ir::Attribute;

    fn scales(v: &[f32]) -> crate::value::Tensor {
        f32s(&[v.len()], v)
    }

    #[test]
    fn nearest_upsampling() {
        // YOLO-style: scale 2, asymmetric, floor.
        let x = iota(&[1, 1, 2, 2]);
        let a = [
            Attribute::string("mode", "nearest"),
            Attribute::string("coordinate_transformation_mode", "asymmetric"),
            Attribute::string("nearest_mode", "floor"),
        ];
        let ins = [Some(x.clone()), None, Some(scales(&[1., 1., 2., 2.]))];
        let y = run_opset("Resize", 13, &a, &ins, 1).unwrap().remove(0);
        assert_eq!(y.shape, vec![1, 1, 4, 4]);
        assert_eq!(
            vals(&y),
            vec![0., 0., 1., 1., 0., 0., 1., 1., 2., 2., 3., 3., 2., 2., 3., 3.]
        );
        // Default (half_pixel, round_prefer_floor) gives the same for scale 2.
        let y2 = run_opset("Resize", 19, &[], &ins, 1).unwrap().remove(0);
        assert_eq!(vals(&y2), vals(&y));
        // Upsample-9 and -7.
        let ins = [Some(x.clone()), Some(scales(&[1., 1., 2., 2.]))];
        let y3 = run_opset("Upsample", 9, &[], &ins, 1).unwrap().remove(0);
        assert_eq!(vals(&y3), vals(&y));
        let a = [Attribute::floats("scales", &[1., 1., 2., 2.])];
        let y4 = run_opset("Upsample", 7, &a, &[Some(x)], 1)
            .unwrap()
            .remove(0);
        assert_eq!(vals(&y4), vals(&y));
    }

    #[test]
    fn linear_and_sizes() {
        let x = f32s(&[1, 2], &[1., 3.]);
        let a = [Attribute::string("mode", "linear")];
        let ins = [Some(x.clone()), None, None, Some(i64s(&[2], &[1, 4]))];
        let y = run_opset("Resize", 19, &a, &ins, 1).unwrap().remove(0);
        // half_pixel: x = (y + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25 → clamped edges.
        assert_eq!(vals(&y), vec![1., 1.5, 2.5, 3.]);
        let a = [
            Attribute::string("mode", "linear"),
            Attribute::string("coordinate_transformation_mode", "align_corners"),
        ];
        let ins = [Some(x.clone()), None, None, Some(i64s(&[2], &[1, 3]))];
        let y = run_opset("Resize", 19, &a, &ins, 1).unwrap().remove(0);
        assert_eq!(vals(&y), vec![1., 2., 3.]);
        // Both scales and sizes, or neither, is an error.
        let ins = [
            Some(x.clone()),
            None,
            Some(scales(&[1., 2.])),
            Some(i64s(&[2], &[1, 4])),
        ];
        assert!(run_opset("Resize", 19, &a, &ins, 1).is_err());
        assert!(run_opset("Resize", 19, &a, &[Some(x)], 1).is_err());
    }

    #[test]
    fn tf_half_pixel_for_nn() {
        // Resize-11: x = (y + 0.5) / scale; with scale 0.5 → 1, 3 (round_prefer_floor).
        let x = f32s(&[1, 4], &[0., 1., 2., 3.]);
        let a = [
            Attribute::string("mode", "nearest"),
            Attribute::string("coordinate_transformation_mode", "tf_half_pixel_for_nn"),
        ];
        let ins = [Some(x), Some(f32s(&[0], &[])), Some(scales(&[1., 0.5]))];
        let y = run_opset("Resize", 11, &a, &ins, 1).unwrap().remove(0);
        assert_eq!(vals(&y), vec![1., 3.]);
    }
}
