//! Removes nodes that pass their input through unchanged: Identity, and Dropout outside
//! training (its mask unused).
use kiln_ir::{AttrList, IrError, NodeId, ValueId};

use crate::fusion::{run_fusion, Decline, Fusion};
use crate::{Level, Pass, PassCtx, PassReport};

pub struct Eliminate;

pub struct Found {
    node: NodeId,
    input: ValueId,
    output: ValueId,
}

impl Fusion for Eliminate {
    type Match = Found;

    fn select(&self, ctx: &PassCtx, id: NodeId) -> Result<Found, Decline> {
        let g = &ctx.model.graph;
        let n = g.node(id);
        if !(n.domain.is_empty() || n.domain == "ai.onnx") {
            return Err(Decline::NoMatch);
        }
        match n.op_type.as_str() {
            "Identity" => {}
            "Dropout" => {
                if let Some(mask) = n.output(1) {
                    if !g.value(mask).consumers().is_empty() || g.is_graph_output(mask) {
                        return Err(Decline::because("Dropout's mask is used"));
                    }
                }
                // Before opset 7 Dropout trains unless `is_test` says otherwise.
                if ctx.model.opset("").unwrap_or(0) < 7
                    && n.attrs.get_int("is_test").unwrap_or(0) == 0
                {
                    return Err(Decline::because(
                        "Dropout runs in training mode (is_test = 0)",
                    ));
                }
                if let Some(t) = n.input(2) {
                    match g.constant(t).and_then(|c| c.to_i64_vec()) {
                        Some(v) if v.iter().all(|&x| x == 0) => {}
                        _ => {
                            return Err(Decline::because(
                                "Dropout's training_mode is not a constant false",
                            ))
                        }
                    }
                }
            }
            _ => return Err(Decline::NoMatch),
        }
        let (Some(input), Some(output)) = (n.input(0), n.output(0)) else {
            return Err(Decline::NoMatch);
        };
        if g.is_graph_output(output) {
            return Err(Decline::because(format!(
                "its output '{}' is a graph output",
                g.value(output).name
            )));
        }
        Ok(Found {
            node: id,
            input,
            output,
        })
    }

    fn apply(&self, ctx: &mut PassCtx, m: Found) -> Result<(), IrError> {
        let g = &mut ctx.model.graph;
        g.replace_uses(m.output, m.input, false)?;
        g.remove_node(m.node)?;
        Ok(())
    }
}

impl Pass for Eliminate {
    fn name(&self) -> &'static str {
        "identity_elimination"
    }

    fn level(&self) -> Level {
        Level::Basic
    }

    fn run(&self, ctx: &mut PassCtx, report: &mut PassReport) {
        run_fusion(self, ctx, report)
    }
}
