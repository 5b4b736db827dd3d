//! Shape and type inference over a whole graph: each node's rule runs in topological order on
//! what is known of its inputs; results are merged with the types the model declares.
use std::collections::{BTreeMap, HashMap};

use kiln_ir::{AttrList, Dim, Graph, Model, Tensor, ValueId, ValueType};

use crate::ctx::{InferCtx, InputInfo, SymValue};
use crate::ops::infer_fn;

/// An op's rule refused its inputs (wrong ranks, mismatched sizes, bad attributes).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{node}: {reason}")]
pub struct InferError {
    pub node: String,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct InferReport {
    /// Nodes whose op has no inference rule, by op key.
    pub unknown_ops: BTreeMap<String, usize>,
    /// Known values of small integer tensors (shape computations).
    pub values: HashMap<ValueId, SymValue>,
}

/// Infers the type of every value of the main graph, writing it to `Value::ty`.
pub fn infer_shapes(model: &mut Model) -> Result<InferReport, InferError> {
    let opsets: Vec<(String, i64)> = model
        .opsets
        .iter()
        .map(|o| (o.domain.clone(), o.version))
        .collect();
    infer_graph(&mut model.graph, &opsets)
}

/// Replaces the input `shape` of graph inputs with concrete or renamed dims before inference.
pub fn set_input_shape(g: &mut Graph, name: &str, dims: Vec<Dim>) -> Result<(), String> {
    let v = g
        .find_value(name)
        .filter(|v| g.inputs().contains(v))
        .ok_or_else(|| format!("the model has no input named '{name}'"))?;
    let dtype = g.value(v).ty.as_ref().and_then(|t| t.dtype());
    if let Some(old) = g.value(v).ty.as_ref().and_then(|t| t.shape()) {
        if old.len() != dims.len() {
            return Err(format!(
                "input '{name}' has rank {}, but {} dims were given",
                old.len(),
                dims.len()
            ));
        }
        for (i, (o, n)) in old.iter().zip(&dims).enumerate() {
            if let (Some(a), Some(b)) = (o.known(), n.known()) {
                if a != b {
                    return Err(format!(
                        "input '{name}' has size {a} in dimension {i}, not {b}"
                    ));
                }
            }
        }
    }
    g.value_mut(v).ty = Some(ValueType::Tensor {
        dtype,
        shape: Some(dims),
    });
    Ok(())
}

fn merge(inferred: Option<ValueType>, declared: Option<&ValueType>) -> Option<ValueType> {
    match (inferred, declared) {
        (
            Some(ValueType::Tensor { dtype, shape }),
            Some(ValueType::Tensor {
                dtype: d2,
                shape: s2,
            }),
        ) => {
            let shape = match (shape, s2) {
                (Some(a), Some(b)) if a.len() == b.len() => Some(
                    a.into_iter()
                        .zip(b)
                        .map(|(x, y)| if x.is_unknown() { y.clone() } else { x })
                        .collect(),
                ),
                (None, b) => b.clone(),
                (a, _) => a,
            };
            Some(ValueType::Tensor {
                dtype: dtype.or(*d2),
                shape,
            })
        }
        (Some(t), _) => Some(t),
        (None, d) => d.cloned(),
    }
}

fn infer_graph(g: &mut Graph, opsets: &[(String, i64)]) -> Result<InferReport, InferError> {
    let mut report = InferReport::default();
    let mut consts: HashMap<ValueId, Tensor> = HashMap::new();
    for id in g.order().to_vec() {
        let node = g.node(id);
        let Some(rule) = infer_fn(&node.domain, &node.op_type) else {
            *report.unknown_ops.entry(node.op_key()).or_default() += 1;
            continue;
        };
        let domain = if node.domain == "ai.onnx" {
            ""
        } else {
            node.domain.as_str()
        };
        let opset = opsets
            .iter()
            .find(|(d, _)| d == domain)
            .map(|(_, v)| *v)
            .unwrap_or(1);
        let inputs = node
            .inputs()
            .iter()
            .map(|v| {
                v.map(|v| InputInfo {
                    ty: g.value(v).ty.as_ref(),
                    constant: g.constant(v).or_else(|| consts.get(&v)),
                    value: report.values.get(&v),
                })
            })
            .collect();
        let ctx = InferCtx {
            op_type: &node.op_type,
            domain,
            opset,
            attrs: &node.attrs,
            inputs,
            num_outputs: node.outputs().len(),
        };
        let results = rule(&ctx).map_err(|reason| InferError {
            node: g.describe(id),
            reason,
        })?;
        let outputs: Vec<Option<ValueId>> = node.outputs().to_vec();
        let constant = (node.op_type == "Constant")
            .then(|| node.attrs.get_tensor("value").cloned())
            .flatten();
        for (i, out) in outputs.iter().enumerate() {
            let Some(v) = *out else { continue };
            let r = results.get(i).cloned().unwrap_or_default();
            let merged = merge(r.ty, g.value(v).declared.as_ref());
            g.value_mut(v).ty = merged;
            if let Some(sv) = r.value {
                report.values.insert(v, sv);
            }
            if let Some(t) = &constant {
                consts.insert(v, t.clone());
            }
        }
    }
    Ok(report)
}
