//! kiln's graph IR: what the optimizer rewrites and the runtime executes.
//!
//! A [`Model`] holds a [`Graph`] of [`Node`]s connected by [`Value`]s. The graph keeps, at all
//! times, each value's producer and consumers, a topological order of its nodes, and a name
//! index; the only way to change connections is through `Graph`'s methods (`add_node`,
//! `set_input`, `replace_uses`, `remove_node`, `remove_dead`, ...), and
//! [`Graph::check_consistency`] verifies the invariants. Shapes are [`Dim`]s, which may be
//! symbolic expressions over the model's named dimensions.

mod attr;
mod check;
mod dim;
mod dtype;
mod error;
mod export;
mod graph;
mod import;
mod model;
pub mod tensor;
mod types;

pub use attr::{AttrList, AttrValue, Attribute};
pub use dim::{Atom, Dim, Expr};
pub use dtype::{DataType, ALL_DATA_TYPES};
pub use error::IrError;
pub use graph::{Graph, Node, NodeId, Slot, Use, Value, ValueId};
pub use model::{Model, OpsetImport};
pub use tensor::{Tensor, TensorData, TensorError};
pub use types::ValueType;
