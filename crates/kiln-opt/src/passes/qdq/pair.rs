//! `Q(DQ(x))` with the same scale, zero point and type -> `x`: the pair gives back the bytes it
//! was given, so its readers read `x`.
use kiln_ir::{IrError, NodeId};

use super::{check_nodes, Params};
use crate::fusion::{fusion_pass, Decline, Fusion};
use crate::{Level, PassCtx};

pub struct QdqRedundantPair;

pub struct Found {
    dq: Params,
    q: Params,
}

impl Fusion for QdqRedundantPair {
    type Match = Found;

    /// Rooted at the QuantizeLinear.
    fn select(&self, ctx: &PassCtx, id: NodeId) -> Result<Found, Decline> {
        let g = &ctx.model.graph;
        let n = g.node(id);
        if n.op_type != "QuantizeLinear" {
            return Err(Decline::NoMatch);
        }
        let v = n.input(0).ok_or(Decline::NoMatch)?;
        let dq = super::dq(ctx, v)?;
        // The DQ may have other readers: they keep it.
        let q = super::read(ctx, id, n.output(0).ok_or(Decline::NoMatch)?, v)?;
        if !dq.same(&q) {
            return Err(Decline::NoMatch);
        }
        if g.is_graph_output(q.data) {
            return Err(Decline::because("the QuantizeLinear writes a graph output"));
        }
        check_nodes(ctx, &[dq.node, q.node], true)?;
        Ok(Found { dq, q })
    }

    fn apply(&self, ctx: &mut PassCtx, f: Found) -> Result<(), IrError> {
        let g = &mut ctx.model.graph;
        g.replace_uses(f.q.data, f.dq.data, false)?;
        g.remove_node(f.q.node)?;
        let unused = g.value(f.dq.float).consumers().is_empty() && !g.is_graph_output(f.dq.float);
        if unused {
            g.remove_node(f.dq.node)?;
        }
        Ok(())
    }
}

fusion_pass!(
    QdqRedundantPair,
    "qdq_redundant_pair",
    Level::Extended,
    super::QDQ_PROVIDERS
);
