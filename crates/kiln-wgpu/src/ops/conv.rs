//! Conv, com.microsoft:FusedConv (bias `B`, residual `Z`, ORT's activations) and kiln's own
//! SiLU FusedConv, 2-D: a tiled implicit GEMM per (image, group) with the epilogue fused, or
//! one output per thread for depthwise and narrow groups.
use kiln_ir::AttrList;

use super::{act_code, flat_groups, u, Bind, CheckCtx, Dispatch, Lowered, NodeIo, OpInfo};
use crate::device::Kernel;

pub fn info(op: &str) -> Option<OpInfo> {
    let (opsets, check): (_, super::CheckFn) = match op {
        "Conv" => ((1, 24), check_conv),
        "FusedConv" => ((1, 1), check_fused),
        _ => return None,
    };
    Some(OpInfo::plain(opsets, check, lower))
}

pub fn info_kiln() -> Option<OpInfo> {
    Some(OpInfo {
        opsets: (1, 1),
        params: &[],
        constant_params: &[],
        check: check_kiln,
        lower,
    })
}

fn check_conv(c: &CheckCtx) -> Result<(), String> {
    super::spatial_2d(c, "convolution")?;
    if c.ranks.get(1).copied().flatten() != Some(4) {
        return Err("weights of rank other than 4".into());
    }
    Ok(())
}

fn check_fused(c: &CheckCtx) -> Result<(), String> {
    if !c.fused_conv {
        return Err("FusedConv claiming is off (fused_conv=off)".into());
    }
    kiln_ops::Act::fused_conv(c.attrs)?;
    // ORT's activations without parameters take none; more would be a malformed node.
    let name = c.attrs.get_str("activation").unwrap_or("Identity");
    let n = c
        .attrs
        .get_floats("activation_params")
        .map_or(0, |p| p.len());
    if matches!(name, "Identity" | "Relu" | "Sigmoid" | "Tanh") && n != 0 {
        return Err(format!(
            "activation {name} needs 0 activation_params, got {n}"
        ));
    }
    check_conv(c)
}

fn check_kiln(c: &CheckCtx) -> Result<(), String> {
    if !c.fused_conv {
        return Err("FusedConv claiming is off (fused_conv=off)".into());
    }
    match c.attrs.get_str("activation") {
        Some("SiLU") => check_conv(c),
        other => Err(format!("ai.kiln:FusedConv with activation {other:?}")),
    }
}

/// Padding before each spatial dim, and after, for a window over `input` giving `output`.
pub fn pads(
    attrs: &[kiln_ir::Attribute],
    input: &[usize],
    output: &[usize],
    kernel: &[usize],
    strides: &[usize],
    dilations: &[usize],
) -> Result<(Vec<usize>, Vec<usize>), String> {
    let n = input.len();
    let auto = attrs.get_str("auto_pad").unwrap_or("NOTSET");
    match auto {
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut begin = Vec::with_capacity(n);
            let mut end = Vec::with_capacity(n);
            for d in 0..n {
                let need = (output[d].saturating_sub(1)) * strides[d]
                    + (kernel[d].saturating_sub(1)) * dilations[d]
                    + 1;
                let total = need.saturating_sub(input[d]);
                let b = if auto == "SAME_UPPER" {
                    total / 2
                } else {
                    total - total / 2
                };
                begin.push(b);
                end.push(total - b);
            }
            Ok((begin, end))
        }
        "VALID" => Ok((vec![0; n], vec![0; n])),
        "NOTSET" | "" => {
            let p = attrs.get_ints("pads").unwrap_or(&[]);
            if p.is_empty() {
                return Ok((vec![0; n], vec![0; n]));
            }
            if p.len() != 2 * n || p.iter().any(|&x| x < 0) {
                return Err(format!("pads {p:?} for {n} spatial dims"));
            }
            Ok((
                p[..n].iter().map(|&x| x as usize).collect(),
                p[n..].iter().map(|&x| x as usize).collect(),
            ))
        }
        other => Err(format!("auto_pad '{other}'")),
    }
}

/// An integer list attribute of `n` values, `fill` when absent.
pub fn ints(
    attrs: &[kiln_ir::Attribute],
    name: &str,
    fill: usize,
    n: usize,
) -> Result<Vec<usize>, String> {
    match attrs.get_ints(name) {
        None => Ok(vec![fill; n]),
        Some(v) if v.len() == n && v.iter().all(|&x| x >= 1) => {
            Ok(v.iter().map(|&x| x as usize).collect())
        }
        Some(v) => Err(format!("{name} {v:?} for {n} spatial dims")),
    }
}

fn lower(io: &NodeIo) -> Result<Lowered, String> {
    let x = io.shape(0)?;
    let w = io.shape(1)?;
    let y = &io.outs[0];
    if x.len() != 4 || w.len() != 4 || y.len() != 4 {
        return Err("only 2-D convolutions".into());
    }
    let group = io.attrs.get_int("group").unwrap_or(1).max(1) as usize;
    let strides = ints(io.attrs, "strides", 1, 2)?;
    let dil = ints(io.attrs, "dilations", 1, 2)?;
    let (begin, _) = pads(io.attrs, &x[2..], &y[2..], &w[2..], &strides, &dil)?;
    let act = match (io.op, io.attrs.get_str("activation")) {
        ("FusedConv", Some("SiLU")) => {
            kiln_ops::Act::Silu(io.attrs.get_float("alpha").unwrap_or(1.0))
        }
        ("FusedConv", _) => kiln_ops::Act::fused_conv(io.attrs)?,
        _ => kiln_ops::Act::Identity,
    };
    let (code, a, b) = act_code(act);
    let has_bias = io.has(2);
    let has_z = io.op == "FusedConv" && io.has(3);
    let (n, c, m) = (x[0], x[1], y[1]);
    if c % group != 0 || m % group != 0 || w[1] * group != c {
        return Err(format!(
            "group {group} does not divide {c} input and {m} output channels"
        ));
    }
    let mg = m / group;
    let total: usize = y.iter().product();
    let mut p = Vec::with_capacity(22);
    for (v, what) in [
        (n, "batch"),
        (c, "channels"),
        (x[2], "height"),
        (x[3], "width"),
        (m, "output channels"),
        (y[2], "output height"),
        (y[3], "output width"),
        (w[2], "kernel height"),
        (w[3], "kernel width"),
        (strides[0], "stride"),
        (strides[1], "stride"),
        (begin[0], "pad"),
        (begin[1], "pad"),
        (dil[0], "dilation"),
        (dil[1], "dilation"),
        (group, "group"),
    ] {
        p.push(u(v, what)?);
    }
    p.extend([
        has_bias as u32,
        has_z as u32,
        code,
        a.to_bits(),
        b.to_bits(),
        u(total, "outputs")?,
    ]);
    let binds = vec![
        Bind::In(0),
        Bind::In(1),
        if has_bias { Bind::In(2) } else { Bind::Dummy },
        if has_z { Bind::In(3) } else { Bind::Dummy },
        Bind::Out(0),
    ];
    let layers = n * group;
    let k = w[1] * w[2] * w[3];
    // One output per thread loops over all of C/group x KH x KW: only where that stays short
    // (depthwise, narrow groups); otherwise the tile kernel, whose K runs in parts.
    let direct = (mg < 16 || layers > 65535) && k <= 1024;
    if direct {
        return Ok(Lowered::Run(vec![Dispatch {
            kernel: Kernel::ConvDirect,
            params: p,
            binds,
            groups: flat_groups(total)?,
        }]));
    }
    if layers > 65535 {
        return Err(format!(
            "{layers} (image, group) pairs with {k} products per output (the tile kernel takes at most 65535 pairs)"
        ));
    }
    let d = Dispatch {
        kernel: Kernel::Conv,
        params: p,
        binds,
        groups: [
            u((y[2] * y[3]).div_ceil(64), "column tiles")?,
            u(mg.div_ceil(64), "row tiles")?,
            layers as u32,
        ],
    };
    Ok(Lowered::Run(super::split_k(d, k)?))
}
