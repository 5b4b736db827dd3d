//! `Q(Conv(DQ(x), DQ(w), DQ(bias)?))` -> QLinearConv: x per tensor, the weights constant and
//! per tensor or per output channel, the bias (when there is one) int32 with zero point 0 and
//! scale x_scale · w_scale, as ORT's quantizer writes it.
use kiln_ir::{DataType, IrError, Node, NodeId, ValueId};

use super::{check_nodes, dq, per_tensor, q_after, rewrite, zero_input, Params};
use crate::fusion::{fusion_pass, Decline, Fusion};
use crate::passes::const_fold::is_constant;
use crate::passes::util::is_onnx;
use crate::{Level, PassCtx};

pub struct QdqConv;

pub struct Found {
    conv: NodeId,
    x: Params,
    w: Params,
    bias: Option<(ValueId, NodeId)>,
    y: Params,
}

impl Fusion for QdqConv {
    type Match = Found;

    fn select(&self, ctx: &PassCtx, conv: NodeId) -> Result<Found, Decline> {
        let g = &ctx.model.graph;
        let n = g.node(conv);
        if !is_onnx(n, "Conv") {
            return Err(Decline::NoMatch);
        }
        let x = dq(ctx, n.input(0).ok_or(Decline::NoMatch)?)?;
        let w = dq(ctx, n.input(1).ok_or(Decline::NoMatch)?)?;
        let y = q_after(ctx, n.output(0).ok_or(Decline::NoMatch)?)?;
        per_tensor(ctx, &x)?;
        if !is_constant(ctx.model, w.data) {
            return Err(Decline::because("the weights are not a constant"));
        }
        let m = g
            .value(w.data)
            .ty
            .as_ref()
            .and_then(|t| t.known_shape())
            .and_then(|s| s.first().map(|&d| d as usize))
            .ok_or_else(|| Decline::because("the weights' shape is unknown"))?;
        if !w.per_tensor() && (w.axis != 0 || w.scales.len() != m) {
            return Err(Decline::because(
                "weights quantized along an axis other than the output channels",
            ));
        }
        if x.dtype != y.dtype {
            return Err(Decline::because(format!(
                "input {} and output {} types differ",
                x.dtype, y.dtype
            )));
        }
        let bias = match n.input(2) {
            None => None,
            Some(b) => {
                let p = super::dq_bias(ctx, b)
                    .map_err(|_| Decline::because("the bias is not dequantized"))?;
                let t = g
                    .constant(p.data)
                    .filter(|_| is_constant(ctx.model, p.data));
                if t.map(|t| t.dtype) != Some(DataType::I32) {
                    return Err(Decline::because("the bias is not a constant int32"));
                }
                if p.zeros.iter().any(|&z| z != 0) || p.scales.len() != w.scales.len() {
                    return Err(Decline::because(
                        "the bias has a zero point or other scales",
                    ));
                }
                // Its scale must be x_scale · w_scale (what the integer bias adds to).
                let sx = x.scales[0] as f32;
                let ok = p.scales.iter().zip(&w.scales).all(|(&b, &s)| {
                    let want = sx * s as f32;
                    (b as f32 - want).abs() <= want.abs() * 1e-5
                });
                if !ok {
                    return Err(Decline::because("the bias scale is not x_scale * w_scale"));
                }
                Some((p.data, p.node))
            }
        };
        let mut nodes = vec![x.node, w.node, conv, y.node];
        nodes.extend(bias.map(|b| b.1));
        check_nodes(ctx, &nodes, true)?;
        Ok(Found {
            conv,
            x,
            w,
            bias,
            y,
        })
    }

    fn apply(&self, ctx: &mut PassCtx, f: Found) -> Result<(), IrError> {
        let zx = zero_input(ctx, &f.x)?;
        let zw = zero_input(ctx, &f.w)?;
        let zy = zero_input(ctx, &f.y)?;
        let g = &ctx.model.graph;
        let n = g.node(f.conv);
        let node = Node::new(&n.name, "QLinearConv", "")
            .with_inputs(&[
                Some(f.x.data),
                Some(f.x.scale),
                Some(zx),
                Some(f.w.data),
                Some(f.w.scale),
                Some(zw),
                Some(f.y.scale),
                Some(zy),
                f.bias.map(|b| b.0),
            ])
            .with_outputs(&[Some(f.y.data)])
            .with_attrs(n.attrs.clone());
        let mut dqs = vec![f.x.node, f.w.node];
        dqs.extend(f.bias.map(|b| b.1));
        rewrite(ctx, &[f.conv, f.y.node], node, &dqs)?;
        Ok(())
    }
}

fusion_pass!(QdqConv, "qdq_conv", Level::Extended, super::QDQ_PROVIDERS);
