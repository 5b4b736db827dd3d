//! com.microsoft QAttention: BERT's Attention with an 8-bit projection, as ONNX Runtime's
//! `quantize_dynamic` writes it over an optimized transformer. The projection
//! `f32(Σ (x - zx)(w - zw)) · sx · sw + bias` is MatMulIntegerToFloat's (exact integer sums on
//! `qgemm`); the rest is com.microsoft Attention's, with QAttention's input positions: mask at
//! 5, past (`[2, B, N, P, H]`) at 8, no attention bias.
use kiln_ir::Dim;

use crate::ctx::{InferCtx, Inferred};
use kiln_kernels::qgemm::QWeights;

use crate::kernel::{KernelCtx, PrepareCtx, PreparedKernel, Result};
use crate::ops::microsoft::attention::{attend_projected, heads_attr, hidden_sizes, Slots};
use crate::value::{Data, Value};

const SLOTS: Slots = Slots {
    mask: 5,
    bias: usize::MAX,
    past: 8,
};

/// Output `[B, S, W/3]` in the scales' float type; present left unknown.
pub fn infer(ctx: &InferCtx) -> crate::ctx::Result<Vec<Inferred>> {
    let dt = ctx.dtype(3);
    let y = match (ctx.shape(0), ctx.shape(1)) {
        (Some(x), Some(w)) if x.len() == 3 && w.len() == 2 => {
            let dv = match w[1].known() {
                Some(c) if c % 3 == 0 => Dim::Known(c / 3),
                _ => Dim::Unknown,
            };
            Some(vec![x[0].clone(), x[1].clone(), dv])
        }
        _ => None,
    };
    let mut out = vec![Inferred::tensor(dt, y)];
    for _ in 1..ctx.num_outputs {
        out.push(Inferred::tensor(dt, None));
    }
    Ok(out)
}

pub(super) fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    attention(ctx, None)
}

/// The projection's weights packed once per session.
struct Prepared {
    w: QWeights,
    shape: Vec<usize>,
}

pub(super) fn prepare(ctx: &PrepareCtx) -> Option<Box<dyn PreparedKernel>> {
    let b = ctx.constant(1)?;
    let w = super::qmatmul::pack_b(b, ctx.optional_constant(7)?).ok()?;
    Some(Box::new(Prepared {
        w,
        shape: b.shape.clone(),
    }))
}

impl PreparedKernel for Prepared {
    fn run(&self, ctx: &KernelCtx) -> Result<Vec<Value>> {
        let same = ctx.tensor(1)?.shape == self.shape;
        attention(ctx, same.then_some(&self.w))
    }
}

fn attention(ctx: &KernelCtx, packed: Option<&QWeights>) -> Result<Vec<Value>> {
    let (x, w) = (ctx.tensor(0)?, ctx.tensor(1)?);
    let n = heads_attr(ctx)?;
    if x.rank() != 3 || w.rank() != 2 || w.shape[0] != x.shape[2] {
        return Err(format!(
            "input {:?} and weight {:?} must be [B, S, D] and [D, 3·D']",
            x.shape, w.shape
        ));
    }
    if !ctx.has_input(2) {
        return Err("bias (input 2) is required".into());
    }
    let (b, s) = (x.shape[0], x.shape[1]);
    let total = w.shape[1];
    let sizes = hidden_sizes(ctx, total, n)?;
    // MatMulIntegerToFloat's A, B, a_scale, b_scale, a_zero_point, b_zero_point, bias.
    let sub = KernelCtx {
        op_type: "MatMulIntegerToFloat",
        domain: "com.microsoft",
        opset: 1,
        attrs: &[],
        inputs: [0, 1, 3, 4, 6, 7, 2]
            .iter()
            .map(|&i| ctx.inputs.get(i).copied().flatten())
            .collect(),
        num_outputs: 1,
        subgraphs: None,
        donated: Default::default(),
    };
    let qkv = super::qmatmul::int_to_float(&sub, packed)?
        .into_iter()
        .next()
        .and_then(Value::into_tensor)
        .ok_or("the projection gave no tensor")?;
    let Data::F32(qkv) = qkv.data else {
        return Err(format!("the scales must be float, got {}", qkv.dtype()));
    };
    attend_projected(ctx, qkv, (b, s, n), sizes, SLOTS, kiln_ir::DataType::F32)
}
