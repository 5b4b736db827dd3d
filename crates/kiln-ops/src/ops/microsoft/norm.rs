//! The normalizations ONNX Runtime writes into transformer models: com.microsoft
//! SkipLayerNormalization and SkipSimplifiedLayerNormalization (residual add, then layer or RMS
//! normalization over the last axis), SimplifiedLayerNormalization (RMS normalization; ORT
//! registers it in the default domain, and in com.microsoft), and BiasAdd (`X + bias + skip`).
//! All on `norm::layer_norm` (vectorized f32 rows for f32, f64 otherwise).
use kiln_ir::{DataType, Dim};

use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{one, KernelCtx, KernelFn};
use crate::ops::linalg::{float_dispatch, load_any, store_f64};
use crate::ops::norm::layer_norm;
use crate::value::{Data, Tensor, Value};

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    let f: KernelFn = match (domain, op_type) {
        ("com.microsoft", "SkipLayerNormalization" | "SkipSimplifiedLayerNormalization") => {
            run_skip
        }
        ("" | "com.microsoft", "SimplifiedLayerNormalization") => run_simplified,
        ("com.microsoft", "BiasAdd") => run_bias_add,
        _ => return None,
    };
    Some(f)
}

/// Output like the input; statistics `[..., 1]` in float; the residual sum like the input.
pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let skip = ctx.op_type.starts_with("Skip");
    let stats = ctx.shape(0).map(|s| {
        let axis = if skip {
            s.len().saturating_sub(1)
        } else {
            ctx.axis(ctx.int_attr("axis", -1), s.len())
                .unwrap_or(s.len().saturating_sub(1))
        };
        s.iter()
            .enumerate()
            .map(|(i, d)| if i < axis { d.clone() } else { Dim::Known(1) })
            .collect::<Vec<_>>()
    });
    let stat_ty = Some(if ctx.dtype(0) == Some(DataType::F64) {
        DataType::F64
    } else {
        DataType::F32
    });
    let mut out = vec![ctx.same_as(0)];
    for i in 1..ctx.num_outputs {
        // SkipLayerNormalization: (output, mean, inv_std_var, input_skip_bias_sum);
        // Simplified: (Y, inv_std_var).
        if skip && i == 3 {
            out.push(ctx.same_as(0));
        } else {
            out.push(Inferred::tensor(stat_ty, stats.clone()));
        }
    }
    Ok(out)
}

/// Every float input of a node in one dtype.
fn float_inputs<'a>(ctx: &KernelCtx<'a>, idx: &[usize]) -> Result<Vec<Option<&'a Tensor>>> {
    let first = ctx.tensor(idx[0])?.dtype();
    idx.iter()
        .map(|&i| {
            let t = ctx.opt_tensor(i)?;
            if let Some(t) = t {
                if t.dtype() != first {
                    return Err(format!(
                        "input {i} is {}, input {} is {first}",
                        t.dtype(),
                        idx[0]
                    ));
                }
            }
            Ok(t)
        })
        .collect()
}

/// `x + skip (+ bias)`, with skip broadcast over leading dims and bias over the last axis.
fn residual_sum(x: &Tensor, skip: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let hidden = *x.shape.last().ok_or("input must have rank >= 1")?;
    let (xn, sn) = (x.len(), skip.len());
    if sn == 0 || xn % sn != 0 || skip.shape.last() != Some(&hidden) {
        return Err(format!(
            "skip of shape {:?} does not match input {:?}",
            skip.shape, x.shape
        ));
    }
    if let Some(b) = bias.filter(|b| b.len() != hidden) {
        return Err(format!("bias has shape {:?}, expected [{hidden}]", b.shape));
    }
    if let (Data::F32(xv), Data::F32(sv)) = (&x.data, &skip.data) {
        let bv: Option<&[f32]> = match bias.map(|b| &b.data) {
            Some(Data::F32(b)) => Some(b),
            Some(_) => None,
            None => Some(&[]),
        };
        if let Some(bv) = bv {
            // f32 as ORT adds it; skip repeats every `sv.len()`, bias every `hidden`.
            let mut v = kiln_kernels::vecmath::unfilled(xv.len(), f32::NAN);
            for (row, xrow) in v.chunks_mut(sv.len()).zip(xv.chunks(sv.len())) {
                for ((o, &x), &s) in row.iter_mut().zip(xrow).zip(sv) {
                    *o = x + s;
                }
                if !bv.is_empty() {
                    for chunk in row.chunks_mut(hidden) {
                        for (o, &b) in chunk.iter_mut().zip(bv) {
                            *o += b;
                        }
                    }
                }
            }
            return Ok(Tensor::new(x.shape.clone(), Data::F32(v)));
        }
    }
    let (xv, sv) = (load_any::<f64>(x)?, load_any::<f64>(skip)?);
    let bv = bias.map(load_any::<f64>).transpose()?;
    let v: Vec<f64> = xv
        .iter()
        .enumerate()
        .map(|(i, &a)| a + sv[i % sv.len()] + bv.as_ref().map_or(0.0, |b| b[i % hidden]))
        .collect();
    Ok(Tensor::new(x.shape.clone(), store_f64(v, x.dtype())?))
}

fn stats_tensor(x: &Tensor, axis: usize, v: Vec<f64>) -> Result<Tensor> {
    let shape: Vec<usize> = x
        .shape
        .iter()
        .enumerate()
        .map(|(i, &d)| if i < axis { d } else { 1 })
        .collect();
    let dt = if x.dtype() == DataType::F64 {
        DataType::F64
    } else {
        DataType::F32
    };
    Ok(Tensor::new(shape, store_f64(v, dt)?))
}

fn run_skip(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let simplified = ctx.op_type == "SkipSimplifiedLayerNormalization";
    // SkipLayerNormalization: (input, skip, gamma, beta?, bias?); Simplified: (input, skip,
    // gamma, bias?).
    let ins = float_inputs(ctx, &[0, 1, 2, 3, 4])?;
    let (x, skip, gamma) = (ins[0].unwrap(), ctx.tensor(1)?, ctx.tensor(2)?);
    let (beta, bias) = if simplified {
        (None, ins[3])
    } else {
        (ins[3], ins[4])
    };
    let eps = ctx.float_attr("epsilon", 1e-12) as f64;
    let sum = residual_sum(x, skip, bias)?;
    let axis = x.rank() - 1;
    let (y, mean, inv) = float_dispatch!(
        x.dtype(),
        layer_norm(&sum, axis, eps, gamma, beta, simplified)
    )?;
    let mut out = vec![Value::Tensor(Tensor::new(x.shape.clone(), y))];
    if ctx.num_outputs > 1 {
        out.push(Value::Tensor(stats_tensor(x, axis, mean)?));
    }
    if ctx.num_outputs > 2 {
        out.push(Value::Tensor(stats_tensor(x, axis, inv)?));
    }
    if ctx.num_outputs > 3 {
        out.push(Value::Tensor(sum));
    }
    Ok(out)
}

fn run_simplified(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let scale = ctx.tensor(1)?;
    let axis = ctx.axis(ctx.int_attr("axis", -1), x.rank())?;
    let eps = ctx.float_attr("epsilon", 1e-5) as f64;
    let (y, _, inv) = float_dispatch!(x.dtype(), layer_norm(x, axis, eps, scale, None, true))?;
    let mut out = vec![Value::Tensor(Tensor::new(x.shape.clone(), y))];
    if ctx.num_outputs > 1 {
        out.push(Value::Tensor(stats_tensor(x, axis, inv)?));
    }
    Ok(out)
}

fn run_bias_add(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let ins = float_inputs(ctx, &[0, 1, 2])?;
    let (x, bias, skip) = (ins[0].unwrap(), ctx.tensor(1)?, ctx.tensor(2)?);
    if skip.shape != x.shape {
        return Err(format!(
            "skip has shape {:?}, X has {:?}",
            skip.shape, x.shape
        ));
    }
    one(residual_sum(x, skip, Some(bias))?)
}

#[cfg(test)]
mod tests {
    use crate::kernel::KernelCtx;
    use crate::ops::movement::testing::f32s;
    use crate::value::Value;

    #[test]
    fn bias_add_adds_bias_and_skip() {
        let x = Value::Tensor(f32s(&[1, 2, 2], &[1., 2., 3., 4.]));
        let b = Value::Tensor(f32s(&[2], &[10., 20.]));
        let s = Value::Tensor(f32s(&[1, 2, 2], &[0.5, 0.5, 0.5, 0.5]));
        let ctx = KernelCtx {
            op_type: "BiasAdd",
            domain: "com.microsoft",
            opset: 1,
            attrs: &[],
            inputs: vec![Some(&x), Some(&b), Some(&s)],
            num_outputs: 1,
            subgraphs: None,
            donated: Default::default(),
        };
        let out = super::run_bias_add(&ctx).unwrap();
        let t = out[0].tensor().unwrap();
        assert_eq!(t.as_slice::<f32>().unwrap(), &[11.5, 22.5, 13.5, 24.5]);
    }
}
