//! `QLinearMul(x, QLinearSigmoid(x))` -> `ai.kiln:QLinearSiLU` (YOLO's quantized SiLU as ORT's
//! QDQ fusions leave it): both ops are functions of x's byte, so one 256-entry table built with
//! their own arithmetic gives their result exactly in one pass over the data. Level `all`, CPU
//! nodes of a session only (a kiln op is never saved).
use kiln_ir::{IrError, Node, NodeId, ValueId};

use super::util::replace;
use crate::fusion::{lone_consumer, run_fusion, Decline, Fusion};
use crate::{Level, Pass, PassCtx, PassReport};

pub struct QuantSilu;

pub struct Found {
    mul: NodeId,
    sig: NodeId,
    inputs: Vec<Option<ValueId>>,
    out: ValueId,
}

fn ms(n: &Node, op: &str) -> bool {
    n.domain == "com.microsoft" && n.op_type == op
}

impl Fusion for QuantSilu {
    type Match = Found;

    fn select(&self, ctx: &PassCtx, mul: NodeId) -> Result<Found, Decline> {
        let g = &ctx.model.graph;
        let n = g.node(mul);
        if !ms(n, "QLinearMul") {
            return Err(Decline::NoMatch);
        }
        let slot = |i: usize| n.inputs().get(i).copied().flatten();
        // Which operand is the Sigmoid's output, and is the other its input (same parameters)?
        for (s, x) in [(3usize, 0usize), (0, 3)] {
            let Some(sv) = slot(s) else { continue };
            let Some((sid, _)) = g.value(sv).producer() else {
                continue;
            };
            let sn = g.node(sid);
            if !ms(sn, "QLinearSigmoid") {
                continue;
            }
            let sin = |i: usize| sn.inputs().get(i).copied().flatten();
            if sin(0) != slot(x) || sin(1) != slot(x + 1) || sin(2) != slot(x + 2) {
                return Err(Decline::because(
                    "the Sigmoid reads another tensor or other parameters than the Mul",
                ));
            }
            // The Sigmoid's output scale/zero point must be what the Mul reads it with.
            if sin(3) != slot(s + 1) || sin(4) != slot(s + 2) {
                return Err(Decline::because(
                    "the Mul reads the Sigmoid with other parameters",
                ));
            }
            if lone_consumer(g, sv)? != mul {
                return Err(Decline::NoMatch);
            }
            super::util::assigned_to(ctx, &[sid, mul], &["cpu"])?;
            let inputs = vec![sin(0), sin(1), sin(2), sin(3), sin(4), slot(6), slot(7)];
            return Ok(Found {
                mul,
                sig: sid,
                inputs,
                out: n.output(0).ok_or(Decline::NoMatch)?,
            });
        }
        Err(Decline::NoMatch)
    }

    fn apply(&self, ctx: &mut PassCtx, f: Found) -> Result<(), IrError> {
        let g = &mut ctx.model.graph;
        let name = g.node(f.mul).name.clone();
        let node = Node::new(&name, "QLinearSiLU", kiln_ops::ops_domain::KILN)
            .with_inputs(&f.inputs)
            .with_outputs(&[Some(f.out)]);
        replace(g, &[f.sig, f.mul], node)?;
        ctx.model.ensure_opset(kiln_ops::ops_domain::KILN, 1);
        Ok(())
    }
}

impl Pass for QuantSilu {
    fn name(&self) -> &'static str {
        "quant_silu"
    }

    fn level(&self) -> Level {
        Level::All
    }

    fn providers(&self) -> &'static [&'static str] {
        &["cpu"]
    }

    fn run(&self, ctx: &mut PassCtx, report: &mut PassReport) {
        if !ctx.in_session || ctx.portable {
            return;
        }
        let _ = kiln_ops::infer_shapes(ctx.model);
        run_fusion(self, ctx, report);
    }
}
