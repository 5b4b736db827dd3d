//! kiln's passes, one per file. `all` lists them in the order they run within a phase.
use crate::Pass;

mod attention;
mod bias_gelu;
mod bn_affine;
mod bn_fold;
pub(crate) mod const_fold;
mod conv_add;
mod conv_scale_bias;
mod conv_silu;
mod cse;
mod eliminate;
mod fused_conv;
mod fused_gemm;
mod gelu;
mod nchwc;
mod qconv_add;
pub(crate) mod qdq;
mod qnhwc;
mod qsilu;
mod quick_gelu;
mod skip_layer_norm;
mod space_to_depth;
mod util;

/// Every pass kiln has.
pub fn all() -> Vec<Box<dyn Pass>> {
    vec![
        Box::new(eliminate::Eliminate),
        Box::new(const_fold::ConstantFolding),
        Box::new(cse::CommonSubexpressions),
        Box::new(bn_fold::BatchNormIntoConv),
        Box::new(space_to_depth::SliceConcatToSpaceToDepth),
        Box::new(conv_scale_bias::ConvConstant(conv_scale_bias::Op::Mul)),
        Box::new(conv_scale_bias::ConvConstant(conv_scale_bias::Op::Add)),
        Box::new(bn_affine::BatchNormAffine(conv_scale_bias::Op::Mul)),
        Box::new(bn_affine::BatchNormAffine(conv_scale_bias::Op::Add)),
        // Extended: the quantized graph first (a Conv between DQ and Q is a QLinearConv, not a
        // float Conv to fuse), redundant pairs last.
        Box::new(qdq::drop::QdqDropMovement),
        Box::new(qdq::conv::QdqConv),
        Box::new(qdq::matmul::QdqMatMul),
        Box::new(qdq::gemm::QdqGemm),
        Box::new(qdq::binary::QdqBinary),
        Box::new(qdq::pad::QdqPad),
        Box::new(qdq::unary::QdqUnary),
        Box::new(qdq::concat::QdqConcat),
        Box::new(qdq::pair::QdqRedundantPair),
        Box::new(qdq::dynamic::DynamicMatMul),
        // Then the float fusions: the residual form first, so a Conv feeding an Add is not taken by the
        // plain activation fusion.
        Box::new(conv_add::ConvAdd),
        Box::new(fused_conv::ConvActivation),
        Box::new(fused_gemm::GemmActivation),
        Box::new(quick_gelu::QuickGelu),
        // The exact GELU first, then the bias of the linear layer before it.
        Box::new(gelu::GeluFusion),
        Box::new(bias_gelu::BiasGeluFusion),
        Box::new(skip_layer_norm::SkipLayerNorm),
        Box::new(conv_silu::ConvSilu),
        // All: attention blocks as one kernel (in a session), then the layout, once every
        // fusion has run.
        Box::new(attention::AttentionFusion),
        Box::new(qsilu::QuantSilu),
        Box::new(qnhwc::QuantNhwc),
        Box::new(qconv_add::QuantConvAdd),
        Box::new(nchwc::NchwcLayout),
    ]
}
