//! What a pass is: a name, a level, the providers it is valid for, and a run over the model
//! that reports how often it applied and where it declined.
use kiln_ir::{Model, NodeId};

/// Optimization levels, as ONNX Runtime's ENABLE_BASIC / ENABLE_EXTENDED / ENABLE_ALL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Disabled,
    Basic,
    Extended,
    All,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Disabled => "disabled",
            Level::Basic => "basic",
            Level::Extended => "extended",
            Level::All => "all",
        }
    }
}

/// What a pass may look at besides the model.
pub struct PassCtx<'a> {
    pub model: &'a mut Model,
    /// The provider a node is assigned to (`None` before partitioning, or for new nodes).
    pub provider_of: &'a dyn Fn(NodeId) -> Option<String>,
    /// Write only standard ONNX ops and ops of ONNX Runtime's domain exactly as ORT defines them
    /// (`kiln optimize` without --portable); with `portable`, standard ONNX ops only.
    pub portable: bool,
    /// The graph will run inside kiln (a session), so fusions that exist only in kiln may be
    /// used; a model being saved never gets them.
    pub in_session: bool,
}

/// What one pass did.
#[derive(Debug, Clone, Default)]
pub struct PassReport {
    pub name: String,
    pub level: Option<Level>,
    pub applied: usize,
    /// Places where a pattern began to match and was refused: (node description, reason).
    pub declined: Vec<(String, String)>,
}

pub trait Pass: Send + Sync {
    fn name(&self) -> &'static str;
    fn level(&self) -> Level;
    /// Providers whose nodes this pass may rewrite; empty means any (basic passes).
    fn providers(&self) -> &'static [&'static str] {
        &[]
    }
    fn run(&self, ctx: &mut PassCtx, report: &mut PassReport);
}
