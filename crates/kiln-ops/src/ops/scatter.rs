//! Scatter ops: ScatterElements, ScatterND, and the deprecated Scatter (ScatterElements without
//! reduction), with the `reduction` attribute (none, add, mul, max, min).
use half::{bf16, f16};

use crate::ctx::{InferCtx, Inferred};
use crate::kernel::{one, KernelCtx, KernelFn, Result};
use crate::ops::index_ops::{element_positions, nd_offsets};
use crate::ops::movement::{self, Item};
use crate::value::{Data, Tensor, Value};

/// The scatter ops keep the data's type and shape.
pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    Ok(vec![ctx.same_as(0)])
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    match (domain, op_type) {
        ("", "ScatterElements" | "Scatter") => Some(run_elements),
        ("", "ScatterND") => Some(run_nd),
        _ => None,
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Reduction {
    None,
    Add,
    Mul,
    Max,
    Min,
}

fn reduction(ctx: &KernelCtx) -> Result<Reduction> {
    Ok(match ctx.str_attr("reduction").unwrap_or("none") {
        "none" => Reduction::None,
        "add" => Reduction::Add,
        "mul" => Reduction::Mul,
        "max" => Reduction::Max,
        "min" => Reduction::Min,
        other => return Err(format!("unknown reduction '{other}'")),
    })
}

/// Element arithmetic of the reductions.
trait Arith: Item + Copy {
    fn apply(self, o: Self, r: Reduction) -> Self;
}

macro_rules! arith_int {
    ($($t:ty),*) => {$(
        impl Arith for $t {
            fn apply(self, o: Self, r: Reduction) -> Self {
                match r {
                    Reduction::None => o,
                    Reduction::Add => self.wrapping_add(o),
                    Reduction::Mul => self.wrapping_mul(o),
                    Reduction::Max => self.max(o),
                    Reduction::Min => self.min(o),
                }
            }
        }
    )*};
}
arith_int!(i8, i16, i32, i64, u8, u16, u32, u64);

fn float_apply(a: f64, b: f64, r: Reduction) -> f64 {
    match r {
        Reduction::None => b,
        Reduction::Add => a + b,
        Reduction::Mul => a * b,
        // NaN propagates, as numpy's maximum and minimum do.
        _ if a.is_nan() || b.is_nan() => f64::NAN,
        Reduction::Max => a.max(b),
        Reduction::Min => a.min(b),
    }
}

impl Arith for f32 {
    fn apply(self, o: Self, r: Reduction) -> Self {
        match r {
            Reduction::Add => self + o,
            Reduction::Mul => self * o,
            _ => float_apply(self as f64, o as f64, r) as f32,
        }
    }
}

impl Arith for f64 {
    fn apply(self, o: Self, r: Reduction) -> Self {
        float_apply(self, o, r)
    }
}

impl Arith for f16 {
    fn apply(self, o: Self, r: Reduction) -> Self {
        f16::from_f32(f32::apply(self.to_f32(), o.to_f32(), r))
    }
}

impl Arith for bf16 {
    fn apply(self, o: Self, r: Reduction) -> Self {
        bf16::from_f32(f32::apply(self.to_f32(), o.to_f32(), r))
    }
}

impl Arith for bool {
    fn apply(self, o: Self, r: Reduction) -> Self {
        match r {
            Reduction::None => o,
            Reduction::Add | Reduction::Max => self | o,
            Reduction::Mul | Reduction::Min => self & o,
        }
    }
}

fn reduce_into<T: Arith>(data: &Data, pos: &[usize], src: &Data, r: Reduction) -> Data {
    let mut out = T::slice(data).unwrap_or(&[]).to_vec();
    let s = T::slice(src).unwrap_or(&[]);
    for (&p, &u) in pos.iter().zip(s) {
        out[p] = out[p].apply(u, r);
    }
    T::wrap(out)
}

/// `data` with `updates[i]` written (or combined) at flat position `pos[i]`, in order.
fn scatter(data: &Tensor, pos: &[usize], updates: &Tensor, r: Reduction) -> Result<Tensor> {
    if data.dtype() != updates.dtype() {
        return Err(format!(
            "updates have type {} but data has {}",
            updates.dtype(),
            data.dtype()
        ));
    }
    let from: Vec<usize> = (0..pos.len()).collect();
    let out = match r {
        Reduction::None => movement::overwrite(&data.data, pos, &updates.data, &from)?,
        _ => match &data.data {
            Data::F32(_) => reduce_into::<f32>(&data.data, pos, &updates.data, r),
            Data::F64(_) => reduce_into::<f64>(&data.data, pos, &updates.data, r),
            Data::F16(_) => reduce_into::<f16>(&data.data, pos, &updates.data, r),
            Data::BF16(_) => reduce_into::<bf16>(&data.data, pos, &updates.data, r),
            Data::I8(_) => reduce_into::<i8>(&data.data, pos, &updates.data, r),
            Data::I16(_) => reduce_into::<i16>(&data.data, pos, &updates.data, r),
            Data::I32(_) => reduce_into::<i32>(&data.data, pos, &updates.data, r),
            Data::I64(_) => reduce_into::<i64>(&data.data, pos, &updates.data, r),
            Data::U8(_) => reduce_into::<u8>(&data.data, pos, &updates.data, r),
            Data::U16(_) => reduce_into::<u16>(&data.data, pos, &updates.data, r),
            Data::U32(_) => reduce_into::<u32>(&data.data, pos, &updates.data, r),
            Data::U64(_) => reduce_into::<u64>(&data.data, pos, &updates.data, r),
            Data::Bool(_) => reduce_into::<bool>(&data.data, pos, &updates.data, r),
            other => {
                return Err(format!(
                    "reduction {r:?} is not defined for {} tensors",
                    other.dtype()
                ))
            }
        },
    };
    Ok(Tensor::new(data.shape.clone(), out))
}

fn run_elements(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let data = ctx.tensor(0)?;
    let indices = ctx.tensor(1)?;
    let updates = ctx.tensor(2)?;
    if data.rank() == 0 {
        return Err("data must have rank >= 1".into());
    }
    movement::check_len(data, "data")?;
    movement::check_len(updates, "updates")?;
    if updates.shape != indices.shape {
        return Err(format!(
            "updates shape {:?} differs from indices shape {:?}",
            updates.shape, indices.shape
        ));
    }
    let axis = ctx.axis(ctx.int_attr("axis", 0), data.rank())?;
    let pos = element_positions(&data.shape, indices, axis)?;
    one(scatter(data, &pos, updates, reduction(ctx)?)?)
}

fn run_nd(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let data = ctx.tensor(0)?;
    let indices = ctx.tensor(1)?;
    let updates = ctx.tensor(2)?;
    movement::check_len(data, "data")?;
    movement::check_len(updates, "updates")?;
    let (offsets, inner) = nd_offsets(&data.shape, indices, 0)?;
    let q = indices.rank();
    let k = indices.shape[q - 1];
    let mut want = indices.shape[..q - 1].to_vec();
    want.extend_from_slice(&data.shape[k..]);
    if updates.shape != want {
        return Err(format!(
            "updates shape {:?} should be {want:?} for indices {:?} and data {:?}",
            updates.shape, indices.shape, data.shape
        ));
    }
    let pos: Vec<usize> = offsets.iter().flat_map(|&o| o..o + inner).collect();
    one(scatter(data, &pos, updates, reduction(ctx)?)?)
}

#[cfg(test)]
mod tests {
    use crate::ops::movement::testing::*;
    use kiln_ir::Attribute;

    #[test]
    fn scatter_elements() {
        let x = f32s(&[1, 5], &[1., 2., 3., 4., 5.]);
        let a = [Attribute::int("axis", 1)];
        let y = run(
            "ScatterElements",
            &a,
            &[
                x.clone(),
                i64s(&[1, 2], &[1, -2]),
                f32s(&[1, 2], &[10., 20.]),
            ],
        )
        .unwrap();
        assert_eq!(vals(&y), vec![1., 10., 3., 20., 5.]);
        let a = [
            Attribute::int("axis", 1),
            Attribute::string("reduction", "add"),
        ];
        let y = run(
            "ScatterElements",
            &a,
            &[
                x.clone(),
                i64s(&[1, 2], &[1, 1]),
                f32s(&[1, 2], &[10., 20.]),
            ],
        )
        .unwrap();
        assert_eq!(vals(&y), vec![1., 32., 3., 4., 5.]);
        let e = run(
            "ScatterElements",
            &a,
            &[x, i64s(&[1, 1], &[5]), f32s(&[1, 1], &[1.])],
        )
        .unwrap_err();
        assert!(e.contains("index 5"), "{e}");
    }

    #[test]
    fn scatter_nd() {
        let x = iota(&[4]);
        let y = run(
            "ScatterND",
            &[],
            &[x.clone(), i64s(&[2, 1], &[3, 0]), f32s(&[2], &[9., 8.])],
        )
        .unwrap();
        assert_eq!(vals(&y), vec![8., 1., 2., 9.]);
        let x2 = iota(&[2, 2]);
        let a = [Attribute::string("reduction", "mul")];
        let y = run(
            "ScatterND",
            &a,
            &[x2.clone(), i64s(&[1, 1], &[1]), f32s(&[1, 2], &[2., 3.])],
        )
        .unwrap();
        assert_eq!(vals(&y), vec![0., 1., 4., 9.]);
        assert!(run(
            "ScatterND",
            &[],
            &[x2, i64s(&[1, 1], &[1]), f32s(&[2], &[2., 3.])]
        )
        .is_err());
    }
}
