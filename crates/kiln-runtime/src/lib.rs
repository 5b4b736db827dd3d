//! kiln's runtime. A [`Session`] loads a model, asks the execution providers in priority order
//! which nodes they can run faithfully ([`ExecutionProvider::get_capability`], as ONNX Runtime's
//! `GetCapability`), assigns each node to the first provider that claims it (the CPU provider
//! last, as the fallback), and turns the graph into a plan the executor runs: kernels in
//! topological order, each intermediate value freed once its last consumer has run.

mod error;
mod executor;
pub mod memory;
mod partition;
mod provider;
mod session;
mod validate;

pub use error::RuntimeError;
pub use executor::{partition_spec, RunStats};
pub use kiln_opt::{OptimizeReport, PassReport};
pub use partition::{Assignment, Partition, Rejection};
pub use provider::{
    cpu_support, Capability, CompiledPartition, CpuProvider, ExecutionProvider, OpTypeProvider,
    PartitionSpec,
};
pub use session::{prepare, Level, Precision, Session, SessionOptions};
pub use validate::validate;

pub use kiln_ops::{Data, Tensor, Value};
