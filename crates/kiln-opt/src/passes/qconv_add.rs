//! `QLinearAdd(QLinearConv(x), b)` -> `ai.kiln:QLinearConvAdd` (a residual block's last
//! convolution and its shortcut, as ORT's QDQ fusions leave them): the convolution's epilogue
//! requantizes each output byte as QLinearConv does and then adds `b` as QLinearAdd does, in
//! registers, so the result is the two ops' exactly without the convolution's output ever
//! reaching memory. Level `all`, CPU nodes of a session only (a kiln op is never saved); after
//! the channels-last regions are laid out, so both operands have one layout.
use kiln_ir::{Dim, IrError, Node, NodeId, ValueId};

use super::util::{const_values, replace};
use crate::fusion::{lone_consumer, run_fusion, Decline, Fusion};
use crate::{Level, Pass, PassCtx, PassReport};

pub struct QuantConvAdd;

pub struct Found {
    conv: NodeId,
    add: NodeId,
    inputs: Vec<Option<ValueId>>,
    out: ValueId,
}

fn shape(ctx: &PassCtx, v: ValueId) -> Option<Vec<Dim>> {
    let t = ctx.model.graph.value(v).ty.as_ref()?;
    t.shape().map(<[Dim]>::to_vec)
}

/// The same value, or constants of equal elements (QDQ folding often leaves a Q's and the
/// next DQ's parameters as two initializers).
fn same(ctx: &PassCtx, a: Option<ValueId>, b: Option<ValueId>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) if a == b => true,
        (Some(a), Some(b)) => {
            let dt = |v| super::util::dtype(&ctx.model.graph, v);
            dt(a) == dt(b)
                && matches!((const_values(ctx.model, a), const_values(ctx.model, b)),
                    (Some(x), Some(y)) if x == y)
        }
        (None, None) => true,
        _ => false,
    }
}

impl Fusion for QuantConvAdd {
    type Match = Found;

    fn select(&self, ctx: &PassCtx, add: NodeId) -> Result<Found, Decline> {
        let g = &ctx.model.graph;
        let n = g.node(add);
        if !(n.domain == "com.microsoft" && n.op_type == "QLinearAdd") {
            return Err(Decline::NoMatch);
        }
        let slot = |i: usize| n.inputs().get(i).copied().flatten();
        for (c, b) in [(0usize, 3usize), (3, 0)] {
            let Some(cv) = slot(c) else { continue };
            let Some((cid, _)) = g.value(cv).producer() else {
                continue;
            };
            let conv = g.node(cid);
            let is_conv = conv.op_type == "QLinearConv"
                && matches!(conv.domain.as_str(), "" | "ai.onnx" | "com.microsoft");
            if !is_conv {
                continue;
            }
            let cin = |i: usize| conv.inputs().get(i).copied().flatten();
            if lone_consumer(g, cv)? != add {
                return Err(Decline::because(
                    "the convolution's output has other consumers",
                ));
            }
            if !same(ctx, cin(6), slot(c + 1)) || !same(ctx, cin(7), slot(c + 2)) {
                return Err(Decline::because(
                    "the Add reads the convolution with other parameters than it writes",
                ));
            }
            let bv = slot(b).ok_or(Decline::NoMatch)?;
            // The addend is read at the output's positions: it must have the output's shape.
            match (shape(ctx, cv), shape(ctx, bv)) {
                (Some(x), Some(y)) if x == y => {}
                _ => {
                    return Err(Decline::because(
                        "the addend's shape is not known to be the convolution's",
                    ))
                }
            }
            // Nodes the channels-last pass wrote have no provider yet; they run on the CPU.
            for id in [cid, add] {
                if let Some(p) = (ctx.provider_of)(id).filter(|p| p != "cpu") {
                    return Err(Decline::because(format!(
                        "{} runs on provider {p}",
                        g.describe(id)
                    )));
                }
            }
            let mut inputs: Vec<Option<ValueId>> = (0..9).map(cin).collect();
            inputs.extend([slot(b), slot(b + 1), slot(b + 2), slot(6), slot(7)]);
            return Ok(Found {
                conv: cid,
                add,
                inputs,
                out: n.output(0).ok_or(Decline::NoMatch)?,
            });
        }
        Err(Decline::NoMatch)
    }

    fn apply(&self, ctx: &mut PassCtx, f: Found) -> Result<(), IrError> {
        let g = &mut ctx.model.graph;
        let name = g.node(f.add).name.clone();
        let attrs = g.node(f.conv).attrs.clone();
        let node = Node::new(&name, "QLinearConvAdd", kiln_ops::ops_domain::KILN)
            .with_inputs(&f.inputs)
            .with_outputs(&[Some(f.out)])
            .with_attrs(attrs);
        replace(g, &[f.conv, f.add], node)?;
        ctx.model.ensure_opset(kiln_ops::ops_domain::KILN, 1);
        Ok(())
    }
}

impl Pass for QuantConvAdd {
    fn name(&self) -> &'static str {
        "quant_conv_add"
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
