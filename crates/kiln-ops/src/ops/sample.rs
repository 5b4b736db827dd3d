//! Sampling ops: GridSample (any number of spatial dims; nearest, linear and cubic modes;
//! zeros, border and reflection padding) and RoiAlign (avg and max). Computed in f64.
use crate::kernel::{one, strides, KernelCtx, KernelFn, Result};
use crate::ops::misc::data_from_f64;
use crate::ops::movement::{check_len, numel};
use crate::value::{Tensor, Value};

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    match (domain, op_type) {
        ("", "GridSample") => Some(grid_sample),
        ("", "RoiAlign") => Some(roi_align),
        _ => None,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Nearest,
    Linear,
    Cubic,
}

#[derive(Clone, Copy, PartialEq)]
enum Pad {
    Zeros,
    Border,
    Reflection,
}

/// Reflects `x` by the borders until it lies within `[lo, hi]`.
fn reflect(x: f64, lo: f64, hi: f64) -> f64 {
    let rng = hi - lo;
    if rng <= 0.0 {
        return lo;
    }
    if x < lo {
        let dx = lo - x;
        let n = (dx / rng).trunc();
        let r = dx - n * rng;
        if n as i64 % 2 == 0 {
            lo + r
        } else {
            hi - r
        }
    } else if x > hi {
        let dx = x - hi;
        let n = (dx / rng).trunc();
        let r = dx - n * rng;
        if n as i64 % 2 == 0 {
            hi - r
        } else {
            lo + r
        }
    } else {
        x
    }
}

fn cubic_coeffs(x: f64) -> [f64; 4] {
    let a = -0.75;
    let x = x.abs();
    let (x1, x2, x3) = (x + 1.0, 1.0 - x, 2.0 - x);
    [
        ((a * x1 - 5.0 * a) * x1 + 8.0 * a) * x1 - 4.0 * a,
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0,
        ((a + 2.0) * x2 - (a + 3.0)) * x2 * x2 + 1.0,
        ((a * x3 - 5.0 * a) * x3 + 8.0 * a) * x3 - 4.0 * a,
    ]
}

/// Per spatial dim: its size and the borders `[lo, hi]` of valid coordinates.
struct Dims {
    size: Vec<usize>,
    lo: Vec<f64>,
    hi: Vec<f64>,
    st: Vec<usize>,
}

/// The element at integer coordinates `idx` after padding, or None for a zero.
fn pixel(d: &Dims, idx: &[i64], pad: Pad) -> Option<usize> {
    let mut off = 0;
    for (k, &i) in idx.iter().enumerate() {
        let n = d.size[k] as i64;
        let j = match pad {
            Pad::Zeros => {
                if i < 0 || i >= n {
                    return None;
                }
                i
            }
            Pad::Border => i.clamp(0, n - 1),
            Pad::Reflection => (reflect(i as f64, d.lo[k], d.hi[k]) as i64).clamp(0, n - 1),
        };
        off += j as usize * d.st[k];
    }
    Some(off)
}

fn grid_sample(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (x, grid) = (ctx.tensor(0)?, ctx.tensor(1)?);
    check_len(x, "X")?;
    check_len(grid, "grid")?;
    let r = x.rank().saturating_sub(2);
    if x.rank() < 3
        || grid.rank() != x.rank()
        || grid.shape[0] != x.shape[0]
        || grid.shape[grid.rank() - 1] != r
    {
        return Err(format!(
            "X {:?} and grid {:?} do not match as [N, C, D...] and [N, O..., {r}]",
            x.shape, grid.shape
        ));
    }
    if !x.dtype().is_float() {
        return Err(format!("GridSample takes floats, got {}", x.dtype()));
    }
    let mode =
        match ctx
            .str_attr("mode")
            .unwrap_or(if ctx.opset < 20 { "bilinear" } else { "linear" })
        {
            "nearest" => Mode::Nearest,
            "bilinear" | "linear" => Mode::Linear,
            "bicubic" | "cubic" => Mode::Cubic,
            m => return Err(format!("unknown GridSample mode '{m}'")),
        };
    let pad = match ctx.str_attr("padding_mode").unwrap_or("zeros") {
        "zeros" => Pad::Zeros,
        "border" => Pad::Border,
        "reflection" => Pad::Reflection,
        m => return Err(format!("unknown padding_mode '{m}'")),
    };
    let align = ctx.int_attr("align_corners", 0) != 0;
    let (n, c) = (x.shape[0], x.shape[1]);
    let size = x.shape[2..].to_vec();
    let dims = Dims {
        lo: size
            .iter()
            .map(|_| if align { 0.0 } else { -0.5 })
            .collect(),
        hi: size
            .iter()
            .map(|&s| {
                if align {
                    s as f64 - 1.0
                } else {
                    s as f64 - 0.5
                }
            })
            .collect(),
        st: strides(&size),
        size,
    };
    let plane: usize = dims.size.iter().product();
    let outs: usize = grid.shape[1..grid.rank() - 1].iter().product();
    let mut shape = vec![n, c];
    shape.extend_from_slice(&grid.shape[1..grid.rank() - 1]);
    let total = numel(&shape)?;
    let xv = x.to_f64s()?;
    let gv = grid.to_f64s()?;
    let mut out = vec![0.0f64; total];
    let taps = match mode {
        Mode::Nearest => 1,
        Mode::Linear => 2,
        Mode::Cubic => 4,
    };
    let ncorners = (taps as usize).pow(r as u32);
    // Per output location: the plane offsets and weights of its taps.
    let mut taps_of: Vec<(Option<usize>, f64)> = Vec::with_capacity(ncorners);
    let mut coord = vec![0.0f64; r];
    let mut idx = vec![0i64; r];
    for b in 0..n {
        for o in 0..outs {
            let g = &gv[(b * outs + o) * r..(b * outs + o + 1) * r];
            for k in 0..r {
                // The grid lists x (the last dim) first.
                let v = g[r - 1 - k];
                let len = dims.size[k] as f64;
                let mut p = if align {
                    (v + 1.0) / 2.0 * (len - 1.0)
                } else {
                    ((v + 1.0) * len - 1.0) / 2.0
                };
                if mode == Mode::Nearest {
                    p = p.round_ties_even();
                }
                if p < dims.lo[k] || p > dims.hi[k] {
                    match pad {
                        Pad::Border => p = p.clamp(0.0, len - 1.0),
                        Pad::Reflection => p = reflect(p, dims.lo[k], dims.hi[k]),
                        Pad::Zeros => {}
                    }
                }
                coord[k] = p;
            }
            taps_of.clear();
            if mode == Mode::Nearest {
                for k in 0..r {
                    idx[k] = coord[k] as i64;
                }
                taps_of.push((pixel(&dims, &idx, pad), 1.0));
            } else {
                let base: Vec<i64> = coord.iter().map(|p| p.floor() as i64).collect();
                let w: Vec<Vec<f64>> = coord
                    .iter()
                    .zip(&base)
                    .map(|(p, &b0)| {
                        let f = p - b0 as f64;
                        if mode == Mode::Linear {
                            vec![1.0 - f, f]
                        } else {
                            cubic_coeffs(f).to_vec()
                        }
                    })
                    .collect();
                let first = if mode == Mode::Linear { 0 } else { -1 };
                for corner in 0..ncorners {
                    let mut rest = corner;
                    let mut wt = 1.0;
                    for k in (0..r).rev() {
                        let t = rest % taps;
                        rest /= taps;
                        idx[k] = base[k].saturating_add(first + t as i64);
                        wt *= w[k][t];
                    }
                    taps_of.push((pixel(&dims, &idx, pad), wt));
                }
            }
            for ch in 0..c {
                let src = &xv[(b * c + ch) * plane..(b * c + ch + 1) * plane];
                let v: f64 = taps_of
                    .iter()
                    .map(|&(p, w)| p.map_or(0.0, |p| w * src[p]))
                    .sum();
                out[(b * c + ch) * outs + o] = v;
            }
        }
    }
    one(Tensor::new(shape, data_from_f64(x.dtype(), &out)?))
}

/// One bilinear sample of RoiAlign: four plane offsets and weights (all zero outside).
fn roi_sample(h: usize, w: usize, mut y: f64, mut x: f64) -> [(usize, f64); 4] {
    let (hf, wf) = (h as f64, w as f64);
    if y < -1.0 || y > hf || x < -1.0 || x > wf {
        return [(0, 0.0); 4];
    }
    y = y.max(0.0);
    x = x.max(0.0);
    let (mut yl, mut xl) = (y as usize, x as usize);
    let yh = if yl >= h - 1 {
        yl = h - 1;
        y = yl as f64;
        yl
    } else {
        yl + 1
    };
    let xh = if xl >= w - 1 {
        xl = w - 1;
        x = xl as f64;
        xl
    } else {
        xl + 1
    };
    let (ly, lx) = (y - yl as f64, x - xl as f64);
    let (hy, hx) = (1.0 - ly, 1.0 - lx);
    [
        (yl * w + xl, hy * hx),
        (yl * w + xh, hy * lx),
        (yh * w + xl, ly * hx),
        (yh * w + xh, ly * lx),
    ]
}

fn roi_align(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (x, rois, bi) = (ctx.tensor(0)?, ctx.tensor(1)?, ctx.tensor(2)?);
    check_len(x, "X")?;
    check_len(rois, "rois")?;
    check_len(bi, "batch_indices")?;
    if x.rank() != 4 || rois.rank() != 2 || rois.shape[1] != 4 || bi.shape != [rois.shape[0]] {
        return Err(format!(
            "RoiAlign takes X [N, C, H, W], rois [R, 4], batch_indices [R]; got {:?}, {:?}, {:?}",
            x.shape, rois.shape, bi.shape
        ));
    }
    if !x.dtype().is_float() {
        return Err(format!("RoiAlign takes floats, got {}", x.dtype()));
    }
    let (c, h, w) = (x.shape[1], x.shape[2], x.shape[3]);
    let (ph, pw) = (
        ctx.int_attr("output_height", 1),
        ctx.int_attr("output_width", 1),
    );
    if ph < 1 || pw < 1 {
        return Err(format!("output size {ph}x{pw} must be positive"));
    }
    let (ph, pw) = (ph as usize, pw as usize);
    let ratio = ctx.int_attr("sampling_ratio", 0);
    let scale = ctx.float_attr("spatial_scale", 1.0) as f64;
    let max = match ctx.str_attr("mode").unwrap_or("avg") {
        "avg" => false,
        "max" => true,
        m => return Err(format!("unknown RoiAlign mode '{m}'")),
    };
    let default_ctm = if ctx.opset < 16 {
        "output_half_pixel"
    } else {
        "half_pixel"
    };
    let half = match ctx
        .str_attr("coordinate_transformation_mode")
        .unwrap_or(default_ctm)
    {
        "half_pixel" => true,
        "output_half_pixel" => false,
        m => return Err(format!("unknown coordinate_transformation_mode '{m}'")),
    };
    let xv = x.to_f64s()?;
    let rv = rois.to_f64s()?;
    let bv = bi.to_i64s()?;
    let nr = rois.shape[0];
    let shape = vec![nr, c, ph, pw];
    let mut out = vec![0.0f64; numel(&shape)?];
    if h == 0 || w == 0 {
        return Err("RoiAlign needs a non-empty feature map".into());
    }
    for r in 0..nr {
        let b = bv[r];
        if b < 0 || b as usize >= x.shape[0] {
            return Err(format!("batch index {b} is out of range"));
        }
        let off = if half { 0.5 } else { 0.0 };
        let roi = &rv[r * 4..r * 4 + 4];
        let (sw, sh) = (roi[0] * scale - off, roi[1] * scale - off);
        let (ew, eh) = (roi[2] * scale - off, roi[3] * scale - off);
        let (mut rw, mut rh) = (ew - sw, eh - sh);
        if !half {
            rw = rw.max(1.0);
            rh = rh.max(1.0);
        }
        let (bh, bw) = (rh / ph as f64, rw / pw as f64);
        let gh = if ratio > 0 {
            ratio as usize
        } else {
            (rh / ph as f64).ceil().max(0.0) as usize
        };
        let gw = if ratio > 0 {
            ratio as usize
        } else {
            (rw / pw as f64).ceil().max(0.0) as usize
        };
        let count = (gh * gw).max(1) as f64;
        for ch in 0..c {
            let plane = &xv[(b as usize * c + ch) * h * w..(b as usize * c + ch + 1) * h * w];
            for py in 0..ph {
                for px in 0..pw {
                    let mut acc: Option<f64> = None;
                    let mut sum = 0.0;
                    for iy in 0..gh {
                        let y = sh + py as f64 * bh + (iy as f64 + 0.5) * bh / gh as f64;
                        for ix in 0..gw {
                            let xx = sw + px as f64 * bw + (ix as f64 + 0.5) * bw / gw as f64;
                            let s = roi_sample(h, w, y, xx);
                            if max {
                                let v = s
                                    .iter()
                                    .map(|&(p, wt)| wt * plane[p])
                                    .fold(f64::NEG_INFINITY, f64::max);
                                acc = Some(acc.map_or(v, |a| a.max(v)));
                            } else {
                                sum += s.iter().map(|&(p, wt)| wt * plane[p]).sum::<f64>();
                            }
                        }
                    }
                    out[((r * c + ch) * ph + py) * pw + px] =
                        if max { acc.unwrap_or(0.0) } else { sum / count };
                }
            }
        }
    }
    one(Tensor::new(shape, data_from_f64(x.dtype(), &out)?))
}

#[cfg(test)]
mod tests {
    use crate::ops::movement::testing::{f32s, i64s, iota, run, vals};
    use kiln_ir::Attribute;

    #[test]
    fn grid_sample_modes() {
        let x = iota(&[1, 1, 2, 2]);
        // Corners with align_corners, and the center.
        let g = f32s(&[1, 1, 3, 2], &[-1.0, -1.0, 1.0, 1.0, 0.0, 0.0]);
        let al = [Attribute::int("align_corners", 1)];
        let r = run("GridSample", &al, &[x.clone(), g.clone()]).unwrap();
        assert_eq!(r.shape, vec![1, 1, 1, 3]);
        assert_eq!(vals(&r), vec![0.0, 3.0, 1.5]);
        // Without align_corners the corners lie half a pixel outside: zeros padding keeps a quarter.
        let r = run("GridSample", &[], &[x.clone(), g.clone()]).unwrap();
        assert_eq!(vals(&r), vec![0.0, 0.75, 1.5]);
        let r = run(
            "GridSample",
            &[Attribute::string("padding_mode", "border")],
            &[x.clone(), g.clone()],
        )
        .unwrap();
        assert_eq!(vals(&r), vec![0.0, 3.0, 1.5]);
        // Nearest rounds half to even: 1.5 -> 2 (outside: zero, or the border pixel).
        let r = run(
            "GridSample",
            &[Attribute::string("mode", "nearest")],
            &[x.clone(), g.clone()],
        )
        .unwrap();
        assert_eq!(vals(&r), vec![0.0, 0.0, 0.0]);
        let nb = [
            Attribute::string("mode", "nearest"),
            Attribute::string("padding_mode", "border"),
        ];
        let r = run("GridSample", &nb, &[x, g]).unwrap();
        assert_eq!(vals(&r), vec![0.0, 3.0, 0.0]);
    }

    #[test]
    fn roi_align_avg() {
        let x = iota(&[1, 1, 4, 4]);
        let rois = f32s(&[1, 4], &[0.0, 0.0, 3.0, 3.0]);
        let attrs = [
            Attribute::int("output_height", 1),
            Attribute::int("output_width", 1),
            Attribute::int("sampling_ratio", 1),
            Attribute::string("coordinate_transformation_mode", "output_half_pixel"),
        ];
        let r = run("RoiAlign", &attrs, &[x, rois, i64s(&[1], &[0])]).unwrap();
        // One sample at (1.5, 1.5): the mean of 5, 6, 9, 10.
        assert_eq!(vals(&r), vec![7.5]);
    }
}
