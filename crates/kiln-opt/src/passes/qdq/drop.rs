//! `Q(op(DQ(x)))` -> `op(x)` for ops that only move or select elements, so that they are exact
//! on 8-bit data (Reshape, Transpose, Squeeze, Unsqueeze, Flatten, Slice, Gather, Expand, Tile,
//! Split, DepthToSpace, SpaceToDepth, Identity, MaxPool, nearest Resize), when the Q uses the
//! DQ's scale, zero point and type: the pair dequantizes and quantizes back to the same bytes.
use kiln_ir::{AttrList, IrError, Node, NodeId};

use super::{check_nodes, dq, per_tensor, q_after, rewrite, Params};
use crate::fusion::{fusion_pass, Decline, Fusion};
use crate::passes::util::is_onnx;
use crate::{Level, PassCtx};

pub struct QdqDropMovement;

pub struct Found {
    op: NodeId,
    x: Params,
    ys: Vec<Params>,
}

const MOVEMENT: &[&str] = &[
    "Reshape",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
    "Slice",
    "Gather",
    "Expand",
    "Tile",
    "Split",
    "DepthToSpace",
    "SpaceToDepth",
    "Identity",
    "MaxPool",
    "Resize",
];

impl Fusion for QdqDropMovement {
    type Match = Found;

    fn select(&self, ctx: &PassCtx, op: NodeId) -> Result<Found, Decline> {
        let g = &ctx.model.graph;
        let n = g.node(op);
        if !MOVEMENT.iter().any(|m| is_onnx(n, m)) {
            return Err(Decline::NoMatch);
        }
        let x = dq(ctx, n.input(0).ok_or(Decline::NoMatch)?)?;
        per_tensor(ctx, &x)?;
        let mut ys = Vec::new();
        for v in n.outputs() {
            let y = q_after(ctx, v.ok_or(Decline::NoMatch)?)?;
            if !x.same(&y) {
                return Err(Decline::because(
                    "the QuantizeLinear's scale, zero point or type is not the DQ's",
                ));
            }
            ys.push(y);
        }
        let opset = ctx.model.opset("").unwrap_or(1);
        match n.op_type.as_str() {
            "MaxPool" if opset < 12 => {
                return Err(Decline::because("MaxPool takes 8-bit data from opset 12"))
            }
            "Resize" => {
                let mode = n.attrs.get_str("mode").unwrap_or("nearest");
                if mode != "nearest" {
                    return Err(Decline::because(format!(
                        "Resize mode {mode} computes values"
                    )));
                }
            }
            _ => {}
        }
        let mut nodes = vec![x.node, op];
        nodes.extend(ys.iter().map(|y| y.node));
        check_nodes(ctx, &nodes, true)?;
        Ok(Found { op, x, ys })
    }

    fn apply(&self, ctx: &mut PassCtx, f: Found) -> Result<(), IrError> {
        let n = ctx.model.graph.node(f.op);
        let mut inputs = n.inputs().to_vec();
        inputs[0] = Some(f.x.data);
        let outputs: Vec<_> = f.ys.iter().map(|y| Some(y.data)).collect();
        let node = Node::new(&n.name, &n.op_type, &n.domain)
            .with_inputs(&inputs)
            .with_outputs(&outputs)
            .with_attrs(n.attrs.clone());
        let mut pattern = vec![f.op];
        pattern.extend(f.ys.iter().map(|y| y.node));
        rewrite(ctx, &pattern, node, &[f.x.node])?;
        Ok(())
    }
}

fusion_pass!(
    QdqDropMovement,
    "qdq_drop_movement",
    Level::Extended,
    super::QDQ_PROVIDERS
);
