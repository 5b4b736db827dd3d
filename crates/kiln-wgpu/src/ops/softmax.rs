//! Softmax and LogSoftmax: along one axis from opset 13, over the flattened trailing dims
//! before it (ONNX's old 2-D coercion). Short rows take a thread each; long rows two passes
//! (segment statistics by workgroup trees, then one thread per element).
use kiln_ir::AttrList;

use super::reduce::{wg_grid, SEG, SHORT};
use super::{flat_groups, u, Bind, Dispatch, Lowered, NodeIo, OpInfo};
use crate::device::Kernel;

pub fn info(op: &str) -> Option<OpInfo> {
    match op {
        "Softmax" | "LogSoftmax" => Some(OpInfo {
            opsets: (1, 24),
            params: &[],
            constant_params: &[],
            check: super::no_check,
            lower,
        }),
        _ => None,
    }
}

fn lower(io: &NodeIo) -> Result<Lowered, String> {
    let x = io.shape(0)?;
    let r = x.len() as i64;
    let default = if io.opset >= 13 { -1 } else { 1 };
    let axis = io.attrs.get_int("axis").unwrap_or(default);
    let axis = if axis < 0 { axis + r } else { axis };
    if axis < 0 || axis >= r.max(1) {
        return Err(format!("axis {axis} out of range for rank {r}"));
    }
    let axis = axis as usize;
    let total: usize = x.iter().product();
    let (len, inner) = if io.opset >= 13 {
        (
            x.get(axis).copied().unwrap_or(1),
            x[axis + 1..].iter().product(),
        )
    } else {
        (x[axis..].iter().product(), 1)
    };
    if total == 0 {
        return Ok(Lowered::Run(vec![]));
    }
    let rows = total / len;
    let log = (io.op == "LogSoftmax") as u32;
    if len <= SHORT {
        return Ok(Lowered::Run(vec![Dispatch {
            kernel: Kernel::Softmax,
            params: vec![
                u(rows, "rows")?,
                u(len, "row length")?,
                u(inner, "stride")?,
                log,
            ],
            binds: vec![Bind::In(0), Bind::Out(0)],
            groups: flat_groups(rows)?,
        }]));
    }
    // Long rows: a workgroup per (row, segment) finds each segment's maximum and sum of
    // exponentials, then one thread per element combines its row's segments and writes.
    let segs = len.div_ceil(SEG);
    let stats = Bind::Temp {
        id: 0,
        floats: 2 * rows * segs,
    };
    let p = |n: usize| -> Result<Vec<u32>, String> {
        Ok(vec![
            u(n, "rows")?,
            u(len, "row length")?,
            u(inner, "stride")?,
            log,
            u(SEG, "segment")?,
            u(segs, "segments")?,
        ])
    };
    Ok(Lowered::Run(vec![
        Dispatch {
            kernel: Kernel::SoftmaxStats,
            params: p(rows)?,
            binds: vec![Bind::In(0), stats.clone()],
            groups: wg_grid(rows * segs)?,
        },
        Dispatch {
            kernel: Kernel::SoftmaxApply,
            params: p(total)?,
            binds: vec![Bind::In(0), stats, Bind::Out(0)],
            groups: flat_groups(total)?,
        },
    ]))
}
