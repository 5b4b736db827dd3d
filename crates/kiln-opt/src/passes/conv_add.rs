//! Conv + Add (+ activation) -> com.microsoft:FusedConv with the residual as input `Z`
//! (ONNX Runtime computes activation(conv(X, W) + B + Z)); CPU provider, float32. The Add may
//! also be a two-input Sum, as in Caffe2-exported ResNets.
use kiln_ir::{IrError, Node, NodeId, ValueId};

use super::fused_conv::{conv_preconditions, fused_attrs};
use super::util::{activation, is_onnx, replace};
use crate::fusion::{lone_consumer, run_fusion, Decline, Fusion};
use crate::{Level, Pass, PassCtx, PassReport};

pub struct ConvAdd;

pub struct Found {
    conv: NodeId,
    add: NodeId,
    z: ValueId,
    act: Option<(NodeId, String, Vec<f32>)>,
}

impl Fusion for ConvAdd {
    type Match = Found;

    fn select(&self, ctx: &PassCtx, conv: NodeId) -> Result<Found, Decline> {
        let g = &ctx.model.graph;
        if !is_onnx(g.node(conv), "Conv") {
            return Err(Decline::NoMatch);
        }
        let y = g.node(conv).output(0).ok_or(Decline::NoMatch)?;
        let Ok(add) = lone_consumer(g, y) else {
            return Err(Decline::NoMatch);
        };
        let a = g.node(add);
        let is_add = is_onnx(a, "Add") || (is_onnx(a, "Sum") && a.inputs().len() == 2);
        if !is_add || a.inputs().len() != 2 {
            return Err(Decline::NoMatch);
        }
        let z = match (a.input(0), a.input(1)) {
            (Some(p), Some(q)) if p == y && q != y => q,
            (Some(p), Some(q)) if q == y && p != y => p,
            _ => return Err(Decline::NoMatch),
        };
        // Z is added element by element: no broadcasting.
        let shape = |v: ValueId| {
            g.value(v)
                .ty
                .as_ref()
                .and_then(|t| t.shape().map(|s| s.to_vec()))
        };
        match (shape(y), shape(z)) {
            (Some(sy), Some(sz)) if sy == sz && sy.iter().all(|d| !d.is_unknown()) => {}
            _ => {
                return Err(Decline::because(
                    "the residual's shape is not known to equal the Conv output's",
                ))
            }
        }
        let added = a.output(0).ok_or(Decline::NoMatch)?;
        let act = match lone_consumer(g, added) {
            Ok(n) => match activation(ctx.model, n) {
                Ok((name, params)) if g.node(n).input(0) == Some(added) => Some((n, name, params)),
                _ => None,
            },
            Err(_) => None,
        };
        let mut others = vec![add];
        if let Some((n, ..)) = &act {
            others.push(*n);
        }
        conv_preconditions(ctx, conv, &others)?;
        Ok(Found { conv, add, z, act })
    }

    fn apply(&self, ctx: &mut PassCtx, m: Found) -> Result<(), IrError> {
        let g = &mut ctx.model.graph;
        let conv = g.node(m.conv);
        let last = m.act.as_ref().map(|a| a.0).unwrap_or(m.add);
        let out = g
            .node(last)
            .output(0)
            .ok_or_else(|| IrError::Invalid("no output".into()))?;
        let mut inputs: Vec<Option<ValueId>> = conv.inputs().to_vec();
        inputs.resize(3, None);
        inputs.push(Some(m.z));
        let (name, params) = match &m.act {
            Some((_, n, p)) => (n.as_str(), p.as_slice()),
            None => ("Identity", &[][..]),
        };
        let mut attrs = fused_attrs(conv, name, params);
        if m.act.is_none() {
            attrs.retain(|a| a.name != "activation");
        }
        let node = Node::new(&conv.name, "FusedConv", "com.microsoft")
            .with_inputs(&inputs)
            .with_outputs(&[Some(out)])
            .with_attrs(attrs);
        let mut old = vec![m.conv, m.add];
        if let Some((a, ..)) = m.act {
            old.push(a);
        }
        replace(g, &old, node)?;
        ctx.model.ensure_opset("com.microsoft", 1);
        Ok(())
    }
}

impl Pass for ConvAdd {
    fn name(&self) -> &'static str {
        "conv_add_activation_fusion"
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
