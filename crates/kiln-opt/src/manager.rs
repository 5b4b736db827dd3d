//! Runs the passes of a level to a fixed point (with an iteration cap), checking the graph's
//! consistency after every pass in debug builds and tests, and sums up what each pass did.
use kiln_ir::{IrError, Model, NodeId};

use crate::passes;
use crate::{Level, Pass, PassCtx, PassReport};

/// Passes of one optimizer, in the order they run within an iteration.
pub struct Optimizer {
    pub passes: Vec<Box<dyn Pass>>,
    pub max_iterations: usize,
    /// Check the graph after every pass (always on in debug builds).
    pub check: bool,
}

/// What a whole optimization did, per pass, summed over iterations.
#[derive(Debug, Clone, Default)]
pub struct OptimizeReport {
    pub passes: Vec<PassReport>,
    pub iterations: usize,
}

impl OptimizeReport {
    pub fn merge(&mut self, other: OptimizeReport) {
        for p in other.passes {
            match self.passes.iter_mut().find(|x| x.name == p.name) {
                Some(x) => {
                    x.applied += p.applied;
                    for d in p.declined {
                        if !x.declined.contains(&d) {
                            x.declined.push(d);
                        }
                    }
                }
                None => self.passes.push(p),
            }
        }
        self.iterations += other.iterations;
    }
}

impl Default for Optimizer {
    fn default() -> Self {
        Optimizer {
            passes: passes::all(),
            max_iterations: 10,
            check: cfg!(debug_assertions),
        }
    }
}

impl Optimizer {
    /// Runs the passes whose level is exactly `level` (`Basic`, or `Extended` for the passes
    /// that follow partitioning), repeating until nothing changes.
    pub fn run_phase(
        &self,
        model: &mut Model,
        level: Level,
        provider_of: &dyn Fn(NodeId) -> Option<String>,
        portable: bool,
        in_session: bool,
    ) -> Result<OptimizeReport, IrError> {
        let phase: Vec<&dyn Pass> = self
            .passes
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| p.level() == level)
            .collect();
        let mut report = OptimizeReport {
            passes: phase
                .iter()
                .map(|p| PassReport {
                    name: p.name().to_string(),
                    level: Some(p.level()),
                    ..Default::default()
                })
                .collect(),
            iterations: 0,
        };
        for _ in 0..self.max_iterations {
            report.iterations += 1;
            let mut changed = 0;
            for (i, p) in phase.iter().enumerate() {
                let mut r = PassReport::default();
                let mut ctx = PassCtx {
                    model,
                    provider_of,
                    portable,
                    in_session,
                };
                p.run(&mut ctx, &mut r);
                if self.check {
                    model.graph.check_consistency().map_err(|e| {
                        IrError::Inconsistent(format!("after pass {}: {e}", p.name()))
                    })?;
                }
                changed += r.applied;
                let acc = &mut report.passes[i];
                acc.applied += r.applied;
                for d in r.declined {
                    if !acc.declined.contains(&d) {
                        acc.declined.push(d);
                    }
                }
            }
            if changed == 0 {
                break;
            }
        }
        prune(model);
        Ok(report)
    }
}

/// Drops dead nodes and values, and — in IR versions before 4, where every initializer is also
/// listed as a graph input — the inputs of initializers nothing reads any more.
fn prune(model: &mut Model) {
    let g = &mut model.graph;
    g.remove_dead();
    if model.ir_version < 4 {
        let keep: Vec<_> = g
            .inputs()
            .iter()
            .copied()
            .filter(|&v| {
                g.value(v).initializer.is_none()
                    || !g.value(v).consumers().is_empty()
                    || g.is_graph_output(v)
            })
            .collect();
        if keep.len() != g.inputs().len() {
            g.set_inputs(keep);
            g.remove_dead();
        }
    }
}

/// Optimizes `model` up to `level` for running inside kiln on the CPU provider alone: the basic
/// phase, then the extended one.
pub fn optimize(model: &mut Model, level: Level) -> Result<OptimizeReport, IrError> {
    let opt = Optimizer::default();
    let cpu = |_: NodeId| Some("cpu".to_string());
    let mut report = OptimizeReport::default();
    if level >= Level::Basic {
        report.merge(opt.run_phase(model, Level::Basic, &cpu, false, true)?);
    }
    if level >= Level::Extended {
        report.merge(opt.run_phase(model, Level::Extended, &cpu, false, true)?);
    }
    Ok(report)
}
