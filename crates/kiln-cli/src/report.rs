//! Shared pieces of the commands: loading the model named on the command line (or the built-in
//! one), and the JSON forms of types, shapes and op counts.
use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use kiln_ir::{Dim, Graph, Model, ValueType};
use serde_json::{json, Value as Json};

use crate::args::{Level, Precision, RunArgs};
use crate::default_model;

/// The optimizer level of a command-line level.
pub fn level(l: Level) -> kiln_runtime::Level {
    match l {
        Level::Disabled => kiln_runtime::Level::Disabled,
        Level::Basic => kiln_runtime::Level::Basic,
        Level::Extended => kiln_runtime::Level::Extended,
        Level::All => kiln_runtime::Level::All,
    }
}

/// The session precision of a command-line one.
pub fn precision(p: Precision) -> kiln_runtime::Precision {
    match p {
        Precision::F32 => kiln_runtime::Precision::F32,
        Precision::Bf16 => kiln_runtime::Precision::Bf16,
    }
}

/// Providers from `--ep a,b,...`, in priority order.
pub fn providers(
    list: &str,
) -> anyhow::Result<Vec<std::sync::Arc<dyn kiln_runtime::ExecutionProvider>>> {
    let mut providers: Vec<std::sync::Arc<dyn kiln_runtime::ExecutionProvider>> = Vec::new();
    for ep in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        // A provider's options follow its name: `wgpu:fused_conv=off`.
        let (name, opts) = ep.split_once(':').unwrap_or((ep, ""));
        match name {
            "cpu" if opts.is_empty() => {
                providers.push(std::sync::Arc::new(kiln_runtime::CpuProvider))
            }
            "cpu" => anyhow::bail!("the cpu provider takes no options (got '{opts}')"),
            "wgpu" => {
                let o = kiln_wgpu::WgpuOptions::parse(opts)?;
                providers.push(std::sync::Arc::new(kiln_wgpu::WgpuProvider::new(o)?))
            }
            other => anyhow::bail!("unknown execution provider '{other}' (kiln has: cpu, wgpu)"),
        }
    }
    if !providers.iter().any(|p| p.name() == "cpu") {
        providers.push(std::sync::Arc::new(kiln_runtime::CpuProvider));
    }
    Ok(providers)
}

/// A session for `run`, `bench` and `partition`, from the common flags.
pub fn session(model: Model, a: &RunArgs) -> anyhow::Result<kiln_runtime::Session> {
    let opts = kiln_runtime::SessionOptions {
        threads: a.threads,
        level: level(a.level),
        providers: providers(&a.ep)?,
        memory_limit: memory_limit(a.memory_limit.as_deref())?,
        precision: precision(a.precision),
    };
    Ok(kiln_runtime::Session::from_model(model, opts)?)
}

/// `--memory-limit` in bytes, when given.
pub fn memory_limit(arg: Option<&str>) -> anyhow::Result<Option<u64>> {
    arg.map(|s| {
        kiln_runtime::memory::parse_size(s).map_err(|e| anyhow::anyhow!("--memory-limit: {e}"))
    })
    .transpose()
}

/// Loads `path`, or builds the built-in demo model. Returns the model and the name errors use.
pub fn load(path: Option<&Path>) -> anyhow::Result<(Model, String)> {
    match path {
        Some(p) => {
            let name = p.display().to_string();
            let m = Model::load(p).with_context(|| name.clone())?;
            if cfg!(debug_assertions) {
                m.graph.check_consistency().with_context(|| name.clone())?;
            }
            Ok((m, name))
        }
        None => Ok((default_model::build(), default_model::NAME.to_string())),
    }
}

pub fn dim_json(d: &Dim) -> Json {
    match d {
        Dim::Known(k) => json!(k),
        Dim::Sym(_) => json!(d.to_string()),
        Dim::Unknown => Json::Null,
    }
}

pub fn shape_json(t: Option<&ValueType>) -> Json {
    match t.and_then(|t| t.shape()) {
        Some(s) => Json::Array(s.iter().map(dim_json).collect()),
        None => Json::Null,
    }
}

pub fn type_name(t: Option<&ValueType>) -> String {
    t.map(|t| t.to_string()).unwrap_or_else(|| "unknown".into())
}

pub fn op_counts(g: &Graph) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for (_, n) in g.nodes() {
        *m.entry(n.op_key()).or_insert(0) += 1;
    }
    m
}

pub fn shape_text(t: Option<&ValueType>) -> String {
    match t.and_then(|t| t.shape()) {
        Some(s) => format!(
            "[{}]",
            s.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => "?".into(),
    }
}

/// Parses `NAME=D0,D1,...` where each D is a number or a dim name.
pub fn parse_shape_arg(s: &str) -> anyhow::Result<(String, Vec<Dim>)> {
    let (name, dims) = s
        .rsplit_once('=')
        .with_context(|| format!("--shape '{s}' is not NAME=D0,D1,..."))?;
    let dims = if dims.trim().is_empty() {
        Vec::new()
    } else {
        dims.split(',')
            .map(|d| {
                let d = d.trim();
                match d.parse::<i64>() {
                    Ok(v) if v >= 0 => Ok(Dim::Known(v)),
                    Ok(v) => anyhow::bail!("--shape '{s}': dimension {v} is negative"),
                    Err(_) if !d.is_empty() => Ok(Dim::sym(d)),
                    Err(_) => anyhow::bail!("--shape '{s}': empty dimension"),
                }
            })
            .collect::<anyhow::Result<_>>()?
    };
    Ok((name.to_string(), dims))
}
