//! Constant folding: a node whose inputs are all constants is computed once with kiln's CPU
//! kernel and replaced by initializers; Shape and Size of statically known shapes fold too.
use std::sync::Arc;

use kiln_ir::{IrError, NodeId, ValueType};
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

impl Fusion for ConstantFolding {
    type Match = NodeId;

    fn select(&self, ctx: &PassCtx, id: NodeId) -> Result<NodeId, Decline> {
        let g = &ctx.model.graph;
        let n = g.node(id);
        if NONDETERMINISTIC.contains(&n.op_type.as_str())
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
        Ok(id)
    }

    fn apply(&self, ctx: &mut PassCtx, id: NodeId) -> Result<(), IrError> {
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
        let g = &mut model.graph;
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
        Ok(())
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
