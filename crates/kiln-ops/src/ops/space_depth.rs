//! DepthToSpace (DCR and CRD modes) and SpaceToDepth: a reshape to 6-D, a transpose, and a
//! reshape back.
use kiln_ir::Dim;

use crate::ctx::{InferCtx, Inferred};
use crate::kernel::{one, KernelCtx, KernelFn, Result};
use crate::ops::{movement, transpose};
use crate::value::{Tensor, Value};

/// `[N, C, H, W]` → `[N, C/b², H·b, W·b]` (DepthToSpace) or `[N, C·b², H/b, W/b]`.
pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let Some(s) = ctx.shape(0) else {
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None)]);
    };
    if s.len() != 4 {
        return Err(format!("input must be 4-D, got rank {}", s.len()));
    }
    let b = ctx.int_attr("blocksize", 0);
    if !(1..=crate::ctx::MAX_ATTR).contains(&b) {
        return Err(format!("blocksize {b} is not positive"));
    }
    let div = |d: &Dim, k: i64| -> Result<Dim> {
        match d.known() {
            Some(n) if n % k != 0 => Err(format!("dimension {n} is not divisible by {k}")),
            _ => Ok(d.floor_div(k)),
        }
    };
    let shape = if ctx.op_type == "DepthToSpace" {
        vec![
            s[0].clone(),
            div(&s[1], b * b)?,
            s[2].mul(&Dim::Known(b)),
            s[3].mul(&Dim::Known(b)),
        ]
    } else {
        vec![
            s[0].clone(),
            s[1].mul(&Dim::Known(b * b)),
            div(&s[2], b)?,
            div(&s[3], b)?,
        ]
    };
    Ok(vec![Inferred::tensor(ctx.dtype(0), Some(shape))])
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    match (domain, op_type) {
        ("", "DepthToSpace") => Some(run_depth_to_space),
        ("", "SpaceToDepth") => Some(run_space_to_depth),
        _ => None,
    }
}

fn dims<'a>(ctx: &KernelCtx<'a>) -> Result<(&'a Tensor, [usize; 4], usize, bool)> {
    let x = ctx.tensor(0)?;
    let &[n, c, h, w] = x.shape.as_slice() else {
        return Err(format!("input must be 4-D, got shape {:?}", x.shape));
    };
    let b = ctx.int_attr("blocksize", 0);
    if b < 1 {
        return Err(format!("blocksize {b} is not positive"));
    }
    let b = usize::try_from(b).map_err(|_| "blocksize is too large")?;
    let crd = match ctx.str_attr("mode").unwrap_or("DCR") {
        "DCR" => false,
        "CRD" => true,
        other => return Err(format!("unknown mode '{other}'")),
    };
    Ok((x, [n, c, h, w], b, crd))
}

fn run_depth_to_space(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (x, [n, c, h, w], b, crd) = dims(ctx)?;
    let bb = b.checked_mul(b).ok_or("blocksize is too large")?;
    if c % bb != 0 {
        return Err(format!("channels {c} are not divisible by blocksize² {bb}"));
    }
    let (tmp, perm) = if crd {
        (vec![n, c / bb, b, b, h, w], [0, 1, 4, 2, 5, 3])
    } else {
        (vec![n, b, b, c / bb, h, w], [0, 3, 4, 1, 5, 2])
    };
    let t = transpose::permute(&movement::reshaped(x, tmp), &perm)?;
    one(movement::reshaped(&t, vec![n, c / bb, h * b, w * b]))
}

fn run_space_to_depth(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (x, [n, c, h, w], b, crd) = dims(ctx)?;
    if h % b != 0 || w % b != 0 {
        return Err(format!(
            "spatial dims {h}x{w} are not divisible by blocksize {b}"
        ));
    }
    let c_out = b
        .checked_mul(b)
        .and_then(|bb| bb.checked_mul(c))
        .ok_or("blocksize is too large")?;
    if let Some(v) = x.as_slice::<f32>() {
        let out = space_to_depth_f32(v, [n, c, h, w], b, crd);
        return one(Tensor::from_vec(vec![n, c_out, h / b, w / b], out));
    }
    let tmp = vec![n, c, h / b, b, w / b, b];
    let perm = if crd {
        [0, 1, 3, 5, 2, 4]
    } else {
        [0, 3, 5, 1, 2, 4]
    };
    let t = transpose::permute(&movement::reshaped(x, tmp), &perm)?;
    one(movement::reshaped(&t, vec![n, c_out, h / b, w / b]))
}

/// SpaceToDepth of f32 data, one output row per step and rows spread over the threads: the
/// generic 6-D transpose gathered element by element on one thread (YOLOX's Focus block as
/// SpaceToDepth, 3x416x416: 1 ms).
fn space_to_depth_f32(x: &[f32], [n, c, h, w]: [usize; 4], b: usize, crd: bool) -> Vec<f32> {
    use rayon::prelude::*;
    let (oh, ow) = (h / b, w / b);
    let mut out = vec![0f32; n * c * b * b * oh * ow];
    if out.is_empty() {
        return out;
    }
    out.par_chunks_mut(ow).enumerate().for_each(|(i, row)| {
        let (r, co, img) = (i % oh, (i / oh) % (c * b * b), i / (oh * c * b * b));
        // The output channel names the input channel and the offset inside the block.
        let (ci, by, bx) = if crd {
            (co / (b * b), co / b % b, co % b)
        } else {
            (co % c, co / c / b, co / c % b)
        };
        let src = &x[((img * c + ci) * h + r * b + by) * w..][..w];
        for (o, v) in row.iter_mut().enumerate() {
            *v = src[o * b + bx];
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use crate::ops::movement::testing::*;
    use kiln_ir::Attribute;

    #[test]
    fn round_trips() {
        let x = iota(&[1, 8, 2, 3]);
        for mode in ["DCR", "CRD"] {
            let a = [
                Attribute::int("blocksize", 2),
                Attribute::string("mode", mode),
            ];
            let y = run("DepthToSpace", &a, &[x.clone()]).unwrap();
            assert_eq!(y.shape, vec![1, 2, 4, 6]);
            let z = run("SpaceToDepth", &a, &[y]).unwrap();
            assert_eq!(vals(&z), vals(&x), "{mode}");
        }
        // DCR: out[0][0][0][1] comes from channel 1 (the second column of the block).
        let a = [Attribute::int("blocksize", 2)];
        let y = run("DepthToSpace", &a, &[x.clone()]).unwrap();
        assert_eq!(vals(&y)[..2], [0.0, 12.0]);
        // The f32 rows against the generic transpose (taken for f64), both modes.
        let x = iota(&[2, 3, 6, 4]);
        for mode in ["DCR", "CRD"] {
            let a = [
                Attribute::int("blocksize", 2),
                Attribute::string("mode", mode),
            ];
            let fast = run("SpaceToDepth", &a, &[x.clone()]).unwrap();
            let slow = run("SpaceToDepth", &a, &[widened(&x)]).unwrap();
            assert_eq!(fast.shape, slow.shape);
            assert_eq!(vals(&fast), narrowed(&slow), "{mode}");
        }
        let a = [Attribute::int("blocksize", 3)];
        assert!(run("DepthToSpace", &a, &[x.clone()]).is_err());
        assert!(run("SpaceToDepth", &a, &[x]).is_err());
    }
}
