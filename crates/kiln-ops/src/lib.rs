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
pub use kernel::{KernelCtx, KernelFn, PrepareCtx, PrepareFn, PreparedKernel, SubgraphRunner};
/// A fused activation as kiln parses FusedConv / FusedGemm attributes (for other providers).
pub use ops::linalg::Act;
pub use ops::resize::resize_taps;
pub use ops::{infer_fn, kernel_fn, op_def, prepare_fn, CheckFn, InferFn, OpDef};
pub use value::{Data, Elem, Tensor, Value};

/// Operator domains kiln itself defines.
pub mod ops_domain {
    /// kiln-only fused ops; they never leave a kiln session.
    pub const KILN: &str = crate::ops::kiln_fused::DOMAIN;
}
