//! `Session`: a kiln session with the metadata ONNX Runtime's `InferenceSession` reports. The
//! model's declared inputs, outputs and metadata are read before optimization, as ORT reports
//! the model it was given; `run` releases the GIL, so Python threads run one session at once.
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use kiln_ir::{Model, ValueId, ValueType};
use kiln_ops::Value;
use kiln_runtime::{CpuProvider, ExecutionProvider, Level, SessionOptions};

use crate::convert;
use crate::errors::{from_ir, from_runtime, Fail, InvalidArgument, RuntimeException};

/// Provider names as ONNX Runtime spells them and kiln's own. The GPU provider comes after
/// the CPU: a client that passes every available provider (`providers=get_available_providers()`)
/// stays on kiln's CPU kernels rather than on a software Vulkan device; naming WebGPU first
/// uses it.
pub const PROVIDERS: &[(&str, &str)] = &[
    ("CPUExecutionProvider", "cpu"),
    ("WebGpuExecutionProvider", "wgpu"),
];

/// A graph input or output as the model declares it.
struct Arg {
    name: String,
    ty: ValueType,
}

fn arg(m: &Model, v: ValueId) -> Arg {
    let val = m.graph.value(v);
    Arg {
        name: val.name.clone(),
        ty: val
            .declared
            .clone()
            .or_else(|| val.ty.clone())
            .unwrap_or(ValueType::Unknown),
    }
}

/// What `get_modelmeta` reports.
struct Meta {
    producer_name: String,
    graph_name: String,
    domain: String,
    description: String,
    graph_description: String,
    version: i64,
    custom: Vec<(String, String)>,
}

#[pyclass(frozen, module = "kiln._kiln")]
pub struct Session {
    inner: kiln_runtime::Session,
    inputs: Vec<Arg>,
    outputs: Vec<Arg>,
    overridable: Vec<Arg>,
    meta: Meta,
    providers: Vec<String>,
}

fn level(name: &str) -> PyResult<Level> {
    Ok(match name {
        "disabled" => Level::Disabled,
        "basic" => Level::Basic,
        "extended" => Level::Extended,
        "all" => Level::All,
        other => {
            return Err(InvalidArgument::new_err(format!(
                "unknown optimization level '{other}'"
            )))
        }
    })
}

/// kiln's providers and their ORT names.
type Providers = (Vec<Arc<dyn ExecutionProvider>>, Vec<String>);

/// kiln providers for ORT-named ones with their options, in the order given (the first of a
/// name counts); the CPU provider goes last unless listed earlier.
fn providers(list: &[(String, HashMap<String, String>)]) -> PyResult<Providers> {
    let mut eps: Vec<Arc<dyn ExecutionProvider>> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (name, opts) in list {
        if names.contains(name) {
            continue;
        }
        match name.as_str() {
            "CPUExecutionProvider" => eps.push(Arc::new(CpuProvider)),
            "WebGpuExecutionProvider" => {
                let spec: Vec<String> = opts.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let o = kiln_wgpu::WgpuOptions::parse(&spec.join(":"))
                    .map_err(|e| InvalidArgument::new_err(e.to_string()))?;
                let ep = kiln_wgpu::WgpuProvider::new(o)
                    .map_err(|e| Fail::new_err(format!("{name}: {e}")))?;
                eps.push(Arc::new(ep));
            }
            other => {
                return Err(InvalidArgument::new_err(format!(
                    "unknown execution provider '{other}'"
                )))
            }
        }
        names.push(name.clone());
    }
    if !names.iter().any(|n| n == "CPUExecutionProvider") {
        eps.push(Arc::new(CpuProvider));
        names.push("CPUExecutionProvider".into());
    }
    Ok((eps, names))
}

#[pymethods]
impl Session {
    /// `model`: a path or the model's bytes; `providers`: (ORT name, options) pairs kiln has.
    #[new]
    #[pyo3(signature = (model, level="all", threads=None, providers=Vec::new(), optimized_path=None, precision="f32"))]
    fn new(
        py: Python<'_>,
        model: &Bound<'_, PyAny>,
        level: &str,
        threads: Option<usize>,
        providers: Vec<(String, HashMap<String, String>)>,
        optimized_path: Option<PathBuf>,
        precision: &str,
    ) -> PyResult<Session> {
        let precision = match precision {
            "f32" | "fp32" | "float32" => kiln_runtime::Precision::F32,
            "bf16" | "bfloat16" => kiln_runtime::Precision::Bf16,
            other => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "precision '{other}': expected 'f32' or 'bf16'"
                )))
            }
        };
        let level = self::level(level)?;
        let (eps, names) = self::providers(&providers)?;
        let model = if let Ok(b) = model.cast::<PyBytes>() {
            let bytes = b.as_bytes().to_vec();
            py.detach(|| Model::from_bytes(&bytes)).map_err(from_ir)?
        } else {
            let path: PathBuf = model.extract()?;
            py.detach(|| Model::load(&path)).map_err(from_ir)?
        };
        let g = &model.graph;
        let inputs = g.real_inputs().map(|v| arg(&model, v)).collect();
        let overridable = g.overridable_inputs().map(|v| arg(&model, v)).collect();
        let outputs = g.outputs().iter().map(|&v| arg(&model, v)).collect();
        let meta = Meta {
            producer_name: model.producer_name.clone().unwrap_or_default(),
            graph_name: g.name.clone(),
            domain: model.domain.clone().unwrap_or_default(),
            description: model.doc_string.clone().unwrap_or_default(),
            graph_description: g.doc_string.clone().unwrap_or_default(),
            // ONNX Runtime reports an absent model_version as the largest int64.
            version: model.model_version.unwrap_or(i64::MAX),
            custom: model
                .metadata_props
                .iter()
                .map(|e| {
                    (
                        e.key.clone().unwrap_or_default(),
                        e.value.clone().unwrap_or_default(),
                    )
                })
                .collect(),
        };
        let inner = py.detach(|| {
            if let Some(path) = &optimized_path {
                // The model as ORT would write it: standard and com.microsoft ops only, no
                // layout kiln picks per CPU.
                let (opt, _, _) =
                    kiln_runtime::prepare(model.clone(), &eps, level, false, false, false)?;
                opt.save(path)?;
            }
            let opts = SessionOptions {
                threads,
                level,
                providers: eps,
                memory_limit: None,
                precision,
            };
            kiln_runtime::Session::from_model(model, opts)
        });
        Ok(Session {
            inner: inner.map_err(from_runtime)?,
            inputs,
            outputs,
            overridable,
            meta,
            providers: names,
        })
    }

    /// `(name, type, shape)` of each input the caller must feed.
    fn inputs<'py>(&self, py: Python<'py>) -> PyResult<Vec<(String, String, Bound<'py, PyList>)>> {
        describe(py, &self.inputs)
    }

    fn outputs<'py>(&self, py: Python<'py>) -> PyResult<Vec<(String, String, Bound<'py, PyList>)>> {
        describe(py, &self.outputs)
    }

    fn overridable<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Vec<(String, String, Bound<'py, PyList>)>> {
        describe(py, &self.overridable)
    }

    fn providers(&self) -> Vec<String> {
        self.providers.clone()
    }

    fn metadata<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let m = &self.meta;
        let d = PyDict::new(py);
        d.set_item("producer_name", &m.producer_name)?;
        d.set_item("graph_name", &m.graph_name)?;
        d.set_item("domain", &m.domain)?;
        d.set_item("description", &m.description)?;
        d.set_item("graph_description", &m.graph_description)?;
        d.set_item("version", m.version)?;
        let custom = PyDict::new(py);
        for (k, v) in &m.custom {
            custom.set_item(k, v)?;
        }
        d.set_item("custom_metadata_map", custom)?;
        Ok(d)
    }

    /// Runs the model on `feeds` (name to numpy array) and returns the outputs named (all of
    /// them for `None`), in that order. The GIL is released while the model runs.
    #[pyo3(signature = (names, feeds))]
    fn run<'py>(
        &self,
        py: Python<'py>,
        names: Option<Vec<String>>,
        feeds: &Bound<'py, PyDict>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let names = match names {
            Some(n) => {
                for name in &n {
                    if !self.outputs.iter().any(|a| &a.name == name) {
                        return Err(InvalidArgument::new_err(format!(
                            "invalid output name '{name}' (the model's outputs: {})",
                            self.outputs
                                .iter()
                                .map(|a| a.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )));
                    }
                }
                n
            }
            None => self.outputs.iter().map(|a| a.name.clone()).collect(),
        };
        let mut inputs = Vec::with_capacity(feeds.len());
        for (k, v) in feeds.iter() {
            let name: String = k.extract()?;
            inputs.push((name.clone(), Value::Tensor(convert::feed(&name, &v)?)));
        }
        // A bug in a kernel must not take the interpreter down: it becomes an exception.
        let outs = py
            .detach(|| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.inner.run(inputs)))
            })
            .map_err(|_| {
                RuntimeException::new_err("internal error (a bug in kiln) while running the model")
            })?
            .map_err(from_runtime)?;
        let mut by_name: HashMap<String, Value> = outs.into_iter().collect();
        let mut out = Vec::with_capacity(names.len());
        for (i, n) in names.iter().enumerate() {
            // Moved out unless the name is asked for again later.
            let v = if names[i + 1..].contains(n) {
                by_name.get(n).cloned()
            } else {
                by_name.remove(n)
            };
            let v = v.ok_or_else(|| Fail::new_err(format!("output '{n}' was not produced")))?;
            out.push(convert::value(py, n, v)?);
        }
        Ok(out)
    }
}

fn describe<'py>(
    py: Python<'py>,
    args: &[Arg],
) -> PyResult<Vec<(String, String, Bound<'py, PyList>)>> {
    args.iter()
        .map(|a| {
            Ok((
                a.name.clone(),
                convert::type_name(&a.ty),
                convert::shape_of(py, &a.ty)?,
            ))
        })
        .collect()
}
