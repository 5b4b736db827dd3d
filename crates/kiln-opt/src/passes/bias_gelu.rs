//! `Gelu(Add(x, bias))` with a constant 1-D bias as long as x's last axis -> com.microsoft:BiasGelu
//! (ORT's BiasGeluFusion: the bias of a linear layer folded into the activation that follows);
//! CPU provider, float32.
use kiln_ir::{DataType, IrError, Node, NodeId, ValueId};

use super::util::{assigned_to, dtype, is_onnx, replace};
use crate::fusion::{fusion_pass, lone_consumer, Decline, Fusion};
use crate::passes::const_fold::is_constant;
use crate::{Level, PassCtx};

pub struct BiasGeluFusion;

pub struct Found {
    x: ValueId,
    bias: ValueId,
    nodes: Vec<NodeId>,
    out: ValueId,
}

impl Fusion for BiasGeluFusion {
    type Match = Found;

    /// Rooted at the Gelu.
    fn select(&self, ctx: &PassCtx, gelu: NodeId) -> Result<Found, Decline> {
        let model = &*ctx.model;
        let g = &model.graph;
        let n = g.node(gelu);
        if !(n.domain == "com.microsoft" && n.op_type == "Gelu") {
            return Err(Decline::NoMatch);
        }
        let v = n.input(0).ok_or(Decline::NoMatch)?;
        let out = n.output(0).ok_or(Decline::NoMatch)?;
        let (add, _) = g.value(v).producer().ok_or(Decline::NoMatch)?;
        let an = g.node(add);
        if !is_onnx(an, "Add") {
            return Err(Decline::NoMatch);
        }
        let (a, b) = (
            an.input(0).ok_or(Decline::NoMatch)?,
            an.input(1).ok_or(Decline::NoMatch)?,
        );
        let (x, bias) = match (is_constant(model, a), is_constant(model, b)) {
            (false, true) => (a, b),
            (true, false) => (b, a),
            _ => return Err(Decline::NoMatch),
        };
        if lone_consumer(g, v)? != gelu {
            return Err(Decline::NoMatch);
        }
        let bias_shape = g.value(bias).ty.as_ref().and_then(|t| t.known_shape());
        let bias_len = match bias_shape.as_deref() {
            Some([n]) => *n,
            _ => {
                return Err(Decline::because(
                    "the added constant is not a 1-D bias (BiasGelu's bias is [hidden])",
                ))
            }
        };
        let last = g
            .value(x)
            .ty
            .as_ref()
            .and_then(|t| t.shape())
            .and_then(|s| s.last().and_then(|d| d.known()));
        if last != Some(bias_len) {
            return Err(Decline::because(format!(
                "the bias has {bias_len} values, the input's last axis is {last:?}"
            )));
        }
        if ctx.portable {
            return Err(Decline::because(
                "portable output: BiasGelu is not a standard ONNX op",
            ));
        }
        if dtype(g, x) != Some(DataType::F32) || dtype(g, bias) != Some(DataType::F32) {
            return Err(Decline::because("BiasGelu runs float32 only"));
        }
        let nodes = vec![add, gelu];
        assigned_to(ctx, &nodes, &["cpu"])?;
        Ok(Found {
            x,
            bias,
            nodes,
            out,
        })
    }

    fn apply(&self, ctx: &mut PassCtx, f: Found) -> Result<(), IrError> {
        let g = &mut ctx.model.graph;
        let name = g.node(f.nodes[1]).name.clone();
        let node = Node::new(&name, "BiasGelu", "com.microsoft")
            .with_inputs(&[Some(f.x), Some(f.bias)])
            .with_outputs(&[Some(f.out)]);
        replace(g, &f.nodes, node)?;
        ctx.model.ensure_opset("com.microsoft", 1);
        Ok(())
    }
}

fusion_pass!(
    BiasGeluFusion,
    "bias_gelu_fusion",
    Level::Extended,
    &["cpu"]
);
