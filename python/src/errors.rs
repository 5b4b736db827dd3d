//! The exception classes (ONNX Runtime's names, under one `KilnError` base) and the mapping of
//! kiln's errors onto them. Messages keep kiln's wording, which names the input or node.
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

use kiln_ir::IrError;
use kiln_onnx::FormatError;
use kiln_runtime::RuntimeError;

create_exception!(
    kiln._kiln,
    KilnError,
    PyException,
    "Every error kiln raises."
);
create_exception!(
    kiln._kiln,
    Fail,
    KilnError,
    "The operation failed (ONNX Runtime's FAIL)."
);
create_exception!(
    kiln._kiln,
    InvalidArgument,
    KilnError,
    "A bad argument: an unknown input or output name, a wrong type, rank or shape."
);
create_exception!(
    kiln._kiln,
    NoSuchFile,
    KilnError,
    "The model file does not exist."
);
create_exception!(
    kiln._kiln,
    InvalidProtobuf,
    KilnError,
    "The model is not a readable ONNX protobuf."
);
create_exception!(
    kiln._kiln,
    InvalidGraph,
    KilnError,
    "The model's graph is malformed or cannot be typed."
);
create_exception!(
    kiln._kiln,
    NotImplemented,
    KilnError,
    "The model uses something kiln cannot run."
);
create_exception!(
    kiln._kiln,
    RuntimeException,
    KilnError,
    "A node failed while the model ran."
);

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("KilnError", py.get_type::<KilnError>())?;
    m.add("Fail", py.get_type::<Fail>())?;
    m.add("InvalidArgument", py.get_type::<InvalidArgument>())?;
    m.add("NoSuchFile", py.get_type::<NoSuchFile>())?;
    m.add("InvalidProtobuf", py.get_type::<InvalidProtobuf>())?;
    m.add("InvalidGraph", py.get_type::<InvalidGraph>())?;
    m.add("NotImplemented", py.get_type::<NotImplemented>())?;
    m.add("RuntimeException", py.get_type::<RuntimeException>())?;
    Ok(())
}

/// The Python exception for a session error.
pub fn from_runtime(e: RuntimeError) -> PyErr {
    let msg = e.to_string();
    match e {
        RuntimeError::Input { .. } | RuntimeError::Options(_) => InvalidArgument::new_err(msg),
        RuntimeError::Load(IrError::Format(FormatError::Read { .. })) => NoSuchFile::new_err(msg),
        RuntimeError::Load(IrError::Format(FormatError::Write { .. })) => Fail::new_err(msg),
        RuntimeError::Load(IrError::Format(
            FormatError::Decode(_) | FormatError::Empty | FormatError::NoGraph,
        )) => InvalidProtobuf::new_err(msg),
        RuntimeError::Load(_) | RuntimeError::Infer(_) => InvalidGraph::new_err(msg),
        RuntimeError::Unassigned { .. } => NotImplemented::new_err(msg),
        RuntimeError::Node { .. } => RuntimeException::new_err(msg),
        RuntimeError::Memory(_) => Fail::new_err(msg),
    }
}

/// The Python exception for a model that could not be read.
pub fn from_ir(e: IrError) -> PyErr {
    from_runtime(RuntimeError::Load(e))
}
