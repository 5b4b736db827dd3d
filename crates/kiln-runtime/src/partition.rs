//! Assigns nodes to providers by priority (a node once assigned is never taken by a later
//! provider), orders the nodes so that each provider's nodes form as few runs as it can, cuts
//! that order into partitions, and keeps every reason a provider gave for declining a node.
//!
//! The order is a topological sort that stays with one provider while any of its nodes is ready
//! (ONNX Runtime's greedy grouping, `CreateSupportedPartitions`, works the same way). A partition
//! is a run of that order, so no path can leave a partition and re-enter it: a compiled partition
//! never needs a value it produces itself.
use std::sync::Arc;

use kiln_ir::{Model, NodeId};

use crate::{ExecutionProvider, RuntimeError};

#[derive(Debug, Clone)]
pub struct Partition {
    /// Index into the session's providers.
    pub ep: usize,
    pub nodes: Vec<NodeId>,
}

#[derive(Debug, Clone)]
pub struct Rejection {
    pub node: NodeId,
    pub ep: usize,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Assignment {
    /// Provider index per node (indexed by `NodeId`).
    pub ep_of: Vec<Option<usize>>,
    pub partitions: Vec<Partition>,
    pub rejected: Vec<Rejection>,
    /// Every assigned node once, in the order they run: the partitions one after another.
    pub order: Vec<NodeId>,
}

impl Assignment {
    pub fn ep(&self, node: NodeId) -> Option<usize> {
        self.ep_of.get(node.0 as usize).copied().flatten()
    }

    /// Number of nodes per provider index.
    pub fn nodes_per_ep(&self, providers: usize) -> Vec<usize> {
        let mut n = vec![0; providers];
        for ep in self.ep_of.iter().flatten() {
            n[*ep] += 1;
        }
        n
    }
}

/// Assigns every node, or fails naming the first node no provider claims.
pub fn assign(
    model: &Model,
    providers: &[Arc<dyn ExecutionProvider>],
) -> Result<Assignment, RuntimeError> {
    assign_with(model, providers, true)
}

/// Assigns what providers claim and leaves the rest unassigned (for saving an optimized model
/// that kiln itself could not run).
pub fn assign_lenient(model: &Model, providers: &[Arc<dyn ExecutionProvider>]) -> Assignment {
    assign_with(model, providers, false).expect("lenient assignment does not fail")
}

fn assign_with(
    model: &Model,
    providers: &[Arc<dyn ExecutionProvider>],
    strict: bool,
) -> Result<Assignment, RuntimeError> {
    let g = &model.graph;
    let slots = g
        .order()
        .iter()
        .map(|n| n.0 as usize + 1)
        .max()
        .unwrap_or(0);
    let mut ep_of: Vec<Option<usize>> = vec![None; slots];
    let mut rejected = Vec::new();
    for (i, p) in providers.iter().enumerate() {
        let offered: Vec<NodeId> = g
            .order()
            .iter()
            .copied()
            .filter(|n| ep_of[n.0 as usize].is_none())
            .collect();
        if offered.is_empty() {
            break;
        }
        let cap = p.get_capability(model, &offered);
        for n in cap.claimed {
            // Only offered nodes can be claimed: a provider cannot steal an assigned node.
            if offered.contains(&n) && ep_of[n.0 as usize].is_none() {
                ep_of[n.0 as usize] = Some(i);
            }
        }
        for (node, reason) in cap.declined {
            rejected.push(Rejection {
                node,
                ep: i,
                reason,
            });
        }
    }
    if let Some(&n) = g
        .order()
        .iter()
        .find(|n| strict && ep_of[n.0 as usize].is_none())
    {
        let reasons: Vec<String> = rejected
            .iter()
            .filter(|r| r.node == n)
            .map(|r| format!("{}: {}", providers[r.ep].name(), r.reason))
            .collect();
        return Err(RuntimeError::Unassigned {
            node: g.describe(n),
            reasons: if reasons.is_empty() {
                "no provider claimed it".into()
            } else {
                reasons.join("; ")
            },
        });
    }
    let order = grouped_order(model, &ep_of);
    let mut partitions: Vec<Partition> = Vec::new();
    for &n in &order {
        let ep = ep_of[n.0 as usize].expect("only assigned nodes are ordered");
        match partitions.last_mut() {
            Some(p) if p.ep == ep => p.nodes.push(n),
            _ => partitions.push(Partition { ep, nodes: vec![n] }),
        }
    }
    Ok(Assignment {
        ep_of,
        partitions,
        rejected,
        order,
    })
}

/// A topological order of the assigned nodes that keeps taking ready nodes of the current
/// provider and, when it has none, moves to the provider of highest priority that has one.
/// Among ready nodes of one provider the graph's own order decides, so a single provider keeps
/// the graph's order exactly. Unassigned nodes are left out (they only occur when lenient).
fn grouped_order(model: &Model, ep_of: &[Option<usize>]) -> Vec<NodeId> {
    use std::collections::BTreeSet;
    let g = &model.graph;
    let slots = ep_of.len();
    let mut rank = vec![usize::MAX; slots];
    for (i, n) in g.order().iter().enumerate() {
        rank[n.0 as usize] = i;
    }
    // Unresolved producers per node; values come from graph inputs, initializers or nodes.
    let mut waiting = vec![0usize; slots];
    let mut readers: Vec<Vec<NodeId>> = vec![Vec::new(); slots];
    for &n in g.order() {
        let node = g.node(n);
        let mut seen: Vec<NodeId> = Vec::new();
        for v in node.inputs().iter().flatten().chain(node.implicit_inputs()) {
            if let Some((p, _)) = g.value(*v).producer() {
                if !seen.contains(&p) {
                    seen.push(p);
                    waiting[n.0 as usize] += 1;
                    readers[p.0 as usize].push(n);
                }
            }
        }
    }
    let providers = ep_of.iter().flatten().max().map_or(0, |m| m + 1);
    // Ready nodes per provider, by graph rank; unassigned nodes go straight through.
    let mut ready: Vec<BTreeSet<(usize, u32)>> = vec![BTreeSet::new(); providers + 1];
    let key = |n: NodeId| ep_of[n.0 as usize].unwrap_or(providers);
    for &n in g.order() {
        if waiting[n.0 as usize] == 0 {
            ready[key(n)].insert((rank[n.0 as usize], n.0));
        }
    }
    let mut order = Vec::with_capacity(g.order().len());
    let mut current = providers;
    loop {
        if ready[current].is_empty() {
            // Unassigned nodes first (they are not run), then by priority.
            match std::iter::once(providers)
                .chain(0..providers)
                .find(|&e| !ready[e].is_empty())
            {
                Some(e) => current = e,
                None => break,
            }
        }
        let (_, id) = ready[current].pop_first().expect("non-empty");
        let n = NodeId(id);
        if current < providers {
            order.push(n);
        }
        for &r in &readers[id as usize] {
            let w = &mut waiting[r.0 as usize];
            *w -= 1;
            if *w == 0 {
                ready[key(r)].insert((rank[r.0 as usize], r.0));
            }
        }
    }
    order
}
