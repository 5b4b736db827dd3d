//! Runtime errors; each names the input or node (name and op) at fault.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Load(#[from] kiln_ir::IrError),
    #[error(transparent)]
    Infer(#[from] kiln_ops::InferError),
    #[error("input '{name}': {reason}")]
    Input { name: String, reason: String },
    #[error("{node}: {reason}")]
    Node { node: String, reason: String },
    #[error("no execution provider can run {node}: {reasons}")]
    Unassigned { node: String, reasons: String },
    #[error("{0}")]
    Options(String),
    /// A run would exceed the memory limit (names the node and the sizes).
    #[error("{0}")]
    Memory(String),
}
