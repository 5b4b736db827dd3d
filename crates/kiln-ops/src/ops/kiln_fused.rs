//! Fusions that exist only inside kiln (domain `ai.kiln`), never written to saved models:
//! `FusedConv` with the SiLU activation `x * sigmoid(alpha * x)` (YOLO's), which ONNX Runtime's
//! FusedConv has no activation for.
use crate::kernel::{KernelCtx, KernelFn, Result};
use crate::value::{Data, Value};

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

fn silu(x: f32, alpha: f32) -> f32 {
    x / (1.0 + (-alpha * x).exp())
}

fn fused_conv(ctx: &KernelCtx) -> Result<Vec<Value>> {
    use kiln_ir::AttrList;
    let conv = super::conv::kernel("", "Conv").ok_or("no Conv kernel")?;
    let alpha = ctx.attrs.get_float("alpha").unwrap_or(1.0);
    let inner = KernelCtx {
        op_type: "Conv",
        domain: "",
        opset: ctx.opset,
        attrs: ctx.attrs,
        inputs: ctx.inputs.clone(),
        num_outputs: 1,
        subgraphs: None,
    };
    let mut out = conv(&inner)?;
    match out.first_mut() {
        Some(Value::Tensor(t)) => match &mut t.data {
            Data::F32(v) => v.iter_mut().for_each(|x| *x = silu(*x, alpha)),
            d => {
                return Err(format!(
                    "ai.kiln:FusedConv runs float32 only, got {}",
                    d.dtype()
                ))
            }
        },
        _ => return Err("Conv gave no tensor".into()),
    }
    Ok(out)
}
