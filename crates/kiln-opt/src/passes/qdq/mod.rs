//! The QDQ family: a quantized model as ORT's quantizer writes it in QDQ form (float ops between
//! DequantizeLinear and QuantizeLinear nodes) becomes the quantized graph ORT's optimizer
//! builds (QLinearConv, QLinearMatMul, MatMulIntegerToFloat, QGemm, the com.microsoft QLinear
//! element-wise ops, pools and Concat), with the Q/DQ pairs around exact 8-bit data movement
//! dropped and redundant pairs removed. One pass per file; this file holds the selectors' shared
//! reading of a DQ or Q node, and the rewrite that puts a fused node in place.
//!
//! Every pass requires constant scales and zero points, 8-bit data, activations quantized per
//! tensor, and (as every fusion) one provider that the pass is valid for.
use kiln_ir::{AttrList, DataType, IrError, Node, NodeId, Tensor, ValueId};

use super::const_fold::is_constant;
use super::util::{dtype, replace};
use crate::fusion::{lone_consumer, Decline};
use crate::PassCtx;

pub(crate) mod binary;
pub(crate) mod concat;
pub(crate) mod conv;
pub(crate) mod drop;
pub(crate) mod dynamic;
pub(crate) mod gemm;
pub(crate) mod matmul;
pub(crate) mod pad;
pub(crate) mod pair;
pub(crate) mod unary;

/// The providers with kernels for the quantized ops these passes write.
pub const QDQ_PROVIDERS: &[&str] = &["cpu"];

/// Quantization parameters of one DQ or Q node.
#[derive(Clone, Debug)]
pub struct Params {
    pub node: NodeId,
    /// The 8-bit side: a DQ's input, a Q's output.
    pub data: ValueId,
    /// The float side: a DQ's output, a Q's input.
    pub float: ValueId,
    pub scale: ValueId,
    pub zero: Option<ValueId>,
    pub scales: Vec<f64>,
    pub zeros: Vec<i64>,
    pub dtype: DataType,
    /// The axis of per-channel parameters (normalized against the data's rank when known).
    pub axis: i64,
}

impl Params {
    pub fn per_tensor(&self) -> bool {
        self.scales.len() == 1 && self.zeros.len() <= 1
    }

    pub fn zero_at(&self, i: usize) -> i64 {
        match self.zeros.len() {
            0 => 0,
            1 => self.zeros[0],
            _ => self.zeros[i],
        }
    }

    /// Same scale, zero point and type as `o`.
    pub fn same(&self, o: &Params) -> bool {
        self.dtype == o.dtype
            && self.scales == o.scales
            && (0..self.scales.len().max(1)).all(|i| self.zero_at(i) == o.zero_at(i))
    }
}

fn is_op(n: &Node, op: &str) -> bool {
    n.op_type == op && matches!(n.domain.as_str(), "" | "ai.onnx" | "com.microsoft")
}

/// Reads the scale and zero point inputs of a DQ/Q node.
pub(super) fn read(
    ctx: &PassCtx,
    id: NodeId,
    data: ValueId,
    float: ValueId,
) -> Result<Params, Decline> {
    read_as(ctx, id, data, float, false)
}

fn read_as(
    ctx: &PassCtx,
    id: NodeId,
    data: ValueId,
    float: ValueId,
    bias: bool,
) -> Result<Params, Decline> {
    let model = &*ctx.model;
    let g = &model.graph;
    let n = g.node(id);
    if n.attrs.get_int("block_size").unwrap_or(0) != 0 {
        return Err(Decline::because(format!("{} is blocked", g.describe(id))));
    }
    let scale = n.input(1).ok_or(Decline::NoMatch)?;
    let zero = n.input(2);
    let constant = |v: ValueId| is_constant(model, v).then(|| g.constant(v)).flatten();
    let st = constant(scale).ok_or_else(|| {
        Decline::because(format!("{}: the scale is not a constant", g.describe(id)))
    })?;
    if st.dtype != DataType::F32 {
        return Err(Decline::because(format!(
            "{}: scale of type {} (float32 only)",
            g.describe(id),
            st.dtype
        )));
    }
    let scales = st.to_f64_vec().ok_or(Decline::NoMatch)?;
    let (zeros, dt) = match zero {
        None => (Vec::new(), None),
        Some(z) => {
            let zt = constant(z).ok_or_else(|| {
                Decline::because(format!(
                    "{}: the zero point is not a constant",
                    g.describe(id)
                ))
            })?;
            (zt.to_i64_vec().ok_or(Decline::NoMatch)?, Some(zt.dtype))
        }
    };
    let dt = dt.or_else(|| dtype(g, data)).unwrap_or(DataType::U8);
    if !(matches!(dt, DataType::U8 | DataType::I8) || (bias && dt == DataType::I32)) {
        return Err(Decline::because(format!(
            "{}: {dt} data (8-bit only)",
            g.describe(id)
        )));
    }
    if dtype(g, float).is_some_and(|t| t != DataType::F32) {
        return Err(Decline::because(format!(
            "{}: float side is not float32",
            g.describe(id)
        )));
    }
    if scales.is_empty() || (!zeros.is_empty() && zeros.len() != scales.len()) {
        return Err(Decline::because(format!(
            "{}: scale and zero point disagree in size",
            g.describe(id)
        )));
    }
    let rank = g
        .value(data)
        .ty
        .as_ref()
        .and_then(|t| t.shape())
        .map(|s| s.len() as i64);
    let mut axis = n.attrs.get_int("axis").unwrap_or(1);
    if let Some(r) = rank {
        if axis < 0 {
            axis += r;
        }
    }
    Ok(Params {
        node: id,
        data,
        float,
        scale,
        zero,
        scales,
        zeros,
        dtype: dt,
        axis,
    })
}

/// The DequantizeLinear producing `v`.
pub fn dq(ctx: &PassCtx, v: ValueId) -> Result<Params, Decline> {
    let g = &ctx.model.graph;
    let (id, _) = g.value(v).producer().ok_or(Decline::NoMatch)?;
    let n = g.node(id);
    if !is_op(n, "DequantizeLinear") {
        return Err(Decline::NoMatch);
    }
    read(ctx, id, n.input(0).ok_or(Decline::NoMatch)?, v)
}

/// The DequantizeLinear of an int32 bias producing `v`.
pub fn dq_bias(ctx: &PassCtx, v: ValueId) -> Result<Params, Decline> {
    let g = &ctx.model.graph;
    let (id, _) = g.value(v).producer().ok_or(Decline::NoMatch)?;
    let n = g.node(id);
    if !is_op(n, "DequantizeLinear") {
        return Err(Decline::NoMatch);
    }
    read_as(ctx, id, n.input(0).ok_or(Decline::NoMatch)?, v, true)
}

/// The QuantizeLinear that is the lone consumer of `v`.
pub fn q_after(ctx: &PassCtx, v: ValueId) -> Result<Params, Decline> {
    let g = &ctx.model.graph;
    let id = lone_consumer(g, v)?;
    let n = g.node(id);
    if !is_op(n, "QuantizeLinear") || n.input(0) != Some(v) {
        return Err(Decline::NoMatch);
    }
    if n.attrs.get_int("output_dtype").unwrap_or(0) != 0 && n.input(2).is_none() {
        return Err(Decline::because(
            "QuantizeLinear with output_dtype and no zero point",
        ));
    }
    if n.attrs.get_int("saturate").is_some_and(|s| s == 0) {
        return Err(Decline::because("QuantizeLinear without saturation"));
    }
    let p = read(ctx, id, n.output(0).ok_or(Decline::NoMatch)?, v)?;
    if !p.per_tensor() {
        return Err(Decline::because(format!(
            "{} quantizes per channel",
            g.describe(id)
        )));
    }
    Ok(p)
}

/// `v` as the QuantizeLinear of `y` writes it (f32 division, half to even, saturated), as the
/// value of its 8-bit type.
pub fn quantized(v: f64, y: &Params) -> i64 {
    let (lo, hi) = if y.dtype == DataType::I8 {
        (-128, 127)
    } else {
        (0, 255)
    };
    let q = ((v as f32) / (y.scales[0] as f32)).round_ties_even() as f64 + y.zero_at(0) as f64;
    q.clamp(lo as f64, hi as f64) as i64
}

/// `p` must be per tensor (activations).
pub fn per_tensor(ctx: &PassCtx, p: &Params) -> Result<(), Decline> {
    if p.per_tensor() {
        Ok(())
    } else {
        Err(Decline::because(format!(
            "{} dequantizes per channel",
            ctx.model.graph.describe(p.node)
        )))
    }
}

/// `p`'s zero point input, made (a zero of its type) when the node has none: the standard
/// QLinear ops require theirs.
pub fn zero_input(ctx: &mut PassCtx, p: &Params) -> Result<ValueId, IrError> {
    if let Some(z) = p.zero {
        return Ok(z);
    }
    let g = &mut ctx.model.graph;
    let name = g.unique_name(&format!("{}_zero_point", g.value(p.data).name));
    let t = Tensor::from_raw(p.dtype, vec![], vec![0u8].into()).expect("one byte");
    g.add_initializer(&name, t)
}

/// Replaces `nodes` (the float op and its Q) by `new`, then drops the DQ nodes in `dqs` whose
/// outputs nothing reads any more.
pub fn rewrite(
    ctx: &mut PassCtx,
    nodes: &[NodeId],
    new: Node,
    dqs: &[NodeId],
) -> Result<NodeId, IrError> {
    let g = &mut ctx.model.graph;
    let id = replace(g, nodes, new)?;
    for &d in dqs {
        if !g.contains_node(d) {
            continue;
        }
        let unused = g
            .node(d)
            .outputs()
            .iter()
            .flatten()
            .all(|&v| g.value(v).consumers().is_empty() && !g.is_graph_output(v));
        if unused {
            g.remove_node(d)?;
        }
    }
    Ok(id)
}

/// Every node on one provider the passes are valid for, and no portable output (the QLinear
/// ops beyond QLinearConv/QLinearMatMul are com.microsoft's).
pub fn check_nodes(ctx: &PassCtx, nodes: &[NodeId], onnx_only: bool) -> Result<(), Decline> {
    if ctx.portable && !onnx_only {
        return Err(Decline::because(
            "portable output: the fused op is not a standard ONNX op",
        ));
    }
    super::util::assigned_to(ctx, nodes, QDQ_PROVIDERS)
}
