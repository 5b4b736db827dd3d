//! kiln's operators. Each op (or small family of ops that share one rule) has its own module
//! under `ops/` holding its shape and type inference and its reference CPU kernel; `infer` walks a graph in topological order
//! and applies them, carrying symbolic dims and the values of small integer tensors (shapes
//! computed with `Shape`, `Gather`, `Concat`, ...) so that `Reshape` targets built at run time
//! still give shapes.

mod ctx;
pub mod infer;
pub mod kernel;
pub(crate) mod ops;
pub mod value;

pub use ctx::{InferCtx, Inferred, InputInfo, SymValue};
pub use infer::{infer_shapes, InferError, InferReport};
pub use kernel::{
    Donated, KernelCtx, KernelFn, PrepareCtx, PrepareFn, PreparedKernel, SubgraphRunner,
};
/// A fused activation as kiln parses FusedConv / FusedGemm attributes (for other providers).
pub use ops::linalg::Act;
pub use ops::quant::integer_kernels;
pub use ops::resize::resize_taps;
pub use ops::{donatable_inputs, infer_fn, kernel_fn, op_def, prepare_fn, CheckFn, InferFn, OpDef};
pub use value::{Data, Elem, MapValue, Tensor, Value};

/// Operator domains kiln itself defines.
pub mod ops_domain {
    /// kiln-only fused ops; they never leave a kiln session.
    pub const KILN: &str = crate::ops::kiln_fused::DOMAIN;
}

/// The newest opset kiln implements for a domain it knows (`None` for custom domains, whose
/// versions kiln cannot judge).
pub fn max_opset(domain: &str) -> Option<i64> {
    match domain {
        "" | "ai.onnx" => Some(28),
        "ai.onnx.ml" => Some(5),
        "ai.onnx.preview.training" | "ai.onnx.preview" | "com.microsoft" => Some(1),
        d if d == ops_domain::KILN => Some(1),
        _ => None,
    }
}

/// The domains ONNX itself defines: an op kiln does not know there is not a custom op but an
/// op kiln lacks (or a typo), and is refused.
pub fn is_onnx_domain(domain: &str) -> bool {
    matches!(
        domain,
        "" | "ai.onnx" | "ai.onnx.ml" | "ai.onnx.preview.training" | "ai.onnx.preview"
    )
}
