//! com.microsoft's element-wise QLinear ops as ONNX Runtime computes them: QLinearAdd and
//! QLinearMul in float from the integer differences (`sa/sc·(a - za) + sb/sc·(b - zb)`,
//! `sa·sb/sc·(a - za)(b - zb)`), rounded half to even; QLinearSigmoid and QLinearLeakyRelu as a
//! 256-entry table built per call (dequantize, the function, quantize); QLinearSoftmax by
//! dequantizing a row, Softmax, quantizing; QLinearWhere by requantizing both sides through
//! tables.
use kiln_ir::{DataType, Dim};

use super::{byte_value, q_input, q_output, quantize_f32, tensor_of, Q};
use crate::ctx::{broadcast, InferCtx, Inferred};
use crate::kernel::{broadcast_shape, one, zip_broadcast, KernelCtx, KernelFn, Result};
use crate::value::{Data, Tensor, Value};

pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    if domain == crate::ops::kiln_fused::DOMAIN && op_type == "QLinearSiLU" {
        return Some(silu);
    }
    if domain != "com.microsoft" {
        return None;
    }
    Some(match op_type {
        "QLinearAdd" | "QLinearMul" => binary,
        "QLinearSigmoid" | "QLinearLeakyRelu" => unary,
        "QLinearSoftmax" => softmax,
        "QLinearWhere" => where_op,
        _ => return None,
    })
}

pub fn infer_rule(op_type: &str) -> Option<crate::ops::InferFn> {
    Some(match op_type {
        "QLinearAdd" | "QLinearMul" => |c| infer_broadcast(c, &[0, 3], 0),
        "QLinearSigmoid" | "QLinearLeakyRelu" | "QLinearSoftmax" => |c| Ok(vec![c.same_as(0)]),
        "QLinearWhere" => |c| infer_broadcast(c, &[0, 1, 4], 1),
        _ => return None,
    })
}

fn infer_broadcast(ctx: &InferCtx, slots: &[usize], ty: usize) -> Result<Vec<Inferred>> {
    let shapes: Option<Vec<&[Dim]>> = slots.iter().map(|&i| ctx.shape(i)).collect();
    let shape = match shapes {
        Some(s) => Some(broadcast(&s)?),
        None => None,
    };
    Ok(vec![Inferred::tensor(ctx.dtype(ty), shape)])
}

#[inline]
fn round_sat(v: f32, zero: i32, signed: bool) -> u8 {
    let (lo, hi) = if signed { (-128, 127) } else { (0, 255) };
    (v.round_ties_even() as i32 + zero).clamp(lo, hi) as u8
}

fn binary(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (a, b) = (q_input(ctx, 0, "A")?, q_input(ctx, 3, "B")?);
    if a.signed != b.signed {
        return Err("A and B must have one type".into());
    }
    let (sc, zc, signed) = q_output(ctx, 6, "C")?;
    if signed != a.signed {
        return Err("C_zero_point must have A's type".into());
    }
    let s = a.signed;
    let add = ctx.op_type == "QLinearAdd";
    let (ra, rb, rm) = (a.scale / sc, b.scale / sc, a.scale * b.scale / sc);
    let (za, zb) = (a.zero, b.zero);
    let f = move |x: u8, y: u8| {
        let (da, db) = (
            (byte_value(x, s) - za) as f32,
            (byte_value(y, s) - zb) as f32,
        );
        let v = if add {
            ra * da + rb * db
        } else {
            rm * (da * db)
        };
        round_sat(v, zc, s)
    };
    let p = kiln_kernels::qvec::QBinary {
        mul: !add,
        signed: s,
        za,
        zb,
        zc,
        ra: if add { ra } else { rm },
        rb,
    };
    let (shape, out) = if a.t.shape == b.t.shape || (b.v.len() == 1 && a.t.rank() >= b.t.rank()) {
        let mut out = super::written_bytes(a.v.len());
        kiln_kernels::qvec::qbinary(a.v, b.v, &mut out, &p);
        (a.t.shape.clone(), out)
    } else if a.v.len() == 1 && b.t.rank() >= a.t.rank() {
        // Swapped: the formula is symmetric once the parameters swap too.
        let p = kiln_kernels::qvec::QBinary {
            za: zb,
            zb: za,
            ra: if add { rb } else { rm },
            rb: ra,
            ..p
        };
        let mut out = super::written_bytes(b.v.len());
        kiln_kernels::qvec::qbinary(b.v, a.v, &mut out, &p);
        (b.t.shape.clone(), out)
    } else if let Some(period) = periodic(&a.t.shape, &b.t.shape) {
        // B repeats along A (a bias over the last axes, an attention mask).
        let mut out = super::written_bytes(a.v.len());
        run_periodic(a.v, b.v, period, &mut out, &p);
        (a.t.shape.clone(), out)
    } else if let Some(period) = periodic(&b.t.shape, &a.t.shape) {
        let p = kiln_kernels::qvec::QBinary {
            za: zb,
            zb: za,
            ra: if add { rb } else { rm },
            rb: ra,
            ..p
        };
        let mut out = super::written_bytes(b.v.len());
        run_periodic(b.v, a.v, period, &mut out, &p);
        (b.t.shape.clone(), out)
    } else {
        zip_broadcast(a.v, &a.t.shape, b.v, &b.t.shape, f)?
    };
    one(tensor_of(shape, out, s))
}

/// When `b` broadcast to `a`'s shape is `b` repeated (its dims, leading ones dropped, are
/// `a`'s last dims), its length.
fn periodic(a: &[usize], b: &[usize]) -> Option<usize> {
    let lead = b.iter().take_while(|&&d| d == 1).count();
    let tail = &b[lead..];
    let len: usize = tail.iter().product();
    (b.len() <= a.len() && a.ends_with(tail) && len > 0).then_some(len)
}

fn run_periodic(
    a: &[u8],
    b: &[u8],
    period: usize,
    out: &mut [u8],
    p: &kiln_kernels::qvec::QBinary,
) {
    use rayon::prelude::*;
    let rows = (1usize << 14).div_ceil(period).max(1) * period;
    out.par_chunks_mut(rows)
        .zip(a.par_chunks(rows))
        .for_each(|(o, x)| {
            for (o, x) in o.chunks_mut(period).zip(x.chunks(period)) {
                kiln_kernels::qvec::qbinary(x, b, o, p);
            }
        });
}

/// Maps every byte through `table`.
fn lookup(x: &Q, table: &[u8; 256], signed: bool) -> Tensor {
    let mut out = super::written_bytes(x.v.len());
    kiln_kernels::qvec::lookup(x.v, table, &mut out);
    tensor_of(x.t.shape.clone(), out, signed)
}

/// `quantize(f(dequantize(b)))` for every byte `b`.
fn table(x: &Q, y: (f32, i32, bool), f: impl Fn(f32) -> f32) -> [u8; 256] {
    let mut t = [0u8; 256];
    for (b, e) in t.iter_mut().enumerate() {
        let d = x.scale * (byte_value(b as u8, x.signed) - x.zero) as f32;
        *e = quantize_f32(f(d), y.0, y.1, y.2);
    }
    t
}

/// ai.kiln QLinearSiLU: `QLinearMul(x, QLinearSigmoid(x))` as one table (a session's fusion of
/// YOLO's quantized SiLU). Inputs: X, its scale and zero point, the Sigmoid output's scale and
/// zero point, Y's scale and zero point. The table is built with the two ops' own arithmetic,
/// so the result is theirs exactly.
fn silu(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = q_input(ctx, 0, "X")?;
    let sig = q_output(ctx, 3, "S")?;
    let y = q_output(ctx, 5, "Y")?;
    if sig.2 != x.signed || y.2 != x.signed {
        return Err("X, S and Y must have one 8-bit type".into());
    }
    let st = table(&x, sig, |v| 1.0 / (1.0 + (-v).exp()));
    let bytes: Vec<u8> = (0..=255u8).collect();
    let s_of: Vec<u8> = bytes.iter().map(|&b| st[b as usize]).collect();
    let p = kiln_kernels::qvec::QBinary {
        mul: true,
        signed: x.signed,
        za: x.zero,
        zb: sig.1,
        zc: y.1,
        ra: x.scale * sig.0 / y.0,
        rb: 0.0,
    };
    let mut t = [0u8; 256];
    kiln_kernels::qvec::qbinary(&bytes, &s_of, &mut t, &p);
    one(lookup(&x, &t, y.2))
}

fn unary(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = q_input(ctx, 0, "X")?;
    let y = q_output(ctx, 3, "Y")?;
    if y.2 != x.signed {
        return Err("Y_zero_point must have X's type".into());
    }
    let t = if ctx.op_type == "QLinearSigmoid" {
        table(&x, y, |v| 1.0 / (1.0 + (-v).exp()))
    } else {
        let alpha = ctx.float_attr("alpha", 0.01);
        table(&x, y, |v| if v >= 0.0 { v } else { alpha * v })
    };
    one(lookup(&x, &t, y.2))
}

fn softmax(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = q_input(ctx, 0, "X")?;
    let y = q_output(ctx, 3, "Y")?;
    let r = x.t.rank().max(1);
    let axis = crate::kernel::norm_axis(ctx.int_attr("axis", -1), r)?;
    // The `opset` attribute: before 13, Softmax works on the flattened [.., axis:] block.
    let old = ctx.int_attr("opset", 13) < 13;
    let shape = &x.t.shape;
    let (outer, len, inner) = if old {
        let len: usize = shape[axis..].iter().product();
        (x.v.len() / len.max(1), len, 1)
    } else if shape.is_empty() {
        (1, 1, 1)
    } else {
        let inner: usize = shape[axis + 1..].iter().product();
        (x.v.len() / (shape[axis] * inner).max(1), shape[axis], inner)
    };
    let deq: Vec<f32> = (0..256)
        .map(|b| x.scale * (byte_value(b as u8, x.signed) - x.zero) as f32)
        .collect();
    let mut out = vec![0u8; x.v.len()];
    if len > 0 && inner > 0 {
        // One block of `len` rows × `inner` lanes at a time (a contiguous row when inner is 1):
        // dequantize through the table, the vectorized Softmax, quantize.
        use rayon::prelude::*;
        let blk = len * inner;
        out.par_chunks_mut(blk)
            .zip(x.v.par_chunks(blk))
            .for_each_init(
                || vec![0f32; blk],
                |buf, (o, src)| {
                    for (r, &b) in buf.iter_mut().zip(src) {
                        *r = deq[b as usize];
                    }
                    kiln_kernels::vecmath::softmax_block(buf, inner);
                    kiln_kernels::qvec::quantize(buf, y.0, y.1, y.2, o);
                },
            );
        let _ = outer;
        return one(tensor_of(shape.clone(), out, y.2));
    }
    let mut row = vec![0f32; len];
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * len + j) * inner + i;
            let mut mx = f32::NEG_INFINITY;
            for (j, r) in row.iter_mut().enumerate() {
                *r = deq[x.v[at(j)] as usize];
                mx = mx.max(*r);
            }
            let mut sum = 0f32;
            for r in row.iter_mut() {
                *r = (*r - mx).exp();
                sum += *r;
            }
            for (j, r) in row.iter().enumerate() {
                out[at(j)] = quantize_f32(r / sum, y.0, y.1, y.2);
            }
        }
    }
    one(tensor_of(shape.clone(), out, y.2))
}

fn where_op(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let c = ctx.tensor(0)?;
    let Data::Bool(cv) = &c.data else {
        return Err(format!("condition must be bool, got {}", c.dtype()));
    };
    let (x, yv) = (q_input(ctx, 1, "X")?, q_input(ctx, 4, "Y")?);
    let z = q_output(ctx, 7, "Z")?;
    let (tx, ty) = (table(&x, z, |v| v), table(&yv, z, |v| v));
    let xs: Vec<u8> = x.v.iter().map(|&b| tx[b as usize]).collect();
    let ys: Vec<u8> = yv.v.iter().map(|&b| ty[b as usize]).collect();
    let shape = broadcast_shape(&[&c.shape, &x.t.shape, &yv.t.shape])?;
    // Broadcast in two steps: pick X where the condition holds (others marked), then Y.
    let (s1, picked) = zip_broadcast(cv, &c.shape, &xs, &x.t.shape, |c, v| (c, v))?;
    let (s2, out) = zip_broadcast(
        &picked,
        &s1,
        &ys,
        &yv.t.shape,
        |(c, v), w| {
            if c {
                v
            } else {
                w
            }
        },
    )?;
    debug_assert_eq!(s2, shape);
    let _ = DataType::U8;
    one(tensor_of(s2, out, z.2))
}
