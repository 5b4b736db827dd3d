//! Pattern passes split in two, as ONNX Runtime's selector/action and rten's fusions: `select`
//! looks at a node and either returns what to rewrite or says why not; `apply` rewrites through
//! the IR's mutation API. The driver below walks the graph, applies matches and records declines.
use kiln_ir::{Graph, IrError, NodeId};

use crate::{PassCtx, PassReport};

/// Why a pattern does not apply at a node.
#[derive(Debug, Clone, PartialEq)]
pub enum Decline {
    /// Nothing here looks like the pattern (not reported).
    NoMatch,
    /// It looks like the pattern, but a precondition fails (reported with the reason).
    CheckFailed(String),
}

impl Decline {
    pub fn because(reason: impl Into<String>) -> Decline {
        Decline::CheckFailed(reason.into())
    }
}

pub trait Fusion: Send + Sync {
    type Match;
    /// Tries the pattern rooted at `node`.
    fn select(&self, ctx: &PassCtx, node: NodeId) -> Result<Self::Match, Decline>;
    /// Rewrites a match.
    fn apply(&self, ctx: &mut PassCtx, m: Self::Match) -> Result<(), IrError>;
}

/// `impl Pass` for a fusion that runs on freshly inferred shapes:
/// `fusion_pass!(Type, "name", Level::Extended, &["cpu"])`.
macro_rules! fusion_pass {
    ($ty:ty, $name:literal, $level:expr, $providers:expr) => {
        impl crate::Pass for $ty {
            fn name(&self) -> &'static str {
                $name
            }

            fn level(&self) -> crate::Level {
                $level
            }

            fn providers(&self) -> &'static [&'static str] {
                $providers
            }

            fn run(&self, ctx: &mut crate::PassCtx, report: &mut crate::PassReport) {
                let _ = kiln_ops::infer_shapes(ctx.model);
                crate::fusion::run_fusion(self, ctx, report)
            }
        }
    };
}
pub(crate) use fusion_pass;

/// Tries `f` at every node (in topological order, skipping nodes a previous rewrite removed).
pub fn run_fusion<F: Fusion>(f: &F, ctx: &mut PassCtx, report: &mut PassReport) {
    let order: Vec<NodeId> = ctx.model.graph.order().to_vec();
    for id in order {
        if !ctx.model.graph.contains_node(id) {
            continue;
        }
        match f.select(ctx, id) {
            Ok(m) => match f.apply(ctx, m) {
                Ok(()) => report.applied += 1,
                Err(e) => report.declined.push((
                    describe(&ctx.model.graph, id),
                    format!("rewrite failed: {e}"),
                )),
            },
            Err(Decline::NoMatch) => {}
            Err(Decline::CheckFailed(reason)) => report
                .declined
                .push((describe(&ctx.model.graph, id), reason)),
        }
    }
}

fn describe(g: &Graph, id: NodeId) -> String {
    if g.contains_node(id) {
        g.describe(id)
    } else {
        format!("node #{}", id.0)
    }
}

/// The single consumer of `v` when it has exactly one use and is not a graph output.
pub fn lone_consumer(g: &Graph, v: kiln_ir::ValueId) -> Result<NodeId, Decline> {
    let val = g.value(v);
    if g.is_graph_output(v) {
        return Err(Decline::because(format!(
            "'{}' is a graph output",
            val.name
        )));
    }
    match val.consumers() {
        [u] => Ok(u.node),
        [] => Err(Decline::NoMatch),
        _ => Err(Decline::because(format!(
            "'{}' has {} consumers",
            val.name,
            val.consumers().len()
        ))),
    }
}
