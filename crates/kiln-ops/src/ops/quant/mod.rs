//! The quantized ops, together: linear (de)quantization (`linear.rs`), the 8-bit products on
//! `kiln_kernels::qgemm` (`qmatmul.rs`: QLinearMatMul, MatMulInteger, MatMulIntegerToFloat,
//! DynamicQuantizeMatMul, QGemm; `qconv.rs`: QLinearConv in both layouts; `conv_integer.rs`:
//! ConvInteger's fast path) and
//! com.microsoft's QLinear element-wise ops, pools and Concat (`qelementwise.rs`,
//! `qpool.rs`), GatherBlockQuantized (`gather_block.rs`), and the transformer ops of dynamic
//! quantization, QAttention and QEmbedLayerNormalization (`qattention.rs`, `qembed.rs`), with
//! ONNX Runtime's semantics: a product requantizes `f32(acc + bias) · scale` rounded half to
//! even; the element-wise ops go through float as ORT does.
//!
//! This file holds what they share: reading scales and zero points, and 8-bit views of tensors.
use kiln_ir::DataType;
use kiln_kernels::qgemm::QIsa;

use crate::kernel::{KernelCtx, KernelFn, PrepareCtx, PreparedKernel, Result};
use crate::value::{Data, Tensor};

mod conv_integer;
mod gather_block;
mod linear;
mod qattention;
mod qconv;
mod qelementwise;
mod qembed;
pub(crate) mod qmatmul;
mod qpool;

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    match (domain, op_type) {
        ("com.microsoft", "GatherBlockQuantized") => return Some(gather_block::run),
        ("com.microsoft", "QAttention") => return Some(qattention::run),
        ("com.microsoft", "QEmbedLayerNormalization") => return Some(qembed::run),
        _ => {}
    }
    linear::kernel(domain, op_type)
        .or_else(|| qmatmul::kernel(domain, op_type))
        .or_else(|| qconv::kernel(domain, op_type))
        .or_else(|| qelementwise::kernel(domain, op_type))
        .or_else(|| qpool::kernel(domain, op_type))
}

/// Inference rules of the com.microsoft quantized ops (the ONNX ones are in `rules.rs`).
pub fn infer_rule(domain: &str, op_type: &str) -> Option<crate::ops::InferFn> {
    if domain != "com.microsoft" {
        return None;
    }
    match op_type {
        "GatherBlockQuantized" => return Some(gather_block::infer),
        "QAttention" => return Some(qattention::infer),
        "QEmbedLayerNormalization" => return Some(qembed::infer),
        _ => {}
    }
    qelementwise::infer_rule(op_type)
        .or_else(|| qpool::infer_rule(op_type))
        .or_else(|| qconv::infer_rule(op_type))
        .or_else(|| qmatmul::infer_rule(op_type))
}

/// ai.kiln QLinearConvAdd: QLinearConv's output.
pub fn infer_conv_add(ctx: &crate::ctx::InferCtx) -> crate::ctx::Result<Vec<crate::ctx::Inferred>> {
    qconv::infer_ms(ctx)
}

/// Session-time preparation (weights packed once).
pub fn prepare(ctx: &PrepareCtx) -> Option<Box<dyn PreparedKernel>> {
    match (ctx.domain, ctx.op_type) {
        ("" | "com.microsoft", "QLinearConv")
        | (crate::ops::kiln_fused::DOMAIN, "QLinearConvAdd") => qconv::prepare(ctx),
        ("", "QLinearMatMul" | "MatMulInteger")
        | ("com.microsoft", "MatMulIntegerToFloat" | "DynamicQuantizeMatMul" | "QGemm") => {
            qmatmul::prepare(ctx)
        }
        ("com.microsoft", "QAttention") => qattention::prepare(ctx),
        ("", "ConvInteger") => conv_integer::prepare(ctx),
        _ => None,
    }
}

/// Whether an op has a session-time preparation here.
pub fn has_prepare(domain: &str, op_type: &str) -> bool {
    matches!(
        (domain, op_type),
        ("" | "com.microsoft", "QLinearConv")
            | (crate::ops::kiln_fused::DOMAIN, "QLinearConvAdd")
            | ("", "QLinearMatMul" | "MatMulInteger" | "ConvInteger")
            | (
                "com.microsoft",
                "MatMulIntegerToFloat" | "DynamicQuantizeMatMul" | "QGemm" | "QAttention"
            )
    )
}

/// The integer kernels' variant this process runs (`KILN_ISA` applied), as `kiln --version`
/// and the tests report it.
pub fn integer_kernels() -> String {
    QIsa::detect().describe()
}

/// The integer kernel family sessions use.
pub(crate) fn isa() -> QIsa {
    QIsa::detect()
}

/// An 8-bit tensor's bytes and whether they are signed.
pub(crate) fn bytes(t: &Tensor) -> Option<(&[u8], bool)> {
    match &t.data {
        Data::U8(v) => Some((v, false)),
        // SAFETY: i8 and u8 have one layout; the bytes are reinterpreted, not converted.
        Data::I8(v) => Some((
            unsafe { std::slice::from_raw_parts(v.as_ptr() as *const u8, v.len()) },
            true,
        )),
        _ => None,
    }
}

/// The value of byte `b` of an 8-bit tensor.
#[inline]
pub(crate) fn byte_value(b: u8, signed: bool) -> i32 {
    if signed {
        b as i8 as i32
    } else {
        b as i32
    }
}

/// An 8-bit input with its scale and zero point (slots `i`, `i + 1`, `i + 2`).
pub(crate) struct Q<'a> {
    pub t: &'a Tensor,
    pub v: &'a [u8],
    pub signed: bool,
    pub scale: f32,
    pub zero: i32,
}

pub(crate) fn q_input<'a>(ctx: &KernelCtx<'a>, i: usize, what: &str) -> Result<Q<'a>> {
    let t = ctx.tensor(i)?;
    let (v, signed) = bytes(t).ok_or_else(|| format!("{what} must be uint8 or int8"))?;
    Ok(Q {
        t,
        v,
        signed,
        scale: scale(ctx.tensor(i + 1)?, &format!("{what}_scale"))?,
        zero: zero(
            ctx.opt_tensor(i + 2)?,
            signed,
            &format!("{what}_zero_point"),
        )?,
    })
}

/// The output's scale, zero point and signedness (slots `i`, `i + 1`).
pub(crate) fn q_output(ctx: &KernelCtx, i: usize, what: &str) -> Result<(f32, i32, bool)> {
    let signed = out_signed(ctx, i + 1)?;
    Ok((
        scale(ctx.tensor(i)?, &format!("{what}_scale"))?,
        zero(
            ctx.opt_tensor(i + 1)?,
            signed,
            &format!("{what}_zero_point"),
        )?,
        signed,
    ))
}

/// A float scale tensor as f32 values (one, or one per channel).
pub(crate) fn scales(t: &Tensor, what: &str) -> Result<Vec<f32>> {
    match &t.data {
        Data::F32(v) if !v.is_empty() => Ok(v.clone()),
        Data::F32(_) => Err(format!("{what} is empty")),
        other => Err(format!("{what} must be float32, got {}", other.dtype())),
    }
}

/// One float scale.
pub(crate) fn scale(t: &Tensor, what: &str) -> Result<f32> {
    match scales(t, what)?.as_slice() {
        [s] => Ok(*s),
        v => Err(format!("{what} must be a scalar, has {} values", v.len())),
    }
}

/// Zero points as i32 (one, or one per channel) of an optional 8-bit tensor that must have the
/// data's signedness; absent means 0.
pub(crate) fn zeros(t: Option<&Tensor>, signed: bool, what: &str) -> Result<Vec<i32>> {
    let Some(t) = t else { return Ok(vec![0]) };
    let (b, s) = bytes(t).ok_or_else(|| format!("{what} must be uint8 or int8"))?;
    if s != signed {
        return Err(format!(
            "{what} ({}) does not match its data's type",
            t.dtype()
        ));
    }
    if b.is_empty() {
        return Err(format!("{what} is empty"));
    }
    Ok(b.iter().map(|&x| byte_value(x, s)).collect())
}

/// One zero point.
pub(crate) fn zero(t: Option<&Tensor>, signed: bool, what: &str) -> Result<i32> {
    match zeros(t, signed, what)?.as_slice() {
        [z] => Ok(*z),
        v => Err(format!("{what} must be a scalar, has {} values", v.len())),
    }
}

/// The output type of a QLinear op: its zero point's type, uint8 without one.
pub(crate) fn out_signed(ctx: &KernelCtx, zp: usize) -> Result<bool> {
    match ctx.opt_tensor(zp)? {
        None => Ok(false),
        Some(t) => match t.dtype() {
            DataType::U8 => Ok(false),
            DataType::I8 => Ok(true),
            other => Err(format!(
                "output zero point must be uint8 or int8, got {other}"
            )),
        },
    }
}

/// A per-channel list of `n` values from one or `n`.
pub(crate) fn per_channel<T: Copy>(v: &[T], n: usize, what: &str) -> Result<Vec<T>> {
    match v.len() {
        1 => Ok(vec![v[0]; n]),
        l if l == n => Ok(v.to_vec()),
        l => Err(format!("{what} has {l} values; expected 1 or {n}")),
    }
}

/// An 8-bit tensor from bytes of the given signedness.
/// An output buffer of `n` bytes that the kernel fills completely (see
/// [`kiln_kernels::vecmath::unfilled`]).
pub(crate) fn written_bytes(n: usize) -> Vec<u8> {
    kiln_kernels::vecmath::unfilled(n, 0xa5)
}

pub(crate) fn tensor_of(shape: Vec<usize>, v: Vec<u8>, signed: bool) -> Tensor {
    if signed {
        Tensor::from_vec(shape, v.into_iter().map(|b| b as i8).collect::<Vec<i8>>())
    } else {
        Tensor::from_vec(shape, v)
    }
}

/// `quantize(v)` to u8/s8 as ORT's QuantizeLinear does: `v / scale` rounded half to even, plus
/// the zero point, saturated.
#[inline]
pub(crate) fn quantize_f32(v: f32, scale: f32, zero: i32, signed: bool) -> u8 {
    let (lo, hi) = if signed {
        (-128.0, 127.0)
    } else {
        (0.0, 255.0)
    };
    let q = ((v / scale).round_ties_even() + zero as f32).clamp(lo, hi);
    q as i32 as u8
}

/// Requantization factors `a · b[j] / y` for `n` channels and whether they are float32. With
/// float32 scales they are computed in f32 as ORT does, and a sum requantizes as
/// `f32(acc) · factor`; with float16 or bfloat16 scales (ONNX from opset 21) they are computed in
/// that type, as numpy does, and the product is taken in f64.
pub(crate) fn factors(sa: &Tensor, sb: &Tensor, sy: &Tensor, n: usize) -> Result<(Vec<f64>, bool)> {
    let dt = sa.dtype();
    if sb.dtype() != dt || sy.dtype() != dt || !dt.is_float() {
        return Err(format!(
            "scales must share one float type, got {}, {} and {}",
            sa.dtype(),
            sb.dtype(),
            sy.dtype()
        ));
    }
    let (a, b, y) = (sa.to_f64s()?, sb.to_f64s()?, sy.to_f64s()?);
    let (&[a0], &[y0]) = (a.as_slice(), y.as_slice()) else {
        return Err("the input and output scales must be scalars".into());
    };
    let b = per_channel(&b, n, "the weights' scale")?;
    let f32s = dt == DataType::F32;
    let f = b
        .iter()
        .map(|&bv| {
            if f32s {
                ((a0 as f32 * bv as f32) / y0 as f32) as f64
            } else {
                linear::round_to(dt, linear::round_to(dt, a0 * bv) / y0)
            }
        })
        .collect();
    Ok((f, f32s))
}

/// One sum requantized by a factor from [`factors`].
#[inline]
pub(crate) fn requant(acc: i32, factor: f64, f32s: bool, zero: i32, signed: bool) -> u8 {
    let (lo, hi) = if signed { (-128, 127) } else { (0, 255) };
    if f32s {
        kiln_kernels::qgemm::requantize(acc, factor as f32, zero, lo, hi) as u8
    } else {
        ((acc as f64 * factor).round_ties_even() + zero as f64).clamp(lo as f64, hi as f64) as i32
            as u8
    }
}

/// Runs another op's reference kernel on the given inputs (at the node's opset, 13 at least).
pub(crate) fn call(
    ctx: &KernelCtx,
    op: &str,
    attrs: &[kiln_ir::Attribute],
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    call_op(op, ctx.opset.max(13), attrs, inputs)
}

/// Runs an ONNX op's reference kernel at `opset`.
pub(crate) fn call_op(
    op: &str,
    opset: i64,
    attrs: &[kiln_ir::Attribute],
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    call_domain("", op, opset, attrs, inputs)
}

fn call_domain(
    domain: &str,
    op: &str,
    opset: i64,
    attrs: &[kiln_ir::Attribute],
    inputs: &[Option<&Tensor>],
) -> Result<Tensor> {
    use crate::value::Value;
    let vals: Vec<Option<Value>> = inputs
        .iter()
        .map(|t| t.map(|t| Value::Tensor(t.clone())))
        .collect();
    let sub = KernelCtx {
        op_type: op,
        domain,
        opset,
        attrs,
        inputs: vals.iter().map(|v| v.as_ref()).collect(),
        num_outputs: 1,
        subgraphs: None,
        donated: Default::default(),
    };
    let f = crate::ops::kernel_fn(domain, op).ok_or_else(|| format!("no {domain}:{op} kernel"))?;
    f(&sub)?
        .into_iter()
        .next()
        .and_then(Value::into_tensor)
        .ok_or_else(|| format!("{op} gave no tensor"))
}
