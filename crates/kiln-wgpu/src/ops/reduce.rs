//! ReduceMean / Sum / Max / Min / SumSquare over any axes (attribute or input): one output per
//! thread for short reductions, workgroup trees over segments (and again over their partials)
//! for long ones.
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

/// Elements one workgroup of the long-reduction kernel takes: 256 threads × 256 steps each.
pub const SEG: usize = 256 * 256;
/// Reductions at most this long run one output per thread (at most this many steps each).
pub const SHORT: usize = 256;

/// Workgroups of 256 for `total` items of a workgroup kernel, on a 2-D grid.
pub fn wg_grid(total: usize) -> Result<[u32; 3], String> {
    let x = total.clamp(1, 65535);
    let y = total.div_ceil(x);
    if y > 65535 {
        return Err(format!(
            "{total} workgroups are more than one launch can cover"
        ));
    }
    Ok([x as u32, y as u32, 1])
}

/// A reduction: outputs over `out_dims` (input strides `out_strides`), each reducing the
/// elements over `red_dims` (input strides `red_strides`) of the buffer `src`, into output 0.
/// Short reductions take one thread per output; long ones a workgroup per segment of
/// [`SEG`] elements, then again over the per-segment partials (node temporaries 0 and 1)
/// until one value per output remains.
pub fn reduce_dispatch(
    op: u32,
    out_dims: &[usize],
    out_strides: &[usize],
    red_dims: &[usize],
    red_strides: &[usize],
) -> Result<Vec<Dispatch>, String> {
    let (od, os) = merge_dims(out_dims, &[strides(out_dims), out_strides.to_vec()])?;
    let (rd, rs) = merge_dims(red_dims, &[strides(red_dims), red_strides.to_vec()])?;
    let n: usize = out_dims.iter().product();
    let count: usize = red_dims.iter().product();
    let head = |op: u32, od: &[usize], os: &[usize], rd: &[usize], rs: &[usize], count: usize| {
        let mut p = vec![
            u(n, "outputs")?,
            op,
            od.len() as u32,
            rd.len() as u32,
            u(count, "reduced elements")?,
        ];
        p.extend(six(od)?);
        p.extend(six(os)?);
        p.extend(six(rd)?);
        p.extend(six(rs)?);
        Ok::<_, String>(p)
    };
    if count <= SHORT {
        return Ok(vec![Dispatch {
            kernel: Kernel::Reduce,
            params: head(op, &od, &os[1], &rd, &rs[1], count)?,
            binds: vec![Bind::In(0), Bind::Out(0)],
            groups: flat_groups(n)?,
        }]);
    }
    // Mean is a sum scaled at the end; partials of any sum are summed.
    let first = if op == 1 { 0 } else { op };
    let again = if matches!(op, 2 | 3) { op } else { 0 };
    let scale = if op == 1 { 1.0 / count as f32 } else { 1.0 };
    let mut out = Vec::new();
    let (mut src, mut len) = (Bind::In(0), count);
    let (mut od, mut os, mut rd, mut rs) = (od, os[1].clone(), rd, rs[1].clone());
    let mut pass_op = first;
    loop {
        let segs = len.div_ceil(SEG);
        let last = segs == 1;
        let dst = if last {
            Bind::Out(0)
        } else {
            Bind::Temp {
                id: out.len() % 2,
                floats: n * segs,
            }
        };
        let mut p = head(pass_op, &od, &os, &rd, &rs, len)?;
        p.extend([
            u(SEG, "segment")?,
            u(segs, "segments")?,
            if last {
                scale.to_bits()
            } else {
                1f32.to_bits()
            },
        ]);
        out.push(Dispatch {
            kernel: Kernel::ReduceWg,
            params: p,
            binds: vec![src, dst.clone()],
            groups: wg_grid(n * segs)?,
        });
        if last {
            return Ok(out);
        }
        // The partials: one row of `segs` per output.
        (src, len, pass_op) = (dst, segs, again);
        (od, os, rd, rs) = (vec![n], vec![segs], vec![segs], vec![1]);
    }
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
    Ok(Lowered::Run(reduce_dispatch(op, &od, &os, &rd, &rs)?))
}
