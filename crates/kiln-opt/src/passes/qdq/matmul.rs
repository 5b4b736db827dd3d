//! `MatMul(DQ(a), DQ(b))` -> QLinearMatMul when a QuantizeLinear follows, else
//! com.microsoft:MatMulIntegerToFloat (float output): A per tensor, B per tensor or per column
//! (axis -1 of a matrix), both 8-bit.
use kiln_ir::{IrError, Node, NodeId};

use super::{check_nodes, dq, per_tensor, q_after, rewrite, zero_input, Params};
use crate::fusion::{fusion_pass, Decline, Fusion};
use crate::passes::util::is_onnx;
use crate::{Level, PassCtx};

pub struct QdqMatMul;

pub struct Found {
    mm: NodeId,
    a: Params,
    b: Params,
    y: Option<Params>,
}

impl Fusion for QdqMatMul {
    type Match = Found;

    fn select(&self, ctx: &PassCtx, mm: NodeId) -> Result<Found, Decline> {
        let g = &ctx.model.graph;
        let n = g.node(mm);
        if !is_onnx(n, "MatMul") {
            return Err(Decline::NoMatch);
        }
        let a = dq(ctx, n.input(0).ok_or(Decline::NoMatch)?)?;
        let b = dq(ctx, n.input(1).ok_or(Decline::NoMatch)?)?;
        per_tensor(ctx, &a)?;
        let out = n.output(0).ok_or(Decline::NoMatch)?;
        let y = match q_after(ctx, out) {
            Ok(y) => Some(y),
            Err(Decline::NoMatch) => None,
            Err(e) => return Err(e),
        };
        if !b.per_tensor() {
            let shape = g.value(b.data).ty.as_ref().and_then(|t| t.known_shape());
            match shape.as_deref() {
                Some([_, n]) if b.axis == 1 && b.scales.len() == *n as usize => {}
                _ => {
                    return Err(Decline::because(
                        "B is quantized per channel other than per column of a matrix",
                    ))
                }
            }
        }
        let mut nodes = vec![a.node, b.node, mm];
        match &y {
            Some(y) => {
                if a.dtype != y.dtype {
                    return Err(Decline::because("A and the output have different types"));
                }
                nodes.push(y.node);
                check_nodes(ctx, &nodes, true)?;
            }
            None => check_nodes(ctx, &nodes, false)?,
        }
        Ok(Found { mm, a, b, y })
    }

    fn apply(&self, ctx: &mut PassCtx, f: Found) -> Result<(), IrError> {
        let name = ctx.model.graph.node(f.mm).name.clone();
        let dqs = [f.a.node, f.b.node];
        match f.y {
            Some(y) => {
                let za = zero_input(ctx, &f.a)?;
                let zb = zero_input(ctx, &f.b)?;
                let zy = zero_input(ctx, &y)?;
                let node = Node::new(&name, "QLinearMatMul", "")
                    .with_inputs(&[
                        Some(f.a.data),
                        Some(f.a.scale),
                        Some(za),
                        Some(f.b.data),
                        Some(f.b.scale),
                        Some(zb),
                        Some(y.scale),
                        Some(zy),
                    ])
                    .with_outputs(&[Some(y.data)]);
                rewrite(ctx, &[f.mm, y.node], node, &dqs)?;
            }
            None => {
                let out = ctx.model.graph.node(f.mm).output(0);
                let node = Node::new(&name, "MatMulIntegerToFloat", "com.microsoft")
                    .with_inputs(&[
                        Some(f.a.data),
                        Some(f.b.data),
                        Some(f.a.scale),
                        Some(f.b.scale),
                        f.a.zero,
                        f.b.zero,
                    ])
                    .with_outputs(&[out]);
                rewrite(ctx, &[f.mm], node, &dqs)?;
                ctx.model.ensure_opset("com.microsoft", 1);
            }
        }
        Ok(())
    }
}

fusion_pass!(
    QdqMatMul,
    "qdq_matmul",
    Level::Extended,
    super::QDQ_PROVIDERS
);
