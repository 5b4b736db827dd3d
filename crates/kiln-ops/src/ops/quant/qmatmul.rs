//! The 8-bit matrix products on `kiln_kernels::qgemm`: QLinearMatMul, MatMulInteger and
//! com.microsoft's MatMulIntegerToFloat, DynamicQuantizeMatMul and QGemm. B is packed once per
//! session when it is a constant (else per call, per batch matrix); A `[..., M, K]` is read in
//! place. Shapes the fast path does not take (a per-row A zero point, broadcast batches, K past
//! the exact i32 range) run the reference kernels.
use kiln_ir::AttrList;
use kiln_kernels::qgemm::{qgemm, QInput, QOutput, QWeights};
use rayon::prelude::*;

use super::{bytes, call, isa, out_signed, per_channel, scale, scales, tensor_of, zero, zeros};
use crate::ctx::{InferCtx, Inferred};
use crate::kernel::{one, KernelCtx, KernelFn, PrepareCtx, PreparedKernel, Result};
use crate::value::{Data, Tensor, Value};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    /// ONNX QLinearMatMul: requantized 8-bit output.
    QLinear,
    /// ONNX MatMulInteger: i32 output.
    Integer,
    /// com.microsoft MatMulIntegerToFloat: `acc · sa · sb + bias`.
    ToFloat,
    /// com.microsoft DynamicQuantizeMatMul: A quantized to u8 on the fly, then as ToFloat.
    Dynamic,
    /// com.microsoft QGemm: transposes, alpha, an i32 bias C, 8-bit or f32 output.
    QGemm,
}

impl Kind {
    fn of(domain: &str, op: &str) -> Option<Kind> {
        Some(match (domain, op) {
            ("", "QLinearMatMul") => Kind::QLinear,
            ("", "MatMulInteger") => Kind::Integer,
            ("com.microsoft", "MatMulIntegerToFloat") => Kind::ToFloat,
            ("com.microsoft", "DynamicQuantizeMatMul") => Kind::Dynamic,
            ("com.microsoft", "QGemm") => Kind::QGemm,
            _ => return None,
        })
    }

    /// Input slots of A, its zero point, B and B's zero point.
    fn slots(self) -> (usize, Option<usize>, usize, usize) {
        match self {
            Kind::QLinear | Kind::QGemm => (0, Some(2), 3, 5),
            Kind::Integer => (0, Some(2), 1, 3),
            Kind::ToFloat => (0, Some(4), 1, 5),
            Kind::Dynamic => (0, None, 1, 3),
        }
    }
}

pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    Some(match Kind::of(domain, op_type)? {
        Kind::QLinear => |c| run(c, Kind::QLinear, None),
        Kind::Integer => |c| run(c, Kind::Integer, None),
        Kind::ToFloat => |c| run(c, Kind::ToFloat, None),
        Kind::Dynamic => |c| run(c, Kind::Dynamic, None),
        Kind::QGemm => |c| run(c, Kind::QGemm, None),
    })
}

pub fn infer_rule(op_type: &str) -> Option<crate::ops::InferFn> {
    match op_type {
        "QGemm" => Some(infer_qgemm),
        _ => None,
    }
}

/// `[M, N]`: u8/s8 as y_zero_point (u8 without one) when y_scale is given, else float32.
fn infer_qgemm(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let t = |i: usize, tr: &str| {
        ctx.shape(i).filter(|s| s.len() == 2).map(|s| {
            if ctx.int_attr(tr, 0) != 0 {
                [s[1].clone(), s[0].clone()]
            } else {
                [s[0].clone(), s[1].clone()]
            }
        })
    };
    let shape = match (t(0, "transA"), t(3, "transB")) {
        (Some(a), Some(b)) => Some(vec![a[0].clone(), b[1].clone()]),
        _ => None,
    };
    let dt = if ctx.has_input(7) {
        if ctx.has_input(8) {
            ctx.dtype(8)
        } else {
            Some(kiln_ir::DataType::U8)
        }
    } else {
        Some(kiln_ir::DataType::F32)
    };
    Ok(vec![Inferred::tensor(dt, shape)])
}

/// B packed for one node: its shape as given (to notice a feed overriding the constant).
struct Prepared {
    kind: Kind,
    w: QWeights,
    shape: Vec<usize>,
}

pub fn prepare(ctx: &PrepareCtx) -> Option<Box<dyn PreparedKernel>> {
    let kind = Kind::of(ctx.domain, ctx.op_type)?;
    let (_, _, bi, bzi) = kind.slots();
    let b = ctx.constant(bi)?;
    let bz = ctx.optional_constant(bzi)?;
    let tb = kind == Kind::QGemm && ctx.attrs.get_int("transB").unwrap_or(0) != 0;
    let w = pack(b, bz, tb).ok()?;
    Some(Box::new(Prepared {
        kind,
        w,
        shape: b.shape.clone(),
    }))
}

impl PreparedKernel for Prepared {
    fn run(&self, ctx: &KernelCtx) -> Result<Vec<Value>> {
        let (_, _, bi, _) = self.kind.slots();
        if ctx.tensor(bi)?.shape != self.shape {
            return run(ctx, self.kind, None);
        }
        run(ctx, self.kind, Some(&self.w))
    }
}

/// MatMulIntegerToFloat on `ctx` (its inputs in that op's order), B packed or not.
pub(crate) fn int_to_float(ctx: &KernelCtx, packed: Option<&QWeights>) -> Result<Vec<Value>> {
    run(ctx, Kind::ToFloat, packed)
}

/// Packs a 2-D B `[K, N]` with its zero points (one or N).
pub(crate) fn pack_b(b: &Tensor, bz: Option<&Tensor>) -> Result<QWeights> {
    pack(b, bz, false)
}

/// Packs a 2-D B (`[K, N]`, or `[N, K]` when `tb`) with its zero points (one or N).
fn pack(b: &Tensor, bz: Option<&Tensor>, tb: bool) -> Result<QWeights> {
    let (bv, signed) = bytes(b).ok_or("B must be uint8 or int8")?;
    if b.rank() != 2 {
        return Err("B is not a matrix".into());
    }
    let (k, n) = if tb {
        (b.shape[1], b.shape[0])
    } else {
        (b.shape[0], b.shape[1])
    };
    let zb = per_channel(&zeros(bz, signed, "b_zero_point")?, n, "b_zero_point")?;
    let val = |x: u8| super::byte_value(x, signed);
    QWeights::pack(
        k,
        n,
        signed,
        |kk, j| {
            if tb {
                val(bv[j * k + kk])
            } else {
                val(bv[kk * n + j])
            }
        },
        |j| zb[j],
        isa(),
    )
    .map_err(|e| e.0)
}

/// The reference kernels, for what the fast path does not take.
fn reference(ctx: &KernelCtx, kind: Kind) -> Result<Vec<Value>> {
    match kind {
        Kind::Integer => crate::ops::matmul::run_matmul_integer(ctx),
        Kind::ToFloat | Kind::Dynamic => crate::ops::microsoft::matmul::run_int_to_float(ctx),
        Kind::QLinear => {
            let (a, sa, az) = (ctx.tensor(0)?, ctx.tensor(1)?, ctx.opt_tensor(2)?);
            let (b, sb, bz) = (ctx.tensor(3)?, ctx.tensor(4)?, ctx.opt_tensor(5)?);
            let (sy, yz) = (ctx.tensor(6)?, ctx.opt_tensor(7)?);
            let signed = out_signed(ctx, 7)?;
            let zy = zero(yz, signed, "y_zero_point")?;
            let acc = call(ctx, "MatMulInteger", &[], &[Some(a), Some(b), az, bz])?;
            let Data::I32(acc_v) = &acc.data else {
                return Err("MatMulInteger gave no int32".into());
            };
            let n = (*acc.shape.last().unwrap_or(&1)).max(1);
            let (f, f32s) = super::factors(sa, sb, sy, n)?;
            let out: Vec<u8> = acc_v
                .iter()
                .enumerate()
                .map(|(i, &v)| super::requant(v, f[i % n], f32s, zy, signed))
                .collect();
            one(tensor_of(acc.shape.clone(), out, signed))
        }
        Kind::QGemm => Err("QGemm: this shape has no kernel".into()),
    }
}

fn run(ctx: &KernelCtx, kind: Kind, packed: Option<&QWeights>) -> Result<Vec<Value>> {
    let (ai, azi, bi, bzi) = kind.slots();
    let a_t = ctx.tensor(ai)?;
    let b_t = ctx.tensor(bi)?;
    // A as 8-bit bytes, with its zero point; DynamicQuantizeMatMul quantizes it here.
    let dynamic;
    let (a_bytes, a_signed, za, dyn_scale) = if kind == Kind::Dynamic {
        let Data::F32(v) = &a_t.data else {
            return Err("A must be float32".into());
        };
        let (q, s, z) = quantize_dynamic(v);
        dynamic = q;
        (&dynamic[..], false, z, s)
    } else {
        let (v, s) = bytes(a_t).ok_or("A must be uint8 or int8")?;
        let az = azi.map(|i| ctx.opt_tensor(i)).transpose()?.flatten();
        match zeros(az, s, "a_zero_point")?.as_slice() {
            [z] => (v, s, *z, 1.0),
            _ => return reference(ctx, kind),
        }
    };
    if kind == Kind::QLinear && ctx.tensor(1)?.dtype() != kiln_ir::DataType::F32 {
        // Scales in float16 / bfloat16: the reference computes in their type.
        return reference(ctx, kind);
    }
    let tr = |name: &str| kind == Kind::QGemm && ctx.int_attr(name, 0) != 0;
    let (ta, tb) = (tr("transA"), tr("transB"));
    // Shapes: A [..., M, K] with B [K, N] or B [..., K, N] of the same batch.
    let ar = a_t.rank();
    let br = b_t.rank();
    if ar < 2 || br < 2 || (br > 2 && (br != ar || a_t.shape[..ar - 2] != b_t.shape[..br - 2])) {
        if kind == Kind::QGemm {
            return Err(format!(
                "QGemm needs matrices, got A {:?} B {:?}",
                a_t.shape, b_t.shape
            ));
        }
        return reference(ctx, kind);
    }
    if kind == Kind::QGemm && (ar != 2 || br != 2) {
        return Err(format!(
            "QGemm needs matrices, got A {:?} B {:?}",
            a_t.shape, b_t.shape
        ));
    }
    let transposed_a;
    let (a_bytes, m, k) = if ta {
        let (r, c) = (a_t.shape[0], a_t.shape[1]);
        transposed_a = (0..c * r)
            .map(|i| a_bytes[(i % r) * c + i / r])
            .collect::<Vec<u8>>();
        (&transposed_a[..], c, r)
    } else {
        (a_bytes, a_t.shape[ar - 2], a_t.shape[ar - 1])
    };
    let (kb, n) = if tb {
        (b_t.shape[br - 1], b_t.shape[br - 2])
    } else {
        (b_t.shape[br - 2], b_t.shape[br - 1])
    };
    if kb != k {
        return Err(format!(
            "A {:?} and B {:?} do not agree on K",
            a_t.shape, b_t.shape
        ));
    }
    if k > kiln_kernels::qgemm::MAX_K || k == 0 || n == 0 {
        return reference(ctx, kind);
    }
    let rows = a_bytes.len() / k.max(1);
    let batches = if br > 2 { rows / m.max(1) } else { 1 };
    let rows_per_batch = rows / batches.max(1);
    let mut out_shape = if ta {
        vec![m]
    } else {
        a_t.shape[..ar - 1].to_vec()
    };
    out_shape.push(n);
    let per_col =
        |t: &Tensor, what: &str| -> Result<Vec<f32>> { per_channel(&scales(t, what)?, n, what) };
    // Per output kind: the epilogue's scales, zero point and bias.
    enum Sink {
        I32(Vec<i32>),
        F32(Vec<f32>, Vec<f32>, Option<Vec<f32>>),
        Quant(Vec<u8>, Vec<f32>, i32, bool, Option<Vec<i32>>),
    }
    let total = rows * n;
    let f32_bias = |i: usize| -> Result<Option<Vec<f32>>> {
        match ctx.opt_tensor(i)? {
            None => Ok(None),
            Some(t) => match &t.data {
                Data::F32(v) if v.len() == n => Ok(Some(v.clone())),
                _ => Err(format!("bias must be float32 [{n}]")),
            },
        }
    };
    // Every batch's product writes all of its rows and columns.
    use kiln_kernels::vecmath::unfilled;
    let mut sink = match kind {
        Kind::Integer => Sink::I32(unfilled(total, 0x5a5a_5a5a)),
        Kind::QLinear => {
            let sa = scale(ctx.tensor(1)?, "a_scale")?;
            let sb = per_col(ctx.tensor(4)?, "b_scale")?;
            let sy = scale(ctx.tensor(6)?, "y_scale")?;
            let signed = out_signed(ctx, 7)?;
            let zy = zero(ctx.opt_tensor(7)?, signed, "y_zero_point")?;
            let s = sb.iter().map(|&b| (sa * b) / sy).collect();
            Sink::Quant(unfilled(total, 0xa5), s, zy, signed, None)
        }
        Kind::ToFloat => {
            let sa = scale(ctx.tensor(2)?, "a_scale")?;
            let s = per_col(ctx.tensor(3)?, "b_scale")?
                .iter()
                .map(|&b| sa * b)
                .collect();
            Sink::F32(unfilled(total, f32::NAN), s, f32_bias(6)?)
        }
        Kind::Dynamic => {
            let s = per_col(ctx.tensor(2)?, "b_scale")?
                .iter()
                .map(|&b| dyn_scale * b)
                .collect();
            Sink::F32(unfilled(total, f32::NAN), s, f32_bias(4)?)
        }
        Kind::QGemm => {
            let alpha = ctx.float_attr("alpha", 1.0);
            let sa = scale(ctx.tensor(1)?, "a_scale")?;
            let sb = per_col(ctx.tensor(4)?, "b_scale")?;
            let c = match ctx.opt_tensor(6)? {
                None => None,
                Some(t) => match &t.data {
                    Data::I32(v) if v.len() == n && t.shape.last() == Some(&n) => Some(v.clone()),
                    Data::I32(v) if v.len() == 1 => Some(vec![v[0]; n]),
                    _ => return Err(format!("QGemm: C must be int32 of {n} values")),
                },
            };
            if ctx.has_input(7) {
                let sy = scale(ctx.tensor(7)?, "y_scale")?;
                let signed = out_signed(ctx, 8)?;
                let zy = zero(ctx.opt_tensor(8)?, signed, "y_zero_point")?;
                let s = sb.iter().map(|&b| alpha * sa * b / sy).collect();
                Sink::Quant(unfilled(total, 0xa5), s, zy, signed, c)
            } else {
                let s: Vec<f32> = sb.iter().map(|&b| alpha * sa * b).collect();
                let bias = c.map(|c| c.iter().zip(&s).map(|(&c, &s)| c as f32 * s).collect());
                Sink::F32(unfilled(total, f32::NAN), s, bias)
            }
        }
    };
    let bz_t = ctx.opt_tensor(bzi)?;
    let (b_bytes, _) = bytes(b_t).ok_or("B must be uint8 or int8")?;
    // One batch: its B packed (unless prepared), its rows of A into its rows of the output.
    let batch = |bt: usize, out: QOutput| -> Result<()> {
        let owned;
        let w = match packed {
            Some(w) if batches == 1 => w,
            _ => {
                let mat = k * n;
                let sub = if br > 2 {
                    let part = Tensor::from_vec(
                        b_t.shape[br - 2..].to_vec(),
                        b_bytes[bt * mat..(bt + 1) * mat].to_vec(),
                    );
                    retype(part, b_t)
                } else {
                    b_t.clone()
                };
                owned = pack(&sub, bz_t, tb)?;
                &owned
            }
        };
        let r0 = bt * rows_per_batch;
        let input = QInput {
            data: &a_bytes[r0 * k..(r0 + rows_per_batch) * k],
            m: rows_per_batch,
            k,
            lda: k,
            signed: a_signed,
            zero: za,
        };
        qgemm(&input, w, out, n, 1).map_err(|e| e.0)
    };
    // Batches (attention's heads) run side by side, each product on its own thread's share.
    let chunk = (rows_per_batch * n).max(1);
    if total > 0 {
        match &mut sink {
            Sink::I32(o) => o
                .par_chunks_mut(chunk)
                .enumerate()
                .try_for_each(|(bt, o)| batch(bt, QOutput::I32 { out: o })),
            Sink::F32(o, s, b) => {
                let (s, b) = (&s[..], b.as_deref());
                o.par_chunks_mut(chunk).enumerate().try_for_each(|(bt, o)| {
                    let out = QOutput::F32 {
                        out: o,
                        scale: s,
                        bias: b,
                    };
                    batch(bt, out)
                })
            }
            Sink::Quant(o, s, z, signed, b) => {
                let (s, z, signed, b) = (&s[..], *z, *signed, b.as_deref());
                o.par_chunks_mut(chunk).enumerate().try_for_each(|(bt, o)| {
                    let out = QOutput::Quant {
                        out: o,
                        scale: s,
                        zero: z,
                        signed,
                        bias: b,
                        post: Default::default(),
                    };
                    batch(bt, out)
                })
            }
        }?;
    }
    one(match sink {
        Sink::I32(o) => Tensor::from_vec(out_shape, o),
        Sink::F32(o, _, _) => Tensor::from_vec(out_shape, o),
        Sink::Quant(o, _, _, signed, _) => tensor_of(out_shape, o, signed),
    })
}

/// `part` (u8 bytes) in `like`'s 8-bit type.
fn retype(part: Tensor, like: &Tensor) -> Tensor {
    match (&like.data, part.data) {
        (Data::I8(_), Data::U8(v)) => Tensor::from_vec(
            part.shape,
            v.into_iter().map(|b| b as i8).collect::<Vec<i8>>(),
        ),
        (_, data) => Tensor::new(part.shape, data),
    }
}

/// DynamicQuantizeLinear's u8 quantization of `v`: (bytes, scale, zero point).
pub(crate) fn quantize_dynamic(v: &[f32]) -> (Vec<u8>, f32, i32) {
    let (minx, maxx) = kiln_kernels::qvec::min_max_with_zero(v);
    let scale = if maxx == minx { 1.0f32 } else { maxx - minx } / 255.0f32;
    let zp = (0.0f32 - minx / scale).clamp(0.0, 255.0).round_ties_even();
    let mut q = vec![0u8; v.len()];
    kiln_kernels::qvec::quantize(v, scale, zp as i32, false, &mut q);
    (q, scale, zp as i32)
}
