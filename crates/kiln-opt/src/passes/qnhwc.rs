//! Channels-last 8-bit activations between quantized convolutions (ONNX Runtime's NHWC
//! transformer idea), level `all`, CPU nodes of a kiln session only: QLinearConv becomes
//! com.microsoft's QLinearConv with `channels_last`, whose integer kernel then reads each
//! pixel's channels contiguously (a 1×1 layer reads its input in place) and writes its output
//! row by row, and the layout is kept across the element-wise QLinear ops, the global pool and
//! channel Concats that follow, so that transposes happen only at the edges of a region.
//!
//! As in the blocked float layout (`nchwc.rs`): a rewritten node writes a channels-last *twin*
//! value and a Transpose turns it back into the original, so consumers that know nothing of
//! the layout read what they read before; consumers that can work channels-last read the twin,
//! and Transposes nobody reads are removed at the end.
use std::collections::HashMap;

use kiln_ir::{AttrList, Attribute, Dim, Graph, IrError, Node, NodeId, ValueId};

use crate::passes::const_fold::is_constant;
use crate::{Level, Pass, PassCtx, PassReport};

pub struct QuantNhwc;

const TO_LAST: [i64; 4] = [0, 2, 3, 1];
const TO_FIRST: [i64; 4] = [0, 3, 1, 2];

fn shape(g: &Graph, v: ValueId) -> Option<&[Dim]> {
    g.value(v).ty.as_ref().and_then(|t| t.shape())
}

fn is_8bit(g: &Graph, v: ValueId) -> bool {
    matches!(
        super::util::dtype(g, v),
        Some(kiln_ir::DataType::U8 | kiln_ir::DataType::I8)
    )
}

fn rank4(g: &Graph, v: ValueId) -> bool {
    shape(g, v).is_some_and(|s| s.len() == 4) && is_8bit(g, v)
}

fn ms(n: &Node, op: &str) -> bool {
    n.domain == "com.microsoft" && n.op_type == op
}

struct Layout {
    twins: HashMap<ValueId, ValueId>,
}

impl Layout {
    fn transpose(g: &mut Graph, from: ValueId, to: ValueId, perm: &[i64]) -> Result<(), IrError> {
        let name = format!("{}_transpose", g.value(to).name);
        let node = Node::new(&name, "Transpose", "")
            .with_inputs(&[Some(from)])
            .with_outputs(&[Some(to)])
            .with_attrs(vec![Attribute::ints("perm", perm)]);
        g.add_node(node)?;
        Ok(())
    }

    fn new_twin(g: &mut Graph, of: ValueId) -> Result<ValueId, IrError> {
        let name = g.unique_name(&format!("{}_nhwc", g.value(of).name));
        g.add_value(&name, None)
    }

    /// The channels-last form of `v`, transposing it when it has none yet.
    fn last(&mut self, g: &mut Graph, v: ValueId) -> Result<ValueId, IrError> {
        if let Some(&t) = self.twins.get(&v) {
            return Ok(t);
        }
        let t = Self::new_twin(g, v)?;
        Self::transpose(g, v, t, &TO_LAST)?;
        self.twins.insert(v, t);
        Ok(t)
    }

    /// Replaces node `id` by `new` (reading twins, writing `twin`) and transposes the twin back
    /// into the node's original output.
    fn swap(
        &mut self,
        g: &mut Graph,
        id: NodeId,
        new: Node,
        out: ValueId,
        twin: ValueId,
    ) -> Result<(), IrError> {
        let old = g.detach_node(id);
        if let Err(e) = g.add_node(new) {
            g.add_node(old)?;
            return Err(e);
        }
        Self::transpose(g, twin, out, &TO_FIRST)?;
        self.twins.insert(out, twin);
        Ok(())
    }

    /// Split along channels: the same Split along the last axis of the twin, each part a twin.
    fn split(&mut self, g: &mut Graph, id: NodeId) -> Result<bool, IrError> {
        let n = g.node(id);
        let Some(t) = n.input(0).and_then(|v| self.twins.get(&v).copied()) else {
            return Ok(false);
        };
        let axis = n.attrs.get_int("axis").unwrap_or(0);
        if !(axis == 1 || axis == -3) || n.outputs().iter().any(|o| o.is_none()) {
            return Ok(false);
        }
        let outs: Vec<ValueId> = n.outputs().iter().flatten().copied().collect();
        if !outs.iter().all(|&o| rank4(g, o)) {
            return Ok(false);
        }
        let mut inputs = n.inputs().to_vec();
        inputs[0] = Some(t);
        let mut attrs = n.attrs.clone();
        attrs.retain(|a| a.name != "axis");
        attrs.push(Attribute::int("axis", 3));
        let name = n.name.clone();
        let twins: Vec<ValueId> = outs
            .iter()
            .map(|&o| Self::new_twin(g, o))
            .collect::<Result<_, _>>()?;
        let new = Node::new(&name, "Split", "")
            .with_inputs(&inputs)
            .with_outputs(&twins.iter().map(|&t| Some(t)).collect::<Vec<_>>())
            .with_attrs(attrs);
        let old = g.detach_node(id);
        if let Err(e) = g.add_node(new) {
            g.add_node(old)?;
            return Err(e);
        }
        for (&o, &tw) in outs.iter().zip(&twins) {
            Self::transpose(g, tw, o, &TO_FIRST)?;
            self.twins.insert(o, tw);
        }
        Ok(true)
    }

    /// A nearest Resize of 8-bit data by constant scales that keep batch and channels: the same
    /// Resize on the twin with the scales in channels-last order.
    fn resize(&mut self, g: &mut Graph, id: NodeId) -> Result<bool, IrError> {
        let n = g.node(id);
        let Some(t) = n.input(0).and_then(|v| self.twins.get(&v).copied()) else {
            return Ok(false);
        };
        if n.attrs.get_str("mode").unwrap_or("nearest") != "nearest"
            || n.attrs.get_ints("axes").is_some()
            || n.inputs().len() > 4
        {
            return Ok(false);
        }
        // Scales (input 2) or sizes (input 3), a constant of four values.
        let (slot, vals) = match (n.input(2), n.input(3)) {
            (Some(s), None) => match g.constant(s).and_then(|c| c.to_f64_vec()) {
                Some(v) if v.len() == 4 && v[0] == 1.0 && v[1] == 1.0 => (2, v),
                _ => return Ok(false),
            },
            (None | Some(_), Some(z)) => match g.constant(z).and_then(|c| c.to_f64_vec()) {
                Some(v) if v.len() == 4 => (3, v),
                _ => return Ok(false),
            },
            _ => return Ok(false),
        };
        let src = n.input(slot).expect("checked");
        let tensor = g.constant(src).expect("checked").clone();
        let perm = [vals[0], vals[2], vals[3], vals[1]];
        let permuted = match tensor.dtype {
            kiln_ir::DataType::F32 => kiln_ir::Tensor::from_f32(
                vec![4],
                &perm.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            ),
            kiln_ir::DataType::I64 => kiln_ir::Tensor::from_i64(
                vec![4],
                &perm.iter().map(|&v| v as i64).collect::<Vec<_>>(),
            ),
            _ => return Ok(false),
        };
        let name = g.unique_name(&format!("{}_nhwc", g.value(src).name));
        let c = g.add_initializer(&name, permuted)?;
        let n = g.node(id);
        let mut inputs = n.inputs().to_vec();
        inputs[0] = Some(t);
        inputs[slot] = Some(c);
        let attrs = n.attrs.clone();
        let (op_name, out) = (n.name.clone(), n.output(0).expect("checked"));
        let tw = Self::new_twin(g, out)?;
        let new = Node::new(&op_name, "Resize", "")
            .with_inputs(&inputs)
            .with_outputs(&[Some(tw)])
            .with_attrs(attrs);
        self.swap(g, id, new, out, tw)?;
        Ok(true)
    }

    /// `n` rewritten to read `inputs` and write a new twin of its output.
    fn rewrite(
        &mut self,
        g: &mut Graph,
        id: NodeId,
        inputs: Vec<Option<ValueId>>,
        attrs: Vec<Attribute>,
    ) -> Result<(), IrError> {
        let n = g.node(id);
        let out = n.output(0).expect("checked");
        let (name, op, domain) = (n.name.clone(), n.op_type.clone(), n.domain.clone());
        let twin = Self::new_twin(g, out)?;
        // Only QLinearConv changes domain (with `channels_last`); ONNX ops stay ONNX ops.
        let domain = if domain.is_empty() && op == "QLinearConv" {
            "com.microsoft".to_string()
        } else {
            domain
        };
        let new = Node::new(&name, &op, &domain)
            .with_inputs(&inputs)
            .with_outputs(&[Some(twin)])
            .with_attrs(attrs);
        self.swap(g, id, new, out, twin)
    }

    /// A QLinearConv the integer kernel takes channels-last, or why not.
    fn conv(&mut self, ctx: &mut PassCtx, id: NodeId) -> Result<Result<(), String>, IrError> {
        let model = &*ctx.model;
        let g = &model.graph;
        let n = g.node(id);
        let (Some(x), Some(w), Some(y)) = (n.input(0), n.input(3), n.output(0)) else {
            return Ok(Err("X, W or Y is missing".into()));
        };
        if !rank4(g, x) || !rank4(g, y) {
            return Ok(Err("X or Y is not a 4-D 8-bit tensor of known rank".into()));
        }
        let ws = match shape(g, w) {
            Some(s) if s.len() == 4 && is_constant(model, w) => s,
            _ => return Ok(Err("W is not a constant 4-D tensor".into())),
        };
        let group = n.attrs.get_int("group").unwrap_or(1).max(1);
        let per_group = ws[0].known().unwrap_or(0) / group;
        // Depthwise layers (one input and one output channel per group) have their own
        // channels-last kernel; other narrow groups run the reference, channel-first.
        let depthwise = per_group == 1 && ws[1].known() == Some(1);
        if group > 1 && per_group < 8 && !depthwise {
            return Ok(Err(format!(
                "{per_group} output channels per group: the integer kernel runs it channel-first"
            )));
        }
        let mut inputs = n.inputs().to_vec();
        let mut attrs = n.attrs.clone();
        attrs.push(Attribute::int("channels_last", 1));
        let g = &mut ctx.model.graph;
        inputs[0] = Some(self.last(g, x)?);
        self.rewrite(g, id, inputs, attrs)?;
        Ok(Ok(()))
    }

    /// The element-wise ops, the global pool and channel Concats on twins.
    fn follow(&mut self, g: &mut Graph, id: NodeId) -> Result<bool, IrError> {
        let n = g.node(id);
        if super::util::is_onnx(n, "Split") {
            return self.split(g, id);
        }
        if super::util::is_onnx(n, "Resize") && n.input(0).is_some_and(|v| rank4(g, v)) {
            return self.resize(g, id);
        }
        let Some(out) = n.output(0) else {
            return Ok(false);
        };
        if !rank4(g, out) {
            return Ok(false);
        }
        let twin = |i: usize| n.input(i).and_then(|v| self.twins.get(&v).copied());
        let mut inputs = n.inputs().to_vec();
        let mut attrs = n.attrs.clone();
        let silu = n.domain == kiln_ops::ops_domain::KILN && n.op_type == "QLinearSiLU";
        if ms(n, "QLinearSigmoid") || ms(n, "QLinearLeakyRelu") || silu {
            let Some(t) = twin(0) else { return Ok(false) };
            inputs[0] = Some(t);
        } else if ms(n, "QLinearAdd") || ms(n, "QLinearMul") {
            let (a, b) = (n.input(0), n.input(3));
            let same = match (a, b) {
                (Some(a), Some(b)) => shape(g, a).is_some() && shape(g, a) == shape(g, b),
                _ => false,
            };
            // Both sides must be channels-last already, and of one shape (no broadcast).
            match (twin(0), twin(3)) {
                (Some(ta), Some(tb)) if same => {
                    inputs[0] = Some(ta);
                    inputs[3] = Some(tb);
                }
                _ => return Ok(false),
            }
        } else if ms(n, "QLinearGlobalAveragePool") {
            let Some(t) = twin(0) else { return Ok(false) };
            if n.attrs.get_int("channels_last").unwrap_or(0) != 0 {
                return Ok(false);
            }
            inputs[0] = Some(t);
            attrs.retain(|a| a.name != "channels_last");
            attrs.push(Attribute::int("channels_last", 1));
        } else if super::util::is_onnx(n, "MaxPool") && n.outputs().len() == 1 {
            let Some(t) = twin(0) else { return Ok(false) };
            if n.attrs.get_int("storage_order").unwrap_or(0) != 0
                || n.attrs
                    .get_ints("kernel_shape")
                    .is_none_or(|k| k.len() != 2)
            {
                return Ok(false);
            }
            inputs[0] = Some(t);
            let n = g.node(id);
            let (name, out) = (n.name.clone(), out);
            let tw = Self::new_twin(g, out)?;
            let new = Node::new(&name, "NhwcMaxPool", "com.microsoft")
                .with_inputs(&inputs)
                .with_outputs(&[Some(tw)])
                .with_attrs(attrs);
            self.swap(g, id, new, out, tw)?;
            return Ok(true);
        } else if super::util::is_onnx(n, "Concat") {
            // 8-bit data whose Q/DQ pairs were dropped: a plain Concat along channels.
            let axis = n.attrs.get_int("axis").unwrap_or(0);
            if !(axis == 1 || axis == -3) {
                return Ok(false);
            }
            for i in 0..n.inputs().len() {
                match twin(i) {
                    Some(t) => inputs[i] = Some(t),
                    None => return Ok(false),
                }
            }
            attrs.retain(|a| a.name != "axis");
            attrs.push(Attribute::int("axis", 3));
        } else if ms(n, "QLinearConcat") {
            let axis = n.attrs.get_int("axis").unwrap_or(0);
            if !(axis == 1 || axis == -3) {
                return Ok(false);
            }
            for i in (2..n.inputs().len()).step_by(3) {
                match twin(i) {
                    Some(t) => inputs[i] = Some(t),
                    None => return Ok(false),
                }
            }
            attrs.retain(|a| a.name != "axis");
            attrs.push(Attribute::int("axis", 3));
        } else {
            return Ok(false);
        }
        self.rewrite(g, id, inputs, attrs)?;
        Ok(true)
    }
}

impl Pass for QuantNhwc {
    fn name(&self) -> &'static str {
        "quant_nhwc_layout"
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
        let mut st = Layout {
            twins: HashMap::new(),
        };
        let order = ctx.model.graph.order().to_vec();
        let mut changed = false;
        for id in order {
            if !ctx.model.graph.contains_node(id) {
                continue;
            }
            // A kiln op written in this phase (the SiLU table) has no provider yet; only the CPU
            // runs kiln's ops.
            let provider = (ctx.provider_of)(id);
            let kiln_op = ctx.model.graph.node(id).domain == kiln_ops::ops_domain::KILN;
            if provider.as_deref() != Some("cpu") && !(provider.is_none() && kiln_op) {
                continue;
            }
            let n = ctx.model.graph.node(id);
            let what = ctx.model.graph.describe(id);
            let done = if n.op_type == "QLinearConv" && matches!(n.domain.as_str(), "" | "ai.onnx")
            {
                match st.conv(ctx, id) {
                    Ok(Ok(())) => true,
                    Ok(Err(reason)) => {
                        report.declined.push((what, reason));
                        false
                    }
                    Err(e) => {
                        report.declined.push((what, e.to_string()));
                        false
                    }
                }
            } else {
                match st.follow(&mut ctx.model.graph, id) {
                    Ok(d) => d,
                    Err(e) => {
                        report.declined.push((what, e.to_string()));
                        false
                    }
                }
            };
            if done {
                report.applied += 1;
                changed = true;
            }
        }
        if changed {
            ctx.model.graph.remove_dead();
            ctx.model.ensure_opset("com.microsoft", 1);
            let _ = kiln_ops::infer_shapes(ctx.model);
        }
    }
}
