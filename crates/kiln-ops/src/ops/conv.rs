//! Conv (and com.microsoft FusedConv, which has Conv's shapes) and ConvTranspose, with the
//! spatial output size rule shared with pooling.
use kiln_ir::Dim;

use crate::ctx::{small, InferCtx, Inferred, Result};

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
fn kernel_of(ctx: &InferCtx, w: &[Dim]) -> Option<Vec<i64>> {
    match ctx.ints_attr("kernel_shape") {
        Some(k) => Some(k.to_vec()),
        None => w[2..].iter().map(|d| d.known()).collect(),
    }
}

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let (Some(x), Some(w)) = (ctx.shape(0), ctx.shape(1)) else {
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None)]);
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
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None)]);
    };
    let mut shape = vec![x[0].clone(), w[0].clone()];
    shape.extend(window_output(ctx, &x[2..], &kernel, false)?);
    Ok(vec![Inferred::tensor(ctx.dtype(0), Some(shape))])
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
    let _ = (domain, op_type);
    None
}
