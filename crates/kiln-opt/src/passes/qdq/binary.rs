//! `Q(Add|Mul(DQ(a), DQ(b)))` -> com.microsoft:QLinearAdd / QLinearMul: both inputs and the
//! output 8-bit of one type, per tensor.
use kiln_ir::{IrError, Node, NodeId};

use super::{check_nodes, dq, per_tensor, q_after, rewrite, Params};
use crate::fusion::{fusion_pass, Decline, Fusion};
use crate::passes::util::is_onnx;
use crate::{Level, PassCtx};

pub struct QdqBinary;

pub struct Found {
    op: NodeId,
    kind: &'static str,
    a: Params,
    b: Params,
    y: Params,
}

impl Fusion for QdqBinary {
    type Match = Found;

    fn select(&self, ctx: &PassCtx, op: NodeId) -> Result<Found, Decline> {
        let g = &ctx.model.graph;
        let n = g.node(op);
        let kind = if is_onnx(n, "Add") {
            "QLinearAdd"
        } else if is_onnx(n, "Mul") {
            "QLinearMul"
        } else {
            return Err(Decline::NoMatch);
        };
        let a = dq(ctx, n.input(0).ok_or(Decline::NoMatch)?)?;
        let b = dq(ctx, n.input(1).ok_or(Decline::NoMatch)?)?;
        let y = q_after(ctx, n.output(0).ok_or(Decline::NoMatch)?)?;
        per_tensor(ctx, &a)?;
        per_tensor(ctx, &b)?;
        if a.dtype != b.dtype || a.dtype != y.dtype {
            return Err(Decline::because(
                "inputs and output are not of one 8-bit type",
            ));
        }
        check_nodes(ctx, &[a.node, b.node, op, y.node], false)?;
        Ok(Found { op, kind, a, b, y })
    }

    fn apply(&self, ctx: &mut PassCtx, f: Found) -> Result<(), IrError> {
        let name = ctx.model.graph.node(f.op).name.clone();
        let node = Node::new(&name, f.kind, "com.microsoft")
            .with_inputs(&[
                Some(f.a.data),
                Some(f.a.scale),
                f.a.zero,
                Some(f.b.data),
                Some(f.b.scale),
                f.b.zero,
                Some(f.y.scale),
                f.y.zero,
            ])
            .with_outputs(&[Some(f.y.data)]);
        rewrite(ctx, &[f.op, f.y.node], node, &[f.a.node, f.b.node])?;
        ctx.model.ensure_opset("com.microsoft", 1);
        Ok(())
    }
}

fusion_pass!(
    QdqBinary,
    "qdq_binary",
    Level::Extended,
    super::QDQ_PROVIDERS
);
