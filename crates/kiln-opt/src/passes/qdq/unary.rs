//! `Q(op(DQ(x)))` -> the com.microsoft QLinear op for Sigmoid, LeakyRelu, Softmax, AveragePool
//! and GlobalAveragePool (channel-first), per tensor, one 8-bit type in and out.
use kiln_ir::{Attribute, IrError, Node, NodeId};

use super::{check_nodes, dq, per_tensor, q_after, rewrite, Params};
use crate::fusion::{fusion_pass, Decline, Fusion};
use crate::passes::util::is_onnx;
use crate::{Level, PassCtx};

pub struct QdqUnary;

pub struct Found {
    op: NodeId,
    kind: &'static str,
    attrs: Vec<Attribute>,
    x: Params,
    y: Params,
}

impl Fusion for QdqUnary {
    type Match = Found;

    fn select(&self, ctx: &PassCtx, op: NodeId) -> Result<Found, Decline> {
        let g = &ctx.model.graph;
        let n = g.node(op);
        let kind = match n.op_type.as_str() {
            "Sigmoid" => "QLinearSigmoid",
            "LeakyRelu" => "QLinearLeakyRelu",
            "Softmax" => "QLinearSoftmax",
            "AveragePool" => "QLinearAveragePool",
            "GlobalAveragePool" => "QLinearGlobalAveragePool",
            _ => return Err(Decline::NoMatch),
        };
        if !is_onnx(n, &n.op_type) {
            return Err(Decline::NoMatch);
        }
        let x = dq(ctx, n.input(0).ok_or(Decline::NoMatch)?)?;
        let y = q_after(ctx, n.output(0).ok_or(Decline::NoMatch)?)?;
        per_tensor(ctx, &x)?;
        if x.dtype != y.dtype {
            return Err(Decline::because("input and output types differ"));
        }
        let opset = ctx.model.opset("").unwrap_or(1);
        let mut attrs = n.attrs.clone();
        match kind {
            "QLinearSoftmax" => {
                // ORT's QLinearSoftmax names the Softmax semantics by opset.
                if !attrs.iter().any(|a| a.name == "axis") {
                    attrs.push(Attribute::int("axis", if opset < 13 { 1 } else { -1 }));
                }
                attrs.push(Attribute::int("opset", opset));
            }
            "QLinearAveragePool" => {
                if opset < 11 && attrs.iter().any(|a| a.name == "ceil_mode") {
                    return Err(Decline::NoMatch);
                }
                if attrs.iter().any(|a| a.name == "dilations") {
                    return Err(Decline::because("AveragePool with dilations"));
                }
            }
            _ => {}
        }
        check_nodes(ctx, &[x.node, op, y.node], false)?;
        Ok(Found {
            op,
            kind,
            attrs,
            x,
            y,
        })
    }

    fn apply(&self, ctx: &mut PassCtx, f: Found) -> Result<(), IrError> {
        let name = ctx.model.graph.node(f.op).name.clone();
        let node = Node::new(&name, f.kind, "com.microsoft")
            .with_inputs(&[
                Some(f.x.data),
                Some(f.x.scale),
                f.x.zero,
                Some(f.y.scale),
                f.y.zero,
            ])
            .with_outputs(&[Some(f.y.data)])
            .with_attrs(f.attrs);
        rewrite(ctx, &[f.op, f.y.node], node, &[f.x.node])?;
        ctx.model.ensure_opset("com.microsoft", 1);
        Ok(())
    }
}

fusion_pass!(QdqUnary, "qdq_unary", Level::Extended, super::QDQ_PROVIDERS);
