//! Resize (nearest and linear) of the two trailing axes of NCHW tensors, from tap tables the
//! CPU kernel's own coordinate rules produce, so the GPU picks the same pixels.
use kiln_ir::AttrList;

use super::{flat_groups, u, Bind, CheckCtx, Dispatch, Lowered, NodeIo, OpInfo};
use crate::device::Kernel;

pub fn info(op: &str) -> Option<OpInfo> {
    match op {
        "Resize" => Some(OpInfo {
            opsets: (10, 24),
            params: &[1, 2, 3],
            constant_params: &[1, 2],
            check,
            lower,
        }),
        _ => None,
    }
}

fn check(c: &CheckCtx) -> Result<(), String> {
    match c.attrs.get_str("mode").unwrap_or("nearest") {
        "nearest" | "linear" => {}
        other => return Err(format!("Resize mode '{other}'")),
    }
    if c.attrs.get_int("antialias").unwrap_or(0) != 0 {
        return Err("antialiased Resize".into());
    }
    if c.attrs.get_str("coordinate_transformation_mode") == Some("tf_crop_and_resize") {
        return Err("tf_crop_and_resize".into());
    }
    if c.ranks.first().copied().flatten() != Some(4) {
        return Err("Resize of a tensor not of rank 4".into());
    }
    // Constant scales tell already whether N or C would be resized (the kernel moves pixels
    // within a plane only); sizes need the input's shape, checked by the dry lowering.
    let scales = c.constants.get(2).copied().flatten();
    if let Some(s) = scales.and_then(|t| t.to_f64_vec()) {
        if s.len() == 4 && (s[0] != 1.0 || s[1] != 1.0) {
            return Err(format!(
                "Resize of the batch or channel axis (scales {s:?})"
            ));
        }
    }
    Ok(())
}

fn lower(io: &NodeIo) -> Result<Lowered, String> {
    let x = io.shape(0)?;
    let y = &io.outs[0];
    // The CPU kernel's parameter reading wants values: give it the host-known inputs.
    let holders: Vec<Option<kiln_ops::Value>> = io
        .ins
        .iter()
        .map(|i| {
            i.as_ref()
                .and_then(|i| i.host.map(|t| kiln_ops::Value::Tensor(t.clone())))
        })
        .collect();
    let ctx = kiln_ops::KernelCtx {
        op_type: io.op,
        domain: "",
        opset: io.opset,
        attrs: io.attrs,
        inputs: holders.iter().map(|h| h.as_ref()).collect(),
        num_outputs: 1,
        subgraphs: None,
        donated: Default::default(),
    };
    let taps = kiln_ops::resize_taps(&ctx, x)?;
    if taps[0].is_some() || taps[1].is_some() {
        return Err("Resize of the batch or channel axis".into());
    }
    let table = |a: usize| -> Vec<Vec<(usize, f64)>> {
        taps[a]
            .clone()
            .unwrap_or_else(|| (0..x[a]).map(|i| vec![(i, 1.0)]).collect())
    };
    let (th, tw) = (table(2), table(3));
    if th.len() != y[2] || tw.len() != y[3] {
        return Err("Resize tables disagree with the inferred output size".into());
    }
    let width = |t: &[Vec<(usize, f64)>]| t.iter().map(|v| v.len()).max().unwrap_or(1).max(1);
    let (nh, nw) = (width(&th), width(&tw));
    let n: usize = y.iter().product();
    let mut p = vec![
        u(n, "outputs")?,
        u(x[2], "height")?,
        u(x[3], "width")?,
        u(y[2], "height")?,
        u(y[3], "width")?,
        nh as u32,
        nw as u32,
    ];
    for (t, k) in [(&th, nh), (&tw, nw)] {
        for taps in t {
            for j in 0..k {
                // Rows with fewer taps are padded with weight 0.
                let (i, w) = taps.get(j).copied().unwrap_or((0, 0.0));
                p.push(u(i, "index")?);
                p.push((w as f32).to_bits());
            }
        }
    }
    Ok(Lowered::Run(vec![Dispatch {
        kernel: Kernel::Resize,
        params: p,
        binds: vec![Bind::In(0), Bind::Out(0)],
        groups: flat_groups(n)?,
    }]))
}
