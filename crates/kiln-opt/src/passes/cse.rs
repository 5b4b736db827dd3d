//! Common-subexpression elimination: two nodes with the same op, attributes and inputs compute
//! the same values; the later one's readers are pointed at the earlier one's outputs.
use std::collections::HashMap;

use kiln_ir::{IrError, NodeId};

use crate::{Level, Pass, PassCtx, PassReport};

pub struct CommonSubexpressions;

const NONDETERMINISTIC: &[&str] = &[
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Bernoulli",
    "Multinomial",
];

impl CommonSubexpressions {
    /// The first node equal to `id` seen so far, recording `id` if there is none.
    fn key(g: &kiln_ir::Graph, id: NodeId) -> Option<String> {
        let n = g.node(id);
        if NONDETERMINISTIC.contains(&n.op_type.as_str()) || n.subgraphs().next().is_some() {
            return None;
        }
        // Attribute values print fully and deterministically, so their text is a fine key.
        Some(format!(
            "{}|{}|{:?}|{:?}|{:?}",
            n.domain,
            n.op_type,
            n.overload,
            n.inputs(),
            n.attrs
                .iter()
                .map(|a| (&a.name, format!("{:?}", a.value)))
                .collect::<Vec<_>>()
        ))
    }

    fn merge(g: &mut kiln_ir::Graph, keep: NodeId, drop: NodeId) -> Result<(), IrError> {
        let pairs: Vec<_> = g
            .node(drop)
            .outputs()
            .iter()
            .zip(g.node(keep).outputs())
            .filter_map(|(d, k)| Some(((*d)?, (*k)?)))
            .collect();
        for (d, k) in pairs {
            g.replace_uses(d, k, false)?;
        }
        g.remove_node(drop)?;
        Ok(())
    }
}

impl Pass for CommonSubexpressions {
    fn name(&self) -> &'static str {
        "common_subexpression_elimination"
    }

    fn level(&self) -> Level {
        Level::Basic
    }

    fn run(&self, ctx: &mut PassCtx, report: &mut PassReport) {
        let g = &mut ctx.model.graph;
        let mut seen: HashMap<String, NodeId> = HashMap::new();
        for id in g.order().to_vec() {
            let Some(key) = Self::key(g, id) else {
                continue;
            };
            let Some(&first) = seen.get(&key) else {
                seen.insert(key, id);
                continue;
            };
            let n = g.node(id);
            if let Some(o) = n
                .outputs()
                .iter()
                .flatten()
                .find(|o| g.is_graph_output(**o))
            {
                report.declined.push((
                    g.describe(id),
                    format!("its output '{}' is a graph output", g.value(*o).name),
                ));
                continue;
            }
            if n.outputs().len() != g.node(first).outputs().len()
                || n.outputs()
                    .iter()
                    .zip(g.node(first).outputs())
                    .any(|(a, b)| a.is_some() && b.is_none())
            {
                continue;
            }
            match Self::merge(g, first, id) {
                Ok(()) => report.applied += 1,
                Err(e) => report
                    .declined
                    .push((g.describe(id), format!("rewrite failed: {e}"))),
            }
        }
    }
}
