//! Dynamic quantization in one op: `Mul(Cast(MatMulInteger(DynamicQuantizeLinear(x), W)),
//! Mul(x_scale, w_scale))` (+ a constant bias Add) -> com.microsoft:DynamicQuantizeMatMul, as
//! `quantize_dynamic` writes a linear layer and ORT's MatMulIntegerToFloat and
//! DynamicQuantizeMatMul fusions rewrite it: the kernel quantizes the activation, multiplies and
//! scales without writing the 8-bit copy out. W and its scale and zero point are constants.
use kiln_ir::{AttrList, DataType, IrError, Node, NodeId, ValueId};

use super::check_nodes;
use crate::fusion::{fusion_pass, lone_consumer, Decline, Fusion};
use crate::passes::const_fold::is_constant;
use crate::passes::util::{dtype, is_onnx};
use crate::{Level, PassCtx};

pub struct DynamicMatMul;

pub struct Found {
    x: ValueId,
    w: ValueId,
    w_scale: ValueId,
    w_zero: Option<ValueId>,
    bias: Option<ValueId>,
    /// The pattern's nodes, the last one writing `out`.
    nodes: Vec<NodeId>,
    dql: NodeId,
    out: ValueId,
}

fn producer<'a>(ctx: &'a PassCtx, v: ValueId, op: &str) -> Result<(NodeId, &'a Node), Decline> {
    let g = &ctx.model.graph;
    let (id, _) = g.value(v).producer().ok_or(Decline::NoMatch)?;
    let n = g.node(id);
    if is_onnx(n, op) {
        Ok((id, n))
    } else {
        Err(Decline::NoMatch)
    }
}

impl Fusion for DynamicMatMul {
    type Match = Found;

    /// Rooted at the final Mul.
    fn select(&self, ctx: &PassCtx, mul: NodeId) -> Result<Found, Decline> {
        let model = &*ctx.model;
        let g = &model.graph;
        let n = g.node(mul);
        if !is_onnx(n, "Mul") {
            return Err(Decline::NoMatch);
        }
        let (i0, i1) = (
            n.input(0).ok_or(Decline::NoMatch)?,
            n.input(1).ok_or(Decline::NoMatch)?,
        );
        // Either input may be the Cast.
        let (cast_v, scale_v) = if producer(ctx, i0, "Cast").is_ok() {
            (i0, i1)
        } else {
            (i1, i0)
        };
        let (cast, cn) = producer(ctx, cast_v, "Cast")?;
        if cn.attrs.get_int("to") != Some(DataType::F32.to_onnx() as i64) {
            return Err(Decline::NoMatch);
        }
        let (mmi, mn) = producer(ctx, cn.input(0).ok_or(Decline::NoMatch)?, "MatMulInteger")?;
        let (smul, sn) = producer(ctx, scale_v, "Mul")?;
        let a = mn.input(0).ok_or(Decline::NoMatch)?;
        let (dql, dn) = producer(ctx, a, "DynamicQuantizeLinear")?;
        if mn.input(2) != dn.output(2) || dn.output(0) != Some(a) {
            return Err(Decline::because(
                "A's zero point is not DynamicQuantizeLinear's",
            ));
        }
        let x_scale = dn.output(1).ok_or(Decline::NoMatch)?;
        let w_scale = match (sn.input(0), sn.input(1)) {
            (Some(p), Some(q)) if p == x_scale => q,
            (Some(p), Some(q)) if q == x_scale => p,
            _ => return Err(Decline::because("the scale is not x_scale * w_scale")),
        };
        let w = mn.input(1).ok_or(Decline::NoMatch)?;
        let w_zero = mn.input(3);
        if !is_constant(model, w) || !is_constant(model, w_scale) {
            return Err(Decline::because("W or its scale is not a constant"));
        }
        if w_zero.is_some_and(|z| !is_constant(model, z)) {
            return Err(Decline::because("W's zero point is not a constant"));
        }
        if dtype(g, w_scale) != Some(DataType::F32) {
            return Err(Decline::because("W's scale is not float32"));
        }
        for v in [mn.output(0), cn.output(0), sn.output(0)] {
            let v = v.ok_or(Decline::NoMatch)?;
            let _ = lone_consumer(g, v)?;
        }
        let mut out = n.output(0).ok_or(Decline::NoMatch)?;
        let mut nodes = vec![mmi, cast, smul, mul];
        // A constant bias over the last axis joins the op.
        let mut bias = None;
        let cols = g
            .value(w)
            .ty
            .as_ref()
            .and_then(|t| t.known_shape())
            .and_then(|s| s.last().copied());
        if let Ok(add) = lone_consumer(g, out) {
            let an = g.node(add);
            if is_onnx(an, "Add") {
                let other = if an.input(0) == Some(out) {
                    an.input(1)
                } else {
                    an.input(0)
                };
                if let Some(b) = other.filter(|&b| is_constant(model, b)) {
                    let shape = g.value(b).ty.as_ref().and_then(|t| t.known_shape());
                    if shape.as_deref() == cols.map(|c| vec![c]).as_deref()
                        && dtype(g, b) == Some(DataType::F32)
                    {
                        bias = Some(b);
                        nodes.push(add);
                        out = an.output(0).ok_or(Decline::NoMatch)?;
                    }
                }
            }
        }
        let mut all = nodes.clone();
        all.push(dql);
        check_nodes(ctx, &all, false)?;
        Ok(Found {
            x: dn.input(0).ok_or(Decline::NoMatch)?,
            w,
            w_scale,
            w_zero,
            bias,
            nodes,
            dql,
            out,
        })
    }

    fn apply(&self, ctx: &mut PassCtx, f: Found) -> Result<(), IrError> {
        let g = &ctx.model.graph;
        let name = g.node(f.nodes[0]).name.clone();
        let node = Node::new(&name, "DynamicQuantizeMatMul", "com.microsoft")
            .with_inputs(&[Some(f.x), Some(f.w), Some(f.w_scale), f.w_zero, f.bias])
            .with_outputs(&[Some(f.out)]);
        super::rewrite(ctx, &f.nodes, node, &[])?;
        // The DynamicQuantizeLinear goes once its last reader is fused.
        let g = &mut ctx.model.graph;
        let unused = g
            .node(f.dql)
            .outputs()
            .iter()
            .flatten()
            .all(|&v| g.value(v).consumers().is_empty() && !g.is_graph_output(v));
        if unused {
            g.remove_node(f.dql)?;
        }
        ctx.model.ensure_opset("com.microsoft", 1);
        Ok(())
    }
}

fusion_pass!(
    DynamicMatMul,
    "dynamic_quantize_matmul",
    Level::Extended,
    super::QDQ_PROVIDERS
);
