//! `kiln optimize`: optimizes a model for the given providers and saves it, reporting per pass
//! how often it applied and where (and why) it declined. `--level disabled` is a faithful
//! load/save round trip.
use anyhow::Context;
use serde_json::json;

use crate::args::OptimizeArgs;
use crate::report::{self, op_counts};

pub fn run(a: OptimizeArgs) -> anyhow::Result<()> {
    let (model, name) = report::load(a.model.as_deref())?;
    let before = op_counts(&model.graph);
    let nodes_before = model.graph.node_count();
    let providers = report::providers(&a.ep)?;
    let (model, _, rep) = kiln_runtime::prepare(
        model,
        &providers,
        report::level(a.level),
        a.portable,
        false,
        a.allow_unknown_ops,
    )
    .with_context(|| name.clone())?;
    let after = op_counts(&model.graph);
    model
        .save(&a.output)
        .with_context(|| format!("{name}: saving {}", a.output.display()))?;
    if a.json {
        let passes: Vec<_> = rep
            .passes
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "level": p.level.map(|l| l.name()),
                    "applied": p.applied,
                    "declined": p.declined.iter().map(|(n, r)| json!({"node": n, "reason": r})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let out = json!({
            "model": name,
            "output": a.output.display().to_string(),
            "level": report::level(a.level).name(),
            "ep": a.ep,
            "nodes_before": nodes_before,
            "nodes_after": model.graph.node_count(),
            "op_counts_before": before,
            "op_counts_after": after,
            "passes": passes,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{name} -> {}: {nodes_before} -> {} nodes (level {})",
            a.output.display(),
            model.graph.node_count(),
            report::level(a.level).name()
        );
        for p in &rep.passes {
            println!(
                "  {:<40} applied {:>4}, declined {:>3}",
                p.name,
                p.applied,
                p.declined.len()
            );
        }
    }
    Ok(())
}
