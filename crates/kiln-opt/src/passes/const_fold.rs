//! Constant folding: a node whose inputs are all constants is computed once with kiln's CPU
//! kernel and replaced by initializers; Shape and Size of statically known shapes fold too, and
//! so does a Gather or Slice of a Shape that picks only dims known statically (an exporter's
//! `x.shape[-1]` of a `[batch, heads, seq, 64]` tensor is 64 whatever the batch).
use std::sync::Arc;

use kiln_ir::{AttrList, IrError, NodeId, ValueType};
use kiln_ops::{KernelCtx, Tensor, Value};

use crate::fusion::{run_fusion, Decline, Fusion};
use crate::{Level, Pass, PassCtx, PassReport};

pub struct ConstantFolding;

/// Ops whose outputs are not a function of their inputs.
const NONDETERMINISTIC: &[&str] = &[
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Bernoulli",
    "Multinomial",
];

/// From IR version 4 a graph input may override the initializer of the same name, so such a
/// value is not a constant; before, initializers had to be listed as inputs and are constants.
pub fn is_constant(model: &kiln_ir::Model, v: kiln_ir::ValueId) -> bool {
    let g = &model.graph;
    g.value(v).initializer.is_some() && (model.ir_version < 4 || !g.inputs().contains(&v))
}

/// What folds: a node computed from its constant inputs, or a part of a shape already
/// computed (the node's one output).
pub enum Folded {
    Node(NodeId),
    ShapePart(NodeId, Tensor),
}

/// Stands for a dim not known statically in a stand-in shape: no real dim is this.
const UNKNOWN_DIM: i64 = i64::MIN;

/// A Gather or Slice of a Shape whose picked dims are all known: the picked values.
fn shape_part(ctx: &PassCtx, id: NodeId) -> Option<Tensor> {
    let g = &ctx.model.graph;
    let n = g.node(id);
    if !(n.domain.is_empty() || n.domain == "ai.onnx")
        || !matches!(n.op_type.as_str(), "Gather" | "Slice")
        || n.outputs().len() != 1
    {
        return None;
    }
    let src = n.input(0)?;
    let (shape_node, _) = g.value(src).producer()?;
    let sn = g.node(shape_node);
    if !(sn.op_type == "Shape" && (sn.domain.is_empty() || sn.domain == "ai.onnx")) {
        return None;
    }
    let dims = g.value(sn.input(0)?).ty.as_ref()?.shape()?;
    if n.inputs()[1..]
        .iter()
        .flatten()
        .any(|&v| !is_constant(ctx.model, v))
    {
        return None;
    }
    // Shape's own start/end (opset 15) first, clamped as the op does.
    let r = dims.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let start = clamp(sn.attrs.get_int("start").unwrap_or(0));
    let end = clamp(sn.attrs.get_int("end").unwrap_or(r));
    let picked: Vec<i64> = dims[start..end.max(start)]
        .iter()
        .map(|d| d.known().unwrap_or(UNKNOWN_DIM))
        .collect();
    let stand_in = Value::Tensor(Tensor::new(vec![picked.len()], kiln_ops::Data::I64(picked)));
    let rest: Vec<Option<Value>> = n.inputs()[1..]
        .iter()
        .map(|v| {
            v.and_then(|v| g.constant(v))
                .map(|t| Value::Tensor(Tensor::from_ir(t)))
        })
        .collect();
    let mut inputs = vec![Some(&stand_in)];
    inputs.extend(rest.iter().map(|v| v.as_ref()));
    let domain = "";
    let kctx = KernelCtx {
        op_type: &n.op_type,
        domain,
        opset: ctx.model.opset(domain).unwrap_or(1),
        attrs: &n.attrs,
        inputs,
        num_outputs: 1,
        subgraphs: None,
        donated: Default::default(),
    };
    let out = kiln_ops::kernel_fn(domain, &n.op_type)?(&kctx).ok()?;
    match out.into_iter().next()? {
        Value::Tensor(t) => match &t.data {
            kiln_ops::Data::I64(v) if !v.contains(&UNKNOWN_DIM) => Some(t),
            _ => None,
        },
        _ => None,
    }
}

impl Fusion for ConstantFolding {
    type Match = Folded;

    fn select(&self, ctx: &PassCtx, id: NodeId) -> Result<Folded, Decline> {
        let g = &ctx.model.graph;
        let n = g.node(id);
        if let Some(t) = shape_part(ctx, id) {
            if n.outputs().iter().flatten().any(|o| g.is_graph_output(*o)) {
                return Err(Decline::NoMatch);
            }
            return Ok(Folded::ShapePart(id, t));
        }
        // A dequantized constant is a quantized weight: the quantized graph reads its 8-bit
        // data (QLinearConv, MatMulNBits), which folding would replace by a float copy (ORT
        // skips DequantizeLinear the same way).
        if NONDETERMINISTIC.contains(&n.op_type.as_str())
            || n.op_type == "DequantizeLinear"
            || n.subgraphs().next().is_some()
            || !n.implicit_inputs().is_empty()
        {
            return Err(Decline::NoMatch);
        }
        let static_shape = matches!(n.op_type.as_str(), "Shape" | "Size")
            && n.input(0)
                .and_then(|v| g.value(v).ty.as_ref())
                .and_then(ValueType::known_shape)
                .is_some();
        let all_const = n
            .inputs()
            .iter()
            .flatten()
            .all(|&v| is_constant(ctx.model, v));
        if !(static_shape || all_const) {
            return Err(Decline::NoMatch);
        }
        let domain = if n.domain == "ai.onnx" { "" } else { &n.domain };
        if kiln_ops::kernel_fn(domain, &n.op_type).is_none() {
            return Err(Decline::because(format!(
                "no CPU kernel for {} to compute it",
                n.op_key()
            )));
        }
        if let Some(o) = n
            .outputs()
            .iter()
            .flatten()
            .find(|o| g.is_graph_output(**o))
        {
            return Err(Decline::because(format!(
                "its output '{}' is a graph output",
                g.value(*o).name
            )));
        }
        Ok(Folded::Node(id))
    }

    fn apply(&self, ctx: &mut PassCtx, m: Folded) -> Result<(), IrError> {
        let id = match m {
            Folded::Node(id) => id,
            Folded::ShapePart(id, t) => {
                let out = ctx.model.graph.node(id).outputs()[0];
                let out = out.ok_or_else(|| IrError::Invalid("no output to fold".into()))?;
                install(&mut ctx.model.graph, id, vec![(out, t.to_ir())]);
                return Ok(());
            }
        };
        let model = &mut *ctx.model;
        let g = &model.graph;
        let n = g.node(id);
        let domain = if n.domain == "ai.onnx" {
            ""
        } else {
            n.domain.as_str()
        };
        let kernel = kiln_ops::kernel_fn(domain, &n.op_type).expect("checked in select");
        let opset = model.opset(domain).unwrap_or(1);
        // Shape/Size of a non-constant input: feed a stand-in of the right shape (the kernels
        // read only the shape).
        let stand_ins: Vec<Option<Value>> = n
            .inputs()
            .iter()
            .map(|v| {
                v.and_then(|v| match g.constant(v) {
                    Some(t) => Some(Value::Tensor(Tensor::from_ir(t))),
                    None => {
                        let shape = g.value(v).ty.as_ref()?.known_shape()?;
                        let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
                        let len = dims.iter().product();
                        Some(Value::Tensor(Tensor::new(
                            dims,
                            kiln_ops::Data::Bool(vec![false; len]),
                        )))
                    }
                })
            })
            .collect();
        let kctx = KernelCtx {
            op_type: &n.op_type,
            domain,
            opset,
            attrs: &n.attrs,
            inputs: stand_ins.iter().map(|v| v.as_ref()).collect(),
            num_outputs: n.outputs().len(),
            subgraphs: None,
            donated: Default::default(),
        };
        let outs =
            kernel(&kctx).map_err(|e| IrError::Invalid(format!("{}: {e}", g.describe(id))))?;
        let outputs: Vec<Option<kiln_ir::ValueId>> = n.outputs().to_vec();
        let mut tensors = Vec::new();
        for (slot, v) in outputs.iter().zip(outs) {
            if let Some(slot) = slot {
                let Value::Tensor(t) = v else {
                    return Err(IrError::Invalid("a folded output is not a tensor".into()));
                };
                tensors.push((*slot, t.to_ir()));
            }
        }
        install(&mut model.graph, id, tensors);
        Ok(())
    }
}

/// Removes node `id` and makes its outputs the constants `tensors`.
fn install(g: &mut kiln_ir::Graph, id: NodeId, tensors: Vec<(kiln_ir::ValueId, kiln_ir::Tensor)>) {
    {
        g.detach_node(id);
        for (v, t) in tensors {
            let dims = t
                .dims
                .iter()
                .map(|&d| kiln_ir::Dim::Known(d as i64))
                .collect();
            let val = g.value_mut(v);
            val.ty = Some(ValueType::tensor(t.dtype, dims));
            val.initializer = Some(Arc::new(t));
        }
    }
}

impl Pass for ConstantFolding {
    fn name(&self) -> &'static str {
        "constant_folding"
    }

    fn level(&self) -> Level {
        Level::Basic
    }

    fn run(&self, ctx: &mut PassCtx, report: &mut PassReport) {
        // Shapes must be known for Shape/Size to fold; a model inference cannot handle simply
        // folds less.
        let _ = kiln_ops::infer_shapes(ctx.model);
        run_fusion(self, ctx, report)
    }
}
