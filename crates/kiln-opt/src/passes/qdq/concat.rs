//! `Q(Concat(DQ(x1), DQ(x2), ...))` -> com.microsoft:QLinearConcat: every input dequantized per
//! tensor from one 8-bit type, the output quantized to it.
use kiln_ir::{AttrList, Attribute, IrError, Node, NodeId};

use super::{check_nodes, dq, per_tensor, q_after, rewrite, zero_input, Params};
use crate::fusion::{fusion_pass, Decline, Fusion};
use crate::passes::util::is_onnx;
use crate::{Level, PassCtx};

pub struct QdqConcat;

pub struct Found {
    op: NodeId,
    xs: Vec<Params>,
    y: Params,
    axis: i64,
}

impl Fusion for QdqConcat {
    type Match = Found;

    fn select(&self, ctx: &PassCtx, op: NodeId) -> Result<Found, Decline> {
        let g = &ctx.model.graph;
        let n = g.node(op);
        if !is_onnx(n, "Concat") || n.inputs().is_empty() {
            return Err(Decline::NoMatch);
        }
        let y = q_after(ctx, n.output(0).ok_or(Decline::NoMatch)?)?;
        let mut xs = Vec::new();
        for v in n.inputs() {
            let x = dq(ctx, v.ok_or(Decline::NoMatch)?)?;
            per_tensor(ctx, &x)?;
            if x.dtype != y.dtype {
                return Err(Decline::because(
                    "inputs and output are not of one 8-bit type",
                ));
            }
            xs.push(x);
        }
        let mut nodes: Vec<NodeId> = xs.iter().map(|x| x.node).collect();
        nodes.extend([op, y.node]);
        check_nodes(ctx, &nodes, false)?;
        let axis = n.attrs.get_int("axis").ok_or(Decline::NoMatch)?;
        Ok(Found { op, xs, y, axis })
    }

    fn apply(&self, ctx: &mut PassCtx, f: Found) -> Result<(), IrError> {
        let name = ctx.model.graph.node(f.op).name.clone();
        // Every zero point given: the inputs are one variadic list of triples.
        let zy = zero_input(ctx, &f.y)?;
        let mut inputs = vec![Some(f.y.scale), Some(zy)];
        for x in &f.xs {
            let zx = zero_input(ctx, x)?;
            inputs.extend([Some(x.data), Some(x.scale), Some(zx)]);
        }
        let node = Node::new(&name, "QLinearConcat", "com.microsoft")
            .with_inputs(&inputs)
            .with_outputs(&[Some(f.y.data)])
            .with_attrs(vec![Attribute::int("axis", f.axis)]);
        let dqs: Vec<NodeId> = f.xs.iter().map(|x| x.node).collect();
        rewrite(ctx, &[f.op, f.y.node], node, &dqs)?;
        ctx.model.ensure_opset("com.microsoft", 1);
        Ok(())
    }
}

fusion_pass!(
    QdqConcat,
    "qdq_concat",
    Level::Extended,
    super::QDQ_PROVIDERS
);
