//! Conv + activation -> com.microsoft:FusedConv, with `activation` and `activation_params`
//! exactly as ONNX Runtime writes them (CPU provider, float32).
use kiln_ir::{AttrValue, Attribute, DataType, IrError, Node, NodeId};

use super::util::{activation, assigned_to, dtype, is_onnx, replace, CONV_FUSION_PROVIDERS};
use crate::fusion::{lone_consumer, run_fusion, Decline, Fusion};
use crate::{Level, Pass, PassCtx, PassReport};

pub struct ConvActivation;

pub struct Found {
    conv: NodeId,
    act: NodeId,
    name: String,
    params: Vec<f32>,
}

/// FusedConv's attributes: the Conv's, then the activation's.
pub fn fused_attrs(conv: &Node, name: &str, params: &[f32]) -> Vec<Attribute> {
    let mut attrs: Vec<Attribute> = conv.attrs.clone();
    attrs.push(Attribute::string("activation", name));
    if !params.is_empty() {
        attrs.push(Attribute::new(
            "activation_params",
            AttrValue::Floats(params.to_vec()),
        ));
    }
    attrs
}

/// Conditions every FusedConv rewrite shares: a float32 Conv on the CPU provider, and an
/// output that may use ONNX Runtime's domain.
pub fn conv_preconditions(ctx: &PassCtx, conv: NodeId, others: &[NodeId]) -> Result<(), Decline> {
    let g = &ctx.model.graph;
    let n = g.node(conv);
    if !is_onnx(n, "Conv") {
        return Err(Decline::NoMatch);
    }
    if ctx.portable {
        return Err(Decline::because(
            "portable output: FusedConv is not a standard ONNX op",
        ));
    }
    let x = n.input(0).ok_or(Decline::NoMatch)?;
    if dtype(g, x) != Some(DataType::F32) {
        return Err(Decline::because(
            "FusedConv runs float32 only (input type not float32 or unknown)",
        ));
    }
    let mut nodes = vec![conv];
    nodes.extend_from_slice(others);
    assigned_to(ctx, &nodes, CONV_FUSION_PROVIDERS)
}

impl Fusion for ConvActivation {
    type Match = Found;

    fn select(&self, ctx: &PassCtx, conv: NodeId) -> Result<Found, Decline> {
        let g = &ctx.model.graph;
        if !is_onnx(g.node(conv), "Conv") {
            return Err(Decline::NoMatch);
        }
        let y = g.node(conv).output(0).ok_or(Decline::NoMatch)?;
        let act = match lone_consumer(g, y) {
            Ok(a) => a,
            Err(Decline::CheckFailed(r)) => {
                // Only worth reporting when an activation reads it.
                let reads_act = g
                    .value(y)
                    .consumers()
                    .iter()
                    .any(|u| activation(ctx.model, u.node).is_ok());
                return Err(if reads_act {
                    Decline::because(r)
                } else {
                    Decline::NoMatch
                });
            }
            Err(e) => return Err(e),
        };
        let (name, params) = match activation(ctx.model, act) {
            Ok(x) => x,
            Err(Decline::NoMatch) => {
                let op = &g.node(act).op_type;
                if [
                    "Elu",
                    "Selu",
                    "Softplus",
                    "Gelu",
                    "HardSwish",
                    "ThresholdedRelu",
                ]
                .contains(&op.as_str())
                {
                    return Err(Decline::because(format!(
                        "FusedConv has no {op} activation"
                    )));
                }
                return Err(Decline::NoMatch);
            }
            Err(e) => return Err(e),
        };
        if g.node(act).input(0) != Some(y) {
            return Err(Decline::NoMatch);
        }
        conv_preconditions(ctx, conv, &[act])?;
        Ok(Found {
            conv,
            act,
            name,
            params,
        })
    }

    fn apply(&self, ctx: &mut PassCtx, m: Found) -> Result<(), IrError> {
        let g = &mut ctx.model.graph;
        let conv = g.node(m.conv);
        let out = g
            .node(m.act)
            .output(0)
            .ok_or_else(|| IrError::Invalid("activation without output".into()))?;
        let node = Node::new(&conv.name, "FusedConv", "com.microsoft")
            .with_inputs(conv.inputs())
            .with_outputs(&[Some(out)])
            .with_attrs(fused_attrs(conv, &m.name, &m.params));
        replace(g, &[m.act, m.conv], node)?;
        ctx.model.ensure_opset("com.microsoft", 1);
        Ok(())
    }
}

impl Pass for ConvActivation {
    fn name(&self) -> &'static str {
        "conv_activation_fusion"
    }

    fn level(&self) -> Level {
        Level::Extended
    }

    fn providers(&self) -> &'static [&'static str] {
        super::util::CONV_FUSION_PROVIDERS
    }

    fn run(&self, ctx: &mut PassCtx, report: &mut PassReport) {
        let _ = kiln_ops::infer_shapes(ctx.model);
        run_fusion(self, ctx, report)
    }
}
