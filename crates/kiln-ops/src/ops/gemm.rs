//! Gemm (and com.microsoft FusedGemm): `alpha * A' * B' + beta * C` with optional transposes.
use kiln_ir::DataType;

use super::linalg::{float_dispatch, gemm, same_dtype, Act, Mat, Real, Scalar};
use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{one, KernelCtx};
use crate::value::{Data, Elem, Tensor, Value};

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let (Some(a), Some(b)) = (ctx.shape(0), ctx.shape(1)) else {
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None)]);
    };
    if a.len() != 2 || b.len() != 2 {
        return Err(format!(
            "A and B must be matrices, got ranks {} and {}",
            a.len(),
            b.len()
        ));
    }
    let ta = ctx.int_attr("transA", 0) != 0;
    let tb = ctx.int_attr("transB", 0) != 0;
    let (m, ka) = if ta { (&a[1], &a[0]) } else { (&a[0], &a[1]) };
    let (kb, n) = if tb { (&b[1], &b[0]) } else { (&b[0], &b[1]) };
    if let (Some(x), Some(y)) = (ka.known(), kb.known()) {
        if x != y {
            return Err(format!("inner dimensions differ: A gives {x}, B gives {y}"));
        }
    }
    Ok(vec![Inferred::tensor(
        ctx.dtype(0),
        Some(vec![m.clone(), n.clone()]),
    )])
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    match (domain, op_type) {
        ("", "Gemm") => Some(run_gemm),
        ("com.microsoft", "FusedGemm") => Some(run_fused_gemm),
        _ => None,
    }
}

/// FusedGemm runs only the activations kiln knows.
pub fn check_fused(attrs: &[kiln_ir::Attribute], _opset: i64) -> Result<()> {
    Act::fused_gemm(attrs).map(|_| ())
}

fn run_gemm(ctx: &KernelCtx) -> Result<Vec<Value>> {
    run(ctx, Act::Identity)
}

fn run_fused_gemm(ctx: &KernelCtx) -> Result<Vec<Value>> {
    run(ctx, Act::fused_gemm(ctx.attrs)?)
}

/// The problem after validation: `Y (m x n) = alpha * op(A) * op(B) + beta * C`.
struct Dims {
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
}

fn run(ctx: &KernelCtx, act: Act) -> Result<Vec<Value>> {
    let a = ctx.tensor(0)?;
    let b = ctx.tensor(1)?;
    let c = ctx.opt_tensor(2)?;
    if a.rank() != 2 || b.rank() != 2 {
        return Err(format!(
            "A and B must be matrices, got shapes {:?} and {:?}",
            a.shape, b.shape
        ));
    }
    let ta = ctx.int_attr("transA", 0) != 0;
    let tb = ctx.int_attr("transB", 0) != 0;
    let (m, ka) = if ta {
        (a.shape[1], a.shape[0])
    } else {
        (a.shape[0], a.shape[1])
    };
    let (kb, n) = if tb {
        (b.shape[1], b.shape[0])
    } else {
        (b.shape[0], b.shape[1])
    };
    if ka != kb {
        return Err(format!(
            "inner dimensions differ: A {:?} (transA {ta}) and B {:?} (transB {tb})",
            a.shape, b.shape
        ));
    }
    let mut tensors = vec![("A", a), ("B", b)];
    if let Some(c) = c {
        tensors.push(("C", c));
        let ok = c.rank() <= 2
            && c.shape
                .iter()
                .rev()
                .zip([n, m])
                .all(|(&d, t)| d == t || d == 1);
        if !ok {
            return Err(format!(
                "C of shape {:?} does not broadcast to [{m}, {n}]",
                c.shape
            ));
        }
    }
    same_dtype(&tensors)?;
    let d = Dims {
        m,
        n,
        k: ka,
        ta,
        tb,
    };
    let alpha = ctx.float_attr("alpha", 1.0);
    let beta = ctx.float_attr("beta", 1.0);
    let data = match a.dtype() {
        DataType::I32 => int_gemm::<i32>(&d, a, b, c, alpha, beta, act, |x| x as i32)?,
        DataType::I64 => int_gemm::<i64>(&d, a, b, c, alpha, beta, act, |x| x)?,
        DataType::U32 => int_gemm::<u32>(&d, a, b, c, alpha, beta, act, |x| x as u32)?,
        DataType::U64 => int_gemm::<u64>(&d, a, b, c, alpha, beta, act, |x| x as u64)?,
        dt => float_dispatch!(dt, float_gemm(&d, a, b, c, alpha, beta, act))?,
    };
    one(Tensor::new(vec![m, n], data))
}

/// Y filled with C broadcast to m x n.
fn broadcast_c<T: Copy>(c: &[T], shape: &[usize], m: usize, n: usize) -> Vec<T> {
    let (cm, cn) = match shape {
        [] => (1, 1),
        [x] => (1, *x),
        [x, y] => (*x, *y),
        _ => (1, 1),
    };
    let mut y = Vec::with_capacity(m * n);
    for i in 0..m {
        let r = if cm == 1 { 0 } else { i };
        for j in 0..n {
            y.push(c[r * cn + if cn == 1 { 0 } else { j }]);
        }
    }
    y
}

fn views<'a, T: Copy>(d: &Dims, a: &'a [T], b: &'a [T]) -> (Mat<'a, T>, Mat<'a, T>) {
    let av = if d.ta {
        Mat::rows(a, d.m).t()
    } else {
        Mat::rows(a, d.k)
    };
    let bv = if d.tb {
        Mat::rows(b, d.k).t()
    } else {
        Mat::rows(b, d.n)
    };
    (av, bv)
}

#[allow(clippy::too_many_arguments)]
fn float_gemm<T: Real>(
    d: &Dims,
    a: &Tensor,
    b: &Tensor,
    c: Option<&Tensor>,
    alpha: f32,
    beta: f32,
    act: Act,
) -> Result<Data> {
    let av = T::load(a)?;
    let bv = T::load(b)?;
    let (mut y, beta) = match c {
        Some(c) if beta != 0.0 => (broadcast_c(&T::load(c)?, &c.shape, d.m, d.n), beta),
        _ => (vec![T::zero(); d.m * d.n], 0.0),
    };
    let (am, bm) = views(d, &av, &bv);
    gemm(
        d.m,
        d.n,
        d.k,
        T::of(alpha as f64),
        am,
        bm,
        T::of(beta as f64),
        &mut y,
        d.n,
    )?;
    act.apply_all(&mut y);
    Ok(T::store(y, a.dtype()))
}

#[allow(clippy::too_many_arguments)]
fn int_gemm<T: Scalar + Elem>(
    d: &Dims,
    a: &Tensor,
    b: &Tensor,
    c: Option<&Tensor>,
    alpha: f32,
    beta: f32,
    act: Act,
    from: fn(i64) -> T,
) -> Result<Data> {
    if act != Act::Identity {
        return Err("fused activations need float tensors".into());
    }
    let whole = |v: f32, name: &str| -> Result<T> {
        if v.fract() == 0.0 && v.abs() < 2f32.powi(62) {
            Ok(from(v as i64))
        } else {
            Err(format!(
                "{name} {v} is not a whole number, as integer Gemm needs"
            ))
        }
    };
    let (alpha, beta) = (whole(alpha, "alpha")?, whole(beta, "beta")?);
    fn get<T: Elem>(t: &Tensor) -> Result<&[T]> {
        t.as_slice::<T>()
            .ok_or_else(|| "tensor type mismatch".to_string())
    }
    let (av, bv) = (get::<T>(a)?, get::<T>(b)?);
    let (mut y, beta) = match c {
        Some(c) if beta != T::ZERO => (broadcast_c(get::<T>(c)?, &c.shape, d.m, d.n), beta),
        _ => (vec![T::ZERO; d.m * d.n], T::ZERO),
    };
    let (am, bm) = views(d, av, bv);
    gemm(d.m, d.n, d.k, alpha, am, bm, beta, &mut y, d.n)?;
    Ok(T::wrap(y))
}

#[cfg(test)]
mod kernel_tests {
    use super::*;
    use kiln_ir::Attribute;

    fn call(op: &str, domain: &str, ins: &[Tensor], attrs: &[Attribute]) -> Result<Tensor> {
        let vals: Vec<Value> = ins.iter().cloned().map(Value::Tensor).collect();
        let ctx = KernelCtx {
            op_type: op,
            domain,
            opset: 13,
            attrs,
            inputs: vals.iter().map(Some).collect(),
            num_outputs: 1,
            subgraphs: None,
            donated: Default::default(),
        };
        let f = kernel(domain, op).unwrap();
        Ok(f(&ctx)?.remove(0).into_tensor().unwrap())
    }

    #[test]
    fn gemm_with_transposes_and_bias() {
        // A' = [[1,2],[3,4]] given transposed, B = [[1,0,1],[0,1,1]].
        let a = Tensor::from_vec(vec![2, 2], vec![1.0f32, 3.0, 2.0, 4.0]);
        let b = Tensor::from_vec(vec![2, 3], vec![1.0f32, 0.0, 1.0, 0.0, 1.0, 1.0]);
        let c = Tensor::from_vec(vec![3], vec![10.0f32, 20.0, 30.0]);
        let attrs = [
            Attribute::int("transA", 1),
            Attribute::float("alpha", 2.0),
            Attribute::float("beta", 0.5),
        ];
        let y = call("Gemm", "", &[a, b, c], &attrs).unwrap();
        assert_eq!(y.shape, vec![2, 3]);
        assert_eq!(
            y.as_slice::<f32>().unwrap(),
            &[7.0, 14.0, 21.0, 11.0, 18.0, 29.0]
        );
    }

    #[test]
    fn gemm_types_and_errors() {
        let a = Tensor::from_vec(vec![1, 2], vec![1i64, 2]);
        let b = Tensor::from_vec(vec![2, 1], vec![3i64, 4]);
        let y = call("Gemm", "", &[a.clone(), b.clone()], &[]).unwrap();
        assert_eq!(y.as_slice::<i64>().unwrap(), &[11]);
        let h = |v: &[f32]| {
            v.iter()
                .map(|&x| half::f16::from_f32(x))
                .collect::<Vec<_>>()
        };
        let a16 = Tensor::from_vec(vec![1, 2], h(&[1.0, 2.0]));
        let b16 = Tensor::from_vec(vec![2, 1], h(&[3.0, 4.0]));
        let y = call("Gemm", "", &[a16, b16], &[]).unwrap();
        assert_eq!(y.as_slice::<half::f16>().unwrap(), &h(&[11.0])[..]);
        assert!(call("Gemm", "", &[a.clone(), a.clone()], &[])
            .unwrap_err()
            .contains("inner"));
        let bad_c = Tensor::from_vec(vec![3], vec![1i64, 2, 3]);
        assert!(call("Gemm", "", &[a, b, bad_c], &[])
            .unwrap_err()
            .contains("broadcast"));
    }

    #[test]
    fn fused_gemm_applies_activation() {
        let a = Tensor::from_vec(vec![1, 2], vec![1.0f32, -2.0]);
        let b = Tensor::from_vec(vec![2, 2], vec![1.0f32, 0.0, 0.0, 1.0]);
        let attrs = [
            Attribute::string("activation", "LeakyRelu"),
            Attribute::float("activation_alpha", 0.5),
        ];
        let y = call(
            "FusedGemm",
            "com.microsoft",
            &[a.clone(), b.clone()],
            &attrs,
        )
        .unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[1.0, -1.0]);
        let attrs = [Attribute::string("activation", "Relu")];
        let y = call(
            "FusedGemm",
            "com.microsoft",
            &[a.clone(), b.clone()],
            &attrs,
        )
        .unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[1.0, 0.0]);
        let attrs = [
            Attribute::string("activation", "HardSigmoid"),
            Attribute::float("activation_alpha", 0.25),
            Attribute::float("activation_beta", 0.5),
        ];
        let y = call("FusedGemm", "com.microsoft", &[a, b], &attrs).unwrap();
        assert_eq!(y.as_slice::<f32>().unwrap(), &[0.75, 0.0]);
        let bad = [Attribute::string("activation", "Swish")];
        assert!(check_fused(&bad, 1).is_err());
    }
}
