//! Cast and CastLike: the shape is kept; integer values survive integer casts.
use kiln_ir::DataType;

use crate::ctx::{InferCtx, Inferred, Result, SymValue};
use crate::kernel::{one, KernelCtx};
use crate::ops::movement;
use crate::value::{Data, Tensor, Value};
use half::{bf16, f16};

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let dtype = target_type(ctx.str_attr("to"), ctx.int_attr("to", 0))?;
    Ok(vec![cast_to(ctx, dtype)])
}

pub fn infer_like(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    match ctx.dtype(1) {
        Some(d) => Ok(vec![cast_to(ctx, d)]),
        None => Ok(vec![Inferred::tensor(
            None,
            ctx.shape(0).map(|s| s.to_vec()),
        )]),
    }
}

fn cast_to(ctx: &InferCtx, dtype: DataType) -> Inferred {
    // Whole numbers stay exact through casts to wide integer or float types.
    let keeps_value = matches!(
        dtype,
        DataType::I64 | DataType::I32 | DataType::F32 | DataType::F64
    );
    let value = ctx
        .int_values(0)
        .filter(|_| keeps_value && ctx.dtype(0).is_some_and(|d| d.is_int()))
        .map(|elems| SymValue {
            scalar: ctx.rank(0) == Some(0),
            elems,
        });
    Inferred::tensor(Some(dtype), ctx.shape(0).map(|s| s.to_vec())).with_value(value)
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    match (domain, op_type) {
        ("", "Cast") => Some(run_cast),
        ("", "CastLike") => Some(run_cast_like),
        _ => None,
    }
}

/// How casts to 8-bit float types treat values out of range.
#[derive(Clone, Copy, Debug)]
pub struct CastOpts {
    /// Out-of-range values (and infinities) become the largest finite value instead of
    /// infinity or NaN (float8 types only).
    pub saturate: bool,
    /// Rounding of float8e8m0: "up", "down" or "nearest".
    pub round_up: E8m0Round,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum E8m0Round {
    Up,
    Down,
    Nearest,
}

impl Default for CastOpts {
    fn default() -> Self {
        CastOpts {
            saturate: true,
            round_up: E8m0Round::Up,
        }
    }
}

/// Elements decoded for conversion: exact integers (integer and bool sources) or floats.
enum Decoded {
    Ints(Vec<i128>),
    Floats(Vec<f64>),
    Strs(Vec<String>),
}

/// Layout of a small float type.
#[derive(Clone, Copy)]
struct MiniFloat {
    exp_bits: u32,
    man_bits: u32,
    bias: i32,
    /// NaN is the negative-zero pattern and there is no negative zero (the *FNUZ types).
    fnuz: bool,
    /// The all-ones exponent holds infinities and NaNs (IEEE-like: E5M2).
    ieee: bool,
    /// No NaN at all (float4e2m1).
    no_nan: bool,
}

impl MiniFloat {
    fn of(dtype: DataType) -> Option<MiniFloat> {
        let f = |exp_bits, man_bits, bias, fnuz, ieee, no_nan| MiniFloat {
            exp_bits,
            man_bits,
            bias,
            fnuz,
            ieee,
            no_nan,
        };
        Some(match dtype {
            DataType::F8E4M3FN => f(4, 3, 7, false, false, false),
            DataType::F8E4M3FNUZ => f(4, 3, 8, true, false, false),
            DataType::F8E5M2 => f(5, 2, 15, false, true, false),
            DataType::F8E5M2FNUZ => f(5, 2, 16, true, false, false),
            DataType::F4E2M1 => f(2, 1, 1, false, false, true),
            _ => return None,
        })
    }

    fn sign_bit(&self) -> u32 {
        1 << (self.exp_bits + self.man_bits)
    }

    /// Largest finite magnitude.
    fn max(&self) -> f64 {
        let top_exp = (1i32 << self.exp_bits) - 1;
        let m = self.man_bits as i32;
        let (exp, man) = if self.ieee {
            (top_exp - 1, (1 << m) - 1)
        } else if self.fnuz || self.no_nan {
            (top_exp, (1 << m) - 1)
        } else {
            // E4M3FN: all ones is NaN, so the top mantissa is one less.
            (top_exp, (1 << m) - 2)
        };
        (1.0 + man as f64 / (1 << m) as f64) * 2f64.powi(exp - self.bias)
    }

    fn nan(&self, negative: bool) -> u32 {
        if self.fnuz {
            return self.sign_bit();
        }
        if self.no_nan {
            // What ml_dtypes (and so ONNX's reference) produces.
            return if negative { 0 } else { self.sign_bit() };
        }
        let all = (1 << (self.exp_bits + self.man_bits)) - 1;
        let code = if self.ieee { all - 1 } else { all };
        code | if negative { self.sign_bit() } else { 0 }
    }

    fn decode(&self, code: u32) -> f64 {
        let m = self.man_bits;
        let sign = code & self.sign_bit() != 0;
        let exp = ((code >> m) & ((1 << self.exp_bits) - 1)) as i32;
        let man = code & ((1 << m) - 1);
        let top_exp = (1i32 << self.exp_bits) - 1;
        if self.fnuz && code == self.sign_bit() {
            return f64::NAN;
        }
        if !self.fnuz && !self.no_nan {
            if self.ieee && exp == top_exp {
                let v = if man == 0 { f64::INFINITY } else { f64::NAN };
                return if sign { -v } else { v };
            }
            if !self.ieee && exp == top_exp && man == (1 << m) - 1 {
                return f64::NAN;
            }
        }
        let v = if exp == 0 {
            man as f64 * 2f64.powi(1 - self.bias - m as i32)
        } else {
            (1.0 + man as f64 / (1u32 << m) as f64) * 2f64.powi(exp - self.bias)
        };
        if sign {
            -v
        } else {
            v
        }
    }

    /// Round to nearest even; out-of-range values saturate or become Inf/NaN.
    fn encode(&self, x: f64, saturate: bool) -> u32 {
        let negative = x.is_sign_negative();
        let sign = if negative { self.sign_bit() } else { 0 };
        if x.is_nan() {
            return self.nan(negative);
        }
        let max = self.max();
        let overflow = || {
            if saturate || self.no_nan {
                sign | self.encode_exact(max)
            } else if self.ieee {
                sign | (((1 << self.exp_bits) - 1) << self.man_bits)
            } else {
                self.nan(negative)
            }
        };
        let a = x.abs();
        if a.is_infinite() {
            return overflow();
        }
        let min_exp = 1 - self.bias;
        let e = if a == 0.0 {
            min_exp
        } else {
            (((a.to_bits() >> 52) & 0x7ff) as i32 - 1023).max(min_exp)
        };
        let quantum = 2f64.powi(e - self.man_bits as i32);
        let v = (a / quantum).round_ties_even() * quantum;
        if v > max {
            return overflow();
        }
        let code = self.encode_exact(v);
        if code == 0 && self.fnuz {
            return 0;
        }
        sign | code
    }

    /// The code of a representable non-negative magnitude.
    fn encode_exact(&self, v: f64) -> u32 {
        let m = self.man_bits as i32;
        let min_exp = 1 - self.bias;
        if v < 2f64.powi(min_exp) {
            return (v / 2f64.powi(min_exp - m)) as u32;
        }
        let e = ((v.to_bits() >> 52) & 0x7ff) as i32 - 1023;
        let man = (v / 2f64.powi(e - m)) as u32 - (1 << m);
        (((e + self.bias) as u32) << m) | man
    }
}

/// float8e8m0 from a float32 value, as ONNX's reference computes it.
fn e8m0_encode(x: f32, opts: CastOpts) -> u8 {
    let bits = x.to_bits();
    let exp = (bits >> 23) & 0xff;
    if exp == 0xff {
        return 0xff;
    }
    let up = match opts.round_up {
        E8m0Round::Down => false,
        E8m0Round::Up => bits & 0x7f_ffff != 0,
        E8m0Round::Nearest => {
            let g = bits & 0x40_0000 != 0;
            let r = bits & 0x20_0000 != 0;
            let s = bits & 0x1f_ffff != 0;
            g && (r || s || exp > 0)
        }
    };
    if up && !(opts.saturate && exp == 0xfe) {
        (exp + 1) as u8
    } else {
        exp as u8
    }
}

fn e8m0_decode(code: u8) -> f64 {
    if code == 0xff {
        f64::NAN
    } else {
        2f64.powi(code as i32 - 127)
    }
}

/// Width and signedness of sub-byte integer types.
fn small_int(dtype: DataType) -> Option<(u32, bool)> {
    match dtype {
        DataType::I4 => Some((4, true)),
        DataType::U4 => Some((4, false)),
        DataType::I2 => Some((2, true)),
        DataType::U2 => Some((2, false)),
        _ => None,
    }
}

/// A float to an integer the way C casts through int64 do on common hardware: truncate, then
/// wrap to the target width.
fn float_to_int(x: f64, to_u64: bool) -> i128 {
    if to_u64 && x >= 0.0 {
        x as u64 as i128
    } else {
        x as i64 as i128
    }
}

fn decode(t: &Tensor) -> Result<Decoded> {
    let n = movement::check_len(t, "input")?;
    Ok(match &t.data {
        Data::F32(v) => Decoded::Floats(v.iter().map(|&x| x as f64).collect()),
        Data::F64(v) => Decoded::Floats(v.clone()),
        Data::F16(v) => Decoded::Floats(v.iter().map(|x| x.to_f64()).collect()),
        Data::BF16(v) => Decoded::Floats(v.iter().map(|x| x.to_f64()).collect()),
        Data::I8(v) => Decoded::Ints(v.iter().map(|&x| x as i128).collect()),
        Data::I16(v) => Decoded::Ints(v.iter().map(|&x| x as i128).collect()),
        Data::I32(v) => Decoded::Ints(v.iter().map(|&x| x as i128).collect()),
        Data::I64(v) => Decoded::Ints(v.iter().map(|&x| x as i128).collect()),
        Data::U8(v) => Decoded::Ints(v.iter().map(|&x| x as i128).collect()),
        Data::U16(v) => Decoded::Ints(v.iter().map(|&x| x as i128).collect()),
        Data::U32(v) => Decoded::Ints(v.iter().map(|&x| x as i128).collect()),
        Data::U64(v) => Decoded::Ints(v.iter().map(|&x| x as i128).collect()),
        Data::Bool(v) => Decoded::Ints(v.iter().map(|&x| x as i128).collect()),
        Data::Str(v) => Decoded::Strs(v.clone()),
        Data::Packed { dtype, raw } => {
            let mut codes = movement::unpack(*dtype, raw)?;
            codes.truncate(n);
            if let Some(f) = MiniFloat::of(*dtype) {
                Decoded::Floats(codes.iter().map(|&c| f.decode(c as u32)).collect())
            } else if *dtype == DataType::F8E8M0 {
                Decoded::Floats(codes.iter().map(|&c| e8m0_decode(c as u8)).collect())
            } else if let Some((bits, signed)) = small_int(*dtype) {
                Decoded::Ints(
                    codes
                        .iter()
                        .map(|&c| {
                            let c = c as i128;
                            if signed && c >= 1 << (bits - 1) {
                                c - (1 << bits)
                            } else {
                                c
                            }
                        })
                        .collect(),
                )
            } else {
                return Err(format!("kiln cannot cast from {dtype}"));
            }
        }
    })
}

/// A string as a number (numpy's and ONNX Runtime's spellings of infinities and NaN
/// included).
fn parse_f64(s: &str) -> Result<f64> {
    let t = s.trim();
    t.parse::<f64>()
        .or_else(|_| match t.to_ascii_lowercase().as_str() {
            "true" => Ok(1.0),
            "false" => Ok(0.0),
            _ => Err(()),
        })
        .map_err(|_| format!("cannot convert string '{s}' to a number"))
}

/// Python's repr of a float (shortest round trip; exponent form outside [1e-4, 1e16)).
fn float_string(x: f64, shortest: String) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let a = x.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        // `shortest` has no exponent; rebuild it as d.ddde±XX from its digits.
        let digits: String = shortest.chars().filter(|c| c.is_ascii_digit()).collect();
        let digits = digits.trim_start_matches('0');
        let digits = digits.trim_end_matches('0');
        let e = a.log10().floor() as i32;
        let e = if 10f64.powi(e) > a { e - 1 } else { e };
        let mut m = digits.to_string();
        if m.len() > 1 {
            m.insert(1, '.');
        }
        let sign = if x < 0.0 { "-" } else { "" };
        let es = if e < 0 { "-" } else { "+" };
        return format!("{sign}{m}e{es}{:02}", e.abs());
    }
    if shortest.contains('.') {
        shortest
    } else {
        format!("{shortest}.0")
    }
}

fn encode(d: Decoded, to: DataType, src: DataType, opts: CastOpts) -> Result<Data> {
    let d = match d {
        Decoded::Strs(v) => {
            if to == DataType::String {
                return Ok(Data::Str(v));
            }
            if to.is_float() {
                Decoded::Floats(v.iter().map(|s| parse_f64(s)).collect::<Result<_>>()?)
            } else {
                Decoded::Ints(
                    v.iter()
                        .map(|s| match s.trim().parse::<i128>() {
                            Ok(i) => Ok(i),
                            Err(_) => parse_f64(s).map(|f| float_to_int(f, to == DataType::U64)),
                        })
                        .collect::<Result<_>>()?,
                )
            }
        }
        d => d,
    };
    macro_rules! from {
        ($ints:expr, $floats:expr) => {
            match &d {
                Decoded::Ints(v) => v.iter().map($ints).collect(),
                Decoded::Floats(v) => v.iter().map($floats).collect(),
                Decoded::Strs(_) => unreachable!("strings were parsed above"),
            }
        };
    }
    let u64_target = to == DataType::U64;
    let fi = |x: &f64| float_to_int(*x, u64_target);
    Ok(match to {
        DataType::F32 => Data::F32(from!(|&x| x as f32, |&x| x as f32)),
        DataType::F64 => Data::F64(from!(|&x| x as f64, |&x| x)),
        DataType::F16 => Data::F16(from!(|&x| f16::from_f64(x as f64), |&x| f16::from_f64(x))),
        DataType::BF16 => Data::BF16(from!(|&x| bf16::from_f32(x as f32), |&x| if src
            == DataType::F64
        {
            bf16::from_f64(x)
        } else {
            bf16::from_f32(x as f32)
        })),
        DataType::I8 => Data::I8(from!(|&x| x as i8, |x| fi(x) as i8)),
        DataType::I16 => Data::I16(from!(|&x| x as i16, |x| fi(x) as i16)),
        DataType::I32 => Data::I32(from!(|&x| x as i32, |x| fi(x) as i32)),
        DataType::I64 => Data::I64(from!(|&x| x as i64, |x| fi(x) as i64)),
        DataType::U8 => Data::U8(from!(|&x| x as u8, |x| fi(x) as u8)),
        DataType::U16 => Data::U16(from!(|&x| x as u16, |x| fi(x) as u16)),
        DataType::U32 => Data::U32(from!(|&x| x as u32, |x| fi(x) as u32)),
        DataType::U64 => Data::U64(from!(|&x| x as u64, |x| fi(x) as u64)),
        DataType::Bool => Data::Bool(from!(|&x| x != 0, |&x| x != 0.0)),
        DataType::String => Data::Str(match &d {
            Decoded::Ints(v) if src == DataType::Bool => v
                .iter()
                .map(|&x| if x != 0 { "True" } else { "False" }.to_string())
                .collect(),
            Decoded::Ints(v) => v.iter().map(|x| x.to_string()).collect(),
            Decoded::Floats(v) if src == DataType::F64 => {
                v.iter().map(|&x| float_string(x, format!("{x}"))).collect()
            }
            Decoded::Floats(v) => v
                .iter()
                .map(|&x| float_string(x, format!("{}", x as f32)))
                .collect(),
            Decoded::Strs(_) => unreachable!("strings were parsed above"),
        }),
        dtype => {
            let codes: Vec<u128> = if let Some(f) = MiniFloat::of(dtype) {
                // Saturation only applies to float8 types; float4 always saturates.
                let sat = opts.saturate;
                from!(|&x| f.encode(x as f64, sat) as u128, |&x| f.encode(x, sat)
                    as u128)
            } else if dtype == DataType::F8E8M0 {
                from!(
                    |&x| e8m0_encode(x as f32, opts) as u128,
                    |&x| e8m0_encode(x as f32, opts) as u128
                )
            } else if let Some((bits, _)) = small_int(dtype) {
                let mask = (1i128 << bits) - 1;
                from!(|&x| (x & mask) as u128, |x| (fi(x) & mask) as u128)
            } else {
                return Err(format!("kiln cannot cast to {dtype}"));
            };
            Data::Packed {
                dtype,
                raw: movement::pack(dtype, &codes)?,
            }
        }
    })
}

/// `t` converted to `to`.
pub fn cast(t: &Tensor, to: DataType, opts: CastOpts) -> Result<Tensor> {
    if t.dtype() == to {
        return Ok(t.clone());
    }
    if let Some(d) = fast_cast(&t.data, to) {
        return Ok(Tensor::new(t.shape.clone(), d));
    }
    let d = decode(t)?;
    Ok(Tensor::new(
        t.shape.clone(),
        encode(d, to, t.dtype(), opts)?,
    ))
}

/// The conversions that are one `as` per element (integers among themselves and to floats,
/// f32 and f64 both ways) and f16/bf16 to f32 and f32 to f16, on rayon's threads: the general
/// path goes through an i64 or f64 copy one element at a time (5.8 ms for the int32 -> f32
/// Cast of a 1x96x112x112 ConvInteger output, against 0.3 ms here).
fn fast_cast(d: &Data, to: DataType) -> Option<Data> {
    macro_rules! by_as {
        ($v:expr) => {
            match to {
                DataType::F32 => Some(Data::F32(par_map($v, |x| x as f32))),
                DataType::F64 => Some(Data::F64(par_map($v, |x| x as f64))),
                DataType::I8 => Some(Data::I8(par_map($v, |x| x as i8))),
                DataType::I16 => Some(Data::I16(par_map($v, |x| x as i16))),
                DataType::I32 => Some(Data::I32(par_map($v, |x| x as i32))),
                DataType::I64 => Some(Data::I64(par_map($v, |x| x as i64))),
                DataType::U8 => Some(Data::U8(par_map($v, |x| x as u8))),
                DataType::U16 => Some(Data::U16(par_map($v, |x| x as u16))),
                DataType::U32 => Some(Data::U32(par_map($v, |x| x as u32))),
                DataType::U64 => Some(Data::U64(par_map($v, |x| x as u64))),
                _ => None,
            }
        };
    }
    match d {
        Data::I8(v) => by_as!(v),
        Data::I16(v) => by_as!(v),
        Data::I32(v) => by_as!(v),
        Data::I64(v) => by_as!(v),
        Data::U8(v) => by_as!(v),
        Data::U16(v) => by_as!(v),
        Data::U32(v) => by_as!(v),
        Data::U64(v) => by_as!(v),
        Data::F32(v) => match to {
            DataType::F64 => Some(Data::F64(par_map(v, |x| x as f64))),
            DataType::F16 => Some(Data::F16(par_map(v, f16::from_f32))),
            _ => None,
        },
        Data::F64(v) if to == DataType::F32 => Some(Data::F32(par_map(v, |x| x as f32))),
        Data::F16(v) if to == DataType::F32 => Some(Data::F32(par_map(v, f16::to_f32))),
        Data::BF16(v) if to == DataType::F32 => Some(Data::F32(par_map(v, bf16::to_f32))),
        _ => None,
    }
}

/// `f` over every element, on rayon's threads when there are many.
pub(crate) fn par_map<S: Copy + Sync, D: Send>(
    v: &[S],
    f: impl Fn(S) -> D + Sync + Send,
) -> Vec<D> {
    use rayon::prelude::*;
    if v.len() < 1 << 15 {
        v.iter().map(|&x| f(x)).collect()
    } else {
        v.par_iter().with_min_len(1 << 14).map(|&x| f(x)).collect()
    }
}

/// Floats (computed by a kernel in f64) stored as `to`; integer types round to nearest even
/// and saturate, as ONNX's reference does after interpolating.
pub fn from_f64s_saturating(v: Vec<f64>, shape: Vec<usize>, to: DataType) -> Result<Tensor> {
    let v = if to.is_int() {
        let (lo, hi) = match to {
            DataType::I8 => (i8::MIN as f64, i8::MAX as f64),
            DataType::I16 => (i16::MIN as f64, i16::MAX as f64),
            DataType::I32 => (i32::MIN as f64, i32::MAX as f64),
            DataType::U8 => (0.0, u8::MAX as f64),
            DataType::U16 => (0.0, u16::MAX as f64),
            DataType::U32 => (0.0, u32::MAX as f64),
            DataType::U64 => (0.0, u64::MAX as f64),
            _ => (i64::MIN as f64, i64::MAX as f64),
        };
        v.into_iter()
            .map(|x| x.round_ties_even().clamp(lo, hi))
            .collect()
    } else {
        v
    };
    let src = Tensor::new(shape, Data::F64(v));
    cast(&src, to, CastOpts::default())
}

/// Elements of any numeric tensor as f64.
pub fn to_f64s(t: &Tensor) -> Result<Vec<f64>> {
    match decode(t)? {
        Decoded::Floats(v) => Ok(v),
        Decoded::Ints(v) => Ok(v.into_iter().map(|x| x as f64).collect()),
        Decoded::Strs(_) => Err("expected a numeric tensor, got strings".into()),
    }
}

fn opts(ctx: &KernelCtx) -> Result<CastOpts> {
    let round_up = match ctx.str_attr("round_mode").unwrap_or("up") {
        "up" => E8m0Round::Up,
        "down" => E8m0Round::Down,
        "nearest" => E8m0Round::Nearest,
        other => return Err(format!("unknown round_mode '{other}'")),
    };
    Ok(CastOpts {
        saturate: ctx.int_attr("saturate", 1) != 0,
        round_up,
    })
}

/// The `to` attribute: an ONNX type number, or (Cast-1) a type name.
fn target_type(name: Option<&str>, code: i64) -> Result<DataType> {
    match name {
        Some(n) => type_from_name(n).ok_or(format!("Cast to unknown type {n}")),
        None => i32::try_from(code)
            .ok()
            .and_then(DataType::from_onnx)
            .ok_or(format!("Cast to unknown type {code}")),
    }
}

/// Cast-1 names the target type with a string ("FLOAT", "INT64", ...).
fn type_from_name(name: &str) -> Option<DataType> {
    Some(match name.to_ascii_uppercase().as_str() {
        "FLOAT" => DataType::F32,
        "DOUBLE" => DataType::F64,
        "FLOAT16" => DataType::F16,
        "BFLOAT16" => DataType::BF16,
        "INT8" => DataType::I8,
        "INT16" => DataType::I16,
        "INT32" => DataType::I32,
        "INT64" => DataType::I64,
        "UINT8" => DataType::U8,
        "UINT16" => DataType::U16,
        "UINT32" => DataType::U32,
        "UINT64" => DataType::U64,
        "BOOL" => DataType::Bool,
        "STRING" => DataType::String,
        _ => return None,
    })
}

fn run_cast(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let to = target_type(ctx.str_attr("to"), ctx.int_attr("to", 0))?;
    one(cast(ctx.tensor(0)?, to, opts(ctx)?)?)
}

fn run_cast_like(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let to = ctx.tensor(1)?.dtype();
    one(cast(ctx.tensor(0)?, to, opts(ctx)?)?)
}

#[cfg(test)]
mod kernel_tests {
    use super::*;
    use crate::ops::movement::testing::*;
    use kiln_ir::Attribute;

    fn to(dt: DataType) -> [Attribute; 1] {
        [Attribute::int("to", dt.to_onnx() as i64)]
    }

    #[test]
    fn numeric_casts() {
        let x = f32s(&[5], &[1.7, -1.7, 300.5, f32::NAN, 0.0]);
        let y = run("Cast", &to(DataType::I64), &[x.clone()]).unwrap();
        assert_eq!(y.as_slice::<i64>().unwrap(), &[1, -1, 300, 0, 0]);
        let y = run("Cast", &to(DataType::U8), &[x.clone()]).unwrap();
        assert_eq!(y.as_slice::<u8>().unwrap(), &[1, 255, 44, 0, 0]);
        let y = run("Cast", &to(DataType::Bool), &[x.clone()]).unwrap();
        assert_eq!(
            y.as_slice::<bool>().unwrap(),
            &[true, true, true, true, false]
        );
        let y = run("Cast", &to(DataType::F16), &[x.clone()]).unwrap();
        assert_eq!(y.as_slice::<f16>().unwrap()[2], f16::from_f32(300.5));
        let big = i64s(&[2], &[i64::MAX, -3]);
        let y = run("Cast", &to(DataType::F32), &[big.clone()]).unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[9.223372e18, -3.0]);
        let y = run("Cast", &to(DataType::I8), &[big]).unwrap();
        assert_eq!(y.as_slice::<i8>().unwrap(), &[-1, -3]);
        let y = run("CastLike", &[], &[x.clone(), i64s(&[], &[0])]).unwrap();
        assert_eq!(y.dtype(), DataType::I64);
        // Cast-1 names the type.
        let a = [Attribute::string("to", "INT32")];
        let y = run_opset("Cast", 1, &a, &[Some(x.clone())], 1)
            .unwrap()
            .remove(0);
        assert_eq!(y.dtype(), DataType::I32);
        assert!(run("Cast", &[Attribute::int("to", 1 << 32 | 1)], &[x]).is_err());
    }

    #[test]
    fn string_casts() {
        let x = f32s(&[4], &[1.0, 0.1, 1e-7, f32::INFINITY]);
        let y = run("Cast", &to(DataType::String), &[x]).unwrap();
        let Data::Str(s) = &y.data else { panic!() };
        assert_eq!(s, &["1.0", "0.1", "1e-07", "inf"]);
        let back = run("Cast", &to(DataType::F32), &[y.clone()]).unwrap();
        assert_eq!(
            back.as_slice::<f32>().unwrap(),
            &[1.0, 0.1, 1e-7, f32::INFINITY]
        );
        let t = Tensor::new(vec![2], Data::Str(vec!["-7".into(), "NaN".into()]));
        let y = run("Cast", &to(DataType::F64), &[t.clone()]).unwrap();
        assert!(y.as_slice::<f64>().unwrap()[1].is_nan());
        let y = run("Cast", &to(DataType::I32), &[t]).unwrap();
        assert_eq!(y.as_slice::<i32>().unwrap(), &[-7, 0]);
        let bad = Tensor::new(vec![1], Data::Str(vec!["abc".into()]));
        assert!(run("Cast", &to(DataType::F32), &[bad]).is_err());
    }

    #[test]
    fn minifloats() {
        let e4 = MiniFloat::of(DataType::F8E4M3FN).unwrap();
        assert_eq!(e4.max(), 448.0);
        assert_eq!(e4.encode(448.0, false), 0x7e);
        assert_eq!(e4.encode(1e6, true), 0x7e);
        assert_eq!(e4.encode(1e6, false), 0x7f);
        assert_eq!(e4.encode(-0.5, true), 0xb0);
        let e5 = MiniFloat::of(DataType::F8E5M2).unwrap();
        assert_eq!(e5.max(), 57344.0);
        assert_eq!(e5.encode(f64::INFINITY, false), 0x7c);
        assert_eq!(e5.encode(f64::INFINITY, true), 0x7b);
        let uz = MiniFloat::of(DataType::F8E4M3FNUZ).unwrap();
        assert_eq!(uz.max(), 240.0);
        assert_eq!(uz.encode(-1e-9, true), 0);
        assert!(uz.decode(0x80).is_nan());
        let f4 = MiniFloat::of(DataType::F4E2M1).unwrap();
        assert_eq!(f4.max(), 6.0);
        assert_eq!(f4.encode(0.25, true), 0);
        assert_eq!(f4.encode(-3.5, true), 0xe);
        // Every code decodes and encodes back (NaNs aside).
        for dt in [
            DataType::F8E4M3FN,
            DataType::F8E4M3FNUZ,
            DataType::F8E5M2,
            DataType::F8E5M2FNUZ,
            DataType::F4E2M1,
        ] {
            let f = MiniFloat::of(dt).unwrap();
            for c in 0..(2 * f.sign_bit()) {
                let v = f.decode(c);
                if v.is_nan() || (f.fnuz && c == 0x80) {
                    continue;
                }
                assert_eq!(f.encode(v, false), c, "{dt} code {c:#x} value {v}");
            }
        }
        assert_eq!(e8m0_encode(0.124, CastOpts::default()), 124);
        assert_eq!(e8m0_encode(1.1, CastOpts::default()), 128);
        assert_eq!(e8m0_decode(0), 2f64.powi(-127));
    }

    #[test]
    fn sub_byte_ints() {
        let x = f32s(&[3], &[-9.0, 7.0, 2.5]);
        let y = run("Cast", &to(DataType::I4), &[x]).unwrap();
        assert_eq!(
            y.data,
            Data::Packed {
                dtype: DataType::I4,
                raw: vec![0x77, 0x02]
            }
        );
        let back = run("Cast", &to(DataType::I8), &[y]).unwrap();
        assert_eq!(back.as_slice::<i8>().unwrap(), &[7, 7, 2]);
    }
}
