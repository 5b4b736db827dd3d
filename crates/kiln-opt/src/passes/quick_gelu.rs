//! `x * Sigmoid(x)` (SiLU, YOLO's activation) and `x * Sigmoid(alpha * x)` ->
//! com.microsoft:QuickGelu with that alpha, as ONNX Runtime's own fusion writes it; CPU
//! provider, float32.
use kiln_ir::{Attribute, DataType, IrError, Node, NodeId, ValueId};

use super::util::{assigned_to, const_values, dtype, is_onnx, replace};
use crate::fusion::{fusion_pass, lone_consumer, Decline, Fusion};
use crate::{Level, PassCtx};

pub struct QuickGelu;

pub struct Found {
    x: ValueId,
    alpha: f32,
    nodes: Vec<NodeId>,
    out: ValueId,
}

impl Fusion for QuickGelu {
    type Match = Found;

    /// Rooted at the Sigmoid.
    fn select(&self, ctx: &PassCtx, sig: NodeId) -> Result<Found, Decline> {
        let model = &*ctx.model;
        let g = &model.graph;
        let s = g.node(sig);
        if !is_onnx(s, "Sigmoid") {
            return Err(Decline::NoMatch);
        }
        let s_in = s.input(0).ok_or(Decline::NoMatch)?;
        let s_out = s.output(0).ok_or(Decline::NoMatch)?;
        // Sigmoid(x) or Sigmoid(Mul(x, alpha)).
        let (x, alpha, scale) = match g.value(s_in).producer() {
            Some((p, _)) if is_onnx(g.node(p), "Mul") && g.value(s_in).consumers().len() == 1 => {
                let pn = g.node(p);
                match (pn.input(0), pn.input(1)) {
                    (Some(a), Some(b)) => match (const_values(model, a), const_values(model, b)) {
                        (None, Some(k)) if k.len() == 1 => (a, k[0] as f32, Some(p)),
                        (Some(k), None) if k.len() == 1 => (b, k[0] as f32, Some(p)),
                        _ => (s_in, 1.0, None),
                    },
                    _ => (s_in, 1.0, None),
                }
            }
            _ => (s_in, 1.0, None),
        };
        let Ok(mul) = lone_consumer(g, s_out) else {
            return Err(Decline::NoMatch);
        };
        let m = g.node(mul);
        if !is_onnx(m, "Mul") {
            return Err(Decline::NoMatch);
        }
        let pair = (m.input(0), m.input(1));
        if pair != (Some(x), Some(s_out)) && pair != (Some(s_out), Some(x)) {
            return Err(Decline::NoMatch);
        }
        if ctx.portable {
            return Err(Decline::because(
                "portable output: QuickGelu is not a standard ONNX op",
            ));
        }
        if dtype(g, x) != Some(DataType::F32) {
            return Err(Decline::because(
                "QuickGelu runs float32 only (input type not float32 or unknown)",
            ));
        }
        let mut nodes = vec![sig, mul];
        nodes.extend(scale);
        assigned_to(ctx, &nodes, &["cpu"])?;
        let out = m.output(0).ok_or(Decline::NoMatch)?;
        Ok(Found {
            x,
            alpha,
            nodes,
            out,
        })
    }

    fn apply(&self, ctx: &mut PassCtx, f: Found) -> Result<(), IrError> {
        let g = &mut ctx.model.graph;
        let name = g.node(f.nodes[0]).name.clone();
        let node = Node::new(&name, "QuickGelu", "com.microsoft")
            .with_inputs(&[Some(f.x)])
            .with_outputs(&[Some(f.out)])
            .with_attrs(vec![Attribute::float("alpha", f.alpha)]);
        replace(g, &f.nodes, node)?;
        ctx.model.ensure_opset("com.microsoft", 1);
        Ok(())
    }
}

fusion_pass!(QuickGelu, "quick_gelu_fusion", Level::Extended, &["cpu"]);
