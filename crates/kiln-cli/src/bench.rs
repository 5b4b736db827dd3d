//! `kiln bench`: times whole inference runs after warm-up. Several `--level` / `--ep` variants
//! run interleaved round by round (A B A B ...), so machine noise hits them alike.
use std::time::Instant;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value as Json};

use crate::args::{BenchArgs, Level, RunArgs};
use crate::report;

/// Summary statistics of run times, in milliseconds.
pub struct Stats {
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

pub fn stats(times: &[f64]) -> Stats {
    let mut t = times.to_vec();
    t.sort_by(|a, b| a.total_cmp(b));
    let n = t.len().max(1) as f64;
    let mean = t.iter().sum::<f64>() / n;
    let var = t.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
    let q = |p: f64| {
        t.get(((p * (t.len() as f64 - 1.0)).round()) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Stats {
        mean,
        std: var.sqrt(),
        min: q(0.0),
        p50: q(0.5),
        p99: q(0.99),
        max: q(1.0),
    }
}

fn level_name(l: Level) -> &'static str {
    report::level(l).name()
}

pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    let loading = Instant::now();
    let (model, name) = report::load(a.model.as_deref())?;
    let load_ms = loading.elapsed().as_secs_f64() * 1e3;
    let levels = if a.level.is_empty() {
        vec![Level::All]
    } else {
        a.level.clone()
    };
    let eps = if a.ep.is_empty() {
        vec!["cpu".to_string()]
    } else {
        a.ep.clone()
    };
    let mut variants = Vec::new();
    // Session creation (optimization, partitioning, weight packing) per variant; loading
    // the file is shared and reported once.
    let mut session_ms = Vec::new();
    let precisions = if a.precision.is_empty() {
        vec![crate::args::Precision::F32]
    } else {
        a.precision.clone()
    };
    for l in &levels {
        for (ep, p) in eps
            .iter()
            .flat_map(|ep| precisions.iter().map(move |p| (ep, *p)))
        {
            let args = RunArgs {
                model: None,
                level: *l,
                ep: ep.clone(),
                threads: a.threads,
                json: false,
                input: a.input.clone(),
                shape: a.shape.clone(),
                out: None,
                memory_limit: a.memory_limit.clone(),
                precision: p,
            };
            // A bfloat16 variant is told apart by its provider column.
            let ep = &match p {
                crate::args::Precision::F32 => ep.clone(),
                crate::args::Precision::Bf16 => format!("{ep} bf16"),
            };
            let creating = Instant::now();
            let session = report::session(model.clone(), &args)
                .with_context(|| format!("{name} (level {}, ep {ep})", level_name(*l)))?;
            session_ms.push(creating.elapsed().as_secs_f64() * 1e3);
            variants.push((*l, ep.clone(), session));
        }
    }
    let feeds =
        crate::run::inputs(&variants[0].2, &a.input, &a.shape).with_context(|| name.clone())?;
    let total = (a.warmup + a.iters * a.rounds) * variants.len();
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} runs, {eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(format!("bench {name}"));
    // The first run of each variant is timed on its own: it includes one-time work such as
    // GPU pipeline compilation and buffer planning.
    let mut first_ms = Vec::with_capacity(variants.len());
    for (l, ep, s) in &variants {
        for w in 0..a.warmup.max(1) {
            let start = Instant::now();
            s.run(feeds.clone())
                .with_context(|| format!("{name} (level {}, ep {ep})", level_name(*l)))?;
            if w == 0 {
                first_ms.push(start.elapsed().as_secs_f64() * 1e3);
            }
            bar.inc(1);
        }
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for _ in 0..a.rounds {
        for (i, (_, _, s)) in variants.iter().enumerate() {
            for _ in 0..a.iters {
                let inputs = feeds.clone();
                let start = Instant::now();
                s.run(inputs).with_context(|| name.clone())?;
                times[i].push(start.elapsed().as_secs_f64() * 1e3);
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    if let Some(n) = a.profile {
        profile(&variants[0].2, &feeds, n.max(1), a.profile_top).with_context(|| name.clone())?;
    }
    let threads = a.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let rows: Vec<Json> = variants
        .iter()
        .zip(&times)
        .zip(&first_ms)
        .zip(&session_ms)
        .map(|((((l, ep, sess), t), first), created)| {
            let s = stats(t);
            let asg = sess.assignment();
            let per_ep: serde_json::Map<String, Json> = sess
                .providers()
                .iter()
                .zip(asg.nodes_per_ep(sess.providers().len()))
                .map(|(p, n)| (p.name().to_string(), json!(n)))
                .collect();
            let devices: Vec<String> = sess.providers().iter().filter_map(|p| p.device()).collect();
            json!({
                "model": name, "level": level_name(*l), "ep": ep, "threads": threads,
                "iters": t.len(), "load_ms": load_ms, "session_ms": created, "first_ms": first, "mean_ms": s.mean, "std_ms": s.std,
                "min_ms": s.min, "p50_ms": s.p50, "p99_ms": s.p99, "max_ms": s.max,
                "partitions": asg.partitions.len(), "nodes_per_ep": per_ep, "devices": devices,
            })
        })
        .collect();
    if a.json {
        let out = if rows.len() == 1 {
            rows[0].clone()
        } else {
            json!({"variants": rows})
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "{name}: {threads} threads, {} runs per variant after {} warm-up",
        a.iters * a.rounds,
        a.warmup
    );
    let mut seen = Vec::new();
    for r in &rows {
        for d in r["devices"].as_array().into_iter().flatten() {
            if !seen.contains(d) {
                println!("device: {}", d.as_str().unwrap_or(""));
                seen.push(d.clone());
            }
        }
    }
    println!(
        "{:<10} {:<10} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "level", "ep", "parts", "first", "mean", "stddev", "min", "p50", "p99", "max"
    );
    for r in &rows {
        println!(
            "{:<10} {:<10} {:>5} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            r["level"].as_str().unwrap_or(""),
            r["ep"].as_str().unwrap_or(""),
            r["partitions"].as_u64().unwrap_or(0),
            r["first_ms"].as_f64().unwrap_or(0.0),
            r["mean_ms"].as_f64().unwrap_or(0.0),
            r["std_ms"].as_f64().unwrap_or(0.0),
            r["min_ms"].as_f64().unwrap_or(0.0),
            r["p50_ms"].as_f64().unwrap_or(0.0),
            r["p99_ms"].as_f64().unwrap_or(0.0),
            r["max_ms"].as_f64().unwrap_or(0.0)
        );
    }
    if rows.len() > 1 {
        let base = rows[0]["p50_ms"].as_f64().unwrap_or(1.0);
        for r in &rows[1..] {
            println!(
                "p50 ratio {} {} / {} {}: {:.3}",
                r["level"].as_str().unwrap_or(""),
                r["ep"].as_str().unwrap_or(""),
                rows[0]["level"].as_str().unwrap_or(""),
                rows[0]["ep"].as_str().unwrap_or(""),
                r["p50_ms"].as_f64().unwrap_or(0.0) / base
            );
        }
    }
    Ok(())
}

/// Per-node kernel times over `runs` runs, summed by op type and listed for the slowest nodes.
fn profile(
    s: &kiln_runtime::Session,
    feeds: &[(String, kiln_ops::Value)],
    runs: usize,
    top: usize,
) -> anyhow::Result<()> {
    let g = &s.model().graph;
    let mut per_node: std::collections::HashMap<kiln_ir::NodeId, f64> = Default::default();
    let mut wall = 0.0;
    for _ in 0..runs {
        let start = Instant::now();
        let (_, prof) = s.run_profiled(feeds.to_vec())?;
        wall += start.elapsed().as_secs_f64();
        for (id, t) in prof {
            *per_node.entry(id).or_default() += t;
        }
    }
    let ms = |t: f64| t * 1e3 / runs as f64;
    // A compiled partition is timed as one step, reported under its first node.
    let compiled: std::collections::HashMap<kiln_ir::NodeId, String> = s
        .assignment()
        .partitions
        .iter()
        .filter(|p| s.providers()[p.ep].compiles())
        .map(|p| {
            let name = s.providers()[p.ep].name();
            (
                p.nodes[0],
                format!("{name} partition of {} nodes", p.nodes.len()),
            )
        })
        .collect();
    let key = |id: &kiln_ir::NodeId| {
        compiled
            .get(id)
            .cloned()
            .unwrap_or_else(|| g.node(*id).op_key())
    };
    let mut by_op: std::collections::BTreeMap<String, (usize, f64)> = Default::default();
    for (id, t) in &per_node {
        let e = by_op.entry(key(id)).or_default();
        e.0 += 1;
        e.1 += t;
    }
    let kernels: f64 = per_node.values().sum();
    eprintln!(
        "profile over {runs} runs: {:.3} ms per run, {:.3} ms in kernels",
        ms(wall),
        ms(kernels)
    );
    let mut ops: Vec<_> = by_op.into_iter().collect();
    ops.sort_by(|a, b| b.1 .1.total_cmp(&a.1 .1));
    eprintln!("{:<28} {:>6} {:>10} {:>6}", "op", "nodes", "ms/run", "%");
    for (op, (n, t)) in &ops {
        eprintln!(
            "{op:<28} {n:>6} {:>10.3} {:>6.1}",
            ms(*t),
            100.0 * t / kernels.max(1e-12)
        );
    }
    let mut nodes: Vec<_> = per_node.into_iter().collect();
    nodes.sort_by(|a, b| b.1.total_cmp(&a.1));
    eprintln!("slowest nodes:");
    for (id, t) in nodes.iter().take(top) {
        let n = g.node(*id);
        let shape = |v: &kiln_ir::ValueId| match g.value(*v).ty.as_ref().and_then(|t| t.shape()) {
            Some(s) => s
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("x"),
            None => "?".into(),
        };
        let ins: Vec<String> = n.inputs().iter().flatten().map(shape).collect();
        let outs: Vec<String> = n.outputs().iter().flatten().map(shape).collect();
        match compiled.get(id) {
            Some(label) => eprintln!("{:>9.3} ms  {label} from {}", ms(*t), g.describe(*id)),
            None => eprintln!(
                "{:>9.3} ms  {} [{}] -> [{}]",
                ms(*t),
                g.describe(*id),
                ins.join(", "),
                outs.join(", ")
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics() {
        let s = stats(&[4.0, 1.0, 3.0, 2.0, 5.0]);
        assert_eq!((s.min, s.p50, s.max), (1.0, 3.0, 5.0));
        assert!((s.mean - 3.0).abs() < 1e-12);
        assert!((s.std - 2f64.sqrt()).abs() < 1e-12);
    }
}
