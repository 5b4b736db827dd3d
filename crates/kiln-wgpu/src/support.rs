//! Which nodes the GPU claims, and for every other node the reason: no kernel for the op, an
//! opset outside the kernel's range, a type other than float32, a parameter input that is
//! not a constant, a tensor larger than one storage binding, or the op's own limits.
use kiln_ir::{DataType, Dim, Model, Node};

use crate::ops::{op_info, CheckCtx};

pub fn domain_of(node: &Node) -> &str {
    if node.domain == "ai.onnx" {
        ""
    } else {
        &node.domain
    }
}

fn bytes_if_known(shape: Option<&[Dim]>) -> Option<u64> {
    let mut n: u64 = 4;
    for d in shape? {
        n = n.saturating_mul(d.known()?.max(0) as u64);
    }
    Some(n)
}

/// Why the GPU cannot run `node`, if it cannot.
pub fn check(model: &Model, node: &Node, max_binding: u64, fused_conv: bool) -> Result<(), String> {
    let g = &model.graph;
    let domain = domain_of(node);
    let info = op_info(domain, &node.op_type)
        .ok_or_else(|| format!("the wgpu provider has no kernel for {}", node.op_key()))?;
    if node.subgraphs().next().is_some() {
        return Err("nodes with subgraphs run on the CPU".into());
    }
    let opset = model.opset(domain).unwrap_or(1);
    let (lo, hi) = info.opsets;
    if opset < lo || opset > hi {
        return Err(format!(
            "opset {opset} is outside the GPU kernel's range {lo}..={hi}"
        ));
    }
    let mut ranks = Vec::with_capacity(node.inputs().len());
    let mut constants = Vec::with_capacity(node.inputs().len());
    for (i, inp) in node.inputs().iter().enumerate() {
        let Some(v) = inp else {
            ranks.push(None);
            constants.push(None);
            continue;
        };
        let val = g.value(*v);
        let ty = val.ty.as_ref().or(val.declared.as_ref());
        let shape = ty.and_then(|t| t.shape());
        ranks.push(shape.map(|s| s.len()));
        constants.push(val.initializer.as_deref());
        let dtype = ty.and_then(|t| t.dtype());
        if info.params.contains(&i) {
            let constant = val.initializer.is_some();
            if info.constant_params.contains(&i) && !constant {
                return Err(format!(
                    "input {i} ('{}') must be a constant for the GPU kernel",
                    val.name
                ));
            }
            // Parameters are read on the host; a float one could come from the GPU itself.
            if dtype == Some(DataType::F32) && !constant {
                return Err(format!(
                    "input {i} ('{}') is a float parameter that is not a constant",
                    val.name
                ));
            }
            continue;
        }
        match dtype {
            Some(DataType::F32) => {}
            Some(d) => {
                return Err(format!(
                    "input {i} ('{}') is {d}: the wgpu provider runs float32 only",
                    val.name
                ))
            }
            None => return Err(format!("input {i} ('{}') has an unknown type", val.name)),
        }
        if let Some(b) = bytes_if_known(shape) {
            if b > max_binding {
                return Err(format!(
                    "input {i} ('{}') is {b} bytes, over the device's storage binding limit of {max_binding}",
                    val.name
                ));
            }
        }
    }
    for (i, out) in node.outputs().iter().enumerate() {
        let Some(v) = out else { continue };
        let val = g.value(*v);
        let ty = val.ty.as_ref().or(val.declared.as_ref());
        match ty.and_then(|t| t.dtype()) {
            Some(DataType::F32) => {}
            Some(d) => {
                return Err(format!(
                    "output {i} ('{}') is {d}: the wgpu provider runs float32 only",
                    val.name
                ))
            }
            None => return Err(format!("output {i} ('{}') has an unknown type", val.name)),
        }
        if let Some(b) = bytes_if_known(ty.and_then(|t| t.shape())) {
            if b > max_binding {
                return Err(format!(
                    "output {i} ('{}') is {b} bytes, over the device's storage binding limit of {max_binding}",
                    val.name
                ));
            }
        }
    }
    (info.check)(&CheckCtx {
        op: &node.op_type,
        opset,
        attrs: &node.attrs,
        ranks,
        constants,
        fused_conv,
    })?;
    dry_run(model, node, &info)
}

/// Lowers the node once with its inferred shapes when they are all known and every host-side
/// parameter is a constant, so that whatever the lowering refuses (a limit of a kernel, an
/// attribute it does not implement) is declined here with the same reason, not at the first
/// run. Nodes with symbolic shapes are claimed on condition: if their lowering fails for the
/// shapes a run brings, the runtime runs the partition on the CPU for those shapes instead.
fn dry_run(model: &Model, node: &Node, info: &crate::ops::OpInfo) -> Result<(), String> {
    let g = &model.graph;
    let known = |v: kiln_ir::ValueId| -> Option<Vec<usize>> {
        let val = g.value(v);
        let ty = val.ty.as_ref().or(val.declared.as_ref())?;
        ty.shape()?
            .iter()
            .map(|d| d.known().and_then(|k| usize::try_from(k).ok()))
            .collect()
    };
    let mut hosts: Vec<Option<kiln_ops::Tensor>> = Vec::with_capacity(node.inputs().len());
    let mut shapes = Vec::with_capacity(node.inputs().len());
    for (i, inp) in node.inputs().iter().enumerate() {
        let Some(v) = inp else {
            hosts.push(None);
            shapes.push(None);
            continue;
        };
        let init = g.value(*v).initializer.as_deref();
        if info.params.contains(&i) && init.is_none() {
            return Ok(()); // computed at run time: checked when lowered
        }
        let Some(shape) = known(*v) else {
            return Ok(());
        };
        hosts.push(
            init.filter(|_| info.params.contains(&i))
                .map(kiln_ops::Tensor::from_ir),
        );
        shapes.push(Some(shape));
    }
    let mut outs = Vec::with_capacity(node.outputs().len());
    for out in node.outputs() {
        match out {
            Some(v) => match known(*v) {
                Some(s) => outs.push(s),
                None => return Ok(()),
            },
            None => outs.push(Vec::new()),
        }
    }
    let io = crate::ops::NodeIo {
        op: &node.op_type,
        opset: model.opset(domain_of(node)).unwrap_or(1),
        attrs: &node.attrs,
        ins: shapes
            .into_iter()
            .zip(&hosts)
            .map(|(s, h)| {
                s.map(|shape| crate::ops::In {
                    shape,
                    host: h.as_ref(),
                })
            })
            .collect(),
        outs,
    };
    // A lowering indexes shapes it expects; shapes declared by the model rather than inferred
    // may break that expectation, and that must be a decline, never a panic at session time.
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (info.lower)(&io))) {
        Ok(r) => r.map(|_| ()),
        Err(_) => Err("the GPU lowering cannot take this node's shapes".into()),
    }
}
