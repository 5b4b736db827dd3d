//! BatchNormalization (inference) folded into the Conv before it: the Conv's weights are scaled
//! per output channel and its bias shifted, so the BatchNormalization disappears. Standard ONNX
//! ops only, valid for every provider.
use kiln_ir::{AttrList, IrError, Node, NodeId, Tensor, ValueId};

use super::const_fold::is_constant;
use super::util::{floats, is_onnx, replace, tensor_like};
use crate::fusion::{lone_consumer, run_fusion, Decline, Fusion};
use crate::{Level, Pass, PassCtx, PassReport};

pub struct BatchNormIntoConv;

pub struct Found {
    conv: NodeId,
    bn: NodeId,
    weights: Tensor,
    bias: Tensor,
}

impl Fusion for BatchNormIntoConv {
    type Match = Found;

    fn select(&self, ctx: &PassCtx, conv: NodeId) -> Result<Found, Decline> {
        let model = &*ctx.model;
        let g = &model.graph;
        let c = g.node(conv);
        if !is_onnx(c, "Conv") {
            return Err(Decline::NoMatch);
        }
        let y = c.output(0).ok_or(Decline::NoMatch)?;
        let Ok(bn) = lone_consumer(g, y) else {
            return Err(Decline::NoMatch);
        };
        let b = g.node(bn);
        if !is_onnx(b, "BatchNormalization") || b.input(0) != Some(y) {
            return Err(Decline::NoMatch);
        }
        if b.outputs()
            .iter()
            .skip(1)
            .flatten()
            .any(|v| !g.value(*v).consumers().is_empty() || g.is_graph_output(*v))
        {
            return Err(Decline::because(
                "BatchNormalization's training outputs are used",
            ));
        }
        if b.attrs.get_int("training_mode").unwrap_or(0) != 0 {
            return Err(Decline::because("BatchNormalization is in training mode"));
        }
        let constant = |v: Option<ValueId>, what: &str| -> Result<&Tensor, Decline> {
            let v = v.ok_or(Decline::NoMatch)?;
            if !is_constant(model, v) {
                return Err(Decline::because(format!("{what} is not a constant")));
            }
            Ok(g.constant(v).expect("constant"))
        };
        let w = constant(c.input(1), "the Conv's weight")?;
        let conv_bias = match c.input(2) {
            Some(v) => Some(constant(Some(v), "the Conv's bias")?),
            None => None,
        };
        let scale = constant(b.input(1), "the BatchNormalization scale")?;
        let shift = constant(b.input(2), "the BatchNormalization bias")?;
        let mean = constant(b.input(3), "the BatchNormalization mean")?;
        let var = constant(b.input(4), "the BatchNormalization variance")?;
        let (Some(wv), Some(s), Some(sh), Some(mu), Some(va)) = (
            floats(w),
            floats(scale),
            floats(shift),
            floats(mean),
            floats(var),
        ) else {
            return Err(Decline::because("only float32/float64 parameters fold"));
        };
        let m = *w.dims.first().ok_or(Decline::NoMatch)?;
        if [s.len(), sh.len(), mu.len(), va.len()]
            .iter()
            .any(|&n| n != m)
            || m == 0
        {
            return Err(Decline::because(
                "BatchNormalization parameters do not match the Conv's output channels",
            ));
        }
        let cb = match conv_bias {
            Some(t) => floats(t)
                .filter(|v| v.len() == m)
                .ok_or_else(|| Decline::because("the Conv's bias does not match its channels"))?,
            None => vec![0.0; m],
        };
        let eps = b.attrs.get_float("epsilon").unwrap_or(1e-5) as f64;
        let factor: Vec<f64> = (0..m).map(|i| s[i] / (va[i] + eps).sqrt()).collect();
        let per = wv.len() / m;
        let new_w: Vec<f64> = wv
            .iter()
            .enumerate()
            .map(|(i, x)| x * factor[i / per])
            .collect();
        let new_b: Vec<f64> = (0..m)
            .map(|i| (cb[i] - mu[i]) * factor[i] + sh[i])
            .collect();
        Ok(Found {
            conv,
            bn,
            weights: tensor_like(w.dtype, w.dims.clone(), &new_w),
            bias: tensor_like(w.dtype, vec![m], &new_b),
        })
    }

    fn apply(&self, ctx: &mut PassCtx, m: Found) -> Result<(), IrError> {
        let g = &mut ctx.model.graph;
        let c = g.node(m.conv).clone();
        let out = g
            .node(m.bn)
            .output(0)
            .ok_or_else(|| IrError::Invalid("no output".into()))?;
        let base = if c.name.is_empty() {
            "conv".to_string()
        } else {
            c.name.clone()
        };
        let w = g.add_initializer(&g.unique_name(&format!("{base}_bn_weight")), m.weights)?;
        let b = g.add_initializer(&g.unique_name(&format!("{base}_bn_bias")), m.bias)?;
        let node = Node::new(&c.name, "Conv", "")
            .with_inputs(&[c.input(0), Some(w), Some(b)])
            .with_outputs(&[Some(out)])
            .with_attrs(c.attrs.clone());
        replace(g, &[m.bn, m.conv], node)?;
        Ok(())
    }
}

impl Pass for BatchNormIntoConv {
    fn name(&self) -> &'static str {
        "batchnorm_into_conv"
    }

    fn level(&self) -> Level {
        Level::Basic
    }

    fn run(&self, ctx: &mut PassCtx, report: &mut PassReport) {
        run_fusion(self, ctx, report)
    }
}
