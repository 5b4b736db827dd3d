//! Spatial ops that move or scatter elements by position: CenterCropPad, Col2Im, MaxUnpool and
//! NonMaxSuppression.
use crate::kernel::{one, strides, KernelCtx, KernelFn, Result};
use crate::ops::misc::data_from_f64;
use crate::ops::movement::{check_len, dims_of, norm_axes, numel, take_from};
use crate::value::{Data, Tensor, Value};

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    if !domain.is_empty() {
        return None;
    }
    Some(match op_type {
        "CenterCropPad" => center_crop_pad,
        "Col2Im" => col2im,
        "MaxUnpool" => max_unpool,
        "NonMaxSuppression" => nms,
        _ => return None,
    })
}

/// Row-major coordinates of flat index `f` in `shape` (with its strides `st`).
fn coords(f: usize, shape: &[usize], st: &[usize], out: &mut [usize]) {
    for d in 0..shape.len() {
        out[d] = (f / st[d]) % shape[d];
    }
}

fn center_crop_pad(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (x, shape_t) = (ctx.tensor(0)?, ctx.tensor(1)?);
    check_len(x, "input")?;
    let r = x.rank();
    let axes = match ctx.ints_attr("axes") {
        Some(a) => norm_axes(a, r)?,
        None => (0..r).collect(),
    };
    let want = dims_of(&shape_t.to_i64s()?, "shape")?;
    if want.len() != axes.len() {
        return Err(format!(
            "shape has {} entries for {} axes",
            want.len(),
            axes.len()
        ));
    }
    let mut out_shape = x.shape.clone();
    // Per dim: the signed offset from output to input coordinates.
    let mut shift = vec![0i64; r];
    for (&a, &s) in axes.iter().zip(&want) {
        let d = x.shape[a];
        out_shape[a] = s;
        shift[a] = if s <= d {
            ((d - s) / 2) as i64
        } else {
            -(((s - d) / 2) as i64)
        };
    }
    let n = numel(&out_shape)?;
    let (ost, ist) = (strides(&out_shape), strides(&x.shape));
    let mut c = vec![0usize; r];
    let idx: Vec<(usize, usize)> = (0..n)
        .map(|f| {
            coords(f, &out_shape, &ost, &mut c);
            let mut src = 0usize;
            for d in 0..r {
                let i = c[d] as i64 + shift[d];
                if i < 0 || i >= x.shape[d] as i64 {
                    return (1, 0);
                }
                src += i as usize * ist[d];
            }
            (0, src)
        })
        .collect();
    let zero = Data::zeros(x.dtype(), 1)?;
    one(Tensor::new(out_shape, take_from(&[&x.data, &zero], &idx)?))
}

fn col2im(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    check_len(x, "input")?;
    let image = dims_of(&ctx.tensor(1)?.to_i64s()?, "image_shape")?;
    let block = dims_of(&ctx.tensor(2)?.to_i64s()?, "block_shape")?;
    let nd = image.len();
    if block.len() != nd || x.rank() != 3 || !x.dtype().is_float() {
        return Err(format!("Col2Im takes float input [N, C*prod(block), L] and matching image/block shapes; got {} {:?}, {image:?}, {block:?}", x.dtype(), x.shape));
    }
    let dil = ctx.ints_or("dilations", 1, nd);
    let pads = ctx.ints_or("pads", 0, 2 * nd);
    let st = ctx.ints_or("strides", 1, nd);
    if dil.len() != nd
        || st.len() != nd
        || pads.len() != 2 * nd
        || dil.iter().chain(&st).any(|&v| v < 1)
        || pads.iter().any(|&p| p < 0)
    {
        return Err(
            "dilations, strides and pads must match the image rank (positive; pads non-negative)"
                .into(),
        );
    }
    let k: usize = block.iter().product();
    if k == 0 || x.shape[1] % k != 0 {
        return Err(format!(
            "input dim 1 ({}) is not a multiple of the block size {k}",
            x.shape[1]
        ));
    }
    let (n, c, l) = (x.shape[0], x.shape[1] / k, x.shape[2]);
    let mut nb = Vec::with_capacity(nd);
    for i in 0..nd {
        let span = dil[i] * (block[i] as i64 - 1) + 1;
        let v = (image[i] as i64 + pads[i] + pads[i + nd] - span) / st[i] + 1;
        if v < 1 {
            return Err(format!("no sliding block fits spatial dim {i}"));
        }
        nb.push(v as usize);
    }
    if nb.iter().product::<usize>() != l {
        return Err(format!("input has {l} blocks; the geometry gives {nb:?}"));
    }
    let mut shape = vec![n, c];
    shape.extend(&image);
    let plane: usize = image.iter().product();
    let mut out = vec![0.0f64; numel(&shape)?];
    let v = x.to_f64s()?;
    let (kst, bst, ist) = (strides(&block), strides(&nb), strides(&image));
    let (mut kc, mut bc) = (vec![0; nd], vec![0; nd]);
    for ki in 0..k {
        coords(ki, &block, &kst, &mut kc);
        'blocks: for bi in 0..l {
            coords(bi, &nb, &bst, &mut bc);
            let mut p = 0usize;
            for d in 0..nd {
                let i = bc[d] as i64 * st[d] - pads[d] + kc[d] as i64 * dil[d];
                if i < 0 || i >= image[d] as i64 {
                    continue 'blocks;
                }
                p += i as usize * ist[d];
            }
            for b in 0..n {
                for ch in 0..c {
                    out[(b * c + ch) * plane + p] += v[(b * c * k + ch * k + ki) * l + bi];
                }
            }
        }
    }
    one(Tensor::new(shape, data_from_f64(x.dtype(), &out)?))
}

fn max_unpool(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (x, ind) = (ctx.tensor(0)?, ctx.tensor(1)?);
    let total = check_len(x, "X")?;
    if ind.shape != x.shape || x.rank() < 3 {
        return Err(format!(
            "X {:?} and I {:?} must have one shape of rank >= 3",
            x.shape, ind.shape
        ));
    }
    let nd = x.rank() - 2;
    let ks = ctx
        .ints_attr("kernel_shape")
        .ok_or("MaxUnpool needs kernel_shape")?;
    let st = ctx.ints_or("strides", 1, nd);
    let pads = ctx.ints_or("pads", 0, 2 * nd);
    if ks.len() != nd || st.len() != nd || pads.len() != 2 * nd {
        return Err("kernel_shape, strides and pads must match the spatial rank".into());
    }
    let mut inferred = x.shape[..2].to_vec();
    for d in 0..nd {
        let v = (x.shape[d + 2] as i64 - 1) * st[d] - (pads[d] + pads[d + nd]) + ks[d];
        if v < 0 {
            return Err(format!("spatial dim {d} of the output would be negative"));
        }
        inferred.push(v as usize);
    }
    let shape = match ctx.opt_tensor(2)? {
        Some(t) => dims_of(&t.to_i64s()?, "output_shape")?,
        None => inferred.clone(),
    };
    if shape.len() != inferred.len() || shape.iter().zip(&inferred).any(|(a, b)| a < b) {
        return Err(format!(
            "output_shape {shape:?} is smaller than the unpooled shape {inferred:?}"
        ));
    }
    // Indices address the unpooled (inferred) tensor, which then sits at the origin of the output.
    let ni = numel(&inferred)?;
    let mut src = vec![None; ni];
    for (e, &i) in ind.to_i64s()?.iter().enumerate().take(total) {
        if i < 0 || i as usize >= ni {
            return Err(format!(
                "index {i} is out of range for {ni} output elements"
            ));
        }
        src[i as usize] = Some(e);
    }
    let n = numel(&shape)?;
    let (ost, ist) = (strides(&shape), strides(&inferred));
    let mut c = vec![0usize; shape.len()];
    let idx: Vec<(usize, usize)> = (0..n)
        .map(|f| {
            coords(f, &shape, &ost, &mut c);
            if c.iter().zip(&inferred).any(|(a, b)| a >= b) {
                return (1, 0);
            }
            let p: usize = c.iter().zip(&ist).map(|(a, s)| a * s).sum();
            src[p].map_or((1, 0), |e| (0, e))
        })
        .collect();
    let zero = Data::zeros(x.dtype(), 1)?;
    one(Tensor::new(shape, take_from(&[&x.data, &zero], &idx)?))
}

/// Whether two boxes overlap by more than `thr` (intersection over union).
fn suppress(a: &[f64], b: &[f64], center: bool, thr: f64) -> bool {
    let corners = |v: &[f64]| -> (f64, f64, f64, f64) {
        if center {
            (
                v[0] - v[2] / 2.0,
                v[0] + v[2] / 2.0,
                v[1] - v[3] / 2.0,
                v[1] + v[3] / 2.0,
            )
        } else {
            (
                v[1].min(v[3]),
                v[1].max(v[3]),
                v[0].min(v[2]),
                v[0].max(v[2]),
            )
        }
    };
    let (ax0, ax1, ay0, ay1) = corners(a);
    let (bx0, bx1, by0, by1) = corners(b);
    let (ix0, ix1) = (ax0.max(bx0), ax1.min(bx1));
    let (iy0, iy1) = (ay0.max(by0), ay1.min(by1));
    if ix1 <= ix0 || iy1 <= iy0 {
        return false;
    }
    let inter = (ix1 - ix0) * (iy1 - iy0);
    let area_a = (ax1 - ax0) * (ay1 - ay0);
    let area_b = (bx1 - bx0) * (by1 - by0);
    let union = area_a + area_b - inter;
    if inter <= 0.0 || area_a <= 0.0 || area_b <= 0.0 || union <= 0.0 {
        return false;
    }
    inter / union > thr
}

fn nms(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (boxes, scores) = (ctx.tensor(0)?, ctx.tensor(1)?);
    check_len(boxes, "boxes")?;
    check_len(scores, "scores")?;
    if boxes.rank() != 3
        || boxes.shape[2] != 4
        || scores.rank() != 3
        || scores.shape[0] != boxes.shape[0]
        || scores.shape[2] != boxes.shape[1]
    {
        return Err(format!(
            "boxes {:?} and scores {:?} must be [B, N, 4] and [B, C, N]",
            boxes.shape, scores.shape
        ));
    }
    let first = |i: usize| -> Result<Option<f64>> {
        Ok(match ctx.opt_tensor(i)? {
            Some(t) if !t.is_empty() => Some(t.to_f64s()?[0]),
            _ => None,
        })
    };
    let max_out = first(2)?.unwrap_or(0.0).max(0.0) as usize;
    let iou = first(3)?.unwrap_or(0.0);
    let score_thr = first(4)?;
    let center = ctx.int_attr("center_point_box", 0) != 0;
    let (nb, nc, n) = (scores.shape[0], scores.shape[1], boxes.shape[1]);
    let bv = boxes.to_f64s()?;
    let sv = scores.to_f64s()?;
    let mut sel: Vec<i64> = Vec::new();
    for b in 0..nb {
        let bx = |i: usize| &bv[(b * n + i) * 4..(b * n + i) * 4 + 4];
        for c in 0..nc {
            let s = &sv[(b * nc + c) * n..(b * nc + c + 1) * n];
            let mut cand: Vec<usize> = (0..n)
                .filter(|&i| score_thr.is_none_or(|t| s[i] > t))
                .collect();
            // Highest score first; equal scores by lower box index.
            cand.sort_by(|&i, &j| {
                s[j].partial_cmp(&s[i])
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then(i.cmp(&j))
            });
            let mut kept: Vec<usize> = Vec::new();
            for i in cand {
                if kept.len() >= max_out {
                    break;
                }
                if kept.iter().all(|&k| !suppress(bx(i), bx(k), center, iou)) {
                    kept.push(i);
                    sel.extend([b as i64, c as i64, i as i64]);
                }
            }
        }
    }
    let k = sel.len() / 3;
    one(Tensor::from_vec(vec![k, 3], sel))
}

#[cfg(test)]
mod tests {
    use crate::ops::movement::testing::{f32s, i64s, iota, run, vals};
    use kiln_ir::Attribute;

    #[test]
    fn crop_and_pad() {
        let x = iota(&[3, 4]);
        // Rows cropped 3 -> 1 (the middle), columns padded 4 -> 6 (one zero each side).
        let r = run("CenterCropPad", &[], &[x, i64s(&[2], &[1, 6])]).unwrap();
        assert_eq!(
            (r.shape.clone(), vals(&r)),
            (vec![1, 6], vec![0.0, 4.0, 5.0, 6.0, 7.0, 0.0])
        );
    }

    #[test]
    fn col2im_sums_overlaps() {
        // One channel, 1x3 image, 1x2 blocks: two blocks overlap in the middle pixel.
        let x = f32s(&[1, 2, 2], &[1.0, 2.0, 10.0, 20.0]);
        let r = run(
            "Col2Im",
            &[],
            &[x, i64s(&[2], &[1, 3]), i64s(&[2], &[1, 2])],
        )
        .unwrap();
        assert_eq!(
            (r.shape.clone(), vals(&r)),
            (vec![1, 1, 1, 3], vec![1.0, 12.0, 20.0])
        );
    }

    #[test]
    fn unpool_and_nms() {
        let x = f32s(&[1, 1, 1, 2], &[5.0, 6.0]);
        let ks = [
            Attribute::ints("kernel_shape", &[2, 2]),
            Attribute::ints("strides", &[2, 2]),
        ];
        let r = run("MaxUnpool", &ks, &[x, i64s(&[1, 1, 1, 2], &[1, 6])]).unwrap();
        assert_eq!(
            (r.shape.clone(), vals(&r)),
            (
                vec![1, 1, 2, 4],
                vec![0.0, 5.0, 0.0, 0.0, 0.0, 0.0, 6.0, 0.0]
            )
        );
        let boxes = f32s(
            &[1, 3, 4],
            &[0.0, 0.0, 1.0, 1.0, 0.0, 0.1, 1.0, 1.1, 0.0, 2.0, 1.0, 3.0],
        );
        let scores = f32s(&[1, 1, 3], &[0.9, 0.95, 0.5]);
        let r = run(
            "NonMaxSuppression",
            &[],
            &[boxes, scores, i64s(&[1], &[3]), f32s(&[1], &[0.5])],
        )
        .unwrap();
        assert_eq!(r.to_i64s().unwrap(), vec![0, 0, 1, 0, 0, 2]);
    }
}
