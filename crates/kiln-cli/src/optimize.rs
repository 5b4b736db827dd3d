//! `kiln optimize`: optimizes for the chosen providers and saves the model. Only
//! `--level disabled` (a faithful load/save round trip) exists so far.
use anyhow::Context;
use serde_json::json;

use crate::args::{Level, OptimizeArgs};
use crate::report::{self, op_counts};

pub fn run(a: OptimizeArgs) -> anyhow::Result<()> {
    let (model, name) = report::load(a.model.as_deref())?;
    if a.level != Level::Disabled {
        anyhow::bail!(
            "{name}: optimization level {:?} is not implemented yet; use --level disabled",
            a.level
        );
    }
    let before = op_counts(&model.graph);
    let nodes = model.graph.node_count();
    model
        .save(&a.output)
        .with_context(|| format!("{name}: saving {}", a.output.display()))?;
    if a.json {
        let out = json!({
            "model": name,
            "output": a.output.display().to_string(),
            "level": "disabled",
            "ep": a.ep,
            "nodes_before": nodes,
            "nodes_after": nodes,
            "op_counts_before": before,
            "op_counts_after": before,
            "passes": [],
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{name} -> {}: {nodes} nodes, level disabled (no passes)",
            a.output.display()
        );
    }
    Ok(())
}
