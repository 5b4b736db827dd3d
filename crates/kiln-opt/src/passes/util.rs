//! Small pieces the fusion passes share: provider checks, constant lookups, activation
//! descriptions as ONNX Runtime writes them, and replacing a chain of nodes by one.
use kiln_ir::{AttrList, DataType, Graph, IrError, Model, Node, NodeId, Tensor, ValueId};

use crate::fusion::Decline;
use crate::passes::const_fold::is_constant;
use crate::PassCtx;

/// Every node must be assigned to one of `allowed` (the pass's providers).
/// The providers whose kernels run what the Conv fusions write (FusedConv with and without
/// `Z`, kiln's SiLU FusedConv).
pub const CONV_FUSION_PROVIDERS: &[&str] = &["cpu", "wgpu"];

/// All of `nodes` run on one provider, and it is one of `allowed`.
pub fn assigned_to(ctx: &PassCtx, nodes: &[NodeId], allowed: &[&str]) -> Result<(), Decline> {
    let mut first: Option<String> = None;
    for &n in nodes {
        let p = (ctx.provider_of)(n);
        if let (Some(f), Some(p)) = (&first, &p) {
            if f != p {
                return Err(Decline::because(format!(
                    "{} runs on provider {p}, the rest of the pattern on {f}",
                    ctx.model.graph.describe(n)
                )));
            }
        }
        if first.is_none() {
            first = p.clone();
        }
        match p {
            Some(p) if allowed.contains(&p.as_str()) => {}
            Some(p) => {
                return Err(Decline::because(format!(
                    "{} runs on provider {p}, which the pass is not valid for",
                    ctx.model.graph.describe(n)
                )))
            }
            None => {
                return Err(Decline::because(format!(
                    "{} is not assigned to a provider",
                    ctx.model.graph.describe(n)
                )))
            }
        }
    }
    Ok(())
}

/// The elements of a constant input as f64.
pub fn const_values(model: &Model, v: ValueId) -> Option<Vec<f64>> {
    if !is_constant(model, v) {
        return None;
    }
    model.graph.constant(v)?.to_f64_vec()
}

/// The element type of a value, when known.
pub fn dtype(g: &Graph, v: ValueId) -> Option<DataType> {
    g.value(v).ty.as_ref().and_then(|t| t.dtype())
}

/// `op` in the default ONNX domain.
pub fn is_onnx(n: &Node, op: &str) -> bool {
    n.op_type == op && (n.domain.is_empty() || n.domain == "ai.onnx")
}

/// An activation node as FusedConv's `activation` and `activation_params` (ONNX Runtime's
/// spelling): Relu, Sigmoid, Tanh, LeakyRelu [alpha], Clip [min, max], HardSigmoid
/// [alpha, beta]. Anything else is declined with the reason.
pub fn activation(model: &Model, id: NodeId) -> Result<(String, Vec<f32>), Decline> {
    let g = &model.graph;
    let n = g.node(id);
    if !(n.domain.is_empty() || n.domain == "ai.onnx") {
        return Err(Decline::NoMatch);
    }
    let f = |name: &str, d: f32| n.attrs.get_float(name).unwrap_or(d);
    Ok(match n.op_type.as_str() {
        "Relu" | "Sigmoid" | "Tanh" => (n.op_type.clone(), Vec::new()),
        "LeakyRelu" => ("LeakyRelu".into(), vec![f("alpha", 0.01)]),
        "HardSigmoid" => ("HardSigmoid".into(), vec![f("alpha", 0.2), f("beta", 0.5)]),
        "Clip" => {
            let opset = model.opset("").unwrap_or(1);
            let (lo, hi) = if opset < 11 {
                (f("min", f32::MIN), f("max", f32::MAX))
            } else {
                let bound = |i: usize, d: f32| -> Result<f32, Decline> {
                    match n.input(i) {
                        None => Ok(d),
                        Some(v) => match const_values(model, v) {
                            Some(x) if x.len() == 1 => Ok(x[0] as f32),
                            _ => Err(Decline::because("Clip bounds are not constant scalars")),
                        },
                    }
                };
                (bound(1, f32::MIN)?, bound(2, f32::MAX)?)
            };
            ("Clip".into(), vec![lo, hi])
        }
        _ => return Err(Decline::NoMatch),
    })
}

/// Replaces `old` nodes (the pattern, in any order) by `new`, which must write the pattern's
/// final outputs; values only the pattern used die with it.
pub fn replace(g: &mut Graph, old: &[NodeId], new: Node) -> Result<NodeId, IrError> {
    let mut detached = Vec::new();
    for &n in old {
        detached.push((n, g.detach_node(n)));
    }
    match g.add_node(new) {
        Ok(id) => {
            // Values that only linked the removed nodes are dead now.
            for (_, n) in &detached {
                for v in n.outputs().iter().flatten() {
                    if g.value(*v).producer().is_none()
                        && g.value(*v).consumers().is_empty()
                        && !g.is_graph_output(*v)
                    {
                        let _ = g.remove_value(*v);
                    }
                }
            }
            Ok(id)
        }
        Err(e) => {
            // Put the pattern back as it was.
            for (_, n) in detached.into_iter().rev() {
                g.add_node(n)?;
            }
            Err(e)
        }
    }
}

/// The elements of a float32/float64 constant as f64 (other types: `None`), for folding
/// arithmetic into weights.
pub fn floats(t: &Tensor) -> Option<Vec<f64>> {
    match t.dtype {
        DataType::F32 | DataType::F64 => t.to_f64_vec(),
        _ => None,
    }
}

/// A float32 or float64 tensor (as `dtype`) from f64 values.
pub fn tensor_like(dtype: DataType, dims: Vec<usize>, v: &[f64]) -> Tensor {
    let raw: Vec<u8> = match dtype {
        DataType::F64 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        _ => v.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect(),
    };
    Tensor::from_raw(dtype, dims, raw.into()).expect("length matches")
}
