//! Conv followed by a per-channel constant Mul or Add (as Caffe2 exports BatchNormalization's
//! affine part) folded into the Conv's weights or bias. Standard ONNX ops only.
use kiln_ir::{DataType, IrError, Node, NodeId, Tensor, ValueId};

use super::const_fold::is_constant;
use super::util::{floats, is_onnx, replace, tensor_like};
use crate::fusion::{lone_consumer, run_fusion, Decline, Fusion};
use crate::{Level, Pass, PassCtx, PassReport};

/// Which constant operation follows the Conv.
#[derive(Clone, Copy)]
pub enum Op {
    Mul,
    Add,
}

impl Op {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Mul => "Mul",
            Op::Add => "Add",
        }
    }
}

pub struct ConvConstant(pub Op);

pub struct Found {
    conv: NodeId,
    next: NodeId,
    weights: Tensor,
    bias: Option<Tensor>,
}

/// The lone consumer of `node`'s first output when it is `op` with a constant other operand:
/// that consumer and the constant's value.
pub(crate) fn constant_operand(
    model: &kiln_ir::Model,
    node: NodeId,
    op: Op,
) -> Result<(NodeId, ValueId), Decline> {
    let g = &model.graph;
    let y = g.node(node).output(0).ok_or(Decline::NoMatch)?;
    let Ok(next) = lone_consumer(g, y) else {
        return Err(Decline::NoMatch);
    };
    let n = g.node(next);
    if !is_onnx(n, op.name()) || n.inputs().len() != 2 {
        return Err(Decline::NoMatch);
    }
    let other = match (n.input(0), n.input(1)) {
        (Some(a), Some(b)) if a == y => b,
        (Some(a), Some(b)) if b == y => a,
        _ => return Err(Decline::NoMatch),
    };
    if !is_constant(model, other) {
        return Err(Decline::NoMatch);
    }
    Ok((next, other))
}

/// The per-output-channel values of a constant that broadcasts against `[N, M, spatial...]`
/// along the channel axis only (or a single value), or `None`.
pub(crate) fn per_channel(t: &Tensor, m: usize, out_rank: usize) -> Option<Vec<f64>> {
    let v = match t.dtype {
        DataType::F32 | DataType::F64 => t.to_f64_vec()?,
        _ => return None,
    };
    if v.len() == 1 {
        return Some(vec![v[0]; m]);
    }
    if t.dims.len() > out_rank || v.len() != m {
        return None;
    }
    // Right-aligned against the output, the channel axis sits at out_rank - 1 - spatial.
    let channel_from_right = out_rank - 2;
    let pos = t.dims.len().checked_sub(channel_from_right + 1)?;
    let only_channel = t
        .dims
        .iter()
        .enumerate()
        .all(|(i, &d)| if i == pos { d == m } else { d == 1 });
    only_channel.then_some(v)
}

impl Fusion for ConvConstant {
    type Match = Found;

    fn select(&self, ctx: &PassCtx, conv: NodeId) -> Result<Found, Decline> {
        let model = &*ctx.model;
        let g = &model.graph;
        let c = g.node(conv);
        if !is_onnx(c, "Conv") {
            return Err(Decline::NoMatch);
        }
        let (next, other) = constant_operand(model, conv, self.0)?;
        let op_name = self.0.name();
        let constant = |v: Option<ValueId>, what: &str| -> Result<&Tensor, Decline> {
            let v = v.ok_or(Decline::NoMatch)?;
            if !is_constant(model, v) {
                return Err(Decline::because(format!("{what} is not a constant")));
            }
            Ok(g.constant(v).expect("constant"))
        };
        let w = constant(c.input(1), "the Conv's weight")?;
        let m = *w.dims.first().ok_or(Decline::NoMatch)?;
        let k = per_channel(g.constant(other).expect("constant"), m, w.dims.len()).ok_or_else(
            || {
                Decline::because(format!(
                    "the {op_name} operand is not one value per output channel"
                ))
            },
        )?;
        let wv = floats(w).ok_or_else(|| Decline::because("only float32/float64 weights fold"))?;
        let bias = match c.input(2) {
            Some(v) => Some(
                floats(constant(Some(v), "the Conv's bias")?)
                    .ok_or_else(|| Decline::because("bias type"))?,
            ),
            None => None,
        };
        if bias.as_ref().is_some_and(|b| b.len() != m) || m == 0 {
            return Err(Decline::because(
                "the Conv's bias does not match its channels",
            ));
        }
        let per = wv.len() / m;
        let (weights, bias) = match self.0 {
            Op::Mul => (
                tensor_like(
                    w.dtype,
                    w.dims.clone(),
                    &wv.iter()
                        .enumerate()
                        .map(|(i, x)| x * k[i / per])
                        .collect::<Vec<_>>(),
                ),
                bias.map(|b| {
                    tensor_like(
                        w.dtype,
                        vec![m],
                        &b.iter().zip(&k).map(|(x, s)| x * s).collect::<Vec<_>>(),
                    )
                }),
            ),
            Op::Add => (
                w.clone(),
                Some(tensor_like(
                    w.dtype,
                    vec![m],
                    &(0..m)
                        .map(|i| bias.as_ref().map_or(0.0, |b| b[i]) + k[i])
                        .collect::<Vec<_>>(),
                )),
            ),
        };
        Ok(Found {
            conv,
            next,
            weights,
            bias,
        })
    }

    fn apply(&self, ctx: &mut PassCtx, m: Found) -> Result<(), IrError> {
        let g = &mut ctx.model.graph;
        let c = g.node(m.conv).clone();
        let out = g
            .node(m.next)
            .output(0)
            .ok_or_else(|| IrError::Invalid("no output".into()))?;
        let base = if c.name.is_empty() {
            "conv".to_string()
        } else {
            c.name.clone()
        };
        let w = g.add_initializer(&g.unique_name(&format!("{base}_w")), m.weights)?;
        let b = match m.bias {
            Some(t) => Some(g.add_initializer(&g.unique_name(&format!("{base}_b")), t)?),
            None => None,
        };
        let mut inputs = vec![c.input(0), Some(w)];
        if b.is_some() {
            inputs.push(b);
        }
        let node = Node::new(&c.name, "Conv", "")
            .with_inputs(&inputs)
            .with_outputs(&[Some(out)])
            .with_attrs(c.attrs.clone());
        replace(g, &[m.next, m.conv], node)?;
        Ok(())
    }
}

impl Pass for ConvConstant {
    fn name(&self) -> &'static str {
        match self.0 {
            Op::Mul => "conv_mul_fold",
            Op::Add => "conv_add_fold",
        }
    }

    fn level(&self) -> Level {
        Level::Basic
    }

    fn run(&self, ctx: &mut PassCtx, report: &mut PassReport) {
        run_fusion(self, ctx, report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_shapes() {
        let t =
            |dims: Vec<usize>| Tensor::from_f32(dims.clone(), &vec![2.0; dims.iter().product()]);
        assert!(per_channel(&t(vec![8, 1, 1]), 8, 4).is_some());
        assert!(per_channel(&t(vec![1, 8, 1, 1]), 8, 4).is_some());
        assert!(per_channel(&t(vec![1]), 8, 4).is_some());
        assert!(
            per_channel(&t(vec![8]), 8, 4).is_none(),
            "[8] broadcasts over width"
        );
        assert!(per_channel(&t(vec![8, 1]), 8, 4).is_none());
        assert!(per_channel(&t(vec![2, 8, 1, 1]), 16, 4).is_none());
    }
}
