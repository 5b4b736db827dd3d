//! The blocked channel layout (ONNX Runtime's NCHWc idea), level `all`, CPU nodes of a kiln
//! session only: convolutions become `ai.kiln:NchwcConv`, and the layout is kept across the
//! pools, the element-wise ops, the BatchNormalizations (as depthwise 1×1 convolutions) and
//! the channel Concats that follow, so that reorders happen
//! only at the edges of a blocked region (see `kiln-ops`' `kiln_nchwc.rs` for the ops).
//!
//! The pass walks the graph in order. A rewritten node writes a new *twin* value in the
//! blocked layout, and a `ReorderOutput` turns the twin back into the original value, so
//! every consumer that knows nothing of the layout keeps reading what it read before; a
//! consumer that works on blocked data reads the twin instead, and reorders nobody reads are
//! removed at the end. The block is the CPU's vector width, so the result is never saved.
use std::collections::HashMap;

use kiln_ir::{AttrList, Attribute, Dim, Graph, IrError, Node, NodeId, ValueId};

use super::util::{dtype, is_onnx};
use crate::passes::const_fold::is_constant;
use crate::{Level, Pass, PassCtx, PassReport};

const KILN: &str = kiln_ops::ops_domain::KILN;

pub struct NchwcLayout;

/// A value's blocked twin and its real channel count.
#[derive(Clone, Copy)]
struct Twin {
    v: ValueId,
    c: usize,
}

struct Layout {
    block: usize,
    twins: HashMap<ValueId, Twin>,
}

fn shape(g: &Graph, v: ValueId) -> Option<&[Dim]> {
    g.value(v).ty.as_ref().and_then(|t| t.shape())
}

/// The channel count of a rank-4 float32 value with a known channel dim.
fn channels(g: &Graph, v: ValueId) -> Option<usize> {
    if dtype(g, v) != Some(kiln_ir::DataType::F32) {
        return None;
    }
    match shape(g, v) {
        Some([_, c, _, _]) => c.known().filter(|&c| c > 0).map(|c| c as usize),
        _ => None,
    }
}

/// Ops that map zero padding to finite values and work on any layout of equal shapes.
fn layout_free_unary(n: &Node) -> bool {
    (is_onnx(n, "Relu")
        || is_onnx(n, "Sigmoid")
        || is_onnx(n, "Tanh")
        || is_onnx(n, "LeakyRelu")
        || is_onnx(n, "HardSigmoid")
        || is_onnx(n, "HardSwish")
        || is_onnx(n, "Clip"))
        || (n.domain == "com.microsoft" && n.op_type == "QuickGelu")
}

fn layout_free_binary(n: &Node) -> bool {
    ["Add", "Mul", "Sub", "Max", "Min"]
        .iter()
        .any(|op| is_onnx(n, op))
}

fn is_conv(n: &Node) -> bool {
    is_onnx(n, "Conv")
        || (n.op_type == "FusedConv" && (n.domain == "com.microsoft" || n.domain == KILN))
}

/// The whole factors `[sh, sw]` of a Resize or Upsample that repeats each pixel (nearest,
/// output pixel `(y, x)` reading `(y / sh, x / sw)`) of a rank-4 value, batch and channels
/// kept: Resize with `asymmetric` coordinates and `floor` rounding (YOLO's upsample), whose
/// scales, when given, are exactly those integers; or Upsample's nearest mode.
fn nearest_factors(g: &Graph, n: &Node) -> Option<[usize; 2]> {
    let resize = is_onnx(n, "Resize");
    if !(resize || is_onnx(n, "Upsample"))
        || n.attrs.get_str("mode").unwrap_or("nearest") != "nearest"
    {
        return None;
    }
    if resize
        && (n.attrs.get_str("coordinate_transformation_mode") != Some("asymmetric")
            || n.attrs.get_str("nearest_mode") != Some("floor")
            || n.attrs.get_ints("axes").is_some())
    {
        return None;
    }
    let (x, y) = (n.input(0)?, n.output(0)?);
    let (sx, sy) = (shape(g, x)?, shape(g, y)?);
    if sx.len() != 4 || sy.len() != 4 || sx[0] != sy[0] || sx[1] != sy[1] {
        return None;
    }
    let factor = |a: &Dim, b: &Dim| {
        (1..=16)
            .find(|&k| a.mul(&Dim::Known(k)) == *b)
            .map(|k| k as usize)
    };
    let f = [factor(&sx[2], &sy[2])?, factor(&sx[3], &sy[3])?];
    // Scales that only round to the output size would place the samples elsewhere.
    let scales = match (resize, n.inputs().len()) {
        (true, _) => n.input(2),
        (false, 2) => n.input(1),
        _ => None,
    };
    let given: Option<Vec<f64>> = match scales {
        Some(v) => Some(g.constant(v).and_then(super::util::floats)?),
        None if !resize => n
            .attrs
            .get_floats("scales")
            .map(|s| s.iter().map(|&v| v as f64).collect()),
        None => None,
    };
    match given {
        // Resize with sizes: the scale is the size ratio, which is `f` exactly.
        Some(s) if s.is_empty() => Some(f),
        Some(s) => (s == [1.0, 1.0, f[0] as f64, f[1] as f64]).then_some(f),
        None => Some(f),
    }
}

/// An inference-mode BatchNormalization over `c` channels with constant parameters as
/// `x · scale + shift` per channel.
fn batch_norm_affine(g: &Graph, n: &Node, c: usize) -> Option<(Vec<f32>, Vec<f32>)> {
    if n.inputs().len() != 5 || n.attrs.get_int("training_mode").unwrap_or(0) != 0 {
        return None;
    }
    let vals: Option<Vec<Vec<f64>>> = n.inputs()[1..]
        .iter()
        .map(|v| g.constant((*v)?).and_then(super::util::floats))
        .collect();
    let vals = vals?;
    if vals.iter().any(|v| v.len() != c) {
        return None;
    }
    let eps = n.attrs.get_float("epsilon").unwrap_or(1e-5) as f64;
    let (gamma, beta, mean, var) = (&vals[0], &vals[1], &vals[2], &vals[3]);
    let scale: Vec<f64> = (0..c).map(|i| gamma[i] / (var[i] + eps).sqrt()).collect();
    let shift = (0..c)
        .map(|i| (beta[i] - mean[i] * scale[i]) as f32)
        .collect();
    Some((scale.into_iter().map(|v| v as f32).collect(), shift))
}

impl Layout {
    fn new_twin(&self, g: &mut Graph, of: ValueId) -> Result<ValueId, IrError> {
        let name = g.unique_name(&format!("{}_nchwc", g.value(of).name));
        g.add_value(&name, None)
    }

    /// The blocked form of `v`, reordering it when it has none yet.
    fn blocked(&mut self, g: &mut Graph, v: ValueId) -> Result<Twin, IrError> {
        if let Some(t) = self.twins.get(&v) {
            return Ok(*t);
        }
        let c = channels(g, v).ok_or_else(|| IrError::Invalid("no channel count".into()))?;
        let t = self.new_twin(g, v)?;
        let node = Node::new(
            &format!("{}_reorder", g.value(v).name),
            "ReorderInput",
            KILN,
        )
        .with_inputs(&[Some(v)])
        .with_outputs(&[Some(t)])
        .with_attrs(vec![Attribute::int("block", self.block as i64)]);
        g.add_node(node)?;
        let twin = Twin { v: t, c };
        self.twins.insert(v, twin);
        Ok(twin)
    }

    /// Replaces node `id` by `new`, whose outputs are `outs`' twins (or the original values
    /// when a twin is `None`), and reorders each twin back into its original value.
    fn swap(
        &mut self,
        g: &mut Graph,
        id: NodeId,
        new: Node,
        outs: &[(ValueId, Option<Twin>)],
    ) -> Result<(), IrError> {
        let old = g.detach_node(id);
        if let Err(e) = g.add_node(new) {
            g.add_node(old)?;
            return Err(e);
        }
        for &(orig, twin) in outs {
            let Some(t) = twin else { continue };
            let node = Node::new(
                &format!("{}_reorder", g.value(orig).name),
                "ReorderOutput",
                KILN,
            )
            .with_inputs(&[Some(t.v)])
            .with_outputs(&[Some(orig)])
            .with_attrs(vec![
                Attribute::int("block", self.block as i64),
                Attribute::int("channels", t.c as i64),
            ]);
            g.add_node(node)?;
            self.twins.insert(orig, t);
        }
        Ok(())
    }

    /// Rewrites a Conv-family node, or says why not.
    fn conv(&mut self, ctx: &mut PassCtx, id: NodeId) -> Result<Result<(), String>, IrError> {
        let model = &*ctx.model;
        let g = &model.graph;
        let n = g.node(id);
        let (Some(x), Some(w), Some(y)) = (n.input(0), n.input(1), n.output(0)) else {
            return Ok(Err("X, W or Y is missing".into()));
        };
        let Some(c) = channels(g, x) else {
            return Ok(Err(
                "X is not a float32 NCHW tensor with known channels".into()
            ));
        };
        let Some(m) = channels(g, y) else {
            return Ok(Err(
                "Y is not a float32 NCHW tensor with known channels".into()
            ));
        };
        if !is_constant(model, w) || shape(g, w).is_none_or(|s| s.len() != 4) {
            return Ok(Err("W is not a constant 4-D tensor".into()));
        }
        if n.input(2).is_some_and(|b| !is_constant(model, b)) {
            return Ok(Err("B is not a constant".into()));
        }
        let group = n.attrs.get_int("group").unwrap_or(1);
        let depthwise = group > 1;
        if depthwise && !(group as usize == c && c == m) {
            return Ok(Err(format!("group {group} is neither 1 nor depthwise")));
        }
        let z = if n.domain == "com.microsoft" {
            n.input(3)
        } else {
            None
        };
        if z.is_some_and(|z| channels(g, z) != Some(m)) {
            return Ok(Err("Z is not shaped as Y".into()));
        }
        let mut attrs: Vec<Attribute> = n
            .attrs
            .iter()
            .filter(|a| !["block", "channels", "plain_input"].contains(&a.name.as_str()))
            .cloned()
            .collect();
        attrs.push(Attribute::int("block", self.block as i64));
        attrs.push(Attribute::int("channels", c as i64));
        let check = kiln_ops::op_def(KILN, "NchwcConv").and_then(|d| d.check);
        if let Some(Err(e)) = check.map(|f| f(&attrs, 1)) {
            return Ok(Err(e));
        }
        let (name, bias) = (n.name.clone(), n.input(2));
        let g = &mut ctx.model.graph;
        // A dense convolution over channels that are not whole blocks and not blocked yet (a
        // first layer over RGB) reads its NCHW input as it is.
        let plain = !depthwise && !self.twins.contains_key(&x) && c % self.block != 0;
        let xin = if plain { x } else { self.blocked(g, x)?.v };
        attrs.push(Attribute::int("plain_input", plain as i64));
        let zin = match z {
            Some(z) => Some(self.blocked(g, z)?.v),
            None => None,
        };
        let twin = Twin {
            v: self.new_twin(g, y)?,
            c: m,
        };
        let mut inputs = vec![Some(xin), Some(w), bias];
        if zin.is_some() {
            inputs.push(zin);
        }
        let node = Node::new(&name, "NchwcConv", KILN)
            .with_inputs(&inputs)
            .with_outputs(&[Some(twin.v)])
            .with_attrs(attrs);
        self.swap(g, id, node, &[(y, Some(twin))])?;
        Ok(Ok(()))
    }

    /// A channel Split into whole blocks reads and writes blocked values as they are: block
    /// `k` of every pixel is one run of memory, so the plain kernel, splitting the blocked
    /// tensor's contiguous channel ranges, does it (as Concat does the reverse). YOLOv8's C2f
    /// blocks otherwise leave the layout around every Split.
    fn split(&mut self, g: &mut Graph, id: NodeId) -> Result<bool, IrError> {
        let n = g.node(id);
        let Some(t) = n.input(0).and_then(|v| self.twins.get(&v).copied()) else {
            return Ok(false);
        };
        let outs: Option<Vec<(ValueId, usize)>> = n
            .outputs()
            .iter()
            .map(|o| o.and_then(|o| Some((o, channels(g, o)?))))
            .collect();
        let Some(outs) = outs else { return Ok(false) };
        if outs.iter().any(|(_, c)| c % self.block != 0)
            || outs.iter().map(|(_, c)| c).sum::<usize>() != t.c
        {
            return Ok(false);
        }
        let mut inputs = n.inputs().to_vec();
        inputs[0] = Some(t.v);
        let (name, op, domain, attrs) = (
            n.name.clone(),
            n.op_type.clone(),
            n.domain.clone(),
            n.attrs.clone(),
        );
        let mut twins = Vec::with_capacity(outs.len());
        for &(o, c) in &outs {
            twins.push((
                o,
                Some(Twin {
                    v: self.new_twin(g, o)?,
                    c,
                }),
            ));
        }
        let new_outs: Vec<Option<ValueId>> = twins.iter().map(|(_, t)| t.map(|t| t.v)).collect();
        let node = Node::new(&name, &op, &domain)
            .with_inputs(&inputs)
            .with_outputs(&new_outs)
            .with_attrs(attrs);
        self.swap(g, id, node, &twins)?;
        Ok(true)
    }

    /// Rewrites a node that has a blocked form when its data inputs are blocked; returns
    /// whether it did.
    fn follow(&mut self, g: &mut Graph, id: NodeId) -> Result<bool, IrError> {
        let n = g.node(id);
        let b = self.block as i64;
        let twin_of = |v: Option<ValueId>| v.and_then(|v| self.twins.get(&v).copied());
        if is_onnx(n, "Split") && matches!(n.attrs.get_int("axis"), Some(1 | -3)) {
            return self.split(g, id);
        }
        let outs: Vec<ValueId> = n.outputs().iter().flatten().copied().collect();
        if outs.len() != 1 || n.outputs().len() != 1 {
            return Ok(false);
        }
        let y = outs[0];
        let mut attrs = n.attrs.clone();
        attrs.push(Attribute::int("block", b));
        let (new, twin) = if layout_free_unary(n) {
            let Some(t) = twin_of(n.input(0)) else {
                return Ok(false);
            };
            let mut inputs = n.inputs().to_vec();
            inputs[0] = Some(t.v);
            let node = Node::new(&n.name, &n.op_type, &n.domain)
                .with_inputs(&inputs)
                .with_attrs(n.attrs.clone());
            (node, Some(t.c))
        } else if layout_free_binary(n) {
            let (Some(a), Some(bb)) = (twin_of(n.input(0)), twin_of(n.input(1))) else {
                return Ok(false);
            };
            let (sa, sb) = (shape(g, n.input(0).unwrap()), shape(g, n.input(1).unwrap()));
            if n.inputs().len() != 2 || sa.is_none() || sa != sb || a.c != bb.c {
                return Ok(false);
            }
            let node = Node::new(&n.name, &n.op_type, &n.domain)
                .with_inputs(&[Some(a.v), Some(bb.v)])
                .with_attrs(n.attrs.clone());
            (node, Some(a.c))
        } else if is_onnx(n, "Concat") && matches!(n.attrs.get_int("axis"), Some(1 | -3)) {
            let ts: Option<Vec<Twin>> = n.inputs().iter().map(|v| twin_of(*v)).collect();
            let Some(ts) = ts else { return Ok(false) };
            // Whole blocks each, so that the blocked inputs follow each other in the output.
            if ts.is_empty() || ts.iter().any(|t| t.c % self.block != 0) {
                return Ok(false);
            }
            let inputs: Vec<Option<ValueId>> = ts.iter().map(|t| Some(t.v)).collect();
            let node = Node::new(&n.name, "Concat", &n.domain)
                .with_inputs(&inputs)
                .with_attrs(n.attrs.clone());
            (node, Some(ts.iter().map(|t| t.c).sum()))
        } else if (is_onnx(n, "MaxPool") || is_onnx(n, "AveragePool"))
            && shape(g, y).is_some_and(|s| s.len() == 4)
        {
            let Some(t) = twin_of(n.input(0)) else {
                return Ok(false);
            };
            let op = format!("Nchwc{}", n.op_type);
            let attrs: Vec<Attribute> = attrs
                .into_iter()
                .filter(|a| a.name != "storage_order")
                .collect();
            let node = Node::new(&n.name, &op, KILN)
                .with_inputs(&[Some(t.v)])
                .with_attrs(attrs);
            (node, Some(t.c))
        } else if is_onnx(n, "BatchNormalization") {
            let Some(t) = twin_of(n.input(0)) else {
                return Ok(false);
            };
            let Some((scale, shift)) = batch_norm_affine(g, n, t.c) else {
                return Ok(false);
            };
            // A per-channel affine map: a depthwise 1×1 convolution in the blocked layout.
            let base = g.value(y).name.clone();
            let wn = g.unique_name(&format!("{base}_scale"));
            let w =
                g.add_initializer(&wn, kiln_ir::Tensor::from_f32(vec![t.c, 1, 1, 1], &scale))?;
            let bn = g.unique_name(&format!("{base}_shift"));
            let bias = g.add_initializer(&bn, kiln_ir::Tensor::from_f32(vec![t.c], &shift))?;
            let node = Node::new(&g.node(id).name, "NchwcConv", KILN)
                .with_inputs(&[Some(t.v), Some(w), Some(bias)])
                .with_attrs(vec![
                    Attribute::int("block", b),
                    Attribute::int("channels", t.c as i64),
                    Attribute::int("group", t.c as i64),
                    Attribute::ints("kernel_shape", &[1, 1]),
                    Attribute::int("plain_input", 0),
                ]);
            (node, Some(t.c))
        } else if let Some(factors) = nearest_factors(g, n) {
            let Some(t) = twin_of(n.input(0)) else {
                return Ok(false);
            };
            let node = Node::new(&n.name, "NchwcUpsample", KILN)
                .with_inputs(&[Some(t.v)])
                .with_attrs(vec![
                    Attribute::int("block", b),
                    Attribute::ints("scales", &[factors[0] as i64, factors[1] as i64]),
                ]);
            (node, Some(t.c))
        } else if is_onnx(n, "GlobalAveragePool") || is_onnx(n, "GlobalMaxPool") {
            let Some(t) = twin_of(n.input(0)) else {
                return Ok(false);
            };
            let op = format!("Nchwc{}", n.op_type);
            let node = Node::new(&n.name, &op, KILN)
                .with_inputs(&[Some(t.v)])
                .with_outputs(&[Some(y)])
                .with_attrs(vec![
                    Attribute::int("block", b),
                    Attribute::int("channels", t.c as i64),
                ]);
            // Its output is NCHW already.
            self.swap(g, id, node, &[(y, None)])?;
            return Ok(true);
        } else {
            return Ok(false);
        };
        let twin = Twin {
            v: self.new_twin(g, y)?,
            c: twin.unwrap_or(0),
        };
        let new = new.with_outputs(&[Some(twin.v)]);
        self.swap(g, id, new, &[(y, Some(twin))])?;
        Ok(true)
    }
}

/// Folds an activation into the blocked convolution before it when it is that
/// convolution's only reader: a BatchNormalization became a depthwise 1x1 `NchwcConv` after
/// the activation fusions ran, and DenseNet's BatchNormalization -> Relu pairs otherwise
/// cost a pass over the data each (62 Relus, 7% of a run). Returns how many it folded.
fn fold_activations(model: &mut kiln_ir::Model) -> usize {
    let mut folded = 0;
    for id in model.graph.order().to_vec() {
        let g = &model.graph;
        if !g.contains_node(id) {
            continue;
        }
        let n = g.node(id);
        if n.domain != KILN || n.op_type != "NchwcConv" || n.attrs.get_str("activation").is_some() {
            continue;
        }
        let Some(t) = n.output(0) else { continue };
        let [user] = g.value(t).consumers() else {
            continue;
        };
        let r = user.node;
        let rn = g.node(r);
        let Some(out) = rn.output(0) else { continue };
        if g.is_graph_output(t)
            || g.is_graph_output(out)
            || rn.input(0) != Some(t)
            || rn.outputs().len() != 1
        {
            continue;
        }
        // FusedConv's spelling of the activation, as the Conv fusions write it.
        let Ok((name, params)) = super::util::activation(model, r) else {
            continue;
        };
        let mut with = n.attrs.clone();
        with.push(Attribute::string("activation", &name));
        if !params.is_empty() {
            with.push(Attribute::floats("activation_params", &params));
        }
        let check = kiln_ops::op_def(KILN, "NchwcConv").and_then(|d| d.check);
        if check.is_some_and(|f| f(&with, 1).is_err()) {
            continue;
        }
        let g = &mut model.graph;
        // The activation's readers read the convolution instead, which then applies it.
        if g.replace_uses(out, t, false).is_err() {
            continue;
        }
        g.detach_node(r);
        g.node_mut(id).attrs = with;
        folded += 1;
    }
    folded
}

impl Pass for NchwcLayout {
    fn name(&self) -> &'static str {
        "nchwc_layout"
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
            block: kiln_kernels::nchwc::block(),
            twins: HashMap::new(),
        };
        // Twins made by an earlier run (the manager repeats a phase until nothing changes).
        for (_, n) in ctx.model.graph.nodes() {
            let c = n.attrs.get_int("channels").unwrap_or(0) as usize;
            match (
                n.domain == KILN,
                n.op_type.as_str(),
                n.input(0),
                n.output(0),
            ) {
                (true, "ReorderOutput", Some(i), Some(o)) => {
                    st.twins.insert(o, Twin { v: i, c });
                }
                (true, "ReorderInput", Some(i), Some(o)) => {
                    if let Some(c) = channels(&ctx.model.graph, i) {
                        st.twins.insert(i, Twin { v: o, c });
                    }
                }
                _ => {}
            }
        }
        let order = ctx.model.graph.order().to_vec();
        let mut changed = false;
        for id in order {
            if !ctx.model.graph.contains_node(id) {
                continue;
            }
            if (ctx.provider_of)(id).as_deref() != Some("cpu") {
                continue;
            }
            let n = ctx.model.graph.node(id);
            let what = ctx.model.graph.describe(id);
            let done = if is_conv(n) {
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
            report.applied += fold_activations(ctx.model);
            ctx.model.graph.remove_dead();
            ctx.model.ensure_opset(KILN, 1);
            let _ = kiln_ops::infer_shapes(ctx.model);
        }
    }
}
