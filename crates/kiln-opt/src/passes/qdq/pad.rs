//! `Q(Pad(DQ(x), pads, value))` -> `Pad(x, pads, Q(value))` when the Q uses the DQ's scale,
//! zero point and type, a rewrite ORT's optimizer leaves in float: inside, the pair gives back
//! the same bytes; the border is the pad value as the Q would quantize it (any mode: edge,
//! reflect and wrap only copy bytes).
use kiln_ir::{IrError, Node, NodeId, Tensor};

use super::{check_nodes, dq, per_tensor, q_after, quantized, rewrite, Params};
use crate::fusion::{fusion_pass, Decline, Fusion};
use crate::passes::const_fold::is_constant;
use crate::passes::util::{floats, is_onnx};
use crate::{Level, PassCtx};

pub struct QdqPad;

pub struct Found {
    op: NodeId,
    x: Params,
    y: Params,
    /// The border's byte (constant mode).
    value: i64,
}

impl Fusion for QdqPad {
    type Match = Found;

    fn select(&self, ctx: &PassCtx, op: NodeId) -> Result<Found, Decline> {
        let g = &ctx.model.graph;
        let n = g.node(op);
        if !is_onnx(n, "Pad") {
            return Err(Decline::NoMatch);
        }
        // Pads as an input, and 8-bit data, from opset 11.
        if ctx.model.opset("").unwrap_or(1) < 11 {
            return Err(Decline::because("Pad takes pads as an input from opset 11"));
        }
        let x = dq(ctx, n.input(0).ok_or(Decline::NoMatch)?)?;
        per_tensor(ctx, &x)?;
        let y = q_after(ctx, n.output(0).ok_or(Decline::NoMatch)?)?;
        if !x.same(&y) {
            return Err(Decline::because(
                "the QuantizeLinear's scale, zero point or type is not the DQ's",
            ));
        }
        let value = match n.input(2) {
            None => 0.0,
            Some(v) => {
                let t = is_constant(&ctx.model, v)
                    .then(|| g.constant(v))
                    .flatten()
                    .and_then(floats)
                    .filter(|f| f.len() == 1)
                    .ok_or_else(|| Decline::because("the pad value is not a float constant"))?;
                t[0]
            }
        };
        check_nodes(ctx, &[x.node, op, y.node], true)?;
        Ok(Found {
            op,
            value: quantized(value, &y),
            x,
            y,
        })
    }

    fn apply(&self, ctx: &mut PassCtx, f: Found) -> Result<(), IrError> {
        let g = &mut ctx.model.graph;
        let n = g.node(f.op);
        let (name, attrs) = (n.name.clone(), n.attrs.clone());
        let mut inputs = n.inputs().to_vec();
        inputs.resize(inputs.len().max(3), None);
        inputs[0] = Some(f.x.data);
        let byte =
            Tensor::from_raw(f.y.dtype, vec![], vec![f.value as u8].into()).expect("one byte");
        let vname = g.unique_name(&format!("{name}_pad_value"));
        inputs[2] = Some(g.add_initializer(&vname, byte)?);
        let node = Node::new(&name, "Pad", "")
            .with_inputs(&inputs)
            .with_outputs(&[Some(f.y.data)])
            .with_attrs(attrs);
        rewrite(ctx, &[f.op, f.y.node], node, &[f.x.node])?;
        Ok(())
    }
}

fusion_pass!(QdqPad, "qdq_pad", Level::Extended, super::QDQ_PROVIDERS);
