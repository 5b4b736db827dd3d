//! MaxPool and AveragePool (2-D: pads, auto_pad, strides, dilations, ceil_mode through the
//! inferred output size, count_include_pad), and the global pools on the reduction kernel.
use kiln_ir::AttrList;

use super::conv::{ints, pads};
use super::reduce::{reduce_dispatch, wg_grid};
use super::{flat_groups, u, Bind, CheckCtx, Dispatch, Lowered, NodeIo, OpInfo};
use crate::device::Kernel;

pub fn info(op: &str) -> Option<OpInfo> {
    let (opsets, check, lower): (_, super::CheckFn, super::LowerFn) = match op {
        "MaxPool" => ((1, 22), check_pool, pool),
        "AveragePool" => ((1, 22), check_pool, pool),
        "GlobalAveragePool" | "GlobalMaxPool" => ((1, 22), check_global, global),
        _ => return None,
    };
    Some(OpInfo::plain(opsets, check, lower))
}

fn check_pool(c: &CheckCtx) -> Result<(), String> {
    super::spatial_2d(c, "pooling")
}

fn check_global(c: &CheckCtx) -> Result<(), String> {
    match c.ranks.first().copied().flatten() {
        Some(r) if r >= 2 => Ok(()),
        _ => Err("input rank unknown or below 2".into()),
    }
}

fn pool(io: &NodeIo) -> Result<Lowered, String> {
    let x = io.shape(0)?;
    let y = &io.outs[0];
    if x.len() != 4 || y.len() != 4 {
        return Err(format!(
            "a {}-D pool (the GPU kernel is 2-D)",
            x.len().saturating_sub(2)
        ));
    }
    if io.outs.len() > 1 {
        return Err("MaxPool's Indices output".into());
    }
    let kernel = ints(io.attrs, "kernel_shape", 1, 2)?;
    let strides = ints(io.attrs, "strides", 1, 2)?;
    let dil = ints(io.attrs, "dilations", 1, 2)?;
    let (begin, end) = pads(io.attrs, &x[2..], &y[2..], &kernel, &strides, &dil)?;
    let mode = if io.op == "MaxPool" {
        0
    } else if io.attrs.get_int("count_include_pad").unwrap_or(0) != 0 {
        2
    } else {
        1
    };
    let n: usize = y.iter().product();
    let mut p = vec![u(n, "outputs")?];
    for v in [
        x[2], x[3], y[2], y[3], kernel[0], kernel[1], strides[0], strides[1], begin[0], begin[1],
        dil[0], dil[1],
    ] {
        p.push(u(v, "a pooling size")?);
    }
    p.extend([mode, u(end[0], "pad")?, u(end[1], "pad")?]);
    // A window of more taps than a workgroup has threads takes a workgroup per output.
    let wide = kernel[0] * kernel[1] > 256;
    Ok(Lowered::Run(vec![Dispatch {
        kernel: if wide { Kernel::PoolWg } else { Kernel::Pool },
        params: p,
        binds: vec![Bind::In(0), Bind::Out(0)],
        groups: if wide { wg_grid(n)? } else { flat_groups(n)? },
    }]))
}

fn global(io: &NodeIo) -> Result<Lowered, String> {
    let x = io.shape(0)?;
    let planes = x[0] * x[1];
    let area: usize = x[2..].iter().product();
    let op = if io.op == "GlobalMaxPool" { 2 } else { 1 };
    Ok(Lowered::Run(reduce_dispatch(
        op,
        &[planes],
        &[area],
        &[area],
        &[1],
    )?))
}
