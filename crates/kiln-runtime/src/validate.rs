//! What a model must satisfy before kiln optimizes or runs it, as ONNX Runtime refuses the
//! same models at load: opsets newer than kiln implements, and ops of ONNX's own domains that
//! kiln does not know (unless the caller allows passing them through).
use kiln_ir::{AttrValue, Graph, Model};

use crate::RuntimeError;

/// Checks opset versions and, unless `allow_unknown_ops`, that every op of an ONNX domain
/// (in subgraphs too) is one kiln knows.
pub fn validate(model: &Model, allow_unknown_ops: bool) -> Result<(), RuntimeError> {
    for o in &model.opsets {
        if let Some(max) = kiln_ops::max_opset(&o.domain) {
            if o.version > max {
                let d = if o.domain.is_empty() {
                    "ai.onnx"
                } else {
                    &o.domain
                };
                return Err(RuntimeError::Options(format!(
                    "the model imports opset {} of domain '{d}', newer than kiln implements (up to {max})",
                    o.version
                )));
            }
        }
    }
    if !allow_unknown_ops {
        unknown_ops(&model.graph)?;
    }
    Ok(())
}

fn unknown_ops(g: &Graph) -> Result<(), RuntimeError> {
    for &id in g.order() {
        let n = g.node(id);
        if kiln_ops::is_onnx_domain(&n.domain) && kiln_ops::op_def(&n.domain, &n.op_type).is_none()
        {
            return Err(RuntimeError::Node {
                node: g.describe(id),
                reason: format!(
                    "kiln does not know the op {} (pass --allow-unknown-ops to keep it as it is)",
                    n.op_key()
                ),
            });
        }
        for a in &n.attrs {
            match &a.value {
                AttrValue::Graph(b) => unknown_ops(b)?,
                AttrValue::Graphs(bs) => {
                    for b in bs {
                        unknown_ops(b)?;
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}
