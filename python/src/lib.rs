//! `kiln._kiln`: the native core of kiln's Python package. It holds a [`Session`] (kiln's
//! runtime behind an `onnxruntime`-shaped surface), the conversions between numpy arrays and
//! kiln's values, and the exception classes; the `kiln` package builds ONNX Runtime's API on
//! top of it in Python.
use pyo3::prelude::*;

mod convert;
mod errors;
mod genai;
mod session;

/// kiln's provider names as ONNX Runtime spells them, in priority order.
#[pyfunction]
fn available_providers() -> Vec<&'static str> {
    session::PROVIDERS.iter().map(|(ort, _)| *ort).collect()
}

/// The bytes the environment leaves this process now (memory available, `RLIMIT_AS`, cgroup
/// limits, less kiln's margin), or None where nothing could be read: feeds are checked
/// against it before they are copied.
#[pyfunction]
fn memory_limit() -> Option<u64> {
    convert::memory_limit()
}

#[pymodule]
fn _kiln(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<session::Session>()?;
    m.add_class::<genai::GenaiModel>()?;
    m.add_class::<genai::GenaiGenerator>()?;
    m.add_class::<genai::GenaiStream>()?;
    m.add_function(wrap_pyfunction!(available_providers, m)?)?;
    m.add_function(wrap_pyfunction!(memory_limit, m)?)?;
    errors::register(m)?;
    Ok(())
}
