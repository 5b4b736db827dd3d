//! Fusions that exist only inside kiln (domain `ai.kiln`), never written to saved models:
//! `FusedConv` with the SiLU activation `x * sigmoid(alpha * x)` (YOLO's), which ONNX Runtime's
//! FusedConv has no activation for.
use crate::kernel::{KernelCtx, KernelFn, Result};
use crate::value::Value;

pub const DOMAIN: &str = "ai.kiln";

pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    match (domain, op_type) {
        (DOMAIN, "FusedConv") => Some(fused_conv),
        _ => None,
    }
}

/// Checks the activation before the node is accepted by the CPU provider.
pub fn check(attrs: &[kiln_ir::Attribute], _opset: i64) -> std::result::Result<(), String> {
    use kiln_ir::AttrList;
    match attrs.get_str("activation") {
        Some("SiLU") => Ok(()),
        other => Err(format!("ai.kiln:FusedConv has no activation {other:?}")),
    }
}

fn fused_conv(ctx: &KernelCtx) -> Result<Vec<Value>> {
    use kiln_ir::AttrList;
    let alpha = ctx.attrs.get_float("alpha").unwrap_or(1.0);
    super::conv::conv_common(ctx, super::linalg::Act::Silu(alpha), None)
}
