//! Four stride-2 Slices of one tensor stacked by a Concat on channels (YOLOv5's "Focus" block)
//! -> one SpaceToDepth (blocksize 2). Both export forms are recognized: each phase as one Slice
//! over H and W, or as two chained Slices (H, then W, or the reverse), the chained ones possibly
//! shared between phases after CSE. When the Concat's phase order is not SpaceToDepth's own, the
//! channel permutation is folded into the weights of the Convs that read the result, or, if
//! anything else reads it, done by a Gather on the channel axis. Standard ONNX ops only.
use std::collections::HashMap;

use kiln_ir::{
    AttrList, Attribute, DataType, Dim, Graph, IrError, Model, Node, NodeId, Tensor, ValueId,
};

use super::const_fold::is_constant;
use super::util::{dtype, is_onnx, replace};
use crate::fusion::{run_fusion, Decline, Fusion};
use crate::{Level, Pass, PassCtx, PassReport};

pub struct SliceConcatToSpaceToDepth;

/// Ends at or past this reach the end of any real dimension (exporters write INT32_MAX or
/// INT64_MAX).
const HUGE: i64 = i32::MAX as i64;

#[derive(Clone, Copy, Debug, PartialEq)]
struct AxisSlice {
    start: i64,
    end: i64,
    step: i64,
}

pub struct Found {
    concat: NodeId,
    x: ValueId,
    slices: Vec<NodeId>,
    /// SpaceToDepth block (`hy * 2 + wx`) of each Concat input.
    blocks: Vec<usize>,
    channels: Option<usize>,
    /// Convs that read the Concat (when every reader is one whose weights can absorb the
    /// permutation).
    convs: Vec<NodeId>,
}

fn ints(model: &Model, v: Option<ValueId>) -> Result<Option<Vec<i64>>, Decline> {
    let Some(v) = v else { return Ok(None) };
    if !is_constant(model, v) {
        return Err(Decline::because("Slice parameters are not constants"));
    }
    Ok(model.graph.constant(v).and_then(|t| t.to_i64_vec()))
}

/// The per-axis slicing of one Slice node over a rank-`rank` input.
fn slice_spec(
    model: &Model,
    id: NodeId,
    rank: usize,
) -> Result<HashMap<usize, AxisSlice>, Decline> {
    let n = model.graph.node(id);
    let (starts, ends, axes, steps) = if model.opset("").unwrap_or(1) < 10 {
        (
            n.attrs.get_ints("starts").map(|v| v.to_vec()),
            n.attrs.get_ints("ends").map(|v| v.to_vec()),
            n.attrs.get_ints("axes").map(|v| v.to_vec()),
            None,
        )
    } else {
        (
            ints(model, n.input(1))?,
            ints(model, n.input(2))?,
            ints(model, n.input(3))?,
            ints(model, n.input(4))?,
        )
    };
    let (Some(starts), Some(ends)) = (starts, ends) else {
        return Err(Decline::because("Slice starts/ends are unknown"));
    };
    let k = starts.len();
    let axes = axes.unwrap_or_else(|| (0..k as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; k]);
    if ends.len() != k || axes.len() != k || steps.len() != k {
        return Err(Decline::because("Slice parameters differ in length"));
    }
    let mut spec = HashMap::new();
    for i in 0..k {
        let r = rank as i64;
        let a = if axes[i] < 0 { axes[i] + r } else { axes[i] };
        if !(0..r).contains(&a) {
            return Err(Decline::because("a Slice axis is out of range"));
        }
        let s = AxisSlice {
            start: starts[i],
            end: ends[i],
            step: steps[i],
        };
        if spec.insert(a as usize, s).is_some() {
            return Err(Decline::because("a Slice names an axis twice"));
        }
    }
    Ok(spec)
}

/// Whether `s` takes a whole axis of size `d`, or phase 0/1 of it with stride 2.
fn reaches_end(s: &AxisSlice, d: &Dim) -> bool {
    s.end >= HUGE || d.known().is_some_and(|n| s.end >= n)
}

impl SliceConcatToSpaceToDepth {
    /// Walks up from a Concat input through at most two Slices to their common source.
    fn chain(g: &Graph, v: ValueId) -> Option<(ValueId, Vec<NodeId>)> {
        let mut cur = v;
        let mut nodes = Vec::new();
        while let Some((p, _)) = g.value(cur).producer() {
            if !is_onnx(g.node(p), "Slice") || nodes.len() == 2 {
                break;
            }
            nodes.push(p);
            cur = g.node(p).input(0)?;
        }
        (!nodes.is_empty()).then_some((cur, nodes))
    }
}

impl Fusion for SliceConcatToSpaceToDepth {
    type Match = Found;

    fn select(&self, ctx: &PassCtx, concat: NodeId) -> Result<Found, Decline> {
        let model = &*ctx.model;
        let g = &model.graph;
        let c = g.node(concat);
        if !is_onnx(c, "Concat") || c.inputs().len() != 4 {
            return Err(Decline::NoMatch);
        }
        let mut chains = Vec::new();
        for v in c.inputs() {
            match v.and_then(|v| Self::chain(g, v)) {
                Some(ch) => chains.push(ch),
                None => return Err(Decline::NoMatch),
            }
        }
        let x = chains[0].0;
        if chains.iter().any(|(src, _)| *src != x) {
            return Err(Decline::because("the four Slices read different inputs"));
        }
        let shape: Vec<Dim> = g
            .value(x)
            .ty
            .as_ref()
            .and_then(|t| t.shape().map(|s| s.to_vec()))
            .ok_or_else(|| Decline::because("the input's rank is unknown"))?;
        if shape.len() != 4 {
            return Err(Decline::because("the input is not NCHW (rank 4)"));
        }
        let axis = c.attrs.get_int("axis").unwrap_or(0);
        if axis != 1 && axis != -3 {
            return Err(Decline::because(format!(
                "Concat is on axis {axis}, not channels"
            )));
        }
        match dtype(g, x) {
            Some(DataType::F32) | Some(DataType::F16) => {}
            other => {
                return Err(Decline::because(format!(
                    "only float32 and float16 are handled (input is {})",
                    other.map(|d| d.name()).unwrap_or("of unknown type")
                )))
            }
        }
        let mut blocks = Vec::new();
        let mut slices: Vec<NodeId> = Vec::new();
        for (_, nodes) in &chains {
            let mut phase: HashMap<usize, AxisSlice> = HashMap::new();
            for &n in nodes {
                for (a, s) in slice_spec(model, n, 4)? {
                    if phase.insert(a, s).is_some() {
                        return Err(Decline::because("one phase slices an axis twice"));
                    }
                }
                if !slices.contains(&n) {
                    slices.push(n);
                }
            }
            for a in 0..2 {
                if let Some(s) = phase.get(&a) {
                    if !(s.start == 0 && s.step == 1 && reaches_end(s, &shape[a])) {
                        return Err(Decline::because("a Slice cuts the batch or channel axis"));
                    }
                }
            }
            let mut pos = [0usize; 2];
            for (k, a) in [2usize, 3].iter().enumerate() {
                let s = phase
                    .get(a)
                    .ok_or_else(|| Decline::because("a phase does not slice both H and W"))?;
                if s.step != 2 {
                    return Err(Decline::because(format!("step is {}, not 2", s.step)));
                }
                if s.start != 0 && s.start != 1 {
                    return Err(Decline::because(format!(
                        "start {} is not a phase offset 0 or 1",
                        s.start
                    )));
                }
                if !reaches_end(s, &shape[*a]) {
                    return Err(Decline::because("a Slice stops before the end of H or W"));
                }
                if let Some(d) = shape[*a].known() {
                    if d % 2 != 0 {
                        return Err(Decline::because(format!(
                            "{} is odd ({d})",
                            if *a == 2 { "H" } else { "W" }
                        )));
                    }
                }
                pos[k] = s.start as usize;
            }
            blocks.push(pos[0] * 2 + pos[1]);
        }
        let mut seen = blocks.clone();
        seen.sort();
        if seen != [0, 1, 2, 3] {
            return Err(Decline::because(
                "the four phases are not the four offsets of a 2x2 block",
            ));
        }
        // Intermediate values must feed only the pattern.
        for &n in &slices {
            let out = g.node(n).output(0).ok_or(Decline::NoMatch)?;
            if g.is_graph_output(out) {
                return Err(Decline::because(format!(
                    "Slice output '{}' is a graph output",
                    g.value(out).name
                )));
            }
            for u in g.value(out).consumers() {
                if u.node != concat && !slices.contains(&u.node) {
                    return Err(Decline::because(format!(
                        "Slice output '{}' is used outside the pattern",
                        g.value(out).name
                    )));
                }
            }
        }
        let channels = shape[1].known().map(|c| c as usize);
        let out = c.output(0).ok_or(Decline::NoMatch)?;
        let canonical = blocks == [0, 1, 2, 3];
        let mut convs = Vec::new();
        if !canonical {
            if channels.is_none() {
                return Err(Decline::because(
                    "the channel count is unknown, so the phase order cannot be permuted",
                ));
            }
            let all_convs = !g.is_graph_output(out)
                && g.value(out).consumers().iter().all(|u| {
                    let n = g.node(u.node);
                    is_onnx(n, "Conv")
                        && u.slot == kiln_ir::Slot::Input(0)
                        && n.attrs.get_int("group").unwrap_or(1) == 1
                        && n.input(1).is_some_and(|w| {
                            is_constant(model, w)
                                && g.constant(w).is_some_and(|t| {
                                    t.dtype == DataType::F32 || t.dtype == DataType::F16
                                })
                        })
                });
            if all_convs {
                convs = g.value(out).consumers().iter().map(|u| u.node).collect();
            }
        }
        Ok(Found {
            concat,
            x,
            slices,
            blocks,
            channels,
            convs,
        })
    }

    fn apply(&self, ctx: &mut PassCtx, m: Found) -> Result<(), IrError> {
        let g = &mut ctx.model.graph;
        let out = g
            .node(m.concat)
            .output(0)
            .ok_or_else(|| IrError::Invalid("no output".into()))?;
        let name = g.node(m.concat).name.clone();
        let canonical = m.blocks == [0, 1, 2, 3];
        let attrs = vec![Attribute::int("blocksize", 2)];
        let mut old = m.slices.clone();
        old.push(m.concat);
        if canonical || !m.convs.is_empty() {
            let node = Node::new(&name, "SpaceToDepth", "")
                .with_inputs(&[Some(m.x)])
                .with_outputs(&[Some(out)])
                .with_attrs(attrs.clone());
            replace(g, &old, node)?;
            if canonical {
                return Ok(());
            }
        }
        let c = m.channels.expect("checked in select");
        // Concat channel j = k*C + i is SpaceToDepth channel blocks[k]*C + i.
        let idx: Vec<usize> = (0..4 * c).map(|j| m.blocks[j / c] * c + j % c).collect();
        if !m.convs.is_empty() {
            for conv in m.convs {
                let w = g.node(conv).input(1).expect("checked");
                let t = g.constant(w).expect("checked").clone();
                let permuted = permute_in_channels(&t, &idx)?;
                let base = if g.node(conv).name.is_empty() {
                    "conv".into()
                } else {
                    g.node(conv).name.clone()
                };
                let nw =
                    g.add_initializer(&g.unique_name(&format!("{base}_s2d_weight")), permuted)?;
                g.set_input(conv, 1, Some(nw))?;
            }
            return Ok(());
        }
        let mid = g.add_value(&g.unique_name(&format!("{}_s2d", g.value(out).name)), None)?;
        let s2d = Node::new(&name, "SpaceToDepth", "")
            .with_inputs(&[Some(m.x)])
            .with_outputs(&[Some(mid)])
            .with_attrs(attrs);
        replace(g, &old, s2d)?;
        let ind: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
        let iv = g.add_initializer(
            &g.unique_name(&format!("{name}_phase_order")),
            Tensor::from_i64(vec![ind.len()], &ind),
        )?;
        let gather = Node::new(&format!("{name}_phase_order"), "Gather", "")
            .with_inputs(&[Some(mid), Some(iv)])
            .with_outputs(&[Some(out)])
            .with_attrs(vec![Attribute::int("axis", 1)]);
        g.add_node(gather)?;
        Ok(())
    }
}

/// Weights `[M, 4C, kh, kw]` reindexed so that input channel `idx[j]` gets old channel `j`.
fn permute_in_channels(w: &Tensor, idx: &[usize]) -> Result<Tensor, IrError> {
    let raw = w
        .raw()
        .ok_or_else(|| IrError::Invalid("weights are not numeric".into()))?;
    if w.dims.len() < 2 || w.dims[1] != idx.len() {
        return Err(IrError::Invalid(format!(
            "the Conv's weights {:?} do not take {} input channels",
            w.dims,
            idx.len()
        )));
    }
    let esize = w.dtype.storage_bytes(1).unwrap_or(1);
    let inner: usize = w.dims[2..].iter().product::<usize>() * esize;
    let cin = w.dims[1];
    let mut out = vec![0u8; raw.len()];
    for m in 0..w.dims[0] {
        for (j, &to) in idx.iter().enumerate() {
            let src = (m * cin + j) * inner;
            let dst = (m * cin + to) * inner;
            out[dst..dst + inner].copy_from_slice(&raw[src..src + inner]);
        }
    }
    Tensor::from_raw(w.dtype, w.dims.clone(), out.into())
        .map_err(|e| IrError::Invalid(e.to_string()))
}

impl Pass for SliceConcatToSpaceToDepth {
    fn name(&self) -> &'static str {
        "slice_concat_to_space_to_depth"
    }

    fn level(&self) -> Level {
        Level::Basic
    }

    fn run(&self, ctx: &mut PassCtx, report: &mut PassReport) {
        let _ = kiln_ops::infer_shapes(ctx.model);
        run_fusion(self, ctx, report)
    }
}
