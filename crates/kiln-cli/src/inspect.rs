//! `kiln inspect`: what a model declares (opsets, inputs, outputs, op counts), and with
//! `--shapes` the type kiln infers for every value.
use anyhow::Context;
use kiln_ir::Model;
use serde_json::{json, Map, Value as Json};

use crate::args::InspectArgs;
use crate::report::{self, op_counts, shape_json, shape_text, type_name};

pub fn run(a: InspectArgs) -> anyhow::Result<()> {
    let (mut model, name) = report::load(a.model.as_deref())?;
    let mut unknown_ops = Default::default();
    if a.shapes || !a.shape.is_empty() {
        for s in &a.shape {
            let (input, dims) = report::parse_shape_arg(s)?;
            kiln_ops::infer::set_input_shape(&mut model.graph, &input, dims)
                .map_err(anyhow::Error::msg)
                .with_context(|| name.clone())?;
        }
        let r = kiln_ops::infer_shapes(&mut model).with_context(|| name.clone())?;
        unknown_ops = r.unknown_ops;
    }
    let g = &model.graph;
    // Inputs and outputs as the model declares them; `values` as inferred.
    let entry = |v: kiln_ir::ValueId, declared: bool| -> Json {
        let val = g.value(v);
        let ty = if declared {
            val.declared.as_ref()
        } else {
            val.ty.as_ref()
        };
        json!({"name": val.name, "dtype": type_name(ty), "shape": shape_json(ty)})
    };
    let mut opsets = Map::new();
    for o in &model.opsets {
        opsets.insert(o.domain.clone(), json!(o.version));
    }
    let inputs: Vec<Json> = g.real_inputs().map(|v| entry(v, true)).collect();
    let outputs: Vec<Json> = g.outputs().iter().map(|&v| entry(v, true)).collect();
    let counts = op_counts(g);
    let initializers = g.values().filter(|(_, v)| v.initializer.is_some()).count();
    let mut out = json!({
        "model": name,
        "ir_version": model.ir_version,
        "producer": model.producer_name.clone().unwrap_or_default(),
        "opsets": opsets,
        "inputs": inputs,
        "outputs": outputs,
        "nodes": g.node_count(),
        "initializers": initializers,
        "op_counts": counts,
    });
    if a.shapes {
        let values: Vec<Json> = value_order(&model)
            .into_iter()
            .map(|v| entry(v, false))
            .collect();
        out["values"] = Json::Array(values);
        out["ops_without_inference"] = json!(unknown_ops);
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_human(&model, &out, a.shapes);
    }
    Ok(())
}

/// Inputs, then initializers, then node outputs in topological order.
fn value_order(model: &Model) -> Vec<kiln_ir::ValueId> {
    let g = &model.graph;
    let mut order: Vec<_> = g.inputs().to_vec();
    for (id, v) in g.values() {
        if v.initializer.is_some() && !order.contains(&id) {
            order.push(id);
        }
    }
    for (_, n) in g.nodes() {
        order.extend(n.outputs().iter().flatten());
    }
    order
}

fn print_human(model: &Model, out: &Json, shapes: bool) {
    let g = &model.graph;
    println!("model      {}", out["model"].as_str().unwrap_or(""));
    println!(
        "producer   {} (IR version {})",
        out["producer"].as_str().unwrap_or(""),
        model.ir_version
    );
    let opsets: Vec<String> = model
        .opsets
        .iter()
        .map(|o| {
            let d = if o.domain.is_empty() {
                "ai.onnx"
            } else {
                &o.domain
            };
            format!("{d} {}", o.version)
        })
        .collect();
    println!("opsets     {}", opsets.join(", "));
    for (label, ids) in [
        ("input ", g.real_inputs().collect::<Vec<_>>()),
        ("output", g.outputs().to_vec()),
    ] {
        for v in ids {
            let val = g.value(v);
            println!(
                "{label}     {} {} {}",
                val.name,
                type_name(val.declared.as_ref()),
                shape_text(val.declared.as_ref())
            );
        }
    }
    println!(
        "nodes      {} ({} initializers)",
        g.node_count(),
        out["initializers"]
    );
    let mut counts: Vec<(String, usize)> = op_counts(g).into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    for (op, n) in counts {
        println!("  {n:>6}  {op}");
    }
    if shapes {
        println!("values");
        for v in value_order(model) {
            let val = g.value(v);
            println!(
                "  {:<40} {:<8} {}",
                val.name,
                type_name(val.ty.as_ref()),
                shape_text(val.ty.as_ref())
            );
        }
        if let Some(m) = out["ops_without_inference"]
            .as_object()
            .filter(|m| !m.is_empty())
        {
            println!(
                "ops without shape inference: {}",
                serde_json::to_string(m).unwrap_or_default()
            );
        }
    }
}
