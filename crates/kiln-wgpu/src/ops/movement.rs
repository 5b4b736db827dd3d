//! Data movement: the reshapes (an alias of the input's buffer, no copy), and Transpose,
//! Slice, Concat, Split, Expand, SpaceToDepth, DepthToSpace and Pad, each one or more strided
//! copies (Pad: a fill, then the interior).
use kiln_ir::AttrList;

use super::eltwise::broadcast_strides;
use super::{
    flat_groups, merge_dims, no_check, six, strides, u, Bind, CheckCtx, Dispatch, Lowered, NodeIo,
    OpInfo,
};
use crate::device::Kernel;

pub fn info(op: &str) -> Option<OpInfo> {
    let alias = |params: &'static [usize]| OpInfo {
        opsets: (1, 24),
        params,
        constant_params: &[],
        check: no_check,
        lower: |_| Ok(Lowered::Alias),
    };
    let copy = |params: &'static [usize], lower: super::LowerFn| OpInfo {
        opsets: (1, 24),
        params,
        constant_params: &[],
        check: no_check,
        lower,
    };
    Some(match op {
        "Reshape" | "Squeeze" | "Unsqueeze" => alias(&[1]),
        "Flatten" => alias(&[]),
        "Transpose" => copy(&[], transpose),
        "Slice" => copy(&[1, 2, 3, 4], slice),
        "Concat" => copy(&[], concat),
        "Split" => copy(&[1], split),
        "Expand" => copy(&[1], expand),
        "SpaceToDepth" | "DepthToSpace" => OpInfo {
            check: rank4,
            ..copy(&[], space_depth)
        },
        "Pad" => OpInfo {
            opsets: (2, 24),
            params: &[1, 2, 3],
            constant_params: &[2],
            check: pad_check,
            lower: pad,
        },
        _ => return None,
    })
}

fn rank4(c: &CheckCtx) -> Result<(), String> {
    match c.ranks.first().copied().flatten() {
        Some(4) => Ok(()),
        _ => Err(format!("{} of a tensor not of rank 4", c.op)),
    }
}

fn pad_check(c: &CheckCtx) -> Result<(), String> {
    match c.attrs.get_str("mode").unwrap_or("constant") {
        "constant" => Ok(()),
        other => Err(format!("Pad mode '{other}'")),
    }
}

/// A strided copy: `dims` walked with `src` strides from `src_base` and `dst` strides from
/// `dst_base` (strides may be negative; the kernel's u32 arithmetic wraps).
pub fn copy_dispatch(
    dims: &[usize],
    src: &[i64],
    dst: &[i64],
    src_base: usize,
    dst_base: usize,
    from: Bind,
    to: Bind,
) -> Result<Option<Dispatch>, String> {
    let n: usize = dims.iter().product();
    if n == 0 {
        return Ok(None);
    }
    // merge_dims works on unsigned strides; wrapping keeps negative ones exact.
    let w = |s: &[i64]| s.iter().map(|&x| x as u32 as usize).collect::<Vec<_>>();
    let contiguous = strides(dims);
    let (md, ms) = merge_dims(dims, &[contiguous, w(src), w(dst)])?;
    let mut p = vec![
        u(n, "elements")?,
        md.len() as u32,
        u(src_base, "offset")?,
        u(dst_base, "offset")?,
    ];
    p.extend(six(&md)?);
    p.extend(six(&ms[1])?);
    p.extend(six(&ms[2])?);
    Ok(Some(Dispatch {
        kernel: Kernel::Copy,
        params: p,
        binds: vec![from, to],
        groups: flat_groups(n)?,
    }))
}

fn signed(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&x| x as i64).collect()
}

fn run(ds: Vec<Option<Dispatch>>) -> Lowered {
    Lowered::Run(ds.into_iter().flatten().collect())
}

fn transpose(io: &NodeIo) -> Result<Lowered, String> {
    let x = io.shape(0)?;
    let r = x.len();
    let perm: Vec<usize> = match io.attrs.get_ints("perm") {
        Some(p) => p.iter().map(|&a| a as usize).collect(),
        None => (0..r).rev().collect(),
    };
    if perm.len() != r || perm.iter().any(|&a| a >= r) {
        return Err(format!("perm {perm:?} for rank {r}"));
    }
    let st = strides(x);
    let y = &io.outs[0];
    let src: Vec<i64> = perm.iter().map(|&a| st[a] as i64).collect();
    Ok(run(vec![copy_dispatch(
        y,
        &src,
        &signed(&strides(y)),
        0,
        0,
        Bind::In(0),
        Bind::Out(0),
    )?]))
}

fn slice(io: &NodeIo) -> Result<Lowered, String> {
    let x = io.shape(0)?;
    let y = &io.outs[0];
    let r = x.len();
    let (starts, ends, axes, steps) = if io.opset < 10 {
        let g = |n: &str| io.attrs.get_ints(n).map(|v| v.to_vec());
        (
            g("starts").unwrap_or_default(),
            g("ends").unwrap_or_default(),
            g("axes"),
            None,
        )
    } else {
        (
            io.ints(1)?.unwrap_or_default(),
            io.ints(2)?.unwrap_or_default(),
            io.ints(3)?,
            io.ints(4)?,
        )
    };
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err("starts, ends, axes and steps of different lengths".into());
    }
    let mut begin = vec![0i64; r];
    let mut step = vec![1i64; r];
    for i in 0..starts.len() {
        let a = if axes[i] < 0 {
            axes[i] + r as i64
        } else {
            axes[i]
        };
        if a < 0 || a >= r as i64 {
            return Err(format!("axis {} out of range", axes[i]));
        }
        let a = a as usize;
        let d = x[a] as i64;
        let s = steps[i];
        if s == 0 {
            return Err("a step of 0".into());
        }
        let mut st = starts[i];
        if st < 0 {
            st += d;
        }
        st = if s > 0 {
            st.clamp(0, d)
        } else {
            st.clamp(0, d - 1)
        };
        begin[a] = st;
        step[a] = s;
    }
    let xs = strides(x);
    let base: i64 = (0..r).map(|d| begin[d] * xs[d] as i64).sum();
    if y.iter().product::<usize>() == 0 {
        return Ok(Lowered::Run(vec![]));
    }
    let src: Vec<i64> = (0..r).map(|d| step[d] * xs[d] as i64).collect();
    Ok(run(vec![copy_dispatch(
        y,
        &src,
        &signed(&strides(y)),
        base as usize,
        0,
        Bind::In(0),
        Bind::Out(0),
    )?]))
}

fn axis_of(io: &NodeIo, r: usize, default: i64) -> Result<usize, String> {
    let a = io.attrs.get_int("axis").unwrap_or(default);
    let a = if a < 0 { a + r as i64 } else { a };
    if a < 0 || a >= r as i64 {
        return Err(format!("axis {a} out of range for rank {r}"));
    }
    Ok(a as usize)
}

fn concat(io: &NodeIo) -> Result<Lowered, String> {
    let y = &io.outs[0];
    let axis = axis_of(io, y.len(), 1)?;
    let ys = strides(y);
    let mut off = 0usize;
    let mut ds = Vec::new();
    for i in 0..io.ins.len() {
        if !io.has(i) {
            continue;
        }
        let x = io.shape(i)?;
        ds.push(copy_dispatch(
            x,
            &signed(&strides(x)),
            &signed(&ys),
            0,
            off * ys[axis],
            Bind::In(i),
            Bind::Out(0),
        )?);
        off += x[axis];
    }
    Ok(run(ds))
}

fn split(io: &NodeIo) -> Result<Lowered, String> {
    let x = io.shape(0)?;
    let axis = axis_of(io, x.len(), 0)?;
    let xs = strides(x);
    let mut off = 0usize;
    let mut ds = Vec::new();
    for (j, y) in io.outs.iter().enumerate() {
        ds.push(copy_dispatch(
            y,
            &signed(&xs),
            &signed(&strides(y)),
            off * xs[axis],
            0,
            Bind::In(0),
            Bind::Out(j),
        )?);
        off += y[axis];
    }
    if off != x[axis] {
        return Err(format!("outputs cover {off} of axis {axis}'s {}", x[axis]));
    }
    Ok(run(ds))
}

fn expand(io: &NodeIo) -> Result<Lowered, String> {
    let y = &io.outs[0];
    let src = broadcast_strides(io.shape(0)?, y);
    Ok(run(vec![copy_dispatch(
        y,
        &signed(&src),
        &signed(&strides(y)),
        0,
        0,
        Bind::In(0),
        Bind::Out(0),
    )?]))
}

fn space_depth(io: &NodeIo) -> Result<Lowered, String> {
    let x = io.shape(0)?;
    let b = io.attrs.get_int("blocksize").unwrap_or(0);
    if b < 1 {
        return Err(format!("blocksize {b}"));
    }
    let b = b as usize;
    let (n, c, h, w) = (x[0], x[1], x[2], x[3]);
    let (dims, src) = if io.op == "SpaceToDepth" {
        // Output [N, C*b*b, H/b, W/b] viewed as [N, bh, bw, C, H/b, W/b].
        (
            vec![n, b, b, c, h / b, w / b],
            vec![c * h * w, w, 1, h * w, b * w, b],
        )
    } else {
        let c2 = c / (b * b);
        // Output [N, C/(b*b), H*b, W*b] viewed as [N, C', H, bh, W, bw].
        let dcr = io.attrs.get_str("mode").unwrap_or("DCR") == "DCR";
        let hw = h * w;
        let (sc, sbh, sbw) = if dcr {
            (hw, b * c2 * hw, c2 * hw)
        } else {
            (b * b * hw, b * hw, hw)
        };
        (vec![n, c2, h, b, w, b], vec![c * hw, sc, w, sbh, 1, sbw])
    };
    Ok(run(vec![copy_dispatch(
        &dims,
        &signed(&src),
        &signed(&strides(&dims)),
        0,
        0,
        Bind::In(0),
        Bind::Out(0),
    )?]))
}

fn pad(io: &NodeIo) -> Result<Lowered, String> {
    let x = io.shape(0)?;
    let y = &io.outs[0];
    let r = x.len();
    let (pads, value) = if io.opset < 11 {
        (
            io.attrs
                .get_ints("pads")
                .map(|v| v.to_vec())
                .unwrap_or_default(),
            io.attrs.get_float("value").unwrap_or(0.0),
        )
    } else {
        let v = io
            .floats(2)?
            .and_then(|v| v.first().copied())
            .unwrap_or(0.0) as f32;
        (io.ints(1)?.unwrap_or_default(), v)
    };
    let axes: Vec<usize> = match io.ints(3)? {
        Some(a) => a
            .iter()
            .map(|&a| {
                if a < 0 {
                    (a + r as i64) as usize
                } else {
                    a as usize
                }
            })
            .collect(),
        None => (0..r).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(format!("{} pads for {} axes", pads.len(), axes.len()));
    }
    let mut before = vec![0i64; r];
    for (i, &a) in axes.iter().enumerate() {
        if a >= r {
            return Err(format!("axis {a} out of range"));
        }
        before[a] = pads[i];
    }
    let n: usize = y.iter().product();
    let fill = Dispatch {
        kernel: Kernel::Fill,
        params: vec![u(n, "elements")?, value.to_bits()],
        binds: vec![Bind::Out(0)],
        groups: flat_groups(n)?,
    };
    let xs = strides(x);
    let ys = strides(y);
    let (mut dims, mut sb, mut db) = (Vec::with_capacity(r), 0usize, 0usize);
    for d in 0..r {
        let skip_in = (-before[d]).max(0) as usize;
        let skip_out = before[d].max(0) as usize;
        let len = x[d]
            .saturating_sub(skip_in)
            .min(y[d].saturating_sub(skip_out));
        dims.push(len);
        sb += skip_in * xs[d];
        db += skip_out * ys[d];
    }
    let mut ds = vec![Some(fill)];
    ds.push(copy_dispatch(
        &dims,
        &signed(&xs),
        &signed(&ys),
        sb,
        db,
        Bind::In(0),
        Bind::Out(0),
    )?);
    Ok(run(ds))
}
