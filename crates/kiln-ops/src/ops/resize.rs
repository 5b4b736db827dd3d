//! Resize and Upsample: output sizes from `sizes`, or `floor(dim * scale)` from `scales`
//! (symbolic when the scale is a whole number or its inverse is).
use kiln_ir::Dim;

use crate::ctx::{InferCtx, Inferred, Result};

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
    let _ = (domain, op_type);
    None
}
