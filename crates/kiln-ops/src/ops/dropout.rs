//! Dropout: output like the input; the optional mask is bool of the same shape.
use kiln_ir::DataType;

use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::KernelCtx;
use crate::value::{Data, Tensor, Value};

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let mut out = vec![ctx.same_as(0)];
    if ctx.num_outputs > 1 {
        // Before opset 10 the mask had the input's type.
        let mask = if ctx.opset < 10 {
            ctx.dtype(0)
        } else {
            Some(DataType::Bool)
        };
        out.push(Inferred::tensor(mask, ctx.shape(0).map(|s| s.to_vec())));
    }
    Ok(out)
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    match (domain, op_type) {
        ("", "Dropout") => Some(run),
        _ => None,
    }
}

/// Dropout outside training is the identity with an all-true mask. In training mode elements
/// are dropped where a uniform draw falls below the ratio, the rest scaled by 1 / (1 - ratio);
/// with a `seed` the draws are NumPy's `RandomState(seed)` stream, as in ONNX's reference.
fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let (ratio, training) = if ctx.opset >= 12 {
        let ratio = match ctx.opt_tensor(1)? {
            Some(r) => {
                let v = r.to_f64s()?;
                if v.len() != 1 {
                    return Err(format!("ratio must be a scalar, got shape {:?}", r.shape));
                }
                v[0]
            }
            None => 0.5,
        };
        let training = match ctx.opt_tensor(2)? {
            Some(t) => {
                let v = t.to_i64s()?;
                if v.len() != 1 {
                    return Err(format!(
                        "training_mode must be a scalar, got shape {:?}",
                        t.shape
                    ));
                }
                v[0] != 0
            }
            None => false,
        };
        (ratio, training)
    } else {
        // Before opset 12 the op had no training input (before opset 7 an `is_test` flag, which
        // inference runtimes ignore): it is the identity.
        (ctx.float_attr("ratio", 0.5) as f64, false)
    };
    if !(0.0..1.0).contains(&ratio) {
        return Err(format!("ratio must be in [0, 1), got {ratio}"));
    }
    if training && ratio > 0.0 {
        return train(ctx, x, ratio);
    }
    let mut out = vec![Value::Tensor(x.clone())];
    if ctx.num_outputs > 1 {
        let n = x.len();
        let mask = if ctx.opset < 10 {
            // The mask had the input's type before opset 10.
            match &x.data {
                Data::F32(_) => Data::F32(vec![1.0; n]),
                Data::F64(_) => Data::F64(vec![1.0; n]),
                Data::F16(_) => Data::F16(vec![half::f16::ONE; n]),
                Data::BF16(_) => Data::BF16(vec![half::bf16::ONE; n]),
                other => return Err(format!("Dropout of {} tensors", other.dtype())),
            }
        } else {
            Data::Bool(vec![true; n])
        };
        out.push(Value::Tensor(Tensor::new(x.shape.clone(), mask)));
    }
    Ok(out)
}

fn train(ctx: &KernelCtx, x: &Tensor, ratio: f64) -> Result<Vec<Value>> {
    let seed = match ctx.attrs.iter().find(|a| a.name == "seed") {
        Some(_) => ctx.int_attr("seed", 0) as u32,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0),
    };
    let mut rng = super::np_random::RandomState::new(seed);
    let keep: Vec<bool> = (0..x.len()).map(|_| rng.next_f64() >= ratio).collect();
    // The reference scales in the input's precision: 1 / (1 - ratio) as float32 for float32.
    let data = match &x.data {
        Data::F32(v) => {
            let scale = 1.0f32 / (1.0f32 - ratio as f32);
            Data::F32(
                v.iter()
                    .zip(&keep)
                    .map(|(&e, &k)| if k { e * scale } else { 0.0 })
                    .collect(),
            )
        }
        Data::F64(v) => {
            let scale = 1.0 / (1.0 - ratio);
            Data::F64(
                v.iter()
                    .zip(&keep)
                    .map(|(&e, &k)| if k { e * scale } else { 0.0 })
                    .collect(),
            )
        }
        other => {
            return Err(format!(
                "training-mode Dropout of {} tensors is not supported",
                other.dtype()
            ))
        }
    };
    let mut out = vec![Value::Tensor(Tensor::new(x.shape.clone(), data))];
    if ctx.num_outputs > 1 {
        out.push(Value::Tensor(Tensor::new(
            x.shape.clone(),
            Data::Bool(keep),
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod kernel_tests {
    use super::*;
    use kiln_ir::Attribute;

    fn call(
        ins: &[Option<Tensor>],
        attrs: &[Attribute],
        opset: i64,
        outs: usize,
    ) -> Result<Vec<Value>> {
        let vals: Vec<Option<Value>> = ins.iter().map(|t| t.clone().map(Value::Tensor)).collect();
        let ctx = KernelCtx {
            op_type: "Dropout",
            domain: "",
            opset,
            attrs,
            inputs: vals.iter().map(|v| v.as_ref()).collect(),
            num_outputs: outs,
            subgraphs: None,
            donated: Default::default(),
        };
        run(&ctx)
    }

    #[test]
    fn identity_with_mask() {
        let x = Tensor::from_vec(vec![2], vec![1.0f32, -2.0]);
        let out = call(&[Some(x.clone())], &[], 13, 2).unwrap();
        assert_eq!(out[0], Value::Tensor(x.clone()));
        assert_eq!(
            out[1],
            Value::Tensor(Tensor::from_vec(vec![2], vec![true, true]))
        );
        // Training with ratio 0 is the identity too.
        let r = Some(Tensor::scalar(0.0f32));
        let t = Some(Tensor::scalar(true));
        let out = call(&[Some(x.clone()), r, t.clone()], &[], 13, 1).unwrap();
        assert_eq!(out[0], Value::Tensor(x.clone()));
        // Training with a seed: NumPy's stream (RandomState(0) draws 0.549, 0.715 first), so
        // with ratio 0.6 the first element is dropped and the second kept, scaled by 2.5.
        let r = Some(Tensor::scalar(0.6f32));
        let out = call(
            &[Some(x.clone()), r, t],
            &[Attribute::int("seed", 0)],
            13,
            2,
        )
        .unwrap();
        let y = out[0].tensor().unwrap().as_slice::<f32>().unwrap().to_vec();
        let xv = x.as_slice::<f32>().unwrap();
        assert_eq!(y, vec![0.0, xv[1] * (1.0 / (1.0f32 - 0.6))]);
        assert_eq!(
            out[1],
            Value::Tensor(Tensor::from_vec(vec![2], vec![false, true]))
        );
        // Old opsets: ratio attribute, mask of the input's type.
        let out = call(&[Some(x.clone())], &[Attribute::float("ratio", 0.2)], 7, 2).unwrap();
        assert_eq!(
            out[1],
            Value::Tensor(Tensor::from_vec(vec![2], vec![1.0f32, 1.0]))
        );
        assert_eq!(
            call(&[Some(x.clone())], &[], 6, 1).unwrap()[0],
            Value::Tensor(x)
        );
    }
}
