//! The attention block as exporters write it, `MatMul(Softmax(MatMul(Q, Kᵀ) · c + bias), V)`
//! with the head transposes around it, -> one ai.kiln `Sdpa` (see kiln-ops' `kiln_attention`).
//! Matched from the Softmax: back through an optional Add (the mask), scalar constant Mul/Div
//! (the scale, also when applied to Q and Kᵀ separately, as torch's scaled_dot_product_attention
//! export does) to the first MatMul, then through the Transposes that make Q, Kᵀ and V; forward
//! to the second MatMul and the Transpose that puts the heads back. Every Transpose absorbed
//! becomes a stride of the kernel. CPU provider, float32, rank-4 heads; in a session only (an
//! ai.kiln op is not for saved models), and not for portable output.
use kiln_ir::{AttrList, Attribute, DataType, IrError, Node, NodeId, ValueId};

use super::util::{assigned_to, const_values, dtype, is_onnx, replace};
use crate::fusion::{fusion_pass, lone_consumer, Decline, Fusion};
use crate::{Level, PassCtx};

pub struct AttentionFusion;

pub struct Found {
    inputs: Vec<Option<ValueId>>,
    perms: [[i64; 4]; 4],
    scale: f32,
    nodes: Vec<NodeId>,
    out: ValueId,
}

const IDENTITY: [i64; 4] = [0, 1, 2, 3];

fn rank(ctx: &PassCtx, v: ValueId) -> Option<usize> {
    ctx.model
        .graph
        .value(v)
        .ty
        .as_ref()
        .and_then(|t| t.shape())
        .map(|s| s.len())
}

/// The scalar constant `v` holds, if it is one.
fn scalar(ctx: &PassCtx, v: ValueId) -> Option<f64> {
    match const_values(ctx.model, v)?.as_slice() {
        [x] => Some(*x),
        _ => None,
    }
}

/// `v` as `x · factor` through Mul/Div nodes by scalar constants whose output only `user`
/// reads: `(x, factor, nodes)`.
fn unscale(ctx: &PassCtx, mut v: ValueId, mut user: NodeId) -> (ValueId, f64, Vec<NodeId>) {
    let g = &ctx.model.graph;
    let (mut factor, mut nodes) = (1.0, Vec::new());
    while let Some((p, _)) = g.value(v).producer() {
        let n = g.node(p);
        let (Some(a), Some(b)) = (n.input(0), n.input(1)) else {
            break;
        };
        let step = if is_onnx(n, "Mul") {
            match (scalar(ctx, a), scalar(ctx, b)) {
                (None, Some(c)) => Some((a, c)),
                (Some(c), None) => Some((b, c)),
                _ => None,
            }
        } else if is_onnx(n, "Div") {
            scalar(ctx, b).filter(|&c| c != 0.0).map(|c| (a, 1.0 / c))
        } else {
            None
        };
        let Some((x, c)) = step else { break };
        // The factor must scale the whole value: a scalar constant cannot broadcast it wider.
        if lone_consumer(g, v).ok() != Some(user) || rank(ctx, x) != rank(ctx, v) {
            break;
        }
        factor *= c;
        nodes.push(p);
        user = p;
        v = x;
    }
    (v, factor, nodes)
}

/// `v` as `Transpose(x, perm)` when only `user` reads that Transpose: `(x, perm, node)`.
fn untranspose(ctx: &PassCtx, v: ValueId, user: NodeId) -> (ValueId, [i64; 4], Option<NodeId>) {
    let g = &ctx.model.graph;
    if let Some((p, _)) = g.value(v).producer() {
        let n = g.node(p);
        if is_onnx(n, "Transpose") && lone_consumer(g, v).ok() == Some(user) {
            if let (Some(x), Some(perm)) = (n.input(0), n.attrs.get_ints("perm")) {
                if let Ok(perm) = <[i64; 4]>::try_from(perm) {
                    return (x, perm, Some(p));
                }
            }
        }
    }
    (v, IDENTITY, None)
}

impl Fusion for AttentionFusion {
    type Match = Found;

    /// Rooted at the Softmax.
    fn select(&self, ctx: &PassCtx, softmax: NodeId) -> Result<Found, Decline> {
        let g = &ctx.model.graph;
        let sm = g.node(softmax);
        if !is_onnx(sm, "Softmax") {
            return Err(Decline::NoMatch);
        }
        let x = sm.input(0).ok_or(Decline::NoMatch)?;
        let p_out = sm.output(0).ok_or(Decline::NoMatch)?;
        if rank(ctx, x) != Some(4) {
            return Err(Decline::NoMatch);
        }
        let opset = ctx.model.opset("").unwrap_or(1);
        let axis = sm
            .attrs
            .get_int("axis")
            .unwrap_or(if opset < 13 { 1 } else { -1 });
        if axis != -1 && axis != 3 {
            return Err(Decline::NoMatch);
        }
        // Back from the Softmax: the mask, the scale, the first MatMul.
        let mut nodes = vec![softmax];
        let mut bias = None;
        let mut scores = x;
        let mut user = softmax;
        if let Some((add, _)) = g.value(x).producer() {
            let an = g.node(add);
            let from_matmul = |v: ValueId| {
                let (s, _, _) = unscale(ctx, v, add);
                g.value(s)
                    .producer()
                    .is_some_and(|(p, _)| is_onnx(g.node(p), "MatMul"))
            };
            if let (true, Some(a), Some(b)) = (is_onnx(an, "Add"), an.input(0), an.input(1)) {
                let (s, m) = match (from_matmul(a), from_matmul(b)) {
                    (true, _) => (a, b),
                    (_, true) => (b, a),
                    _ => return Err(Decline::NoMatch),
                };
                lone_consumer(g, x)?;
                bias = Some(m);
                scores = s;
                user = add;
                nodes.push(add);
            }
        }
        let (s, mut scale, scaling) = unscale(ctx, scores, user);
        nodes.extend(&scaling);
        let user = *nodes.last().expect("the softmax at least");
        let (mm1, _) = g.value(s).producer().ok_or(Decline::NoMatch)?;
        if !is_onnx(g.node(mm1), "MatMul") {
            return Err(Decline::NoMatch);
        }
        if lone_consumer(g, s)? != user {
            return Err(Decline::NoMatch);
        }
        nodes.push(mm1);
        let m1 = g.node(mm1);
        let (qs, ks) = (
            m1.input(0).ok_or(Decline::NoMatch)?,
            m1.input(1).ok_or(Decline::NoMatch)?,
        );
        let mut side = |v: ValueId| {
            let (x, f, sc) = unscale(ctx, v, mm1);
            scale *= f;
            let (x, perm, t) = untranspose(ctx, x, *sc.last().unwrap_or(&mm1));
            nodes.extend(sc);
            nodes.extend(t);
            (x, perm)
        };
        let (q, q_perm) = side(qs);
        let (k, k_perm) = side(ks);
        // Forward: the second MatMul, then the Transpose that merges the heads back.
        let mm2 = lone_consumer(g, p_out)?;
        let m2 = g.node(mm2);
        if !is_onnx(m2, "MatMul") || m2.input(0) != Some(p_out) {
            return Err(Decline::because(
                "the softmax does not feed the first input of a MatMul",
            ));
        }
        nodes.push(mm2);
        let (v, v_perm, vt) = untranspose(ctx, m2.input(1).ok_or(Decline::NoMatch)?, mm2);
        nodes.extend(vt);
        let mut out = m2.output(0).ok_or(Decline::NoMatch)?;
        let mut out_perm = IDENTITY;
        if let Ok(t) = lone_consumer(g, out) {
            let tn = g.node(t);
            if is_onnx(tn, "Transpose") {
                if let Some(Ok(p)) = tn.attrs.get_ints("perm").map(<[i64; 4]>::try_from) {
                    out_perm = p;
                    out = tn.output(0).ok_or(Decline::NoMatch)?;
                    nodes.push(t);
                }
            }
        }
        for (what, val) in [("Q", q), ("K", k), ("V", v)] {
            if rank(ctx, val) != Some(4) {
                return Err(Decline::because(format!(
                    "{what} is not a rank-4 tensor of heads"
                )));
            }
        }
        if bias.is_some_and(|b| rank(ctx, b).is_none_or(|r| r > 4)) {
            return Err(Decline::because("the mask's rank is unknown or above 4"));
        }
        if [Some(q), Some(k), Some(v), bias]
            .iter()
            .flatten()
            .any(|&x| dtype(g, x) != Some(DataType::F32))
        {
            return Err(Decline::because("the attention runs float32 only"));
        }
        if !ctx.in_session || ctx.portable {
            return Err(Decline::because(
                "ai.kiln Sdpa is made inside a session only (not a saved-model op)",
            ));
        }
        assigned_to(ctx, &nodes, &["cpu"])?;
        Ok(Found {
            inputs: vec![Some(q), Some(k), Some(v), bias],
            perms: [q_perm, k_perm, v_perm, out_perm],
            scale: scale as f32,
            nodes,
            out,
        })
    }

    fn apply(&self, ctx: &mut PassCtx, f: Found) -> Result<(), IrError> {
        let g = &mut ctx.model.graph;
        let name = format!("{}/Sdpa", g.node(f.nodes[0]).name);
        let inputs: &[Option<ValueId>] = if f.inputs[3].is_some() {
            &f.inputs
        } else {
            &f.inputs[..3]
        };
        let [q, k, v, o] = f.perms;
        let node = Node::new(&name, "Sdpa", kiln_ops::ops_domain::KILN)
            .with_inputs(inputs)
            .with_outputs(&[Some(f.out)])
            .with_attrs(vec![
                Attribute::ints("q_perm", &q),
                Attribute::ints("k_perm", &k),
                Attribute::ints("v_perm", &v),
                Attribute::ints("out_perm", &o),
                Attribute::float("scale", f.scale),
            ]);
        replace(g, &f.nodes, node)?;
        ctx.model.ensure_opset(kiln_ops::ops_domain::KILN, 1);
        Ok(())
    }
}

fusion_pass!(AttentionFusion, "attention_fusion", Level::All, &["cpu"]);
