//! Gemm + activation -> com.microsoft:FusedGemm (`activation`, `activation_alpha`,
//! `activation_beta` as ONNX Runtime reads them); CPU provider, float32.
use kiln_ir::{Attribute, DataType, IrError, Node, NodeId};

use super::util::{activation, assigned_to, dtype, is_onnx, replace};
use crate::fusion::{fusion_pass, lone_consumer, Decline, Fusion};
use crate::{Level, PassCtx};

pub struct GemmActivation;

pub struct Found {
    gemm: NodeId,
    act: NodeId,
    name: String,
    params: Vec<f32>,
}

impl Fusion for GemmActivation {
    type Match = Found;

    fn select(&self, ctx: &PassCtx, gemm: NodeId) -> Result<Found, Decline> {
        let g = &ctx.model.graph;
        let n = g.node(gemm);
        if !is_onnx(n, "Gemm") {
            return Err(Decline::NoMatch);
        }
        let y = n.output(0).ok_or(Decline::NoMatch)?;
        let Ok(act) = lone_consumer(g, y) else {
            return Err(Decline::NoMatch);
        };
        let (name, params) = activation(ctx.model, act)?;
        if g.node(act).input(0) != Some(y) {
            return Err(Decline::NoMatch);
        }
        if name == "Clip" {
            return Err(Decline::because("FusedGemm has no Clip activation"));
        }
        if ctx.portable {
            return Err(Decline::because(
                "portable output: FusedGemm is not a standard ONNX op",
            ));
        }
        if n.input(0).and_then(|a| dtype(g, a)) != Some(DataType::F32) {
            return Err(Decline::because(
                "FusedGemm runs float32 only (input type not float32 or unknown)",
            ));
        }
        assigned_to(ctx, &[gemm, act], &["cpu"])?;
        Ok(Found {
            gemm,
            act,
            name,
            params,
        })
    }

    fn apply(&self, ctx: &mut PassCtx, m: Found) -> Result<(), IrError> {
        let g = &mut ctx.model.graph;
        let gemm = g.node(m.gemm);
        let out = g
            .node(m.act)
            .output(0)
            .ok_or_else(|| IrError::Invalid("no output".into()))?;
        let mut attrs = gemm.attrs.clone();
        attrs.push(Attribute::string("activation", &m.name));
        if let Some(&a) = m.params.first() {
            attrs.push(Attribute::float("activation_alpha", a));
        }
        if let Some(&b) = m.params.get(1) {
            attrs.push(Attribute::float("activation_beta", b));
        }
        let node = Node::new(&gemm.name, "FusedGemm", "com.microsoft")
            .with_inputs(gemm.inputs())
            .with_outputs(&[Some(out)])
            .with_attrs(attrs);
        replace(g, &[m.act, m.gemm], node)?;
        ctx.model.ensure_opset("com.microsoft", 1);
        Ok(())
    }
}

fusion_pass!(
    GemmActivation,
    "gemm_activation_fusion",
    Level::Extended,
    &["cpu"]
);
