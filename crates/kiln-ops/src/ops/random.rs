//! Random draws: RandomUniform(Like), RandomNormal(Like) and Bernoulli.
//!
//! With a `seed` the values are those of NumPy's legacy `RandomState(seed)` (as ONNX's
//! reference draws them), so seeded models are reproducible across runs and runtimes that follow
//! the reference; without one, each run draws from a time-derived seed.
use kiln_ir::DataType;

use super::cast::{cast, CastOpts, E8m0Round};
use super::np_random::RandomState;
use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{one, KernelCtx, KernelFn};
use crate::value::{Tensor, Value};

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    match (domain, op_type) {
        ("", "RandomUniform" | "RandomUniformLike" | "RandomNormal" | "RandomNormalLike") => {
            Some(run_dist)
        }
        ("", "Bernoulli") => Some(run_bernoulli),
        _ => None,
    }
}

/// The `*Like` ops and Bernoulli take the input's shape; RandomUniform/RandomNormal the `shape`
/// attribute. The type is `dtype`, else the input's (float for the shape-attribute ops).
pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let like = ctx.op_type.ends_with("Like") || ctx.op_type == "Bernoulli";
    let attr_type = match ctx.attr("dtype") {
        Some(_) => DataType::from_onnx(ctx.int_attr("dtype", 1) as i32),
        None => None,
    };
    if like {
        let dt = attr_type.or(ctx.dtype(0));
        return Ok(vec![Inferred::tensor(dt, ctx.shape(0).map(|s| s.to_vec()))]);
    }
    let shape = ctx
        .ints_attr("shape")
        .map(|s| s.iter().map(|&d| kiln_ir::Dim::Known(d)).collect());
    Ok(vec![Inferred::tensor(
        attr_type.or(Some(DataType::F32)),
        shape,
    )])
}

fn state(ctx: &KernelCtx) -> RandomState {
    match ctx.attrs.iter().find(|a| a.name == "seed") {
        Some(_) => RandomState::new(ctx.float_attr("seed", 0.0) as i64 as u32),
        None => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u32)
                .unwrap_or(0);
            RandomState::new(t)
        }
    }
}

/// NumPy's legacy standard normal (the polar method, which yields values in pairs).
struct Gauss {
    spare: Option<f64>,
}

impl Gauss {
    fn next(&mut self, r: &mut RandomState) -> f64 {
        if let Some(v) = self.spare.take() {
            return v;
        }
        loop {
            let x1 = 2.0 * r.next_f64() - 1.0;
            let x2 = 2.0 * r.next_f64() - 1.0;
            let r2 = x1 * x1 + x2 * x2;
            if r2 < 1.0 && r2 != 0.0 {
                let f = (-2.0 * r2.ln() / r2).sqrt();
                self.spare = Some(f * x1);
                return f * x2;
            }
        }
    }
}

fn out_shape_and_type(ctx: &KernelCtx) -> Result<(Vec<usize>, DataType)> {
    let like = ctx.op_type.ends_with("Like") || ctx.op_type == "Bernoulli";
    let attr_type = match ctx.attr("dtype") {
        Some(_) => {
            let c = ctx.int_attr("dtype", 1);
            Some(
                DataType::from_onnx(c as i32)
                    .ok_or_else(|| format!("dtype {c} is not a tensor type"))?,
            )
        }
        None => None,
    };
    if like {
        let x = ctx.tensor(0)?;
        return Ok((x.shape.clone(), attr_type.unwrap_or(x.dtype())));
    }
    let shape = ctx
        .ints_attr("shape")
        .ok_or("the 'shape' attribute is required")?;
    let shape: Vec<usize> = shape
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("shape has a negative dim {d}")))
        .collect::<Result<_>>()?;
    super::linalg::product(&shape)?;
    Ok((shape, attr_type.unwrap_or(DataType::F32)))
}

fn store(v: Vec<f64>, shape: Vec<usize>, dt: DataType) -> Result<Vec<Value>> {
    let opts = CastOpts {
        saturate: true,
        round_up: E8m0Round::Up,
    };
    one(cast(&Tensor::from_vec(shape, v), dt, opts)?)
}

fn run_dist(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (shape, dt) = out_shape_and_type(ctx)?;
    let n: usize = shape.iter().product();
    let mut r = state(ctx);
    let mut v = super::linalg::filled(n, 0.0f64)?;
    if ctx.op_type.starts_with("RandomUniform") {
        let (lo, hi) = (
            ctx.float_attr("low", 0.0) as f64,
            ctx.float_attr("high", 1.0) as f64,
        );
        for x in &mut v {
            *x = r.next_f64() * (hi - lo) + lo;
        }
    } else {
        let (mean, scale) = (
            ctx.float_attr("mean", 0.0) as f64,
            ctx.float_attr("scale", 1.0) as f64,
        );
        let mut g = Gauss { spare: None };
        for x in &mut v {
            *x = g.next(&mut r) * scale + mean;
        }
    }
    store(v, shape, dt)
}

/// One draw of NumPy's legacy `binomial(1, p)`: the inversion method on the smaller of p and
/// 1 - p (p = 0 draws nothing).
fn bernoulli(r: &mut RandomState, p: f64) -> Result<f64> {
    if !(0.0..=1.0).contains(&p) {
        return Err(format!("probability {p} is outside [0, 1]"));
    }
    if p == 0.0 {
        return Ok(0.0);
    }
    let u = r.next_f64();
    Ok(if p <= 0.5 {
        (u > 1.0 - p) as u8 as f64
    } else {
        1.0 - (u > p) as u8 as f64
    })
}

fn run_bernoulli(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (shape, dt) = out_shape_and_type(ctx)?;
    let p = ctx.tensor(0)?.to_f64s()?;
    let mut r = state(ctx);
    let v = p
        .iter()
        .map(|&p| bernoulli(&mut r, p))
        .collect::<Result<Vec<_>>>()?;
    store(v, shape, dt)
}

#[cfg(test)]
mod tests {
    use kiln_ir::Attribute;

    use crate::ops::movement::testing::*;
    use crate::value::Tensor;

    #[test]
    fn seeded_draws_follow_numpy() {
        // np.random.RandomState(0).randn(3) and .rand(2) * 2 - 1.
        let a = [
            Attribute::float("seed", 0.0),
            Attribute::ints("shape", &[3]),
            Attribute::int("dtype", 11),
        ];
        let out = run_opset("RandomNormal", 22, &a, &[], 1).unwrap().remove(0);
        let got = out.to_f64s().unwrap();
        for (g, w) in got
            .iter()
            .zip([1.764052345967664, 0.4001572083672233, 0.9787379841057392])
        {
            assert!((g - w).abs() < 1e-12, "{g} vs {w}");
        }
    }

    #[test]
    fn bernoulli_by_distribution_shape_and_type() {
        let n = 20000;
        let p = Tensor::from_vec(vec![n], vec![0.3f32; n]);
        let a = [Attribute::float("seed", 7.0), Attribute::int("dtype", 7)];
        let out = run_opset("Bernoulli", 22, &a, &[Some(p.clone())], 1)
            .unwrap()
            .remove(0);
        assert_eq!(out.shape, vec![n]);
        let v = out.to_i64s().unwrap();
        assert!(v.iter().all(|&x| x == 0 || x == 1));
        let mean = v.iter().sum::<i64>() as f64 / n as f64;
        assert!((mean - 0.3).abs() < 0.015, "mean {mean}");
        // Unseeded: still draws of the requested type and shape, at the right rate.
        let out = run_opset("Bernoulli", 22, &[], &[Some(p)], 1)
            .unwrap()
            .remove(0);
        assert_eq!(out.dtype(), kiln_ir::DataType::F32);
        let mean = out.to_f64s().unwrap().iter().sum::<f64>() / n as f64;
        assert!((mean - 0.3).abs() < 0.015, "mean {mean}");
    }

    #[test]
    fn normal_and_uniform_moments() {
        let a = [
            Attribute::ints("shape", &[40000]),
            Attribute::float("mean", 2.0),
            Attribute::float("scale", 3.0),
        ];
        let v = run_opset("RandomNormal", 22, &a, &[], 1)
            .unwrap()
            .remove(0)
            .to_f64s()
            .unwrap();
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
        assert!(
            (mean - 2.0).abs() < 0.06 && (sd - 3.0).abs() < 0.06,
            "{mean} {sd}"
        );
        let a = [
            Attribute::ints("shape", &[40000]),
            Attribute::float("low", -1.0),
            Attribute::float("high", 3.0),
        ];
        let v = run_opset("RandomUniform", 22, &a, &[], 1)
            .unwrap()
            .remove(0)
            .to_f64s()
            .unwrap();
        assert!(v.iter().all(|&x| (-1.0..3.0).contains(&x)));
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        assert!((mean - 1.0).abs() < 0.03, "{mean}");
    }
}
