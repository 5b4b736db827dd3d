//! Softmax, LogSoftmax and Hardmax along an axis. Before opset 13 the input is seen as a 2-D
//! matrix split at `axis` (default 1) and each row is normalized; from 13 on, each lane along
//! `axis` (default -1) is. Computed in f64 and rounded to the element type (half types round
//! their intermediates as ONNX's reference does). Also com.microsoft BiasSoftmax, ORT's fusion
//! of `Softmax(X + bias)`: the bias broadcasts into X, and the softmax runs over the dims from
//! `axis` (default 1) on, flattened, as the opset-1 Softmax does.
use crate::kernel::{one, zip_broadcast, KernelCtx, KernelFn, Result};
use crate::ops::num::Num;
use crate::value::{Data, Elem, Tensor, Value};

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    if (domain, op_type) == ("com.microsoft", "BiasSoftmax") {
        return Some(bias_softmax);
    }
    if !domain.is_empty() {
        return None;
    }
    match op_type {
        "Softmax" | "LogSoftmax" | "Hardmax" => Some(softmax),
        _ => None,
    }
}

/// `(outer, len, inner)`: lanes of `len` elements, `inner` apart.
fn lanes(ctx: &KernelCtx, shape: &[usize]) -> Result<(usize, usize, usize)> {
    let rank = shape.len();
    if ctx.opset < 13 {
        let a = ctx.int_attr("axis", 1);
        let r = rank as i64;
        // The coercion to 2-D allows axis == rank (one row per element... of size 1).
        if a < -r || a > r {
            return Err(format!("axis {a} is out of range for rank {rank}"));
        }
        let a = if a < 0 { a + r } else { a } as usize;
        let outer = shape[..a].iter().product();
        let len = shape[a..].iter().product();
        return Ok((outer, len, 1));
    }
    let a = ctx.axis(ctx.int_attr("axis", -1), rank)?;
    Ok((
        shape[..a].iter().product(),
        shape[a],
        shape[a + 1..].iter().product(),
    ))
}

/// How intermediate results are rounded. Half types follow ONNX's reference, which computes
/// `x - max`, `exp`, the sum and the quotient each in the element type (float16 sums
/// accumulate in float32, bfloat16 sums in bfloat16); wider types compute in f64 throughout.
#[derive(Clone, Copy, PartialEq)]
enum Prec {
    Wide,
    F16,
    BF16,
}

impl Prec {
    fn round(self, v: f64) -> f64 {
        match self {
            Prec::Wide => v,
            Prec::F16 => half::f16::from_f64(v).to_f64(),
            Prec::BF16 => half::bf16::from_f64(v).to_f64(),
        }
    }

    fn sum(self, v: &[f64]) -> f64 {
        match self {
            Prec::BF16 => v.iter().fold(0.0, |a, &x| self.round(a + x)),
            _ => self.round(v.iter().sum()),
        }
    }
}

fn normalize(op: &str, lane: &mut [f64], p: Prec) {
    let m = lane.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    match op {
        "Hardmax" => {
            let first = lane.iter().position(|&x| x == m);
            for (i, x) in lane.iter_mut().enumerate() {
                *x = if Some(i) == first { 1.0 } else { 0.0 };
            }
        }
        "LogSoftmax" if p == Prec::Wide => {
            let s = lane.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
            for x in lane.iter_mut() {
                *x = *x - m - s;
            }
        }
        _ => {
            for x in lane.iter_mut() {
                *x = p.round(p.round(*x - m).exp());
            }
            let s = p.sum(lane);
            for x in lane.iter_mut() {
                *x = p.round(*x / s);
                if op == "LogSoftmax" {
                    *x = x.ln();
                }
            }
        }
    }
}

fn run_typed<T: Num>(op: &str, v: &[T], (outer, len, inner): (usize, usize, usize)) -> Vec<T> {
    let p = match T::DTYPE {
        kiln_ir::DataType::F16 => Prec::F16,
        kiln_ir::DataType::BF16 => Prec::BF16,
        _ => Prec::Wide,
    };
    let mut out = vec![T::zero(); v.len()];
    let mut lane = vec![0.0f64; len];
    for o in 0..outer {
        for i in 0..inner {
            let base = o * len * inner + i;
            for (k, x) in lane.iter_mut().enumerate() {
                *x = v[base + k * inner].to_f64();
            }
            normalize(op, &mut lane, p);
            for (k, x) in lane.iter().enumerate() {
                out[base + k * inner] = T::from_f64(*x);
            }
        }
    }
    out
}

/// Softmax of f32 in f32 on kiln-kernels' vectorized blocks (within 1e-6 relative of the f64
/// reference), threaded over blocks when large.
fn softmax_f32(v: &[f32], (outer, len, inner): (usize, usize, usize)) -> Vec<f32> {
    let mut out = v.to_vec();
    if len == 0 || inner == 0 {
        return out;
    }
    let block = len * inner;
    debug_assert_eq!(v.len(), outer * block);
    let run = |ob: &mut [f32]| kiln_kernels::vecmath::softmax_block(ob, inner);
    if v.len() >= 1 << 15 {
        use rayon::prelude::*;
        // Short lanes (attention's 128) in runs of at least 8K values a task.
        out.par_chunks_mut(block)
            .with_min_len((1 << 13) / block + 1)
            .for_each(run);
    } else {
        out.chunks_mut(block).for_each(run);
    }
    out
}

fn softmax(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    crate::ops::movement::check_len(x, "input")?;
    let l = lanes(ctx, &x.shape)?;
    let op = ctx.op_type;
    let data = match &x.data {
        Data::F32(v) if op == "Softmax" => Data::F32(softmax_f32(v, l)),
        Data::F32(v) => Elem::wrap(run_typed(op, v, l)),
        Data::F64(v) => Elem::wrap(run_typed(op, v, l)),
        Data::F16(v) => Elem::wrap(run_typed(op, v, l)),
        Data::BF16(v) => Elem::wrap(run_typed(op, v, l)),
        d => return Err(format!("{op} takes float tensors, got {}", d.dtype())),
    };
    one(Tensor::new(x.shape.clone(), data))
}

fn bias_softmax(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let bias = ctx.tensor(1)?;
    if bias.dtype() != x.dtype() {
        return Err(format!("bias is {}, data {}", bias.dtype(), x.dtype()));
    }
    let (shape, sum) = zip_broadcast(
        &x.to_f64s()?,
        &x.shape,
        &bias.to_f64s()?,
        &bias.shape,
        |a, b| a + b,
    )?;
    if shape != x.shape {
        return Err(format!(
            "bias {:?} does not broadcast into data {:?}",
            bias.shape, x.shape
        ));
    }
    // The kernel's opset is com.microsoft's 1, so `lanes` reads `axis` the opset-1 way.
    let l = lanes(ctx, &shape)?;
    let data = match x.dtype() {
        kiln_ir::DataType::F32 => {
            let v: Vec<f32> = sum.iter().map(|&e| e as f32).collect();
            Data::F32(softmax_f32(&v, l))
        }
        kiln_ir::DataType::F64 => Data::F64(run_typed("Softmax", &sum, l)),
        kiln_ir::DataType::F16 => {
            let v: Vec<half::f16> = sum.iter().map(|&e| half::f16::from_f64(e)).collect();
            Data::F16(run_typed("Softmax", &v, l))
        }
        d => {
            return Err(format!(
                "BiasSoftmax takes float32, float64 or float16, got {d}"
            ))
        }
    };
    one(Tensor::new(shape, data))
}

#[cfg(test)]
mod tests {
    use crate::ops::movement::testing::{f32s, run_opset, vals};
    use kiln_ir::Attribute;

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
    }

    #[test]
    fn softmax_by_opset() {
        let x = f32s(&[2, 2], &[0.0, 0.0, 1000.0, 1000.0]);
        let r = run_opset(
            "Softmax",
            13,
            &[Attribute::int("axis", 0)],
            &[Some(x.clone())],
            1,
        )
        .unwrap();
        assert!(close(&vals(&r[0]), &[0.0, 0.0, 1.0, 1.0]));
        // Opset 11, axis 0: one row of all four elements.
        let r = run_opset(
            "Softmax",
            11,
            &[Attribute::int("axis", 0)],
            &[Some(x.clone())],
            1,
        )
        .unwrap();
        assert!(close(&vals(&r[0]), &[0.0, 0.0, 0.5, 0.5]));
        let r = run_opset("LogSoftmax", 13, &[], &[Some(x)], 1).unwrap();
        let l = -(2f32.ln());
        assert!(close(&vals(&r[0]), &[l, l, l, l]));
    }

    #[test]
    fn last_axis_lanes_of_every_length() {
        for len in [1usize, 7, 15, 16, 17, 33, 129] {
            let x: Vec<f32> = (0..3 * len)
                .map(|i| (i, ((i * 37 % 101) as f32 * 0.21).sin() * 9.0))
                // Some -inf entries, never a lane's first (a lane of only -inf is NaN).
                .map(|(i, v)| {
                    if v > 8.5 && i % len != 0 {
                        f32::NEG_INFINITY
                    } else {
                        v
                    }
                })
                .collect();
            let r = run_opset("Softmax", 13, &[], &[Some(f32s(&[3, len], &x))], 1).unwrap();
            let mut want = Vec::new();
            for lane in x.chunks(len) {
                let m = lane.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v as f64));
                let s: f64 = lane.iter().map(|&v| (v as f64 - m).exp()).sum();
                want.extend(lane.iter().map(|&v| ((v as f64 - m).exp() / s) as f32));
            }
            assert!(close(&vals(&r[0]), &want), "len {len}");
        }
    }

    #[test]
    fn hardmax_first_maximum() {
        let x = f32s(&[2, 3], &[1.0, 3.0, 3.0, -1.0, -2.0, -3.0]);
        let r = run_opset("Hardmax", 13, &[], &[Some(x)], 1).unwrap();
        assert_eq!(vals(&r[0]), vec![0.0, 1.0, 0.0, 1.0, 0.0, 0.0]);
        let i = crate::value::Tensor::from_vec(vec![1], vec![1i32]);
        assert!(run_opset("Softmax", 13, &[], &[Some(i)], 1).is_err());
    }

    #[test]
    fn bias_softmax_is_softmax_of_the_sum() {
        use crate::ops::movement::testing::run_domain;
        let x: Vec<f32> = (0..12).map(|v| (v as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..6).map(|v| v as f32 * 0.1).collect();
        let attrs = [
            Attribute::int("axis", 2),
            Attribute::int("is_inner_broadcast", 0),
        ];
        let y = run_domain(
            "com.microsoft",
            "BiasSoftmax",
            1,
            &[f32s(&[2, 2, 3], &x), f32s(&[2, 3], &b)],
            &attrs,
        )
        .unwrap();
        let mut want = Vec::new();
        for r in 0..4 {
            let lane: Vec<f64> = (0..3)
                .map(|c| (x[r * 3 + c] + b[(r % 2) * 3 + c]) as f64)
                .collect();
            let m = lane.iter().cloned().fold(f64::MIN, f64::max);
            let s: f64 = lane.iter().map(|v| (v - m).exp()).sum();
            want.extend(lane.iter().map(|v| ((v - m).exp() / s) as f32));
        }
        assert!(close(&vals(&y), &want), "{:?} vs {want:?}", vals(&y));
        // A bias that would grow the output is refused.
        let bad = run_domain(
            "com.microsoft",
            "BiasSoftmax",
            1,
            &[f32s(&[2, 1, 3], &x[..6]), f32s(&[2, 3], &b)],
            &attrs,
        );
        assert!(bad.is_err());
    }
}
