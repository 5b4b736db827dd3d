//! `kiln demo`: the optimizer at work on one model (the built-in demo model by default): what
//! each pass did and where it declined, how the graph is partitioned, and the fused graph's
//! outputs and speed against the unfused one.
use std::time::Instant;

use anyhow::Context;
use kiln_ops::Value;

use crate::args::{DemoArgs, Level, RunArgs};
use crate::bench::stats;
use crate::{default_model, report};

fn max_diff(a: &[(String, Value)], b: &[(String, Value)]) -> anyhow::Result<f64> {
    let mut worst = 0f64;
    for ((name, x), (_, y)) in a.iter().zip(b) {
        let (Some(x), Some(y)) = (x.tensor(), y.tensor()) else {
            continue;
        };
        anyhow::ensure!(x.shape == y.shape, "output '{name}' changed shape");
        let (p, q) = (
            x.to_f64s().map_err(anyhow::Error::msg)?,
            y.to_f64s().map_err(anyhow::Error::msg)?,
        );
        for (u, v) in p.iter().zip(&q) {
            worst = worst.max((u - v).abs());
        }
    }
    Ok(worst)
}

pub fn run(a: DemoArgs) -> anyhow::Result<()> {
    let (model, name) = report::load(a.model.as_deref())?;
    let shapes = if a.model.is_none() && a.shape.is_empty() {
        vec!["images=1,3,256,256".to_string()]
    } else {
        a.shape.clone()
    };
    let args = |level| RunArgs {
        model: None,
        level,
        ep: "cpu".into(),
        threads: a.threads,
        json: false,
        input: vec![],
        shape: shapes.clone(),
        out: None,
        memory_limit: None,
        precision: crate::args::Precision::F32,
    };
    let plain =
        report::session(model.clone(), &args(Level::Disabled)).with_context(|| name.clone())?;
    let fused = report::session(model.clone(), &args(Level::All)).with_context(|| name.clone())?;
    println!("{name}: {} nodes", model.graph.node_count());
    if a.model.is_none() {
        println!("  ({})", default_model::DESCRIPTION);
    }
    println!("\noptimizer passes at level all:");
    for p in &fused.optimize_report().passes {
        println!(
            "  {:<34} {:<9} applied {:>3}, declined {:>3}",
            p.name,
            p.level.map(|l| l.name()).unwrap_or(""),
            p.applied,
            p.declined.len()
        );
        for (node, reason) in p.declined.iter().take(2) {
            println!("      declined at {node}: {reason}");
        }
    }
    let before = report::op_counts(&model.graph);
    let after = report::op_counts(&fused.model().graph);
    println!("\nops before: {}", fmt_counts(&before));
    println!("ops after:  {}", fmt_counts(&after));
    let asg = fused.assignment();
    let per_ep = asg.nodes_per_ep(fused.providers().len());
    println!(
        "\npartitions: {} ({})",
        asg.partitions.len(),
        fused
            .providers()
            .iter()
            .zip(per_ep)
            .map(|(p, n)| format!("{}: {n} nodes", p.name()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let feeds = crate::run::inputs(&plain, &[], &shapes).with_context(|| name.clone())?;
    let want = plain.run(feeds.clone()).with_context(|| name.clone())?;
    let got = fused.run(feeds.clone()).with_context(|| name.clone())?;
    println!(
        "\nfused vs unfused outputs: max |difference| {:.3e}",
        max_diff(&want, &got)?
    );
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..a.iters.max(1) {
        for (i, s) in [&plain, &fused].iter().enumerate() {
            let start = Instant::now();
            s.run(feeds.clone()).with_context(|| name.clone())?;
            times[i].push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    let (p, f) = (stats(&times[0]).p50, stats(&times[1]).p50);
    println!(
        "timing (p50 of {} interleaved runs): unfused {p:.2} ms, fused {f:.2} ms, ratio fused/unfused {:.3}",
        a.iters.max(1),
        f / p
    );
    Ok(())
}

fn fmt_counts(c: &std::collections::BTreeMap<String, usize>) -> String {
    let mut v: Vec<_> = c.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
