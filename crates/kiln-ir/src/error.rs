//! Errors from building, loading and changing graphs. Each names the node or value at fault.
use kiln_onnx::FormatError;

use crate::TensorError;

#[derive(Debug, thiserror::Error)]
pub enum IrError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("value '{name}' is defined twice")]
    DuplicateValue { name: String },
    #[error("value '{value}' has two producers: {node} writes it, but something else already defines it")]
    TwoProducers { value: String, node: String },
    #[error("{node} reads '{input}', which no node, initializer or graph input defines")]
    DanglingInput { node: String, input: String },
    #[error("graph output '{name}' is not defined by any node, initializer or input")]
    UnknownOutput { name: String },
    #[error("the graph has a cycle through {node}")]
    Cycle { node: String },
    #[error("{owner}: {error}")]
    Tensor {
        owner: String,
        error: crate::TensorError,
    },
    #[error("{owner}: {reason}")]
    BadProto { owner: String, reason: String },
    #[error("value '{value}' is still used (by {node})")]
    StillUsed { value: String, node: String },
    #[error("inconsistent graph: {0}")]
    Inconsistent(String),
    #[error("{0}")]
    Invalid(String),
}

impl IrError {
    pub(crate) fn tensor(owner: impl Into<String>, error: TensorError) -> IrError {
        IrError::Tensor {
            owner: owner.into(),
            error,
        }
    }
}
