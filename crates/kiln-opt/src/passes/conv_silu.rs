//! Conv + SiLU (`x * Sigmoid(x)`, by now a QuickGelu) -> kiln's own `ai.kiln:FusedConv` with
//! activation SiLU. ONNX Runtime's FusedConv has no such activation, so this runs only inside a
//! kiln session and is never written to a saved model.
use kiln_ir::{AttrList, Attribute, IrError, Node, NodeId};

use super::fused_conv::conv_preconditions;
use super::util::{is_onnx, replace};
use crate::fusion::{lone_consumer, run_fusion, Decline, Fusion};
use crate::{Level, Pass, PassCtx, PassReport};

pub struct ConvSilu;

pub struct Found {
    conv: NodeId,
    act: NodeId,
    alpha: f32,
}

impl Fusion for ConvSilu {
    type Match = Found;

    fn select(&self, ctx: &PassCtx, conv: NodeId) -> Result<Found, Decline> {
        let g = &ctx.model.graph;
        if !is_onnx(g.node(conv), "Conv") {
            return Err(Decline::NoMatch);
        }
        let y = g.node(conv).output(0).ok_or(Decline::NoMatch)?;
        let Ok(act) = lone_consumer(g, y) else {
            return Err(Decline::NoMatch);
        };
        let a = g.node(act);
        if !(a.domain == "com.microsoft" && a.op_type == "QuickGelu") || a.input(0) != Some(y) {
            return Err(Decline::NoMatch);
        }
        if !ctx.in_session {
            return Err(Decline::because(
                "kiln-only fusion: never written to a saved model",
            ));
        }
        conv_preconditions(ctx, conv, &[act])?;
        Ok(Found {
            conv,
            act,
            alpha: a.attrs.get_float("alpha").unwrap_or(1.702),
        })
    }

    fn apply(&self, ctx: &mut PassCtx, m: Found) -> Result<(), IrError> {
        let g = &mut ctx.model.graph;
        let conv = g.node(m.conv);
        let out = g
            .node(m.act)
            .output(0)
            .ok_or_else(|| IrError::Invalid("no output".into()))?;
        let mut attrs = conv.attrs.clone();
        attrs.push(Attribute::string("activation", "SiLU"));
        attrs.push(Attribute::float("alpha", m.alpha));
        let node = Node::new(&conv.name, "FusedConv", kiln_ops::ops_domain::KILN)
            .with_inputs(conv.inputs())
            .with_outputs(&[Some(out)])
            .with_attrs(attrs);
        replace(g, &[m.act, m.conv], node)?;
        ctx.model.ensure_opset(kiln_ops::ops_domain::KILN, 1);
        Ok(())
    }
}

impl Pass for ConvSilu {
    fn name(&self) -> &'static str {
        "conv_silu_fusion"
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
