//! A per-channel constant Mul or Add after an inference BatchNormalization folded into its
//! scale or bias: `BN(x)·w = BN_{scale·w, bias·w}(x)` and `BN(x) + b = BN_{scale, bias+b}(x)`.
//! Caffe2 exports (DenseNet, Inception) follow every BatchNormalization with such a pair; a
//! BatchNormalization after a Conv is folded into it instead (`bn_fold`), so this pass only
//! sees the ones that stand alone (pre-activation blocks). Standard ONNX ops only.
use kiln_ir::{AttrList, IrError, Node, NodeId, Tensor, ValueId};

use super::const_fold::is_constant;
use super::conv_scale_bias::{constant_operand, per_channel, Op};
use super::util::{floats, is_onnx, replace, tensor_like};
use crate::fusion::{run_fusion, Decline, Fusion};
use crate::{Level, Pass, PassCtx, PassReport};

pub struct BatchNormAffine(pub Op);

pub struct Found {
    bn: NodeId,
    next: NodeId,
    scale: Tensor,
    bias: Tensor,
}

impl Fusion for BatchNormAffine {
    type Match = Found;

    fn select(&self, ctx: &PassCtx, bn: NodeId) -> Result<Found, Decline> {
        let model = &*ctx.model;
        let g = &model.graph;
        let b = g.node(bn);
        if !is_onnx(b, "BatchNormalization") {
            return Err(Decline::NoMatch);
        }
        let (next, other) = constant_operand(model, bn, self.0)?;
        let op_name = self.0.name();
        if b.attrs.get_int("training_mode").unwrap_or(0) != 0
            || b.outputs().iter().skip(1).flatten().next().is_some()
        {
            return Err(Decline::because("BatchNormalization has training outputs"));
        }
        let constant = |v: Option<ValueId>, what: &str| -> Result<&Tensor, Decline> {
            let v = v.ok_or(Decline::NoMatch)?;
            if !is_constant(model, v) {
                return Err(Decline::because(format!("{what} is not a constant")));
            }
            Ok(g.constant(v).expect("constant"))
        };
        let scale = constant(b.input(1), "the BatchNormalization scale")?;
        let shift = constant(b.input(2), "the BatchNormalization bias")?;
        let (Some(s), Some(sh)) = (floats(scale), floats(shift)) else {
            return Err(Decline::because("only float32/float64 parameters fold"));
        };
        let m = s.len();
        let rank = b
            .input(0)
            .and_then(|x| g.value(x).ty.as_ref()?.shape().map(|d| d.len()))
            .ok_or_else(|| Decline::because("the input's rank is unknown"))?;
        if rank < 2 || sh.len() != m || m == 0 {
            return Err(Decline::because("the parameters do not match the channels"));
        }
        // Folding changes nothing about the output's type only when the operand's type is
        // the BatchNormalization's and it broadcasts along the channel axis alone.
        let k_t = g.constant(other).expect("constant");
        if k_t.dtype != scale.dtype || k_t.dtype != shift.dtype {
            return Err(Decline::because(format!(
                "the {op_name} operand's type differs from the parameters'"
            )));
        }
        let k = per_channel(k_t, m, rank).ok_or_else(|| {
            Decline::because(format!(
                "the {op_name} operand is not one value per channel"
            ))
        })?;
        let (new_s, new_b): (Vec<f64>, Vec<f64>) = match self.0 {
            Op::Mul => (
                s.iter().zip(&k).map(|(a, w)| a * w).collect(),
                sh.iter().zip(&k).map(|(a, w)| a * w).collect(),
            ),
            Op::Add => (s.clone(), sh.iter().zip(&k).map(|(a, w)| a + w).collect()),
        };
        Ok(Found {
            bn,
            next,
            scale: tensor_like(scale.dtype, vec![m], &new_s),
            bias: tensor_like(shift.dtype, vec![m], &new_b),
        })
    }

    fn apply(&self, ctx: &mut PassCtx, m: Found) -> Result<(), IrError> {
        let g = &mut ctx.model.graph;
        let b = g.node(m.bn).clone();
        let out = g
            .node(m.next)
            .output(0)
            .ok_or_else(|| IrError::Invalid("no output".into()))?;
        let base = if b.name.is_empty() {
            "batchnorm".to_string()
        } else {
            b.name.clone()
        };
        let s = g.add_initializer(&g.unique_name(&format!("{base}_scale")), m.scale)?;
        let sh = g.add_initializer(&g.unique_name(&format!("{base}_bias")), m.bias)?;
        let node = Node::new(&b.name, "BatchNormalization", "")
            .with_inputs(&[b.input(0), Some(s), Some(sh), b.input(3), b.input(4)])
            .with_outputs(&[Some(out)])
            .with_attrs(b.attrs.clone());
        replace(g, &[m.next, m.bn], node)?;
        Ok(())
    }
}

impl Pass for BatchNormAffine {
    fn name(&self) -> &'static str {
        match self.0 {
            Op::Mul => "batchnorm_mul_fold",
            Op::Add => "batchnorm_add_fold",
        }
    }

    fn level(&self) -> Level {
        Level::Basic
    }

    fn run(&self, ctx: &mut PassCtx, report: &mut PassReport) {
        let _ = kiln_ops::infer_shapes(ctx.model);
        run_fusion(self, ctx, report)
    }
}
