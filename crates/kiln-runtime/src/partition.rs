//! Assigns nodes to providers by priority (a node once assigned is never taken by a later
//! provider), groups consecutive nodes of one provider into partitions, and keeps every reason a
//! provider gave for declining a node.
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
    let mut partitions: Vec<Partition> = Vec::new();
    for &n in g.order() {
        let Some(ep) = ep_of[n.0 as usize] else {
            continue;
        };
        match partitions.last_mut() {
            Some(p) if p.ep == ep => p.nodes.push(n),
            _ => partitions.push(Partition { ep, nodes: vec![n] }),
        }
    }
    Ok(Assignment {
        ep_of,
        partitions,
        rejected,
    })
}
