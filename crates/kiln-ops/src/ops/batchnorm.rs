//! BatchNormalization: Y keeps X's type and shape; training-mode outputs are per channel.
use kiln_ir::Dim;

use kiln_ir::AttrList;

use super::linalg::{float_dispatch, load_any, store_f64, Real};
use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::KernelCtx;
use crate::value::{Data, Tensor, Value};

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let mut out = vec![ctx.same_as(0)];
    let channels = ctx
        .shape(0)
        .and_then(|s| s.get(1).cloned())
        .unwrap_or(Dim::Unknown);
    for _ in 1..ctx.num_outputs {
        out.push(Inferred::tensor(ctx.dtype(0), Some(vec![channels.clone()])));
    }
    Ok(out)
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    match (domain, op_type) {
        ("", "BatchNormalization") => Some(run),
        _ => None,
    }
}

/// Before opset 9, `spatial = 0` asked for statistics per activation, which kiln does not
/// implement.
pub fn check(attrs: &[kiln_ir::Attribute], opset: i64) -> Result<()> {
    if opset < 9 && attrs.get_int("spatial").unwrap_or(1) == 0 {
        return Err("BatchNormalization with spatial = 0 is not supported".into());
    }
    Ok(())
}

fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    check(ctx.attrs, ctx.opset)?;
    let x = ctx.tensor(0)?;
    if x.rank() < 2 {
        return Err(format!("X must have rank >= 2, got shape {:?}", x.shape));
    }
    let c = x.shape[1];
    let names = ["scale", "B", "input_mean", "input_var"];
    let mut params = Vec::with_capacity(4);
    for (i, name) in names.iter().enumerate() {
        let t = ctx.tensor(i + 1)?;
        if t.len() != c || t.rank() != 1 {
            return Err(format!(
                "{name} has shape {:?}, expected [{c}] (X's channels)",
                t.shape
            ));
        }
        params.push(t);
    }
    let training = if ctx.opset >= 14 {
        ctx.int_attr("training_mode", 0) != 0
    } else {
        ctx.num_outputs > 1
    };
    let eps = ctx.float_attr("epsilon", 1e-5) as f64;
    let momentum = ctx.float_attr("momentum", 0.9) as f64;
    let p: Vec<Vec<f64>> = params
        .iter()
        .map(|t| load_any::<f64>(t))
        .collect::<Result<_>>()?;
    if let (Data::F32(xv), false) = (&x.data, training) {
        // Inference in f32: one multiply-add per value, the factors computed in f64 as below.
        let (a, b) = factors(&p, &p[2], &p[3], eps);
        let a: Vec<f32> = a.iter().map(|&v| v as f32).collect();
        let b: Vec<f32> = b.iter().map(|&v| v as f32).collect();
        let inner: usize = x.shape[2..].iter().product();
        let mut y = vec![0f32; xv.len()];
        kiln_kernels::vecmath::channel_affine(xv, inner, &a, &b, &mut y);
        let mut out = vec![Value::Tensor(Tensor::new(x.shape.clone(), Data::F32(y)))];
        // Outside training the running statistics are the inputs, unchanged.
        for v in [&p[2], &p[3]].into_iter().take(ctx.num_outputs - 1) {
            out.push(Value::Tensor(Tensor::new(
                vec![c],
                store_f64(v.clone(), params[2].dtype())?,
            )));
        }
        if out.len() < ctx.num_outputs {
            return Err(format!(
                "BatchNormalization has {} outputs here, the node asks for {}",
                out.len(),
                ctx.num_outputs
            ));
        }
        return Ok(out);
    }
    let (y, stats) = float_dispatch!(x.dtype(), normalize(x, &p, eps, training))?;
    let mut out = vec![Value::Tensor(Tensor::new(x.shape.clone(), y))];
    if ctx.num_outputs > 1 {
        // Outside training the running statistics are the inputs, unchanged.
        let (mean, var) = stats.unwrap_or_else(|| (p[2].clone(), p[3].clone()));
        let dt = params[2].dtype();
        let m = if training { momentum } else { 1.0 };
        let running = |cur: &[f64], input: &[f64]| -> Vec<f64> {
            cur.iter()
                .zip(input)
                .map(|(&c, &i)| i * m + c * (1.0 - m))
                .collect()
        };
        let rm = running(&mean, &p[2]);
        let rv = running(&var, &p[3]);
        let mut extra = vec![rm, rv];
        if ctx.opset < 14 {
            // saved_mean and saved_var (the batch statistics).
            extra.push(mean);
            extra.push(var);
        }
        for v in extra.into_iter().take(ctx.num_outputs - 1) {
            out.push(Value::Tensor(Tensor::new(vec![c], store_f64(v, dt)?)));
        }
    }
    if out.len() < ctx.num_outputs {
        return Err(format!(
            "BatchNormalization has {} outputs here, the node asks for {}",
            out.len(),
            ctx.num_outputs
        ));
    }
    Ok(out)
}

type Stats = Option<(Vec<f64>, Vec<f64>)>;

/// `y = x·a + b` per channel: `a = scale / sqrt(var + eps)`, `b = bias - mean·a`.
fn factors(p: &[Vec<f64>], mean: &[f64], var: &[f64], eps: f64) -> (Vec<f64>, Vec<f64>) {
    let (scale, bias) = (&p[0], &p[1]);
    let a: Vec<f64> = (0..scale.len())
        .map(|i| scale[i] / (var[i] + eps).sqrt())
        .collect();
    let b = (0..scale.len()).map(|i| bias[i] - mean[i] * a[i]).collect();
    (a, b)
}

/// Y per channel; in training mode with the batch's mean and (population) variance, which are
/// returned too.
fn normalize<T: Real>(
    x: &Tensor,
    p: &[Vec<f64>],
    eps: f64,
    training: bool,
) -> Result<(Data, Stats)> {
    let xv = T::load(x)?;
    let (n, c) = (x.shape[0], x.shape[1]);
    let inner: usize = x.shape[2..].iter().product();
    let (mean, var, stats) = if training {
        let count = (n * inner) as f64;
        let mut mean = vec![0.0f64; c];
        let mut var = vec![0.0f64; c];
        if count > 0.0 {
            for (i, plane) in xv.chunks(inner.max(1)).enumerate().take(n * c) {
                mean[i % c] += plane.iter().map(|v| v.f64()).sum::<f64>();
            }
            mean.iter_mut().for_each(|m| *m /= count);
            for (i, plane) in xv.chunks(inner.max(1)).enumerate().take(n * c) {
                let m = mean[i % c];
                var[i % c] += plane.iter().map(|v| (v.f64() - m).powi(2)).sum::<f64>();
            }
            var.iter_mut().for_each(|v| *v /= count);
        }
        (mean.clone(), var.clone(), Some((mean, var)))
    } else {
        (p[2].clone(), p[3].clone(), None)
    };
    let (a, b) = factors(p, &mean, &var, eps);
    let a: Vec<T> = a.into_iter().map(T::of).collect();
    let b: Vec<T> = b.into_iter().map(T::of).collect();
    let mut y: Vec<T> = xv.into_owned();
    if inner > 0 {
        for (i, plane) in y.chunks_mut(inner).enumerate() {
            let (s, t) = (a[i % c], b[i % c]);
            plane.iter_mut().for_each(|v| *v = *v * s + t);
        }
    }
    Ok((T::store(y, x.dtype()), stats))
}

#[cfg(test)]
mod kernel_tests {
    use super::*;
    use kiln_ir::Attribute;

    fn call(ins: &[Tensor], attrs: &[Attribute], opset: i64, outs: usize) -> Result<Vec<Tensor>> {
        let vals: Vec<Value> = ins.iter().cloned().map(Value::Tensor).collect();
        let ctx = KernelCtx {
            op_type: "BatchNormalization",
            domain: "",
            opset,
            attrs,
            inputs: vals.iter().map(Some).collect(),
            num_outputs: outs,
            subgraphs: None,
            donated: Default::default(),
        };
        Ok(run(&ctx)?
            .into_iter()
            .map(|v| v.into_tensor().unwrap())
            .collect())
    }

    fn v(x: &[f32]) -> Tensor {
        Tensor::from_vec(vec![x.len()], x.to_vec())
    }

    #[test]
    fn inference_mode() {
        let x = Tensor::from_vec(vec![1, 2, 2], vec![1.0f32, 3.0, 10.0, 20.0]);
        let ins = [
            x,
            v(&[2.0, 1.0]),
            v(&[0.5, -1.0]),
            v(&[2.0, 15.0]),
            v(&[4.0, 25.0]),
        ];
        let y = call(&ins, &[Attribute::float("epsilon", 0.0)], 15, 1).unwrap();
        assert_eq!(y[0].as_slice::<f32>().unwrap(), &[-0.5, 1.5, -2.0, 0.0]);
        let y = call(&ins, &[], 15, 1).unwrap();
        let want = (1.0f64 - 2.0) / (4.0f64 + 1e-5).sqrt() * 2.0 + 0.5;
        assert!((y[0].as_slice::<f32>().unwrap()[0] as f64 - want).abs() < 1e-6);
    }

    #[test]
    fn training_mode_statistics() {
        let x = Tensor::from_vec(vec![2, 1, 2], vec![1.0f32, 2.0, 3.0, 6.0]);
        let ins = [x, v(&[1.0]), v(&[0.0]), v(&[0.0]), v(&[1.0])];
        let attrs = [
            Attribute::int("training_mode", 1),
            Attribute::float("epsilon", 0.0),
            Attribute::float("momentum", 0.5),
        ];
        let out = call(&ins, &attrs, 15, 3).unwrap();
        // mean 3, var (4 + 1 + 0 + 9) / 4 = 3.5
        let y = out[0].as_slice::<f32>().unwrap();
        assert!((y[0] + 2.0 / 3.5f32.sqrt()).abs() < 1e-6);
        assert_eq!(out[1].as_slice::<f32>().unwrap(), &[1.5]);
        assert_eq!(out[2].as_slice::<f32>().unwrap(), &[2.25]);
        assert!(call(&ins[..4], &attrs, 15, 3).is_err());
        assert!(check(&[Attribute::int("spatial", 0)], 7).is_err());
        let bad = [
            ins[0].clone(),
            v(&[1.0, 2.0]),
            v(&[0.0]),
            v(&[0.0]),
            v(&[1.0]),
        ];
        assert!(call(&bad, &[], 15, 1).is_err());
    }
}
