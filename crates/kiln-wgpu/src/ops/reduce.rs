//! ReduceMean / Sum / Max / Min / SumSquare over any axes (attribute or input), one output
//! per thread walking its reduced elements.
use kiln_ir::AttrList;

use super::{flat_groups, merge_dims, six, strides, u, Bind, Dispatch, Lowered, NodeIo, OpInfo};
use crate::device::Kernel;

fn code(op: &str) -> Option<u32> {
    Some(match op {
        "ReduceSum" => 0,
        "ReduceMean" => 1,
        "ReduceMax" => 2,
        "ReduceMin" => 3,
        "ReduceSumSquare" => 4,
        _ => return None,
    })
}

pub fn info(op: &str) -> Option<OpInfo> {
    code(op)?;
    Some(OpInfo {
        opsets: (1, 24),
        params: &[1],
        constant_params: &[],
        check: super::no_check,
        lower,
    })
}

/// A reduction: outputs over `out_dims` (input strides `out_strides`), each reducing the
/// elements over `red_dims` (input strides `red_strides`).
pub fn reduce_dispatch(
    op: u32,
    out_dims: &[usize],
    out_strides: &[usize],
    red_dims: &[usize],
    red_strides: &[usize],
) -> Result<Dispatch, String> {
    let (od, os) = merge_dims(out_dims, &[strides(out_dims), out_strides.to_vec()])?;
    let (rd, rs) = merge_dims(red_dims, &[strides(red_dims), red_strides.to_vec()])?;
    let n: usize = out_dims.iter().product();
    let count: usize = red_dims.iter().product();
    let mut p = vec![
        u(n, "outputs")?,
        op,
        od.len() as u32,
        rd.len() as u32,
        u(count, "reduced elements")?,
    ];
    p.extend(six(&od)?);
    p.extend(six(&os[1])?);
    p.extend(six(&rd)?);
    p.extend(six(&rs[1])?);
    Ok(Dispatch {
        kernel: Kernel::Reduce,
        params: p,
        binds: vec![Bind::In(0), Bind::Out(0)],
        groups: flat_groups(n)?,
    })
}

fn lower(io: &NodeIo) -> Result<Lowered, String> {
    let x = io.shape(0)?;
    let r = x.len();
    let from_input = io.has(1);
    let axes = if from_input {
        io.ints(1)?.unwrap_or_default()
    } else {
        io.attrs
            .get_ints("axes")
            .map(|a| a.to_vec())
            .unwrap_or_default()
    };
    if axes.is_empty() && io.attrs.get_int("noop_with_empty_axes").unwrap_or(0) != 0 {
        return Ok(Lowered::Alias);
    }
    let mut reduced = vec![axes.is_empty(); r];
    for a in axes {
        let a = if a < 0 { a + r as i64 } else { a };
        if a < 0 || a >= r as i64 {
            return Err(format!("axis {a} out of range for rank {r}"));
        }
        reduced[a as usize] = true;
    }
    let st = strides(x);
    let (mut od, mut os, mut rd, mut rs) = (vec![], vec![], vec![], vec![]);
    for d in 0..r {
        if reduced[d] {
            rd.push(x[d]);
            rs.push(st[d]);
        } else {
            od.push(x[d]);
            os.push(st[d]);
        }
    }
    let op = code(io.op).ok_or_else(|| format!("no reduction {}", io.op))?;
    Ok(Lowered::Run(vec![reduce_dispatch(op, &od, &os, &rd, &rs)?]))
}
