//! com.microsoft activations that ONNX Runtime writes into optimized models: QuickGelu, Gelu,
//! BiasGelu, FastGelu. f32 runs on kiln-kernels' vectorized forms; other types are computed in
//! f64 per element (f16/bf16 round back).
use kiln_kernels::vecmath::Unary;

use crate::kernel::{one, zip_broadcast, KernelCtx, KernelFn};
use crate::ops::linalg::{float_dispatch, sigmoid, Real};
use crate::value::{Data, Tensor, Value};

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    let f: KernelFn = match (domain, op_type) {
        ("com.microsoft", "QuickGelu") => run_quick_gelu,
        ("com.microsoft", "Gelu") => run_gelu,
        ("com.microsoft", "BiasGelu") => run_bias_gelu,
        ("com.microsoft", "FastGelu") => run_fast_gelu,
        _ => return None,
    };
    Some(f)
}

/// erf(x), accurate to a few ulps in f64: the everywhere-positive series
/// `2/sqrt(pi) e^(-x^2) sum 2^n x^(2n+1) / (1 * 3 * ... * (2n+1))` for |x| < 2.5, the
/// continued fraction of erfc beyond.
pub(crate) fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let a = x.abs();
    let v = if a < 2.5 {
        erf_series(a)
    } else {
        1.0 - erfc_cf(a)
    };
    v.copysign(x)
}

/// erfc(x) = 1 - erf(x), without cancellation for large x.
pub(crate) fn erfc(x: f64) -> f64 {
    if x >= 2.5 {
        erfc_cf(x)
    } else {
        1.0 - erf(x)
    }
}

fn erf_series(a: f64) -> f64 {
    let mut sum = 0.0;
    let mut term = a;
    let mut n = 0.0;
    while term > 1e-17 * sum || n == 0.0 {
        sum += term;
        n += 1.0;
        term *= 2.0 * a * a / (2.0 * n + 1.0);
        if n > 200.0 {
            break;
        }
    }
    std::f64::consts::FRAC_2_SQRT_PI * (-a * a).exp() * sum
}

fn erfc_cf(a: f64) -> f64 {
    let mut t = a;
    for k in (1..=60).rev() {
        t = a + (k as f64 / 2.0) / t;
    }
    (-a * a).exp() / std::f64::consts::PI.sqrt() / t
}

/// `0.5 x (1 + erf(x / sqrt 2))`, through erfc for negative x.
pub(crate) fn gelu(x: f64) -> f64 {
    let z = x * std::f64::consts::FRAC_1_SQRT_2;
    if x >= 0.0 {
        0.5 * x * (1.0 + erf(z))
    } else {
        0.5 * x * erfc(-z)
    }
}

/// The tanh approximation of Gelu.
fn fast_gelu(x: f64) -> f64 {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
}

fn unary<T: Real>(x: &Tensor, f: &dyn Fn(f64) -> f64) -> Result<Data, String> {
    let v = T::load(x)?;
    Ok(T::store(
        v.iter().map(|a| T::of(f(a.f64()))).collect(),
        x.dtype(),
    ))
}

fn binary<T: Real>(
    x: &Tensor,
    b: &Tensor,
    f: &dyn Fn(f64) -> f64,
) -> Result<(Vec<usize>, Data), String> {
    if b.dtype() != x.dtype() {
        return Err(format!(
            "bias has type {}, expected {}",
            b.dtype(),
            x.dtype()
        ));
    }
    let (xv, bv) = (T::load(x)?, T::load(b)?);
    let (shape, y) = zip_broadcast(&xv, &x.shape, &bv, &b.shape, |a, c| {
        T::of(f(a.f64() + c.f64()))
    })?;
    if shape != x.shape {
        return Err(format!(
            "bias of shape {:?} does not broadcast to X {:?}",
            b.shape, x.shape
        ));
    }
    Ok((shape, T::store(y, x.dtype())))
}

/// f32 through kiln-kernels' vectorized forms (erf within 2.5e-7), when X is f32 and any bias
/// is an f32 vector as long as X's last axis; `None` leaves the node to the f64 path.
fn fast(f: Unary, x: &Tensor, bias: Option<&Tensor>) -> Option<Result<Vec<Value>, String>> {
    let Data::F32(xv) = &x.data else { return None };
    let bv: &[f32] = match bias.map(|b| (&b.data, &b.shape)) {
        None => &[],
        Some((Data::F32(v), shape))
            if shape.len() == 1 && x.shape.last() == Some(&v.len()) && !v.is_empty() =>
        {
            v
        }
        Some(_) => return None,
    };
    let mut out = vec![0f32; xv.len()];
    kiln_kernels::vecmath::map_bias(f, xv, bv, &mut out);
    Some(one(Tensor::new(x.shape.clone(), Data::F32(out))))
}

fn run_quick_gelu(ctx: &KernelCtx) -> Result<Vec<Value>, String> {
    let x = ctx.tensor(0)?;
    if let Some(r) = fast(Unary::QuickGelu(ctx.float_attr("alpha", 1.702)), x, None) {
        return r;
    }
    let alpha = ctx.float_attr("alpha", 1.702) as f64;
    let f = move |v: f64| v * sigmoid(alpha * v);
    let data = float_dispatch!(x.dtype(), unary(x, &f))?;
    one(Tensor::new(x.shape.clone(), data))
}

fn run_gelu(ctx: &KernelCtx) -> Result<Vec<Value>, String> {
    let x = ctx.tensor(0)?;
    if let Some(r) = fast(Unary::Gelu, x, None) {
        return r;
    }
    let data = float_dispatch!(x.dtype(), unary(x, &gelu))?;
    one(Tensor::new(x.shape.clone(), data))
}

fn run_bias_gelu(ctx: &KernelCtx) -> Result<Vec<Value>, String> {
    let x = ctx.tensor(0)?;
    let b = ctx.tensor(1)?;
    if let Some(r) = fast(Unary::Gelu, x, Some(b)) {
        return r;
    }
    let (shape, data) = float_dispatch!(x.dtype(), binary(x, b, &gelu))?;
    one(Tensor::new(shape, data))
}

fn run_fast_gelu(ctx: &KernelCtx) -> Result<Vec<Value>, String> {
    let x = ctx.tensor(0)?;
    if let Some(r) = fast(Unary::GeluTanh, x, ctx.opt_tensor(1)?) {
        return r;
    }
    match ctx.opt_tensor(1)? {
        Some(b) => {
            let (shape, data) = float_dispatch!(x.dtype(), binary(x, b, &fast_gelu))?;
            one(Tensor::new(shape, data))
        }
        None => {
            let data = float_dispatch!(x.dtype(), unary(x, &fast_gelu))?;
            one(Tensor::new(x.shape.clone(), data))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_ir::Attribute;

    fn call(op: &str, ins: &[Tensor], attrs: &[Attribute]) -> Result<Tensor, String> {
        let vals: Vec<Value> = ins.iter().cloned().map(Value::Tensor).collect();
        let ctx = KernelCtx {
            op_type: op,
            domain: "com.microsoft",
            opset: 1,
            attrs,
            inputs: vals.iter().map(Some).collect(),
            num_outputs: 1,
            subgraphs: None,
            donated: Default::default(),
        };
        Ok(kernel("com.microsoft", op).unwrap()(&ctx)?
            .remove(0)
            .into_tensor()
            .unwrap())
    }

    #[test]
    fn erf_values() {
        // Reference values of erf and erfc.
        for (x, e) in [
            (0.0, 0.0),
            (0.1, 0.1124629160182849),
            (0.5, 0.5204998778130465),
            (1.0, 0.8427007929497149),
            (2.0, 0.9953222650189527),
            (3.0, 0.9999779095030014),
            (-1.5, -0.9661051464753108),
        ] {
            assert!((erf(x) - e).abs() < 1e-15, "erf({x})");
        }
        assert!((erfc(4.0) / 1.541725790028002e-08 - 1.0).abs() < 1e-13);
        assert!((erfc(10.0) / 2.088487583762545e-45 - 1.0).abs() < 1e-13);
        assert_eq!(erf(30.0), 1.0);
        assert!(erf(f64::NAN).is_nan());
    }

    #[test]
    fn gelus() {
        let x = Tensor::from_vec(vec![2, 2], vec![-1.0f32, 0.0, 1.0, 2.0]);
        let b = Tensor::from_vec(vec![2], vec![1.0f32, 0.0]);
        let y = call("Gelu", &[x.clone()], &[]).unwrap();
        let want = [
            -0.15865525393145707,
            0.0,
            0.8413447460685429,
            1.9544997361036416,
        ];
        for (a, w) in y.as_slice::<f32>().unwrap().iter().zip(want) {
            assert!((*a as f64 - w).abs() < 1e-6);
        }
        let y = call("BiasGelu", &[x.clone(), b.clone()], &[]).unwrap();
        let want = [0.0, 0.0, 1.9544997361036416, 1.9544997361036416];
        for (a, w) in y.as_slice::<f32>().unwrap().iter().zip(want) {
            assert!((*a as f64 - w).abs() < 1e-6);
        }
        let y = call("FastGelu", &[x.clone(), b], &[]).unwrap();
        let v = y.as_slice::<f32>().unwrap();
        assert!((v[2] as f64 - 1.9545976940871754).abs() < 1e-6);
        let y = call("QuickGelu", &[x.clone()], &[Attribute::float("alpha", 1.0)]).unwrap();
        let v = y.as_slice::<f32>().unwrap();
        assert!((v[2] as f64 - 1.0 / (1.0 + (-1.0f64).exp())).abs() < 1e-6);
        let y = call("QuickGelu", &[x.clone()], &[]).unwrap();
        let v = y.as_slice::<f32>().unwrap();
        assert!((v[3] as f64 - 2.0 / (1.0 + (-3.404f64).exp())).abs() < 1e-6);
        let bad = Tensor::from_vec(vec![3], vec![1.0f32; 3]);
        assert!(call("BiasGelu", &[x, bad], &[]).is_err());
    }
}
