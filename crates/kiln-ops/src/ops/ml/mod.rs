//! `ai.onnx.ml`: the classical machine-learning operators that skl2onnx and onnxmltools
//! write (so far: encoders, scalers and tree ensembles).
use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::KernelFn;
use crate::ops::InferFn;

mod label_encoder;
mod simple;
mod tree_ensemble;

pub const DOMAIN: &str = "ai.onnx.ml";

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    if domain != DOMAIN {
        return None;
    }
    Some(match op_type {
        "LabelEncoder" => label_encoder::run,
        "TreeEnsemble" => tree_ensemble::run,
        "Binarizer" => simple::binarizer,
        "ArrayFeatureExtractor" => simple::array_feature_extractor,
        "Scaler" => simple::scaler,
        "Normalizer" => simple::normalizer,
        _ => return None,
    })
}

/// The inference rules of this module's ops.
pub fn infer_rule(op_type: &str) -> Option<InferFn> {
    Some(match op_type {
        "LabelEncoder" => label_encoder::infer,
        "TreeEnsemble" => tree_ensemble::infer,
        "Binarizer" => same,
        "ArrayFeatureExtractor" => simple::infer_array_feature_extractor,
        "Scaler" | "Normalizer" => simple::infer_float_like,
        _ => return None,
    })
}

fn same(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    Ok(vec![ctx.same_as(0)])
}
