//! The registry: a plain function from (domain, op type) to the op's inference rule.
use crate::ctx::{InferCtx, Inferred, Result};

mod batchnorm;
mod cast;
mod concat;
mod constant;
mod conv;
mod dropout;
mod elementwise;
mod expand;
mod gather;
mod gemm;
mod matmul;
mod pad;
mod pool;
mod range;
mod reduce;
mod reshape;
mod resize;
mod shape;
mod slice;
mod split;
mod squeeze;
mod tile;
mod transpose;
mod where_op;

/// An inference rule: one `Inferred` per node output.
pub type InferFn = fn(&InferCtx) -> Result<Vec<Inferred>>;

/// The inference rule of an op, if kiln knows it.
pub fn infer_fn(domain: &str, op_type: &str) -> Option<InferFn> {
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
            "MaxPool" | "AveragePool" | "LpPool" => pool::infer,
            "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" => pool::infer_global,
            "Gemm" => gemm::infer,
            "MatMul" => matmul::infer,
            "Reshape" => reshape::infer,
            "Flatten" => reshape::infer_flatten,
            "Squeeze" => squeeze::infer_squeeze,
            "Unsqueeze" => squeeze::infer_unsqueeze,
            "Transpose" => transpose::infer,
            "Concat" => concat::infer,
            "Split" => split::infer,
            "Slice" => slice::infer,
            "Gather" => gather::infer,
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
            _ => return None,
        },
        ("com.microsoft", "FusedConv") => conv::infer,
        ("com.microsoft", "FusedGemm") => gemm::infer,
        ("com.microsoft", "FusedMatMul") => matmul::infer,
        ("com.microsoft", "QuickGelu" | "Gelu" | "BiasGelu" | "FastGelu") => ew::unary,
        _ => return None,
    };
    Some(f)
}
