//! kiln's passes, one per file. `all` lists them in the order they run within a phase.
use crate::Pass;

pub(crate) mod const_fold;
mod cse;
mod eliminate;

/// Every pass kiln has.
pub fn all() -> Vec<Box<dyn Pass>> {
    vec![
        Box::new(eliminate::Eliminate),
        Box::new(const_fold::ConstantFolding),
        Box::new(cse::CommonSubexpressions),
    ]
}
