//! Linear quantization: QuantizeLinear and DequantizeLinear (per tensor, per axis and blocked;
//! 8/16-bit and sub-byte integers, float8 and float4 through the Cast codecs),
//! DynamicQuantizeLinear (uint8); also com.microsoft's QuantizeLinear / DequantizeLinear, which
//! are ONNX's with `axis` (no blocks).
use half::{bf16, f16};
use kiln_ir::DataType;

use crate::kernel::{one, strides, KernelCtx, KernelFn, Result};
use crate::ops::cast::{self, CastOpts};
use crate::ops::movement::check_len;
use crate::value::{Data, Tensor, Value};

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    if !matches!(domain, "" | "com.microsoft") {
        return None;
    }
    Some(match op_type {
        "QuantizeLinear" => quantize,
        "DequantizeLinear" => dequantize,
        "DynamicQuantizeLinear" if domain.is_empty() => dynamic_quantize,
        _ => return None,
    })
}

/// The value range of the integer types quantization writes.
fn int_range(dt: DataType) -> Option<(f64, f64)> {
    Some(match dt {
        DataType::U8 => (0.0, 255.0),
        DataType::I8 => (-128.0, 127.0),
        DataType::U16 => (0.0, 65535.0),
        DataType::I16 => (-32768.0, 32767.0),
        DataType::U4 => (0.0, 15.0),
        DataType::I4 => (-8.0, 7.0),
        DataType::U2 => (0.0, 3.0),
        DataType::I2 => (-2.0, 1.0),
        _ => return None,
    })
}

/// `v` rounded to the precision of the float type `dt` (what numpy computes in that type).
pub(super) fn round_to(dt: DataType, v: f64) -> f64 {
    match dt {
        DataType::F32 => v as f32 as f64,
        DataType::F16 => f16::from_f64(v).to_f64(),
        DataType::BF16 => bf16::from_f64(v).to_f64(),
        _ => v,
    }
}

/// For every element of `x`, the index of its scale / zero point: one for the tensor, one per
/// slice along `axis`, or one per block of `block` elements along `axis`.
fn param_index(x: &[usize], p: &[usize], axis: i64, block: i64, what: &str) -> Result<Vec<usize>> {
    let n: usize = x.iter().product();
    if p.iter().product::<usize>() == 1 {
        return Ok(vec![0; n]);
    }
    let a = crate::kernel::norm_axis(axis, x.len())?;
    let st = strides(x);
    if block <= 0 {
        if p != [x[a]] {
            return Err(format!(
                "{what} has shape {p:?}; expected one element or [{}]",
                x[a]
            ));
        }
        return Ok((0..n).map(|f| (f / st[a]) % x[a]).collect());
    }
    let b = block as usize;
    let ok = p.len() == x.len()
        && (0..x.len()).all(|i| {
            if i == a {
                p[i] == x[a].div_ceil(b)
            } else {
                p[i] == x[i]
            }
        });
    if !ok {
        return Err(format!(
            "{what} has shape {p:?}, which does not block {x:?} by {b} along axis {a}"
        ));
    }
    let pst = strides(p);
    Ok((0..n)
        .map(|f| {
            (0..x.len())
                .map(|i| {
                    let c = (f / st[i]) % x[i];
                    (if i == a { c / b } else { c }) * pst[i]
                })
                .sum()
        })
        .collect())
}

fn quantize(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (x, scale) = (ctx.tensor(0)?, ctx.tensor(1)?);
    check_len(x, "x")?;
    let zp = ctx.opt_tensor(2)?;
    let out_attr = ctx.int_attr("output_dtype", 0);
    let to = match (zp, out_attr) {
        (Some(z), 0) => z.dtype(),
        (Some(z), o) if DataType::from_onnx(o as i32) == Some(z.dtype()) => z.dtype(),
        (Some(z), o) => {
            return Err(format!(
                "output_dtype {o} does not match the zero point's type {}",
                z.dtype()
            ))
        }
        (None, 0) => DataType::U8,
        (None, o) => {
            DataType::from_onnx(o as i32).ok_or_else(|| format!("unknown output_dtype {o}"))?
        }
    };
    if let Some(y) = quantize_fast(ctx, x, scale, zp, to)? {
        return one(y);
    }
    let (axis, block) = (ctx.int_attr("axis", 1), ctx.int_attr("block_size", 0));
    let si = param_index(&x.shape, &scale.shape, axis, block, "y_scale")?;
    let sv = scale.to_f64s()?;
    let zv = match zp {
        Some(z) => {
            let zi = param_index(&x.shape, &z.shape, axis, block, "y_zero_point")?;
            let zv = cast::to_f64s(z)?;
            zi.iter().map(|&i| zv[i]).collect()
        }
        None => vec![0.0; si.len()],
    };
    let xv = x.to_f64s()?;
    // Division in the `precision` type when given (opset 23), else in x's own type, as
    // numpy does it.
    let prec = match ctx.int_attr("precision", 0) {
        0 => x.dtype(),
        p => DataType::from_onnx(p as i32)
            .filter(|d| d.is_float())
            .ok_or_else(|| format!("precision {p} is not a float type"))?,
    };
    let q: Vec<f64> = xv
        .iter()
        .zip(&si)
        .map(|(&v, &i)| round_to(prec, v / sv[i]))
        .collect();
    let saturate = ctx.int_attr("saturate", 1) != 0;
    let vals: Vec<f64> = if let Some((lo, hi)) = int_range(to) {
        q.iter()
            .zip(&zv)
            .map(|(&v, &z)| (v.round_ties_even() + z).clamp(lo, hi))
            .collect()
    } else if to == DataType::F4E2M1 {
        q.iter().zip(&zv).map(|(&v, &z)| v + z).collect()
    } else if matches!(
        to,
        DataType::F8E4M3FN | DataType::F8E4M3FNUZ | DataType::F8E5M2 | DataType::F8E5M2FNUZ
    ) {
        q
    } else {
        return Err(format!("QuantizeLinear cannot produce {to}"));
    };
    let opts = CastOpts {
        saturate,
        ..CastOpts::default()
    };
    one(cast::cast(
        &Tensor::new(x.shape.clone(), Data::F64(vals)),
        to,
        opts,
    )?)
}

/// Per tensor, float32 to 8 bits: the vectorized kernel (the same arithmetic as below).
fn quantize_fast(
    ctx: &KernelCtx,
    x: &Tensor,
    scale: &Tensor,
    zp: Option<&Tensor>,
    to: DataType,
) -> Result<Option<Tensor>> {
    let (Data::F32(xv), Data::F32(sv)) = (&x.data, &scale.data) else {
        return Ok(None);
    };
    let plain = sv.len() == 1
        && matches!(to, DataType::U8 | DataType::I8)
        && matches!(ctx.int_attr("precision", 0), 0 | 1)
        && ctx.int_attr("saturate", 1) != 0;
    let zero = match zp.map(|z| super::bytes(z)) {
        None => 0,
        Some(Some((b, _))) if b.len() == 1 => super::byte_value(b[0], to == DataType::I8),
        Some(_) => return Ok(None),
    };
    if !plain {
        return Ok(None);
    }
    let mut out = super::written_bytes(xv.len());
    kiln_kernels::qvec::quantize(xv, sv[0], zero, to == DataType::I8, &mut out);
    Ok(Some(super::tensor_of(
        x.shape.clone(),
        out,
        to == DataType::I8,
    )))
}

/// Per tensor, 8 bits to float32: the vectorized kernel.
fn dequantize_fast(ctx: &KernelCtx, x: &Tensor, scale: &Tensor) -> Result<Option<Tensor>> {
    let (Some((xv, signed)), Data::F32(sv)) = (super::bytes(x), &scale.data) else {
        return Ok(None);
    };
    if sv.len() != 1 || !matches!(ctx.int_attr("output_dtype", 0), 0 | 1) {
        return Ok(None);
    }
    let zero = match ctx.opt_tensor(2)?.map(|z| (z.dtype(), super::bytes(z))) {
        None => 0,
        Some((dt, Some((b, _)))) if dt == x.dtype() && b.len() == 1 => {
            super::byte_value(b[0], signed)
        }
        Some(_) => return Ok(None),
    };
    let mut out = vec![0f32; xv.len()];
    kiln_kernels::qvec::dequantize(xv, signed, sv[0], zero, &mut out);
    Ok(Some(Tensor::from_vec(x.shape.clone(), out)))
}

fn dequantize(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (x, scale) = (ctx.tensor(0)?, ctx.tensor(1)?);
    check_len(x, "x")?;
    if let Some(y) = dequantize_fast(ctx, x, scale)? {
        return one(y);
    }
    let (axis, block) = (ctx.int_attr("axis", 1), ctx.int_attr("block_size", 0));
    let si = param_index(&x.shape, &scale.shape, axis, block, "x_scale")?;
    let sv = scale.to_f64s()?;
    let xv = cast::to_f64s(x)?;
    let zv: Vec<f64> = match ctx.opt_tensor(2)? {
        Some(z) => {
            if z.dtype() != x.dtype() {
                return Err(format!(
                    "zero point has type {}, x has {}",
                    z.dtype(),
                    x.dtype()
                ));
            }
            let zi = param_index(&x.shape, &z.shape, axis, block, "x_zero_point")?;
            let zv = cast::to_f64s(z)?;
            zi.iter().map(|&i| zv[i]).collect()
        }
        None => vec![0.0; xv.len()],
    };
    let out = match ctx.int_attr("output_dtype", 0) {
        0 => scale.dtype(),
        o => DataType::from_onnx(o as i32).ok_or_else(|| format!("unknown output_dtype {o}"))?,
    };
    if !out.is_float() {
        return Err(format!("DequantizeLinear produces floats, not {out}"));
    }
    let y: Vec<f64> = (0..xv.len())
        .map(|i| round_to(DataType::F32, xv[i] - zv[i]) * sv[si[i]])
        .collect();
    one(cast::cast(
        &Tensor::new(x.shape.clone(), Data::F64(y)),
        out,
        CastOpts::default(),
    )?)
}

/// uint8 quantization with a scale and zero point that cover [min(x, 0), max(x, 0)], in f32
/// arithmetic as the reference.
fn dynamic_quantize(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    check_len(x, "x")?;
    let Data::F32(v) = &x.data else {
        return Err(format!(
            "DynamicQuantizeLinear takes float32, got {}",
            x.dtype()
        ));
    };
    let (y, scale, zp) = super::qmatmul::quantize_dynamic(v);
    Ok(vec![
        Value::Tensor(Tensor::from_vec(x.shape.clone(), y)),
        Value::Tensor(Tensor::scalar(scale)),
        Value::Tensor(Tensor::scalar(zp as u8)),
    ])
}

#[cfg(test)]
mod tests {
    use crate::ops::movement::testing::{f32s, run, run_opset};
    use crate::value::{Data, Tensor};
    use kiln_ir::{Attribute, DataType};

    #[test]
    fn quantize_round_trip() {
        let x = f32s(&[4], &[0.0, 2.5, -3.0, 1000.0]);
        let s = f32s(&[], &[1.0]);
        let z = Tensor::scalar(10u8);
        let q = run("QuantizeLinear", &[], &[x, s.clone(), z.clone()]).unwrap();
        assert_eq!(q.as_slice::<u8>().unwrap(), &[10, 12, 7, 255]);
        let d = run("DequantizeLinear", &[], &[q, s, z]).unwrap();
        assert_eq!(d.as_slice::<f32>().unwrap(), &[0.0, 2.0, -3.0, 245.0]);
        // Blocked: one scale per two elements of a row.
        let x = f32s(&[1, 4], &[1.0, 2.0, 3.0, 4.0]);
        let s = f32s(&[1, 2], &[1.0, 2.0]);
        let attrs = [Attribute::int("axis", 1), Attribute::int("block_size", 2)];
        let z = Tensor::new(vec![1, 2], Data::I8(vec![0, 0]));
        let q = run("QuantizeLinear", &attrs, &[x, s, z]).unwrap();
        assert_eq!(q.as_slice::<i8>().unwrap(), &[1, 2, 2, 2]);
        let x = f32s(&[2], &[-20.0, 5.0]);
        let z = Tensor::new(
            vec![],
            Data::Packed {
                dtype: DataType::I4,
                raw: vec![0],
            },
        );
        let q = run("QuantizeLinear", &[], &[x, f32s(&[], &[1.0]), z]).unwrap();
        assert_eq!(
            q.data,
            Data::Packed {
                dtype: DataType::I4,
                raw: vec![0x58]
            }
        );
    }

    #[test]
    fn dynamic_and_qlinear_matmul() {
        let r = run_opset(
            "DynamicQuantizeLinear",
            11,
            &[],
            &[Some(f32s(&[3], &[0.0, 2.0, -1.0]))],
            3,
        )
        .unwrap();
        assert_eq!(r[0].as_slice::<u8>().unwrap(), &[85, 255, 0]);
        assert_eq!(r[2].as_slice::<u8>().unwrap(), &[85]);
        let a = Tensor::from_vec(vec![1, 2], vec![2u8, 4]);
        let b = Tensor::from_vec(vec![2, 1], vec![3u8, 1]);
        let one = f32s(&[], &[1.0]);
        let zero = Tensor::scalar(0u8);
        let ins = [
            a,
            one.clone(),
            zero.clone(),
            b,
            f32s(&[], &[0.5]),
            zero.clone(),
            one,
            zero,
        ];
        let y = run("QLinearMatMul", &[], &ins).unwrap();
        assert_eq!(y.as_slice::<u8>().unwrap(), &[5]);
    }
}
