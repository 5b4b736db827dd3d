//! The registry: a plain function from (domain, op type) to the op's inference rule and CPU
//! kernel.
use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::KernelFn;

mod affine_grid;
pub(crate) mod attention;
mod batchnorm;
mod binary;
mod bitcast;
mod cast;
mod causal_conv;
mod concat;
mod constant;
mod control_flow;
pub(crate) mod conv;
mod conv_fast;
mod deform_conv;
mod dropout;
mod einsum;
mod elementwise;
mod expand;
mod flex_attention;
mod gather;
mod gemm;
mod image_decoder;
mod index_ops;
pub mod kiln_attention;
pub mod kiln_fused;
pub mod kiln_nchwc;
pub(crate) mod linalg;
mod linear_attention;
mod loss;
pub(crate) mod matmul;
mod microsoft;
mod misc;
mod ml;
mod movement;
mod norm;
pub(crate) mod np_random;
mod num;
mod optional;
mod pad;
mod pool;
mod pool2d;
pub(crate) mod quant;
mod random;
mod range;
mod recurrent;
mod reduce;
mod reshape;
pub(crate) mod resize;
mod rotary;
mod rules;
mod sample;
mod scatter;
mod sequence;
mod shape;
mod slice;
mod softmax;
mod space_depth;
mod spatial;
mod spectral;
mod split;
mod squeeze;
mod swiglu;
mod tensor_scatter;
mod text;
mod tfidf;
mod tile;
mod training;
mod transpose;
mod unary;
mod where_op;

/// An inference rule: one `Inferred` per node output.
pub type InferFn = fn(&InferCtx) -> Result<Vec<Inferred>>;

/// Says whether a kernel can run a node exactly as specified (attributes and opset), or why not.
pub type CheckFn = fn(&[kiln_ir::Attribute], i64) -> std::result::Result<(), String>;

/// What kiln knows of an op.
#[derive(Clone, Copy)]
pub struct OpDef {
    pub infer: InferFn,
    /// The reference CPU kernel, when there is one.
    pub run: Option<KernelFn>,
    /// Limits of the kernel, when it does not cover every attribute value.
    pub check: Option<CheckFn>,
}

/// The inference rule of an op, if kiln has one.
pub fn infer_fn(domain: &str, op_type: &str) -> Option<InferFn> {
    infer_rule(domain, op_type)
}

/// The CPU kernel of an op, if kiln has one.
pub fn kernel_fn(domain: &str, op_type: &str) -> Option<KernelFn> {
    op_def(domain, op_type).and_then(|d| d.run)
}

/// The inputs whose value an op's kernel may take over and write its outputs into (a KV cache
/// updated in place), where the runner can hand them over ([`crate::KernelCtx::take_input`]).
pub fn donatable_inputs(domain: &str, op_type: &str) -> &'static [usize] {
    match (domain, op_type) {
        ("com.microsoft", "GroupQueryAttention") => &[3, 4],
        _ => &[],
    }
}

/// How to prepare a node of an op once per session (pre-packed weights), if the op has that.
pub fn prepare_fn(domain: &str, op_type: &str) -> Option<crate::kernel::PrepareFn> {
    match (domain, op_type) {
        ("" | "ai.onnx", "Conv") | ("com.microsoft" | kiln_fused::DOMAIN, "FusedConv") => {
            Some(conv_fast::prepare)
        }
        ("" | "ai.onnx", "MatMul") | ("com.microsoft", "FusedMatMul") => Some(matmul::prepare),
        (d, op) if quant::has_prepare(if d == "ai.onnx" { "" } else { d }, op) => {
            Some(quant::prepare)
        }
        ("com.microsoft", "Attention") => Some(microsoft::attention::prepare),
        ("com.microsoft", "MatMulNBits") => Some(microsoft::matmul::prepare_nbits),
        (kiln_fused::DOMAIN, "NchwcConv") => Some(kiln_nchwc::prepare),
        _ => None,
    }
}

/// Inference rule and kernel of an op.
pub fn op_def(domain: &str, op_type: &str) -> Option<OpDef> {
    let infer = infer_rule(domain, op_type);
    let run = kernel(domain, op_type);
    if infer.is_none() && run.is_none() {
        return None;
    }
    Some(OpDef {
        infer: infer.unwrap_or(unknown_outputs),
        run,
        check: check(domain, op_type),
    })
}

/// For ops with a kernel but no inference rule yet: outputs of unknown type.
fn unknown_outputs(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    Ok(vec![Inferred::default(); ctx.num_outputs])
}

/// Kernels that cover only part of what the op allows say so here.
fn check(domain: &str, op_type: &str) -> Option<CheckFn> {
    let f: CheckFn = match (domain, op_type) {
        ("" | "ai.onnx", "BatchNormalization") => batchnorm::check,
        ("com.microsoft", "FusedConv") => conv::check_fused,
        ("com.microsoft", "FusedGemm") => gemm::check_fused,
        (kiln_fused::DOMAIN, "FusedConv") => kiln_fused::check,
        (kiln_fused::DOMAIN, "NchwcConv") => kiln_nchwc::check_conv,
        _ => return None,
    };
    Some(f)
}

/// The CPU kernel table: each module answers for the ops it implements.
fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    let kernel_of: &[fn(&str, &str) -> Option<KernelFn>] = &[
        text::kernel,
        tfidf::kernel,
        spatial::kernel,
        spectral::kernel,
        quant::kernel,
        sample::kernel,
        loss::kernel,
        einsum::kernel,
        attention::kernel,
        batchnorm::kernel,
        bitcast::kernel,
        image_decoder::kernel,
        rotary::kernel,
        swiglu::kernel,
        tensor_scatter::kernel,
        cast::kernel,
        affine_grid::kernel,
        deform_conv::kernel,
        causal_conv::kernel,
        linear_attention::kernel,
        concat::kernel,
        constant::kernel,
        control_flow::kernel,
        conv::kernel,
        dropout::kernel,
        elementwise::kernel,
        expand::kernel,
        flex_attention::kernel,
        gather::kernel,
        gemm::kernel,
        matmul::kernel,
        misc::kernel,
        ml::kernel,
        norm::kernel,
        optional::kernel,
        pad::kernel,
        pool::kernel,
        random::kernel,
        range::kernel,
        recurrent::kernel,
        reduce::kernel,
        reshape::kernel,
        resize::kernel,
        scatter::kernel,
        sequence::kernel,
        shape::kernel,
        slice::kernel,
        softmax::kernel,
        space_depth::kernel,
        split::kernel,
        squeeze::kernel,
        tile::kernel,
        transpose::kernel,
        training::kernel,
        where_op::kernel,
        microsoft::gqa::kernel,
        microsoft::activations::kernel,
        microsoft::attention::kernel,
        microsoft::embed::kernel,
        microsoft::matmul::kernel,
        microsoft::norm::kernel,
        index_ops::kernel,
        kiln_fused::kernel,
        kiln_nchwc::kernel,
        kiln_attention::kernel,
    ];
    let domain = if domain == "ai.onnx" { "" } else { domain };
    kernel_of.iter().find_map(|f| f(domain, op_type))
}

fn infer_rule(domain: &str, op_type: &str) -> Option<InferFn> {
    use elementwise as ew;
    let f: InferFn = match (domain, op_type) {
        ("" | "ai.onnx", op) => match op {
            "Abs"
            | "Neg"
            | "Relu"
            | "Sigmoid"
            | "Tanh"
            | "Exp"
            | "Log"
            | "Sqrt"
            | "Reciprocal"
            | "Floor"
            | "Ceil"
            | "Round"
            | "Erf"
            | "Sin"
            | "Cos"
            | "Tan"
            | "Asin"
            | "Acos"
            | "Atan"
            | "Sinh"
            | "Cosh"
            | "Asinh"
            | "Acosh"
            | "Atanh"
            | "Softplus"
            | "Softsign"
            | "Elu"
            | "Selu"
            | "Celu"
            | "LeakyRelu"
            | "ThresholdedRelu"
            | "HardSigmoid"
            | "HardSwish"
            | "Swish"
            | "Mish"
            | "Gelu"
            | "Sign"
            | "Clip"
            | "Identity"
            | "Softmax"
            | "LogSoftmax"
            | "Hardmax"
            | "LRN"
            | "Shrink"
            | "BitwiseNot"
            | "Not"
            | "InstanceNormalization"
            | "MeanVarianceNormalization"
            | "LpNormalization"
            | "CumSum"
            | "Trilu" => ew::unary,
            "IsNaN" | "IsInf" => ew::unary_bool,
            "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Mod" | "PRelu" | "BitShift" | "BitwiseAnd"
            | "BitwiseOr" | "BitwiseXor" | "Max" | "Min" | "Sum" | "Mean" => {
                ew::broadcast_first_type
            }
            "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or"
            | "Xor" => ew::broadcast_bool,
            "Where" => where_op::infer,
            "BatchNormalization" => batchnorm::infer,
            "Conv" => conv::infer,
            "ConvTranspose" => conv::infer_transpose,
            "ConvInteger" => conv::infer_integer,
            "MaxPool" | "AveragePool" | "LpPool" => pool::infer,
            "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" => pool::infer_global,
            "Gemm" => gemm::infer,
            "MatMul" => matmul::infer,
            "GroupNormalization" => norm::infer_same,
            "LayerNormalization" => norm::infer_layer_norm,
            "RMSNormalization" => norm::infer_same,
            "SimplifiedLayerNormalization" => microsoft::norm::infer,
            "MatMulInteger" => matmul::infer_integer,
            "Reshape" => reshape::infer,
            "Flatten" => reshape::infer_flatten,
            "Squeeze" => squeeze::infer_squeeze,
            "Unsqueeze" => squeeze::infer_unsqueeze,
            "Transpose" => transpose::infer,
            "Concat" => concat::infer,
            "Split" => split::infer,
            "Slice" => slice::infer,
            "Gather" => gather::infer,
            "GatherElements" => index_ops::infer_gather_elements,
            "GatherND" => index_ops::infer_gather_nd,
            "ScatterElements" | "Scatter" | "ScatterND" => scatter::infer,
            "DepthToSpace" | "SpaceToDepth" => space_depth::infer,
            "Shape" => shape::infer,
            "Size" => shape::infer_size,
            "Constant" => constant::infer,
            "ConstantOfShape" => constant::infer_of_shape,
            "Range" => range::infer,
            "Cast" => cast::infer,
            "CastLike" => cast::infer_like,
            "Resize" | "Upsample" => resize::infer,
            "Expand" => expand::infer,
            "Tile" => tile::infer,
            "Pad" => pad::infer,
            "Dropout" => dropout::infer,
            "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1"
            | "ReduceL2" | "ReduceLogSum" | "ReduceLogSumExp" | "ReduceSumSquare" => reduce::infer,
            "ArgMax" | "ArgMin" => reduce::infer_arg,
            "RNN" | "GRU" | "LSTM" => recurrent::infer,
            "Attention" => attention::infer,
            "RotaryEmbedding" => rotary::infer,
            "BitCast" => bitcast::infer,
            "ImageDecoder" => image_decoder::infer,
            "SwiGLU" => swiglu::infer,
            "AffineGrid" => affine_grid::infer,
            "DeformConv" => deform_conv::infer,
            "TfIdfVectorizer" => tfidf::infer,
            "RandomUniform" | "RandomUniformLike" | "RandomNormal" | "RandomNormalLike"
            | "Bernoulli" => random::infer,
            "LinearAttention" => linear_attention::infer,
            "CausalConvWithState" => causal_conv::infer,
            "TensorScatter" => tensor_scatter::infer,
            _ => return rules::infer_rule(op),
        },
        ("ai.onnx.preview", "FlexAttention") => flex_attention::infer,
        (training::DOMAIN, "Adagrad" | "Adam" | "Momentum") => training::infer,
        (ml::DOMAIN, op) => return ml::infer_rule(op),
        ("com.microsoft", "FusedConv") => conv::infer,
        (kiln_fused::DOMAIN, "FusedConv") => conv::infer,
        (kiln_fused::DOMAIN, "Sdpa") => kiln_attention::infer,
        (kiln_fused::DOMAIN, "QLinearSiLU") => elementwise::unary,
        (kiln_fused::DOMAIN, "QLinearConvAdd") => quant::infer_conv_add,
        (kiln_fused::DOMAIN, op) => return kiln_nchwc::infer_rule(op),
        ("com.microsoft", "FusedGemm") => gemm::infer,
        ("com.microsoft", "FusedMatMul") => matmul::infer,
        ("com.microsoft", "QuickGelu" | "Gelu" | "BiasGelu" | "FastGelu" | "BiasSoftmax") => {
            ew::unary
        }
        (
            "com.microsoft",
            "SkipLayerNormalization"
            | "SkipSimplifiedLayerNormalization"
            | "SimplifiedLayerNormalization",
        ) => microsoft::norm::infer,
        ("com.microsoft", "BiasAdd") => ew::unary,
        ("com.microsoft", "Attention" | "MultiHeadAttention") => microsoft::attention::infer,
        ("com.microsoft", "GroupQueryAttention") => microsoft::gqa::infer,
        ("com.microsoft", "EmbedLayerNormalization") => microsoft::embed::infer,
        ("com.microsoft", "DynamicQuantizeLSTM") => recurrent::infer,
        ("com.microsoft", "MatMulNBits" | "MatMulIntegerToFloat" | "DynamicQuantizeMatMul") => {
            microsoft::matmul::infer
        }
        ("com.microsoft", op) => return quant::infer_rule("com.microsoft", op),
        _ => return None,
    };
    Some(f)
}
