//! The optimizers of `ai.onnx.preview.training`: Adagrad, Adam and Momentum (standard and
//! Nesterov). Each updates any number of tensors at once: inputs are R (learning rate), T (step
//! count), then the tensors grouped by role (all X, all G, all V/H, ...); outputs are grouped the
//! same way. Arithmetic is in f64; each output keeps its input's type.
use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{KernelCtx, KernelFn};
use crate::value::{Tensor, Value};

pub const DOMAIN: &str = "ai.onnx.preview.training";

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    match (domain, op_type) {
        (DOMAIN, "Adagrad" | "Adam" | "Momentum") => Some(run),
        _ => None,
    }
}

/// Tensors per updated parameter among the inputs, and among the outputs.
fn roles(op: &str) -> (usize, usize) {
    match op {
        "Adam" => (4, 3),
        _ => (3, 2),
    }
}

/// Output `i` is like the state input it replaces.
pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let (per_in, per_out) = roles(ctx.op_type);
    let n = ctx.inputs.len().saturating_sub(2) / per_in;
    Ok((0..ctx.num_outputs)
        .map(|o| {
            let (role, i) = (o / n.max(1), o % n.max(1));
            // X_new is like X; V_new/H_new like V/H (input roles 2.. after X and G).
            let input_role = if role == 0 { 0 } else { role + 1 };
            ctx.same_as(2 + input_role * n + i)
        })
        .take(per_out * n)
        .collect())
}

fn scalar(t: &Tensor, what: &str) -> Result<f64> {
    let v = t.to_f64s()?;
    if v.len() != 1 {
        return Err(format!("{what} must be a scalar, got shape {:?}", t.shape));
    }
    Ok(v[0])
}

fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (per_in, per_out) = roles(ctx.op_type);
    let count = ctx.inputs.len().saturating_sub(2);
    if count == 0 || count % per_in != 0 {
        return Err(format!(
            "{} takes R, T and {per_in} tensors per parameter, got {} inputs",
            ctx.op_type,
            ctx.inputs.len()
        ));
    }
    let n = count / per_in;
    let r = scalar(ctx.tensor(0)?, "R")?;
    let t = scalar(ctx.tensor(1)?, "T")?;
    let f = |name: &str, default: f32| ctx.float_attr(name, default) as f64;
    let mut outs: Vec<Vec<Value>> = vec![Vec::new(); per_out];
    for p in 0..n {
        let ts: Vec<&Tensor> = (0..per_in)
            .map(|role| ctx.tensor(2 + role * n + p))
            .collect::<Result<_>>()?;
        let len = ts[0].len();
        if ts.iter().any(|x| x.shape != ts[0].shape) {
            return Err(format!(
                "the tensors of parameter {p} differ in shape: {:?}",
                ts.iter().map(|x| x.shape.clone()).collect::<Vec<_>>()
            ));
        }
        let vals: Vec<Vec<f64>> = ts.iter().map(|x| x.to_f64s()).collect::<Result<_>>()?;
        let mut res = vec![vec![0f64; len]; per_out];
        for e in 0..len {
            let (x, g) = (vals[0][e], vals[1][e]);
            match ctx.op_type {
                "Adagrad" => {
                    let h = vals[2][e];
                    let lr = r / (1.0 + t * f("decay_factor", 0.0));
                    let gr = f("norm_coefficient", 0.0) * x + g;
                    let h2 = h + gr * gr;
                    res[0][e] = x - lr * gr / (h2.sqrt() + f("epsilon", 1e-6));
                    res[1][e] = h2;
                }
                "Adam" => {
                    let (v, h) = (vals[2][e], vals[3][e]);
                    let (alpha, beta) = (f("alpha", 0.9), f("beta", 0.999));
                    let gr = f("norm_coefficient", 0.0) * x + g;
                    let v2 = alpha * v + (1.0 - alpha) * gr;
                    let h2 = beta * h + (1.0 - beta) * gr * gr;
                    let lr = if t > 0.0 {
                        r * (1.0 - beta.powf(t)).sqrt() / (1.0 - alpha.powf(t))
                    } else {
                        r
                    };
                    let xn = x - lr * (v2 / (h2.sqrt() + f("epsilon", 1e-6)));
                    res[0][e] = (1.0 - f("norm_coefficient_post", 0.0)) * xn;
                    res[1][e] = v2;
                    res[2][e] = h2;
                }
                _ => {
                    let v = vals[2][e];
                    let (alpha, beta) = (f("alpha", 0.0), f("beta", 0.0));
                    let gr = f("norm_coefficient", 0.0) * x + g;
                    let b = if t > 0.0 { beta } else { 1.0 };
                    let v2 = alpha * v + b * gr;
                    res[0][e] = match ctx.str_attr("mode").unwrap_or("standard") {
                        "standard" => x - r * v2,
                        "nesterov" => x - r * (gr + alpha * v2),
                        m => return Err(format!("mode must be standard or nesterov, got '{m}'")),
                    };
                    res[1][e] = v2;
                }
            }
        }
        for (k, v) in res.into_iter().enumerate() {
            // X_new is like X; the states like their inputs (V, H after X and G).
            let like = if k == 0 { ts[0] } else { ts[k + 1] };
            let data = super::linalg::store_f64(v, like.dtype())?;
            outs[k].push(Value::Tensor(Tensor::new(like.shape.clone(), data)));
        }
    }
    Ok(outs.into_iter().flatten().collect())
}
