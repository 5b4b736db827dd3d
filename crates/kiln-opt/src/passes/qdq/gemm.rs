//! `Gemm(DQ(a), DQ(b), DQ(c)?)` (-> Q) -> com.microsoft:QGemm: A per tensor, B constant per
//! tensor or per output column, C (when given, with beta 1) a constant int32 vector with zero
//! point 0 and scale a_scale · b_scale, as ORT's quantizer writes a linear layer; the output
//! requantized when a QuantizeLinear follows, float otherwise.
use kiln_ir::{AttrList, Attribute, DataType, IrError, Node, NodeId, ValueId};

use super::{check_nodes, dq, per_tensor, q_after, rewrite, zero_input, Params};
use crate::fusion::{fusion_pass, Decline, Fusion};
use crate::passes::const_fold::is_constant;
use crate::passes::util::is_onnx;
use crate::{Level, PassCtx};

pub struct QdqGemm;

pub struct Found {
    gemm: NodeId,
    a: Params,
    b: Params,
    c: Option<(ValueId, NodeId)>,
    y: Option<Params>,
}

impl Fusion for QdqGemm {
    type Match = Found;

    fn select(&self, ctx: &PassCtx, gemm: NodeId) -> Result<Found, Decline> {
        let g = &ctx.model.graph;
        let n = g.node(gemm);
        if !is_onnx(n, "Gemm") {
            return Err(Decline::NoMatch);
        }
        let a = dq(ctx, n.input(0).ok_or(Decline::NoMatch)?)?;
        let b = dq(ctx, n.input(1).ok_or(Decline::NoMatch)?)?;
        per_tensor(ctx, &a)?;
        if !is_constant(ctx.model, b.data) {
            return Err(Decline::because("B is not a constant"));
        }
        let tb = n.attrs.get_int("transB").unwrap_or(0) != 0;
        let shape = g.value(b.data).ty.as_ref().and_then(|t| t.known_shape());
        let cols = match shape.as_deref() {
            Some([r, c]) => (if tb { *r } else { *c }) as usize,
            _ => return Err(Decline::because("B is not a matrix of known shape")),
        };
        if !b.per_tensor() && (b.axis != if tb { 0 } else { 1 } || b.scales.len() != cols) {
            return Err(Decline::because(
                "B is quantized along an axis other than its columns",
            ));
        }
        let c = match n.input(2) {
            None => None,
            Some(cv) => {
                if n.attrs.get_float("beta").unwrap_or(1.0) != 1.0 {
                    return Err(Decline::because("beta is not 1"));
                }
                let p = super::dq_bias(ctx, cv)
                    .map_err(|_| Decline::because("C is not dequantized"))?;
                let t = g
                    .constant(p.data)
                    .filter(|_| is_constant(ctx.model, p.data));
                match t {
                    Some(t) if t.dtype == DataType::I32 && t.dims == [cols] => {}
                    _ => return Err(Decline::because("C is not a constant int32 vector")),
                }
                let sa = a.scales[0] as f32;
                let ok = p.zeros.iter().all(|&z| z == 0)
                    && (0..cols).all(|j| {
                        let sb = b.scales[if b.per_tensor() { 0 } else { j }] as f32;
                        let sc = p.scales[j.min(p.scales.len() - 1)];
                        (sc as f32 - sa * sb).abs() <= (sa * sb).abs() * 1e-5
                    });
                if !ok {
                    return Err(Decline::because("C's scale is not a_scale * b_scale"));
                }
                Some((p.data, p.node))
            }
        };
        let y = match q_after(ctx, n.output(0).ok_or(Decline::NoMatch)?) {
            Ok(y) => Some(y),
            Err(Decline::NoMatch) => None,
            Err(e) => return Err(e),
        };
        let mut nodes = vec![a.node, b.node, gemm];
        nodes.extend(c.map(|c| c.1));
        nodes.extend(y.as_ref().map(|y| y.node));
        check_nodes(ctx, &nodes, false)?;
        Ok(Found { gemm, a, b, c, y })
    }

    fn apply(&self, ctx: &mut PassCtx, f: Found) -> Result<(), IrError> {
        let za = zero_input(ctx, &f.a)?;
        let zb = zero_input(ctx, &f.b)?;
        let n = ctx.model.graph.node(f.gemm);
        let name = n.name.clone();
        let attrs: Vec<Attribute> = ["alpha", "transA", "transB"]
            .iter()
            .filter_map(|&k| n.attrs.iter().find(|a| a.name == k).cloned())
            .collect();
        let out = n.output(0);
        let mut inputs = vec![
            Some(f.a.data),
            Some(f.a.scale),
            Some(za),
            Some(f.b.data),
            Some(f.b.scale),
            Some(zb),
            f.c.map(|c| c.0),
        ];
        let mut pattern = vec![f.gemm];
        let output = match &f.y {
            Some(y) => {
                let zy = zero_input(ctx, y)?;
                inputs.extend([Some(y.scale), Some(zy)]);
                pattern.push(y.node);
                Some(y.data)
            }
            None => out,
        };
        let node = Node::new(&name, "QGemm", "com.microsoft")
            .with_inputs(&inputs)
            .with_outputs(&[output])
            .with_attrs(attrs);
        let mut dqs = vec![f.a.node, f.b.node];
        dqs.extend(f.c.map(|c| c.1));
        rewrite(ctx, &pattern, node, &dqs)?;
        ctx.model.ensure_opset("com.microsoft", 1);
        Ok(())
    }
}

fusion_pass!(QdqGemm, "qdq_gemm", Level::Extended, super::QDQ_PROVIDERS);
