//! `Q(Add|Sub|Mul(DQ(a), DQ(b)))` -> com.microsoft:QLinearAdd / QLinearMul: both inputs and
//! the output 8-bit of one type, per tensor. Two rewrites ORT's optimizer leaves in float:
//! - Sub is QLinearAdd with B's scale negated (`sa·(a−za) + (−sb)·(b−zb)`; ORT's kernel gives
//!   the float graph's bytes with it);
//! - a Relu or a constant Clip between the op and the Q is a clamp of the quantized result,
//!   exactly, since quantizing is monotonic: `Q(max(x, lo)) = max(Q(x), Q(lo))`. It becomes a
//!   Clip on the 8-bit output, or nothing where the Q's range already lies inside its bounds
//!   (a Relu before an unsigned Q with zero point 0).
use kiln_ir::{AttrList, DataType, IrError, Node, NodeId, Tensor, ValueId};

use super::{check_nodes, dq, per_tensor, q_after, quantized, rewrite, Params};
use crate::fusion::{fusion_pass, lone_consumer, Decline, Fusion};
use crate::passes::const_fold::is_constant;
use crate::passes::util::{floats, is_onnx};
use crate::{Level, PassCtx};

pub struct QdqBinary;

pub struct Found {
    op: NodeId,
    kind: &'static str,
    /// Sub: B's scale goes in negated.
    negate_b: bool,
    /// The Relu or Clip between the op and the Q, and the clamp it is on the 8-bit result
    /// (None: no clamp needed).
    act: Option<(NodeId, Option<(i64, i64)>)>,
    a: Params,
    b: Params,
    y: Params,
}

fn range(dt: DataType) -> (i64, i64) {
    if dt == DataType::I8 {
        (-128, 127)
    } else {
        (0, 255)
    }
}

/// The float bounds of a Relu or Clip node (None where a side is open); declines a Clip whose
/// bounds are not constants.
fn bounds(ctx: &PassCtx, n: &Node) -> Result<(Option<f64>, Option<f64>), Decline> {
    if is_onnx(n, "Relu") {
        return Ok((Some(0.0), None));
    }
    let opset = ctx.model.opset("").unwrap_or(1);
    if opset < 11 {
        let f = |a: &str| n.attrs.get_float(a).map(|x| x as f64);
        return Ok((f("min"), f("max")));
    }
    let bound = |i: usize| -> Result<Option<f64>, Decline> {
        let Some(v) = n.input(i) else {
            return Ok(None);
        };
        let g = &ctx.model.graph;
        let t = is_constant(&ctx.model, v)
            .then(|| g.constant(v))
            .flatten()
            .and_then(floats)
            .filter(|f| f.len() == 1)
            .ok_or_else(|| Decline::because("the Clip's bounds are not float constants"))?;
        Ok(Some(t[0]))
    };
    Ok((bound(1)?, bound(2)?))
}

fn scalar(dt: DataType, v: i64) -> Tensor {
    let byte = if dt == DataType::I8 {
        (v as i8) as u8
    } else {
        v as u8
    };
    Tensor::from_raw(dt, vec![], vec![byte].into()).expect("one byte")
}

impl Fusion for QdqBinary {
    type Match = Found;

    fn select(&self, ctx: &PassCtx, op: NodeId) -> Result<Found, Decline> {
        let g = &ctx.model.graph;
        let n = g.node(op);
        let (kind, negate_b) = if is_onnx(n, "Add") {
            ("QLinearAdd", false)
        } else if is_onnx(n, "Sub") {
            ("QLinearAdd", true)
        } else if is_onnx(n, "Mul") {
            ("QLinearMul", false)
        } else {
            return Err(Decline::NoMatch);
        };
        let a = dq(ctx, n.input(0).ok_or(Decline::NoMatch)?)?;
        let b = dq(ctx, n.input(1).ok_or(Decline::NoMatch)?)?;
        let out = n.output(0).ok_or(Decline::NoMatch)?;
        // An activation between the op and its Q.
        let act = match lone_consumer(g, out) {
            Ok(c) if is_onnx(g.node(c), "Relu") || is_onnx(g.node(c), "Clip") => {
                let an = g.node(c);
                if an.input(0) != Some(out) {
                    return Err(Decline::NoMatch);
                }
                Some((c, bounds(ctx, an)?))
            }
            _ => None,
        };
        let y = match act {
            Some((c, _)) => q_after(ctx, g.node(c).output(0).ok_or(Decline::NoMatch)?)?,
            None => q_after(ctx, out)?,
        };
        per_tensor(ctx, &a)?;
        per_tensor(ctx, &b)?;
        if a.dtype != b.dtype || a.dtype != y.dtype {
            return Err(Decline::because(
                "inputs and output are not of one 8-bit type",
            ));
        }
        let mut nodes = vec![a.node, b.node, op, y.node];
        let act = match act {
            None => None,
            Some((c, (lo, hi))) => {
                nodes.push(c);
                let (tmin, tmax) = range(y.dtype);
                let qlo = lo.map_or(tmin, |v| quantized(v, &y));
                let qhi = hi.map_or(tmax, |v| quantized(v, &y));
                if qlo > qhi {
                    return Err(Decline::because("the Clip's min is above its max"));
                }
                let clamp = (qlo > tmin || qhi < tmax).then_some((qlo, qhi));
                if clamp.is_some() && ctx.model.opset("").unwrap_or(1) < 12 {
                    return Err(Decline::because(
                        "the clamp needs Clip on 8-bit data (opset 12)",
                    ));
                }
                Some((c, clamp))
            }
        };
        check_nodes(ctx, &nodes, false)?;
        Ok(Found {
            op,
            kind,
            negate_b,
            act,
            a,
            b,
            y,
        })
    }

    fn apply(&self, ctx: &mut PassCtx, f: Found) -> Result<(), IrError> {
        let name = ctx.model.graph.node(f.op).name.clone();
        let b_scale = if f.negate_b {
            let g = &mut ctx.model.graph;
            let s = -(f.b.scales[0] as f32);
            let n = g.unique_name(&format!("{}_negated", g.value(f.b.scale).name));
            let t = Tensor::from_raw(DataType::F32, vec![], s.to_le_bytes().to_vec().into())
                .expect("four bytes");
            g.add_initializer(&n, t)?
        } else {
            f.b.scale
        };
        let clamp = f.act.and_then(|(_, c)| c);
        // With a clamp after it, the fused op writes an intermediate the Clip reads.
        let out: ValueId = match clamp {
            None => f.y.data,
            Some(_) => {
                let g = &mut ctx.model.graph;
                let n = g.unique_name(&format!("{}_unclamped", g.value(f.y.data).name));
                let ty = g.value(f.y.data).ty.clone();
                g.add_value(&n, ty)?
            }
        };
        let node = Node::new(&name, f.kind, "com.microsoft")
            .with_inputs(&[
                Some(f.a.data),
                Some(f.a.scale),
                f.a.zero,
                Some(f.b.data),
                Some(b_scale),
                f.b.zero,
                Some(f.y.scale),
                f.y.zero,
            ])
            .with_outputs(&[Some(out)]);
        let mut pattern = vec![f.op];
        if let Some((c, _)) = f.act {
            pattern.push(c);
        }
        pattern.push(f.y.node);
        rewrite(ctx, &pattern, node, &[f.a.node, f.b.node])?;
        ctx.model.ensure_opset("com.microsoft", 1);
        if let Some((lo, hi)) = clamp {
            let g = &mut ctx.model.graph;
            let base = g.value(f.y.data).name.clone();
            let lo_name = g.unique_name(&format!("{base}_min"));
            let lo_v = g.add_initializer(&lo_name, scalar(f.y.dtype, lo))?;
            let hi_name = g.unique_name(&format!("{base}_max"));
            let hi_v = g.add_initializer(&hi_name, scalar(f.y.dtype, hi))?;
            let clip = Node::new(&format!("{name}_clamp"), "Clip", "")
                .with_inputs(&[Some(out), Some(lo_v), Some(hi_v)])
                .with_outputs(&[Some(f.y.data)]);
            g.add_node(clip)?;
        }
        Ok(())
    }
}

fusion_pass!(
    QdqBinary,
    "qdq_binary",
    Level::Extended,
    super::QDQ_PROVIDERS
);
