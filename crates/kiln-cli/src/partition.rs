//! `kiln partition`: how the graph is split across execution providers, and why each provider
//! declined the nodes it did not take.
use anyhow::Context;
use serde_json::{json, Map};

use crate::args::RunArgs;
use crate::report;

pub fn run(a: RunArgs) -> anyhow::Result<()> {
    let (model, name) = report::load(a.model.as_deref())?;
    let session = report::session(model, &a).with_context(|| name.clone())?;
    let g = &session.model().graph;
    let providers = session.providers();
    let asg = session.assignment();
    let label = |n: kiln_ir::NodeId| {
        let node = g.node(n);
        if node.name.is_empty() {
            g.describe(n)
        } else {
            node.name.clone()
        }
    };
    let mut per_ep = Map::new();
    for (i, count) in asg.nodes_per_ep(providers.len()).into_iter().enumerate() {
        per_ep.insert(providers[i].name().to_string(), json!(count));
    }
    let partitions: Vec<_> = asg
        .partitions
        .iter()
        .map(|p| json!({"ep": providers[p.ep].name(), "nodes": p.nodes.iter().map(|&n| label(n)).collect::<Vec<_>>()}))
        .collect();
    let rejected: Vec<_> = asg
        .rejected
        .iter()
        .map(|r| json!({"node": label(r.node), "op": g.node(r.node).op_key(), "ep": providers[r.ep].name(), "reason": r.reason}))
        .collect();
    let devices: Map<_, _> = providers
        .iter()
        .filter_map(|p| p.device().map(|d| (p.name().to_string(), json!(d))))
        .collect();
    if a.json {
        let out = json!({
            "devices": devices,
            "num_partitions": asg.partitions.len(),
            "nodes_per_ep": per_ep,
            "partitions": partitions,
            "rejected": rejected,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    for (ep, d) in &devices {
        println!("{ep} device: {}", d.as_str().unwrap_or(""));
    }
    println!("{name}: {} partitions", asg.partitions.len());
    for (ep, n) in &per_ep {
        println!("  {ep:<8} {n} nodes");
    }
    for (i, p) in asg.partitions.iter().enumerate() {
        println!(
            "partition {i}: {} ({} nodes)",
            providers[p.ep].name(),
            p.nodes.len()
        );
    }
    for r in &asg.rejected {
        println!(
            "rejected   {} ({}) by {}: {}",
            label(r.node),
            g.node(r.node).op_key(),
            providers[r.ep].name(),
            r.reason
        );
    }
    Ok(())
}
