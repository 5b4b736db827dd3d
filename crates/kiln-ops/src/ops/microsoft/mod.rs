//! com.microsoft's contrib ops (ONNX Runtime's domain): the activations, Skip/Simplified layer
//! norms, Attention and MultiHeadAttention, EmbedLayerNormalization, MatMulNBits with the 8-bit
//! products to float, and GroupQueryAttention. The quantized com.microsoft ops live with the
//! other quantized ops in `quant/`.
pub(crate) mod activations;
pub(crate) mod attention;
pub(crate) mod embed;
pub(crate) mod gqa;
pub(crate) mod matmul;
pub(crate) mod norm;
