//! Kernels of the one-input element-wise ops: activations and math functions (computed in f64
//! and rounded to the element type), exact sign/abs/neg/relu/clip on every numeric type, and the
//! boolean and bitwise ones.
use crate::kernel::{one, KernelCtx, KernelFn, Result};
use crate::ops::num::Num;
use crate::value::{Data, Tensor, Value};
use crate::with_numeric;
use kiln_kernels::vecmath::Unary;
use kiln_kernels::Activation;

pub fn kernel(op_type: &str) -> Option<KernelFn> {
    Some(match op_type {
        "Identity" => identity,
        "Not" => not,
        "BitwiseNot" => bitwise_not,
        "IsNaN" | "IsInf" => nan_inf,
        "Clip" => clip,
        "Abs" | "Neg" | "Sign" | "Relu" => exact,
        "Exp" | "Log" | "Sqrt" | "Reciprocal" | "Floor" | "Ceil" | "Round" | "Erf" | "Sin"
        | "Cos" | "Tan" | "Asin" | "Acos" | "Atan" | "Sinh" | "Cosh" | "Asinh" | "Acosh"
        | "Atanh" | "Sigmoid" | "Tanh" | "Softplus" | "Softsign" | "Elu" | "Selu" | "Celu"
        | "LeakyRelu" | "ThresholdedRelu" | "HardSigmoid" | "HardSwish" | "Mish" | "Gelu"
        | "Shrink" | "Swish" => math,
        _ => return None,
    })
}

fn identity(ctx: &KernelCtx) -> Result<Vec<Value>> {
    Ok(vec![ctx.value(0)?.clone()])
}

fn not(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let t = ctx.tensor(0)?;
    match &t.data {
        Data::Bool(v) => one(Tensor::from_vec(
            t.shape.clone(),
            v.iter().map(|x| !x).collect(),
        )),
        d => Err(format!("Not takes bool, got {}", d.dtype())),
    }
}

fn bitwise_not(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let t = ctx.tensor(0)?;
    let data = match &t.data {
        Data::I8(v) => Data::I8(v.iter().map(|x| !x).collect()),
        Data::I16(v) => Data::I16(v.iter().map(|x| !x).collect()),
        Data::I32(v) => Data::I32(v.iter().map(|x| !x).collect()),
        Data::I64(v) => Data::I64(v.iter().map(|x| !x).collect()),
        Data::U8(v) => Data::U8(v.iter().map(|x| !x).collect()),
        Data::U16(v) => Data::U16(v.iter().map(|x| !x).collect()),
        Data::U32(v) => Data::U32(v.iter().map(|x| !x).collect()),
        Data::U64(v) => Data::U64(v.iter().map(|x| !x).collect()),
        d => return Err(format!("BitwiseNot takes integers, got {}", d.dtype())),
    };
    one(Tensor::new(t.shape.clone(), data))
}

fn nan_inf(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let t = ctx.tensor(0)?;
    if !t.dtype().is_float() {
        return Err(format!("{} takes floats, got {}", ctx.op_type, t.dtype()));
    }
    if let (Data::F32(v), "IsNaN") = (&t.data, ctx.op_type) {
        let out: Vec<bool> = v.iter().map(|x| x.is_nan()).collect();
        return one(Tensor::from_vec(t.shape.clone(), out));
    }
    let v = t.to_f64s()?;
    let (neg, pos) = (
        ctx.int_attr("detect_negative", 1) != 0,
        ctx.int_attr("detect_positive", 1) != 0,
    );
    let out: Vec<bool> = if ctx.op_type == "IsNaN" {
        v.iter().map(|x| x.is_nan()).collect()
    } else {
        v.iter()
            .map(|x| x.is_infinite() && ((*x > 0.0 && pos) || (*x < 0.0 && neg)))
            .collect()
    };
    one(Tensor::from_vec(t.shape.clone(), out))
}

fn exact_map<T: Num>(op: &str, v: &[T]) -> Vec<T> {
    let z = T::zero();
    match op {
        "Abs" => v
            .iter()
            .map(|&x| if x < z { z.sub(x) } else { x })
            .collect(),
        "Neg" => v.iter().map(|&x| z.sub(x)).collect(),
        "Relu" => v.iter().map(|&x| if x < z { z } else { x }).collect(),
        _ => v
            .iter()
            .map(|&x| {
                if x > z {
                    T::one()
                } else if x < z {
                    z.sub(T::one())
                } else {
                    x // zero, or NaN
                }
            })
            .collect(),
    }
}

/// Abs, Neg, Sign, Relu: exact on integers (no detour through f64).
fn exact(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let t = ctx.tensor(0)?;
    let op = ctx.op_type;
    let data = with_numeric!(&t.data, v => crate::Elem::wrap(exact_map(op, v)), _ => return Err(format!("{op} does not take {}", t.dtype())));
    one(Tensor::new(t.shape.clone(), data))
}

fn clip_map<T: Num>(v: &[T], lo: Option<T>, hi: Option<T>) -> Vec<T> {
    v.iter()
        .map(|&x| {
            let mut y = x;
            if let Some(l) = lo {
                if y < l {
                    y = l;
                }
            }
            if let Some(h) = hi {
                if y > h {
                    y = h;
                }
            }
            y
        })
        .collect()
}

fn clip(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let t = ctx.tensor(0)?;
    let bound = |i: usize, attr: &str, default: f32| -> Result<Option<f64>> {
        if ctx.opset < 11 {
            return Ok(Some(ctx.float_attr(attr, default) as f64));
        }
        match ctx.opt_tensor(i)? {
            None => Ok(None),
            Some(b) if b.len() == 1 => Ok(Some(b.to_f64s()?[0])),
            Some(b) => Err(format!(
                "Clip {attr} must be a scalar, got shape {:?}",
                b.shape
            )),
        }
    };
    let lo = bound(1, "min", f32::MIN)?;
    let hi = bound(2, "max", f32::MAX)?;
    // Integer bounds are read exactly, not through f64.
    let data = match &t.data {
        // The common float case vectorized and threaded; NaN passes as clip_map lets it.
        Data::F32(v) => {
            let l = lo.map_or(f32::NEG_INFINITY, |b| b as f32);
            let h = hi.map_or(f32::INFINITY, |b| b as f32);
            Data::F32(crate::ops::cast::par_map(v, move |x| {
                let y = if x < l { l } else { x };
                if y > h {
                    h
                } else {
                    y
                }
            }))
        }
        Data::I64(v) => {
            let int = |i: usize| -> Result<Option<i64>> {
                Ok(match ctx.opt_tensor(i)? {
                    Some(b) => b.to_i64s()?.first().copied(),
                    None => None,
                })
            };
            Data::I64(clip_map(v, int(1)?, int(2)?))
        }
        d => {
            with_numeric!(d, v => crate::Elem::wrap(clip_map(v, lo.map(Num::from_f64), hi.map(Num::from_f64))), _ => return Err(format!("Clip does not take {}", t.dtype())))
        }
    };
    one(Tensor::new(t.shape.clone(), data))
}

fn erf(x: f64) -> f64 {
    libm::erf(x)
}

/// A GELU-family function over f32, vectorized and threaded (erf within 2.5e-7, tested in
/// kiln-kernels).
fn map_f32(f: Unary, v: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; v.len()];
    kiln_kernels::vecmath::map_bias(f, v, &[], &mut out);
    out
}

/// The scalar function of a math op, with its attributes read.
fn math_fn(ctx: &KernelCtx) -> Result<Box<dyn Fn(f64) -> f64>> {
    let a = |name: &str, d: f32| ctx.float_attr(name, d) as f64;
    Ok(match ctx.op_type {
        "Exp" => Box::new(f64::exp),
        "Log" => Box::new(f64::ln),
        "Sqrt" => Box::new(f64::sqrt),
        "Reciprocal" => Box::new(|x| 1.0 / x),
        "Floor" => Box::new(f64::floor),
        "Ceil" => Box::new(f64::ceil),
        "Round" => Box::new(f64::round_ties_even),
        "Erf" => Box::new(erf),
        "Sin" => Box::new(f64::sin),
        "Cos" => Box::new(f64::cos),
        "Tan" => Box::new(f64::tan),
        "Asin" => Box::new(f64::asin),
        "Acos" => Box::new(f64::acos),
        "Atan" => Box::new(f64::atan),
        "Sinh" => Box::new(f64::sinh),
        "Cosh" => Box::new(f64::cosh),
        "Asinh" => Box::new(f64::asinh),
        "Acosh" => Box::new(f64::acosh),
        "Atanh" => Box::new(f64::atanh),
        "Sigmoid" => Box::new(|x: f64| {
            if x >= 0.0 {
                1.0 / (1.0 + (-x).exp())
            } else {
                let e = x.exp();
                e / (1.0 + e)
            }
        }),
        "Tanh" => Box::new(f64::tanh),
        "Softplus" => Box::new(softplus),
        "Softsign" => Box::new(|x: f64| x / (1.0 + x.abs())),
        "Elu" => {
            let al = a("alpha", 1.0);
            Box::new(move |x: f64| if x < 0.0 { al * (x.exp() - 1.0) } else { x })
        }
        "Selu" => {
            let (al, g) = (a("alpha", 1.673_263_2), a("gamma", 1.050_701));
            Box::new(move |x: f64| {
                if x <= 0.0 {
                    g * (al * x.exp() - al)
                } else {
                    g * x
                }
            })
        }
        "Celu" => {
            let al = a("alpha", 1.0);
            Box::new(move |x: f64| x.max(0.0) + (al * ((x / al).exp() - 1.0)).min(0.0))
        }
        "LeakyRelu" => {
            let al = a("alpha", 0.01);
            Box::new(move |x: f64| if x < 0.0 { al * x } else { x })
        }
        "ThresholdedRelu" => {
            let al = a("alpha", 1.0);
            Box::new(move |x: f64| if x > al { x } else { 0.0 })
        }
        "HardSigmoid" => {
            let (al, b) = (a("alpha", 0.2), a("beta", 0.5));
            Box::new(move |x: f64| (al * x + b).clamp(0.0, 1.0))
        }
        "HardSwish" => Box::new(|x: f64| x * (x / 6.0 + 0.5).clamp(0.0, 1.0)),
        "Swish" => {
            let al = a("alpha", 1.0);
            Box::new(move |x: f64| x / (1.0 + (-al * x).exp()))
        }
        "Mish" => Box::new(|x: f64| x * softplus(x).tanh()),
        "Gelu" => match ctx.str_attr("approximate").unwrap_or("none") {
            "none" => Box::new(|x: f64| 0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))),
            "tanh" => Box::new(|x: f64| {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
            }),
            other => return Err(format!("unknown Gelu approximation '{other}'")),
        },
        "Shrink" => {
            let (bias, l) = (a("bias", 0.0), a("lambd", 0.5));
            Box::new(move |x: f64| {
                if x < -l {
                    x + bias
                } else if x > l {
                    x - bias
                } else {
                    0.0
                }
            })
        }
        other => return Err(format!("{other} is not a math op")),
    })
}

fn softplus(x: f64) -> f64 {
    if x > 30.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

fn map_via_f64<T: Num>(v: &[T], f: &dyn Fn(f64) -> f64) -> Vec<T> {
    v.iter().map(|&x| T::from_f64(f(x.to_f64()))).collect()
}

fn math(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let t = ctx.tensor(0)?;
    let f = math_fn(ctx)?;
    // f32 is the hot type: compute in f32 where f32 holds the result just as well.
    let fast = match ctx.op_type {
        "Sigmoid" => Some(Activation::Sigmoid),
        "LeakyRelu" => Some(Activation::LeakyRelu(ctx.float_attr("alpha", 0.01))),
        "HardSigmoid" => Some(Activation::HardSigmoid(
            ctx.float_attr("alpha", 0.2),
            ctx.float_attr("beta", 0.5),
        )),
        _ => None,
    };
    let data = match &t.data {
        Data::F32(v) if ctx.op_type == "Relu" => Data::F32(map_f32(Unary::Relu, v)),
        // The vectorized f32 forms the fused convolutions use (Sigmoid within 4e-7).
        Data::F32(v) if fast.is_some() => {
            let mut out = v.clone();
            fast.expect("checked").apply_slice(&mut out);
            Data::F32(out)
        }
        Data::F32(v) if ctx.op_type == "Erf" => Data::F32(map_f32(Unary::Erf, v)),
        Data::F32(v) if ctx.op_type == "Gelu" => {
            let f = match ctx.str_attr("approximate").unwrap_or("none") {
                "tanh" => Unary::GeluTanh,
                _ => Unary::Gelu,
            };
            Data::F32(map_f32(f, v))
        }
        d => {
            with_numeric!(d, v => crate::Elem::wrap(map_via_f64(v, &*f)), _ => return Err(format!("{} does not take {}", ctx.op_type, t.dtype())))
        }
    };
    one(Tensor::new(t.shape.clone(), data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_erf_is_within_2_5e7() {
        for f in [Unary::Erf, Unary::Gelu, Unary::GeluTanh] {
            let x: Vec<f32> = (-300..300).map(|i| i as f32 / 37.0).collect();
            let want = |v: f64| match f {
                Unary::Erf => erf(v),
                Unary::Gelu => 0.5 * v * (1.0 + erf(v / std::f64::consts::SQRT_2)),
                _ => {
                    let c = (2.0 / std::f64::consts::PI).sqrt();
                    0.5 * v * (1.0 + (c * (v + 0.044715 * v * v * v)).tanh())
                }
            };
            for (g, &v) in map_f32(f, &x).iter().zip(&x) {
                let w = want(v as f64);
                assert!((*g as f64 - w).abs() < 1e-6 * (1.0 + w.abs()), "{f:?}({v})");
            }
        }
    }
    use kiln_ir::Attribute;

    fn run(op: &str, attrs: &[Attribute], x: Tensor) -> Tensor {
        let v = Value::Tensor(x);
        let ctx = KernelCtx {
            op_type: op,
            domain: "",
            opset: 17,
            attrs,
            inputs: vec![Some(&v)],
            num_outputs: 1,
            subgraphs: None,
            donated: Default::default(),
        };
        kernel(op).unwrap()(&ctx)
            .unwrap()
            .remove(0)
            .into_tensor()
            .unwrap()
    }

    #[test]
    fn activations() {
        let x = Tensor::from_vec(vec![4], vec![-2.0f32, -0.5, 0.0, 3.0]);
        let r = run("Relu", &[], x.clone());
        assert_eq!(r.as_slice::<f32>().unwrap(), &[0.0, 0.0, 0.0, 3.0]);
        let r = run("LeakyRelu", &[Attribute::float("alpha", 0.1)], x.clone());
        assert_eq!(r.as_slice::<f32>().unwrap(), &[-0.2, -0.05, 0.0, 3.0]);
        let r = run("HardSigmoid", &[], x.clone());
        let want = [0.1f32, 0.4, 0.5, 1.0];
        for (g, w) in r.as_slice::<f32>().unwrap().iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{g} vs {w}");
        }
        let r = run(
            "Round",
            &[],
            Tensor::from_vec(vec![3], vec![0.5f32, 1.5, -2.5]),
        );
        assert_eq!(r.as_slice::<f32>().unwrap(), &[0.0, 2.0, -2.0]);
    }

    #[test]
    fn integer_ops_are_exact() {
        let big = (1i64 << 60) + 1;
        let r = run("Neg", &[], Tensor::from_vec(vec![2], vec![big, -3]));
        assert_eq!(r.as_slice::<i64>().unwrap(), &[-big, 3]);
        let r = run("Abs", &[], Tensor::from_vec(vec![2], vec![-5i8, 4]));
        assert_eq!(r.as_slice::<i8>().unwrap(), &[5, 4]);
    }
}
