//! A residual Add feeding a LayerNormalization over the last axis ->
//! com.microsoft:SkipLayerNormalization, as ONNX Runtime's SkipLayerNormFusion writes it: also
//! folding the bias of the linear layer before it (`LN(Add(Add(y, bias), skip))` ->
//! `SkipLayerNormalization(y, skip, gamma, beta, bias)`). CPU provider, float32, 3-D inputs of
//! one shape, 1-D scale, bias and shift as long as the hidden axis.
use kiln_ir::{AttrList, Attribute, DataType, Dim, Graph, IrError, Node, NodeId, ValueId};

use super::util::{assigned_to, dtype, is_onnx, replace};
use crate::fusion::{fusion_pass, lone_consumer, Decline, Fusion};
use crate::passes::const_fold::is_constant;
use crate::{Level, PassCtx};

pub struct SkipLayerNorm;

pub struct Found {
    /// input, skip, gamma, beta, bias
    inputs: [Option<ValueId>; 5],
    epsilon: f32,
    nodes: Vec<NodeId>,
    out: ValueId,
}

fn dims(g: &Graph, v: ValueId) -> Option<Vec<Dim>> {
    g.value(v).ty.as_ref()?.shape().map(|s| s.to_vec())
}

/// A constant of shape `[hidden]`.
fn vector_of(ctx: &PassCtx, v: ValueId, hidden: &Dim) -> bool {
    let g = &ctx.model.graph;
    is_constant(ctx.model, v)
        && matches!(dims(g, v).as_deref(), Some([d]) if d == hidden)
        && dtype(g, v) == Some(DataType::F32)
}

impl Fusion for SkipLayerNorm {
    type Match = Found;

    /// Rooted at the LayerNormalization.
    fn select(&self, ctx: &PassCtx, ln: NodeId) -> Result<Found, Decline> {
        let g = &ctx.model.graph;
        let n = g.node(ln);
        if !is_onnx(n, "LayerNormalization") {
            return Err(Decline::NoMatch);
        }
        let x = n.input(0).ok_or(Decline::NoMatch)?;
        let (add, _) = g.value(x).producer().ok_or(Decline::NoMatch)?;
        let an = g.node(add);
        if !is_onnx(an, "Add") {
            return Err(Decline::NoMatch);
        }
        let (p, q) = (
            an.input(0).ok_or(Decline::NoMatch)?,
            an.input(1).ok_or(Decline::NoMatch)?,
        );
        if is_constant(ctx.model, p) || is_constant(ctx.model, q) {
            return Err(Decline::NoMatch);
        }
        if lone_consumer(g, x)? != ln {
            return Err(Decline::NoMatch);
        }
        // Mean and inverse deviation outputs have no place in SkipLayerNormalization's.
        for extra in n.outputs().iter().skip(1).flatten() {
            if !g.value(*extra).consumers().is_empty() || g.is_graph_output(*extra) {
                return Err(Decline::because(
                    "the LayerNormalization's mean or inverse deviation is used",
                ));
            }
        }
        let shape = dims(g, x).ok_or_else(|| Decline::because("the input's shape is unknown"))?;
        if shape.len() != 3 {
            return Err(Decline::because(format!(
                "SkipLayerNormalization takes 3-D inputs, this one has rank {}",
                shape.len()
            )));
        }
        let axis = n.attrs.get_int("axis").unwrap_or(-1);
        if axis != -1 && axis != 2 {
            return Err(Decline::because(format!(
                "normalizes from axis {axis}, not the last axis"
            )));
        }
        // Equal dims, none unknown (`?` equals `?` without being the same size): the Add then
        // broadcasts nothing, which SkipLayerNormalization's output shape assumes.
        let proven = |v: ValueId| {
            dims(g, v).is_some_and(|d| d == shape && d.iter().all(|x| !matches!(x, Dim::Unknown)))
        };
        if !proven(p) || !proven(q) {
            return Err(Decline::because(
                "the two added tensors are not known to have one shape",
            ));
        }
        let hidden = &shape[2];
        let gamma = n.input(1).ok_or(Decline::NoMatch)?;
        let beta = n.input(2);
        if !vector_of(ctx, gamma, hidden) || beta.is_some_and(|b| !vector_of(ctx, b, hidden)) {
            return Err(Decline::because(
                "scale and bias are not float32 constants of shape [hidden]",
            ));
        }
        // One side may be a linear layer's output plus its bias.
        let biased = |v: ValueId| -> Option<(NodeId, ValueId, ValueId)> {
            let (b_add, _) = g.value(v).producer()?;
            let bn = g.node(b_add);
            if !is_onnx(bn, "Add") || lone_consumer(g, v).ok()? != add {
                return None;
            }
            let (a, b) = (bn.input(0)?, bn.input(1)?);
            let (y, bias) = if vector_of(ctx, b, hidden) {
                (a, b)
            } else if vector_of(ctx, a, hidden) {
                (b, a)
            } else {
                return None;
            };
            proven(y).then_some((b_add, y, bias))
        };
        let mut nodes = vec![add, ln];
        let (input, skip, bias) = match (biased(p), biased(q)) {
            (Some((b_add, y, bias)), _) => {
                nodes.push(b_add);
                (y, q, Some(bias))
            }
            (None, Some((b_add, y, bias))) => {
                nodes.push(b_add);
                (y, p, Some(bias))
            }
            (None, None) => (p, q, None),
        };
        if ctx.portable {
            return Err(Decline::because(
                "portable output: SkipLayerNormalization is not a standard ONNX op",
            ));
        }
        if dtype(g, input) != Some(DataType::F32) || dtype(g, skip) != Some(DataType::F32) {
            return Err(Decline::because("SkipLayerNormalization runs float32 only"));
        }
        assigned_to(ctx, &nodes, &["cpu"])?;
        Ok(Found {
            inputs: [Some(input), Some(skip), Some(gamma), beta, bias],
            epsilon: n.attrs.get_float("epsilon").unwrap_or(1e-5),
            nodes,
            out: n.output(0).ok_or(Decline::NoMatch)?,
        })
    }

    fn apply(&self, ctx: &mut PassCtx, f: Found) -> Result<(), IrError> {
        let g = &mut ctx.model.graph;
        let name = g.node(f.nodes[1]).name.clone();
        // Trailing absent inputs are dropped; an absent beta before a bias stays as "".
        let mut inputs = f.inputs.to_vec();
        while inputs.last() == Some(&None) {
            inputs.pop();
        }
        let node = Node::new(&name, "SkipLayerNormalization", "com.microsoft")
            .with_inputs(&inputs)
            .with_outputs(&[Some(f.out)])
            .with_attrs(vec![Attribute::float("epsilon", f.epsilon)]);
        replace(g, &f.nodes, node)?;
        ctx.model.ensure_opset("com.microsoft", 1);
        Ok(())
    }
}

fusion_pass!(
    SkipLayerNorm,
    "skip_layer_norm_fusion",
    Level::Extended,
    &["cpu"]
);
