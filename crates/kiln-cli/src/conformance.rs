//! `kiln conformance`: runs ONNX backend node cases (`DIR/<case>/model.onnx` with
//! `test_data_set_*/{input,output}_*.pb`) and reports pass / fail / error / unsupported.
use std::path::{Path, PathBuf};

use anyhow::Context;
use kiln_ir::Model;
use kiln_ops::{Data, Tensor, Value};
use kiln_runtime::{Level, RuntimeError, Session, SessionOptions};
use serde_json::json;

use crate::args::ConformanceArgs;
use crate::pbdata::read_value;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Status {
    Pass,
    Fail,
    Error,
    Unsupported,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Error => "error",
            Status::Unsupported => "unsupported",
        }
    }
}

pub fn run(a: ConformanceArgs) -> anyhow::Result<()> {
    let dir = a
        .dir
        .clone()
        .context("give the folder of the cases: kiln conformance DIR")?;
    let filter = a
        .filter
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .context("--filter is not a valid regular expression")?;
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model.onnx").is_file())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            filter.as_ref().is_none_or(|f| f.is_match(&name))
        })
        .collect();
    cases.sort();
    // Kernel bugs must not stop the run; report them as errors of their case.
    std::panic::set_hook(Box::new(|_| {}));
    let mut results = Vec::with_capacity(cases.len());
    for case in &cases {
        let name = case
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let (status, detail) = match std::panic::catch_unwind(|| run_case(case)) {
            Ok(r) => r,
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                (Status::Error, format!("panic (a bug in kiln): {msg}"))
            }
        };
        if !a.json && status != Status::Pass {
            println!("{:<12} {name}: {detail}", status.name());
        }
        results.push((name, status, detail));
    }
    let count = |s: Status| results.iter().filter(|r| r.1 == s).count();
    let (p, f, e, u) = (
        count(Status::Pass),
        count(Status::Fail),
        count(Status::Error),
        count(Status::Unsupported),
    );
    if a.json {
        let out = json!({
            "passed": p, "failed": f, "errored": e, "unsupported": u,
            "cases": results.iter().map(|(n, s, d)| json!({"name": n, "status": s.name(), "detail": d})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("conformance: {p} pass, {f} fail, {e} error, {u} unsupported");
    }
    Ok(())
}

fn run_case(case: &Path) -> (Status, String) {
    let model = match Model::load(&case.join("model.onnx")) {
        Ok(m) => m,
        Err(e) => return (Status::Error, format!("load: {e}")),
    };
    let g = &model.graph;
    // The spec lets random ops draw differently in every implementation, seed or not (the
    // suite's own seeded Bernoulli data match no reference stream), so their outputs are
    // checked as ONNX Runtime's tests check them: type, shape and the set of values.
    let random = g.nodes().any(|(_, n)| {
        matches!(
            n.op_type.as_str(),
            "Bernoulli"
                | "RandomUniform"
                | "RandomUniformLike"
                | "RandomNormal"
                | "RandomNormalLike"
                | "Multinomial"
        )
    });
    let input_types: Vec<_> = g
        .real_inputs()
        .map(|v| (g.value(v).name.clone(), g.value(v).declared.clone()))
        .collect();
    let output_types: Vec<_> = g
        .outputs()
        .iter()
        .map(|v| g.value(*v).declared.clone())
        .collect();
    let opts = SessionOptions {
        threads: Some(1),
        level: Level::Disabled,
        providers: Vec::new(),
        memory_limit: None,
        precision: kiln_runtime::Precision::F32,
    };
    let session = match Session::from_model(model, opts) {
        Ok(s) => s,
        Err(RuntimeError::Unassigned { node, reasons }) => {
            return (Status::Unsupported, format!("{node}: {reasons}"))
        }
        Err(e) => return (Status::Error, e.to_string()),
    };
    let mut sets: Vec<PathBuf> = std::fs::read_dir(case)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_dir()
                        && p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with("test_data_set_"))
                })
                .collect()
        })
        .unwrap_or_default();
    sets.sort();
    if sets.is_empty() {
        return (Status::Error, "no test_data_set_* folder".into());
    }
    for set in &sets {
        let mut feeds = Vec::new();
        for (i, (name, ty)) in input_types.iter().enumerate() {
            let p = set.join(format!("input_{i}.pb"));
            if !p.exists() {
                break;
            }
            match read_value(&p, ty.as_ref()) {
                Ok(v) => feeds.push((name.clone(), v)),
                Err(e) => return (Status::Error, format!("{e:#}")),
            }
        }
        let outs = match session.run(feeds) {
            Ok(o) => o,
            Err(e) => return (Status::Error, e.to_string()),
        };
        for (i, (name, got)) in outs.iter().enumerate() {
            let p = set.join(format!("output_{i}.pb"));
            if !p.exists() {
                continue;
            }
            let want = match read_value(&p, output_types.get(i).and_then(|t| t.as_ref())) {
                Ok(v) => v,
                Err(e) => return (Status::Error, format!("{e:#}")),
            };
            let check = if random {
                same_draws(got, &want)
            } else {
                same_value(got, &want)
            };
            if let Err(why) = check {
                return (Status::Fail, format!("output '{name}': {why}"));
            }
        }
    }
    (Status::Pass, String::new())
}

fn same_value(got: &Value, want: &Value) -> Result<(), String> {
    match (got, want) {
        (Value::Tensor(a), Value::Tensor(b)) => same_tensor(a, b),
        (Value::Sequence(_, a), Value::Sequence(_, b)) => {
            if a.len() != b.len() {
                return Err(format!(
                    "sequence of {} tensors, expected {}",
                    a.len(),
                    b.len()
                ));
            }
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                same_tensor(x, y).map_err(|e| format!("element {i}: {e}"))?;
            }
            Ok(())
        }
        (Value::Optional(a), Value::Optional(b)) => match (a, b) {
            (None, None) => Ok(()),
            (Some(x), Some(y)) => same_value(x, y),
            _ => Err("optional presence differs".into()),
        },
        // An optional output compared with its plain stored content.
        (Value::Optional(Some(x)), y) => same_value(x, y),
        _ => Err("kind of value differs (tensor / sequence / optional)".into()),
    }
}

/// Random draws: dtype and shape equal; where the stored draw is all 0/1 (Bernoulli), so is ours.
fn same_draws(got: &Value, want: &Value) -> Result<(), String> {
    let (Value::Tensor(a), Value::Tensor(b)) = (got, want) else {
        return Err("kind of value differs".into());
    };
    if a.dtype() != b.dtype() || a.shape != b.shape {
        return Err(format!(
            "{} {:?}, expected {} {:?}",
            a.dtype(),
            a.shape,
            b.dtype(),
            b.shape
        ));
    }
    let (x, y) = (a.to_f64s()?, b.to_f64s()?);
    let binary = |v: &[f64]| v.iter().all(|&e| e == 0.0 || e == 1.0);
    if binary(&y) && !binary(&x) {
        return Err("values other than 0 and 1 in a Bernoulli draw".into());
    }
    if x.iter().any(|e| !e.is_finite()) {
        return Err("non-finite values in a random draw".into());
    }
    Ok(())
}

/// As ONNX's backend tests: dtype and shape equal, floats within rtol 1e-3 and atol 1e-7 (NaN
/// matching NaN), everything else exactly.
fn same_tensor(a: &Tensor, b: &Tensor) -> Result<(), String> {
    if a.dtype() != b.dtype() {
        return Err(format!("dtype {}, expected {}", a.dtype(), b.dtype()));
    }
    if a.shape != b.shape {
        return Err(format!("shape {:?}, expected {:?}", a.shape, b.shape));
    }
    let close = |x: f64, y: f64| {
        (x.is_nan() && y.is_nan()) || x == y || (x - y).abs() <= 1e-7 + 1e-3 * y.abs()
    };
    let float = matches!(
        a.data,
        Data::F32(_) | Data::F64(_) | Data::F16(_) | Data::BF16(_)
    );
    if float {
        let (x, y) = (a.to_f64s()?, b.to_f64s()?);
        if let Some(i) = (0..x.len()).find(|&i| !close(x[i], y[i])) {
            return Err(format!("element {i} is {}, expected {}", x[i], y[i]));
        }
        return Ok(());
    }
    if a.data != b.data {
        let i = match (&a.data, &b.data) {
            (Data::Str(x), Data::Str(y)) => x.iter().zip(y).position(|(p, q)| p != q),
            _ => match (a.to_i64s(), b.to_i64s()) {
                (Ok(x), Ok(y)) => x.iter().zip(&y).position(|(p, q)| p != q),
                _ => None,
            },
        };
        return Err(match i {
            Some(i) => format!("element {i} differs"),
            None => "values differ".into(),
        });
    }
    Ok(())
}
