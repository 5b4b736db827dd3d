//! The served models: found from `--model NAME=PATH` and a model repository
//! (`DIR/NAME/model.onnx`, or `DIR/NAME/VERSION/model.onnx` with the highest version served),
//! each a kiln session with the metadata the protocol reports (datatypes as the protocol spells
//! them, -1 for dynamic dimensions). Inference runs on tokio's blocking threads, so the network
//! loop never waits on a model.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use kiln_ir::{DataType, Dim, ValueType};
use kiln_ops::{Tensor, Value};
use kiln_runtime::{Session, SessionOptions};

use crate::error::ServeError;
use crate::metrics::Metrics;
use crate::tensor::datatype;

/// A model input or output as the protocol describes it.
#[derive(Clone, Debug)]
pub struct TensorMeta {
    pub name: String,
    pub dtype: DataType,
    pub datatype: &'static str,
    /// -1 for a dynamic dimension.
    pub shape: Vec<i64>,
    /// The name of a symbolic first dimension, and whether that name appears in another one.
    pub batch_dim: Option<(String, bool)>,
}

pub struct Served {
    pub name: String,
    pub version: String,
    pub session: Arc<Session>,
    pub inputs: Vec<TensorMeta>,
    pub outputs: Vec<TensorMeta>,
    /// At most two runs at once, first come first served. Runs share the session's threads,
    /// and rayon lets a run that waits inside a parallel loop pick up a whole other run on its
    /// stack: with no limit, 8 clients of YOLOv8n on 2 cores saw a p99 of 0.5-1.3 s against a
    /// p50 of 40 ms; one at a time, p99 140-220 ms but 72 requests/s instead of 90; two at a
    /// time, p99 150 ms at 82 requests/s.
    turn: Arc<tokio::sync::Semaphore>,
}

fn meta(name: &str, ty: Option<&ValueType>) -> Result<TensorMeta, String> {
    let (dtype, shape) = match ty {
        Some(ValueType::Tensor {
            dtype: Some(d),
            shape,
        }) => (*d, shape.clone()),
        _ => return Err(format!("'{name}' is not a tensor of a known type")),
    };
    let datatype = datatype(dtype)
        .ok_or_else(|| format!("'{name}': type {dtype} has no protocol datatype"))?;
    let dims = shape.unwrap_or_default();
    let batch_dim = match dims.first() {
        Some(d @ Dim::Sym(_)) => {
            let name = d.to_string();
            Some((
                name.clone(),
                dims[1..].iter().any(|x| x.to_string().contains(&name)),
            ))
        }
        _ => None,
    };
    let shape = dims
        .iter()
        .map(|d| match d {
            Dim::Known(k) => *k,
            _ => -1,
        })
        .collect();
    Ok(TensorMeta {
        name: name.to_string(),
        dtype,
        datatype,
        shape,
        batch_dim,
    })
}

impl Served {
    pub fn load(
        name: &str,
        version: &str,
        path: &Path,
        opts: SessionOptions,
    ) -> Result<Served, String> {
        let session =
            Session::from_path(path, opts).map_err(|e| format!("{}: {e}", path.display()))?;
        let g = &session.model().graph;
        let inputs = session
            .inputs()
            .iter()
            .map(|s| {
                let ty = s.dtype.map(|d| ValueType::Tensor {
                    dtype: Some(d),
                    shape: s.shape.clone(),
                });
                meta(&s.name, ty.as_ref())
            })
            .collect::<Result<_, _>>()?;
        let outputs = g
            .outputs()
            .iter()
            .map(|&v| {
                let val = g.value(v);
                meta(&val.name, val.declared.as_ref().or(val.ty.as_ref()))
            })
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{}: output {e}", path.display()))?;
        Ok(Served {
            name: name.to_string(),
            version: version.to_string(),
            session: Arc::new(session),
            inputs,
            outputs,
            turn: Arc::new(tokio::sync::Semaphore::new(2)),
        })
    }

    /// The element type of input `name` given as `datatype`, checked against the model; an
    /// input already in `given` is refused too.
    pub fn check_input(
        &self,
        name: &str,
        datatype: &str,
        given: &[(String, Tensor)],
    ) -> Result<DataType, ServeError> {
        let meta = self.inputs.iter().find(|m| m.name == name).ok_or_else(|| {
            ServeError::bad(format!(
                "model '{}' has no input '{name}' (its inputs: {})",
                self.name,
                names(&self.inputs)
            ))
        })?;
        let dt = crate::tensor::from_datatype(datatype).ok_or_else(|| {
            ServeError::bad(format!("input '{name}': unknown datatype '{datatype}'"))
        })?;
        if dt != meta.dtype {
            return Err(ServeError::bad(format!(
                "input '{name}': datatype {datatype} does not match the model's {}",
                meta.datatype
            )));
        }
        if given.iter().any(|(n, _)| n == name) {
            return Err(ServeError::bad(format!("input '{name}' is given twice")));
        }
        Ok(dt)
    }

    /// Checks that the model has every output named.
    pub fn check_outputs<'a>(
        &self,
        wanted: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), ServeError> {
        let mut seen = std::collections::HashSet::new();
        for o in wanted {
            if !seen.insert(o) {
                return Err(ServeError::bad(format!("output '{o}' is asked for twice")));
            }
            if !self.outputs.iter().any(|m| m.name == o) {
                return Err(ServeError::bad(format!(
                    "model '{}' has no output '{o}' (its outputs: {})",
                    self.name,
                    names(&self.outputs)
                )));
            }
        }
        Ok(())
    }

    /// Runs the model on a blocking thread; the result maps output names to tensors.
    pub async fn infer(
        &self,
        inputs: Vec<(String, Tensor)>,
        metrics: &Metrics,
        arrived: Instant,
    ) -> Result<BTreeMap<String, Tensor>, ServeError> {
        let session = Arc::clone(&self.session);
        let queue = metrics.queue.with_label_values(&[&self.name]);
        let batch = metrics.batch_size.with_label_values(&[&self.name]);
        let rows = inputs
            .first()
            .and_then(|(_, t)| t.shape.first().copied())
            .unwrap_or(1);
        // The permit goes with the run: a client that hangs up drops this future, not the run.
        let turn = Arc::clone(&self.turn)
            .acquire_owned()
            .await
            .map_err(|_| ServeError::internal("the model is shutting down"))?;
        let outs = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            queue.observe(arrived.elapsed().as_secs_f64());
            batch.observe(rows as f64);
            let feeds = inputs
                .into_iter()
                .map(|(n, t)| (n, Value::Tensor(t)))
                .collect();
            session.run(feeds)
        })
        .await
        .map_err(|e| ServeError::internal(format!("the inference task failed: {e}")))?
        .map_err(ServeError::from_runtime)?;
        outs.into_iter()
            .map(|(n, v)| match v {
                Value::Tensor(t) => Ok((n, t)),
                _ => Err(ServeError::internal(format!(
                    "output '{n}' is not a tensor, which the protocol cannot carry"
                ))),
            })
            .collect()
    }
}

fn names(ts: &[TensorMeta]) -> String {
    ts.iter()
        .map(|m| m.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `(name, version, path)` of every model to serve: the `--model` ones first, then the
/// repository's folders in name order.
pub fn discover(
    models: &[(String, PathBuf)],
    repository: Option<&Path>,
) -> Result<Vec<(String, String, PathBuf)>, String> {
    let mut out: Vec<(String, String, PathBuf)> = models
        .iter()
        .map(|(n, p)| (n.clone(), "1".to_string(), p.clone()))
        .collect();
    if let Some(dir) = repository {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| format!("model repository {}: {e}", dir.display()))?;
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if !path.is_dir() {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.join("model.onnx").is_file() {
                found.push((name, "1".to_string(), path.join("model.onnx")));
                continue;
            }
            // NAME/VERSION/model.onnx: the highest numeric version.
            let best = std::fs::read_dir(&path)
                .map_err(|e| format!("{}: {e}", path.display()))?
                .flatten()
                .filter_map(|v| {
                    let ver: u64 = v.file_name().to_str()?.parse().ok()?;
                    v.path()
                        .join("model.onnx")
                        .is_file()
                        .then_some((ver, v.path()))
                })
                .max_by_key(|(v, _)| *v);
            match best {
                Some((ver, p)) => found.push((name, ver.to_string(), p.join("model.onnx"))),
                None => {
                    return Err(format!(
                        "model repository: {} has neither model.onnx nor VERSION/model.onnx",
                        path.display()
                    ))
                }
            }
        }
        found.sort();
        out.extend(found);
    }
    let mut seen = std::collections::HashSet::new();
    for (n, _, _) in &out {
        if !seen.insert(n.clone()) {
            return Err(format!("model '{n}' is given twice"));
        }
    }
    if out.is_empty() {
        return Err("no models to serve: give --model NAME=PATH or --model-repository DIR".into());
    }
    Ok(out)
}
