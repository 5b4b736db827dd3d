//! Kernels of the broadcasting element-wise ops: arithmetic (Add, Sub, Mul, Div, Pow, Mod,
//! PRelu, BitShift, bitwise ops), variadic Max/Min/Sum/Mean, comparisons and logical ops.
use crate::kernel::{one, zip_broadcast, KernelCtx, KernelFn, Result};
use crate::ops::num::Num;
use crate::value::{Data, Elem, Tensor, Value};
use crate::{with_numeric, with_numeric_pair};

pub fn kernel(op_type: &str) -> Option<KernelFn> {
    Some(match op_type {
        "Add" | "Sub" | "Mul" | "Div" | "Mod" | "PRelu" => arith,
        "Pow" => pow,
        "Max" | "Min" | "Sum" | "Mean" => variadic,
        "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" => compare,
        "And" | "Or" | "Xor" => logical,
        "BitShift" | "BitwiseAnd" | "BitwiseOr" | "BitwiseXor" => bits,
        _ => return None,
    })
}

fn is_nan<T: Num>(x: T) -> bool {
    x.partial_cmp(&x).is_none()
}

fn apply<T: Num>(
    op: &str,
    fmod: bool,
    a: &[T],
    ash: &[usize],
    b: &[T],
    bsh: &[usize],
) -> Result<(Vec<usize>, Vec<T>)> {
    // The infallible ops map straight to values; only Div and Mod can fail (integer division
    // by zero) and go through a Result per element.
    let fallible = |g: fn(T, T) -> Result<T>| -> Result<(Vec<usize>, Vec<T>)> {
        let (shape, v) = zip_broadcast(a, ash, b, bsh, g)?;
        Ok((shape, v.into_iter().collect::<Result<Vec<T>>>()?))
    };
    match op {
        "Add" => zip_broadcast(a, ash, b, bsh, |x: T, y: T| x.add(y)),
        "Sub" => zip_broadcast(a, ash, b, bsh, |x: T, y: T| x.sub(y)),
        "Mul" => zip_broadcast(a, ash, b, bsh, |x: T, y: T| x.mul(y)),
        "Div" if T::IS_FLOAT => zip_broadcast(a, ash, b, bsh, |x: T, y: T| {
            x.div(y).unwrap_or_else(|_| T::zero())
        }),
        "Div" => fallible(|x, y| x.div(y)),
        "Mod" if fmod => fallible(|x, y| x.rem(y, true)),
        "Mod" => fallible(|x, y| x.rem(y, false)),
        "PRelu" => zip_broadcast(
            a,
            ash,
            b,
            bsh,
            |x: T, s: T| {
                if x < T::zero() {
                    x.mul(s)
                } else {
                    x
                }
            },
        ),
        // A NaN (the only value not comparable with itself) wins, as in ONNX Runtime.
        "Max" => zip_broadcast(
            a,
            ash,
            b,
            bsh,
            |x: T, y: T| {
                if y > x || is_nan(y) {
                    y
                } else {
                    x
                }
            },
        ),
        "Min" => zip_broadcast(
            a,
            ash,
            b,
            bsh,
            |x: T, y: T| {
                if y < x || is_nan(y) {
                    y
                } else {
                    x
                }
            },
        ),
        other => Err(format!("{other} is not an arithmetic op")),
    }
}

fn binary_data(op: &str, fmod: bool, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    with_numeric_pair!(&a.data, &b.data, (x, y) => {
        let (shape, v) = apply(op, fmod, x, &a.shape, y, &b.shape)?;
        Ok(Tensor::new(shape, Elem::wrap(v)))
    }, _ => Err(format!("{op} needs two inputs of one numeric type, got {} and {}", a.dtype(), b.dtype())))
}

/// f32 Add/Sub/Mul/Div where one operand repeats along the other's leading dims (equal
/// shapes, a bias over the last axes, a scalar): one vectorized pass, or `None`.
fn repeating_f32(op: &str, a: &Tensor, b: &Tensor) -> Option<Tensor> {
    use kiln_kernels::vecmath::{binary_rows, Binary};
    let (Data::F32(x), Data::F32(y)) = (&a.data, &b.data) else {
        return None;
    };
    let op = match op {
        "Add" => Binary::Add,
        "Sub" => Binary::Sub,
        "Mul" => Binary::Mul,
        "Div" => Binary::Div,
        _ => return None,
    };
    // `small` repeats over `big` when its shape, without leading 1s, ends `big`'s shape.
    let repeats = |big: &Tensor, small: &Tensor| {
        let s: Vec<usize> = small
            .shape
            .iter()
            .copied()
            .skip_while(|&d| d == 1)
            .collect();
        small.shape.len() <= big.shape.len()
            && big.shape.ends_with(&s)
            && !small.data.is_empty()
            && big.data.len() >= 1 << 12
    };
    let (big, small, swap) = if repeats(a, b) {
        (x, y, false)
    } else if repeats(b, a) {
        (y, x, true)
    } else {
        return None;
    };
    let shape = if swap { &b.shape } else { &a.shape };
    let mut out = kiln_kernels::vecmath::zeros(big.len());
    binary_rows(op, big, small, swap, &mut out);
    Some(Tensor::new(shape.clone(), Data::F32(out)))
}

fn arith(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let fmod = ctx.int_attr("fmod", 0) != 0;
    if let Some(t) = repeating_f32(ctx.op_type, ctx.tensor(0)?, ctx.tensor(1)?) {
        return one(t);
    }
    one(binary_data(
        ctx.op_type,
        fmod,
        ctx.tensor(0)?,
        ctx.tensor(1)?,
    )?)
}

fn variadic(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let n = ctx.inputs.len();
    if n == 0 {
        return Err(format!("{} needs at least one input", ctx.op_type));
    }
    let op = match ctx.op_type {
        "Sum" | "Mean" => "Add",
        other => other,
    };
    let mut acc = ctx.tensor(0)?.clone();
    for i in 1..n {
        acc = binary_data(op, false, &acc, ctx.tensor(i)?)?;
    }
    if ctx.op_type == "Mean" {
        let k = n as f64;
        acc.data = with_numeric!(&acc.data, v => Elem::wrap(scale(v, 1.0 / k)), _ => return Err("Mean needs numbers".into()));
    }
    one(acc)
}

fn scale<T: Num>(v: &[T], k: f64) -> Vec<T> {
    v.iter().map(|&x| T::from_f64(x.to_f64() * k)).collect()
}

fn pow_map<B: Num>(
    a: &[B],
    ash: &[usize],
    e: &[f64],
    esh: &[usize],
) -> Result<(Vec<usize>, Vec<B>)> {
    zip_broadcast(a, ash, e, esh, |x: B, y: f64| {
        if B::IS_FLOAT {
            B::from_f64(x.to_f64().powf(y))
        } else {
            // Integer powers stay exact where they fit.
            let (b, k) = (x.to_f64(), y);
            if k >= 0.0 && k.fract() == 0.0 {
                let mut r = B::one();
                for _ in 0..(k as u64).min(64) {
                    r = r.mul(x);
                }
                r
            } else {
                B::from_f64(b.powf(k))
            }
        }
    })
}

fn pow(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (a, b) = (ctx.tensor(0)?, ctx.tensor(1)?);
    let e = b.to_f64s()?;
    let (shape, data) = with_numeric!(&a.data, v => {
        let (s, r) = pow_map(v, &a.shape, &e, &b.shape)?;
        (s, Elem::wrap(r))
    }, _ => return Err(format!("Pow does not take {}", a.dtype())));
    one(Tensor::new(shape, data))
}

fn cmp_map<T: Num>(
    op: &str,
    a: &[T],
    ash: &[usize],
    b: &[T],
    bsh: &[usize],
) -> Result<(Vec<usize>, Vec<bool>)> {
    match op {
        "Equal" => zip_broadcast(a, ash, b, bsh, |x, y| x == y),
        "Less" => zip_broadcast(a, ash, b, bsh, |x, y| x < y),
        "Greater" => zip_broadcast(a, ash, b, bsh, |x, y| x > y),
        "LessOrEqual" => zip_broadcast(a, ash, b, bsh, |x, y| x <= y),
        _ => zip_broadcast(a, ash, b, bsh, |x, y| x >= y),
    }
}

fn compare(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (a, b) = (ctx.tensor(0)?, ctx.tensor(1)?);
    let op = ctx.op_type;
    let (shape, v) = match (&a.data, &b.data) {
        (Data::Bool(x), Data::Bool(y)) if op == "Equal" => {
            zip_broadcast(x, &a.shape, y, &b.shape, |p, q| p == q)?
        }
        (Data::Str(x), Data::Str(y)) if op == "Equal" => {
            let (xs, ys): (Vec<usize>, Vec<usize>) =
                ((0..x.len()).collect(), (0..y.len()).collect());
            zip_broadcast(&xs, &a.shape, &ys, &b.shape, |p, q| x[p] == y[q])?
        }
        _ => with_numeric_pair!(&a.data, &b.data, (x, y) => cmp_map(op, x, &a.shape, y, &b.shape)?,
            _ => return Err(format!("{op} needs two inputs of one type, got {} and {}", a.dtype(), b.dtype()))),
    };
    one(Tensor::from_vec(shape, v))
}

fn logical(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (a, b) = (ctx.tensor(0)?, ctx.tensor(1)?);
    let (Data::Bool(x), Data::Bool(y)) = (&a.data, &b.data) else {
        return Err(format!("{} takes bool inputs", ctx.op_type));
    };
    let (shape, v) = match ctx.op_type {
        "And" => zip_broadcast(x, &a.shape, y, &b.shape, |p, q| p && q)?,
        "Or" => zip_broadcast(x, &a.shape, y, &b.shape, |p, q| p || q)?,
        _ => zip_broadcast(x, &a.shape, y, &b.shape, |p, q| p != q)?,
    };
    one(Tensor::from_vec(shape, v))
}

macro_rules! bit_ops {
    ($op:expr, $left:expr, $a:expr, $b:expr, $($variant:ident, $t:ty, $bits:expr);*) => {
        match (&$a.data, &$b.data) {
            $((Data::$variant(x), Data::$variant(y)) => {
                let (s, v) = match $op {
                    "BitwiseAnd" => zip_broadcast(x, &$a.shape, y, &$b.shape, |p: $t, q: $t| p & q)?,
                    "BitwiseOr" => zip_broadcast(x, &$a.shape, y, &$b.shape, |p: $t, q: $t| p | q)?,
                    "BitwiseXor" => zip_broadcast(x, &$a.shape, y, &$b.shape, |p: $t, q: $t| p ^ q)?,
                    _ => zip_broadcast(x, &$a.shape, y, &$b.shape, |p: $t, q: $t| {
                        #[allow(unused_comparisons)]
                        let (negative_shift, negative) = (q < 0, p < 0);
                        let q = q as u64;
                        if negative_shift || q >= $bits {
                            // Shifted all the way out: sign bits remain on a right shift.
                            if !$left && negative { !0 } else { 0 }
                        } else if $left {
                            p << q
                        } else {
                            p >> q
                        }
                    })?,
                };
                Tensor::new(s, Data::$variant(v))
            })*
            _ => return Err(format!("{} needs two integer inputs of one type, got {} and {}", $op, $a.dtype(), $b.dtype())),
        }
    };
}

fn bits(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (a, b) = (ctx.tensor(0)?, ctx.tensor(1)?);
    let op = ctx.op_type;
    let left = match ctx.str_attr("direction") {
        Some("LEFT") => true,
        Some("RIGHT") | None => false,
        Some(d) => return Err(format!("unknown BitShift direction '{d}'")),
    };
    if op == "BitShift" && ctx.str_attr("direction").is_none() {
        return Err("BitShift needs a direction".into());
    }
    let t = bit_ops!(op, left, a, b,
        U8, u8, 8; U16, u16, 16; U32, u32, 32; U64, u64, 64;
        I8, i8, 8; I16, i16, 16; I32, i32, 32; I64, i64, 64);
    one(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: &str, a: Tensor, b: Tensor) -> Result<Tensor> {
        let (va, vb) = (Value::Tensor(a), Value::Tensor(b));
        let ctx = KernelCtx {
            op_type: op,
            domain: "",
            opset: 17,
            attrs: &[],
            inputs: vec![Some(&va), Some(&vb)],
            num_outputs: 1,
            subgraphs: None,
            donated: Default::default(),
        };
        Ok(kernel(op).unwrap()(&ctx)?.remove(0).into_tensor().unwrap())
    }

    #[test]
    fn broadcasting_arithmetic() {
        let a = Tensor::from_vec(vec![2, 1], vec![1.0f32, 2.0]);
        let b = Tensor::from_vec(vec![3], vec![10.0f32, 20.0, 30.0]);
        let r = run("Add", a, b).unwrap();
        assert_eq!(r.shape, vec![2, 3]);
        assert_eq!(
            r.as_slice::<f32>().unwrap(),
            &[11.0, 21.0, 31.0, 12.0, 22.0, 32.0]
        );
        let r = run(
            "Div",
            Tensor::from_vec(vec![2], vec![7i32, -7]),
            Tensor::scalar(2i32),
        )
        .unwrap();
        assert_eq!(r.as_slice::<i32>().unwrap(), &[3, -3]);
        assert!(run("Div", Tensor::scalar(1i32), Tensor::scalar(0i32)).is_err());
        assert!(run("Add", Tensor::scalar(1i32), Tensor::scalar(1.0f32)).is_err());
    }

    #[test]
    fn comparisons() {
        let r = run(
            "Less",
            Tensor::from_vec(vec![3], vec![1i64, 5, 3]),
            Tensor::scalar(3i64),
        )
        .unwrap();
        assert_eq!(r.as_slice::<bool>().unwrap(), &[true, false, false]);
    }
}
