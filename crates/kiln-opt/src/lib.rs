//! kiln's graph optimizer. Passes are grouped by level as in ONNX Runtime — `basic` passes
//! (constant folding, eliminations, CSE, BatchNormalization folding, Slice+Concat ->
//! SpaceToDepth) emit standard ONNX ops only and run before partitioning; `extended` passes
//! (FusedConv, FusedGemm, kiln's own Conv+SiLU) run after it and rewrite only nodes assigned to a
//! provider they are valid for. Each pattern pass is split into *select* (find the nodes or a
//! typed reason not to) and *apply* (rewrite through the IR's mutation API); the manager runs
//! the passes of a level to a fixed point and checks the graph after every pass in debug builds.

mod fusion;
mod manager;
mod pass;
pub mod passes;

pub use fusion::{Decline, Fusion};
pub use manager::{optimize, OptimizeReport, Optimizer};
pub use pass::{Level, Pass, PassCtx, PassReport};
