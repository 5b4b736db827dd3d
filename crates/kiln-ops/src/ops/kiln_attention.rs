//! ai.kiln `Sdpa`: an exported attention block as one node, written by the optimizer's
//! attention fusion inside a session (never saved). With `Q = Transpose(q, q_perm)`
//! (`[B, N, S, H]`), `Kᵀ = Transpose(k, k_perm)` (`[B, N, H, T]`) and
//! `V = Transpose(v, v_perm)` (`[B, N, T, Hv]`), the output is
//! `Transpose(Softmax(scale · Q·Kᵀ + bias) · V, out_perm)`; the optional `bias` broadcasts
//! into the scores as the Add it replaces did, and the batch and head axes broadcast as
//! MatMul's do. Every transpose is read or written through strides by
//! [`kiln_kernels::attention`], so none of them, nor the scores, is materialized.
use kiln_ir::{AttrList, Dim};

use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{one, KernelCtx, KernelFn};
use crate::value::{Data, Tensor};
use kiln_kernels::attention::{Sdpa, Strided4};

pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    (domain == super::kiln_fused::DOMAIN && op_type == "Sdpa").then_some(run as KernelFn)
}

/// The permutation attribute `name` (identity when absent).
fn perm(attrs: &[kiln_ir::Attribute], name: &str) -> Result<[usize; 4]> {
    let Some(p) = attrs.get_ints(name) else {
        return Ok([0, 1, 2, 3]);
    };
    let mut seen = [false; 4];
    let mut out = [0; 4];
    if p.len() != 4 {
        return Err(format!("{name} {p:?} is not a permutation of 4 axes"));
    }
    for (o, &v) in out.iter_mut().zip(p) {
        if !(0..4).contains(&v) || seen[v as usize] {
            return Err(format!("{name} {p:?} is not a permutation of 4 axes"));
        }
        seen[v as usize] = true;
        *o = v as usize;
    }
    Ok(out)
}

/// The output's dims before `out_perm`: `[B, N, S, Hv]`.
fn canonical(q: &[Dim], k: &[Dim], v: &[Dim], p: [[usize; 4]; 3]) -> [Dim; 4] {
    let at = |s: &[Dim], perm: [usize; 4], i: usize| s[perm[i]].clone();
    let join = |a: Dim, b: Dim| match (a.known(), b.known()) {
        (Some(1), _) => b,
        (_, Some(1)) => a,
        _ if a == b => a,
        _ => Dim::Unknown,
    };
    let b = join(join(at(q, p[0], 0), at(k, p[1], 0)), at(v, p[2], 0));
    let n = join(join(at(q, p[0], 1), at(k, p[1], 1)), at(v, p[2], 1));
    [b, n, at(q, p[0], 2), at(v, p[2], 3)]
}

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let dt = ctx.dtype(0);
    let perms = [
        perm(ctx.attrs, "q_perm")?,
        perm(ctx.attrs, "k_perm")?,
        perm(ctx.attrs, "v_perm")?,
    ];
    let out_perm = perm(ctx.attrs, "out_perm")?;
    let shape = match (ctx.shape(0), ctx.shape(1), ctx.shape(2)) {
        (Some(q), Some(k), Some(v)) if q.len() == 4 && k.len() == 4 && v.len() == 4 => {
            let c = canonical(&q, &k, &v, perms);
            Some(out_perm.iter().map(|&i| c[i].clone()).collect())
        }
        _ => None,
    };
    Ok(vec![Inferred::tensor(dt, shape)])
}

/// Row-major strides of `shape`.
fn dense(shape: &[usize]) -> Vec<usize> {
    let mut st = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        st[i] = st[i + 1] * shape[i + 1];
    }
    st
}

/// `t` seen through `perm` (`Transpose(t, perm)` without the copy).
fn view<'a>(t: &'a Tensor, perm: [usize; 4], what: &str) -> Result<Strided4<'a>> {
    let Data::F32(d) = &t.data else {
        return Err(format!("{what} is {:?}; Sdpa runs float32 only", t.dtype()));
    };
    if t.rank() != 4 {
        return Err(format!("{what} has shape {:?}, expected rank 4", t.shape));
    }
    let st = dense(&t.shape);
    Strided4::new(
        d,
        std::array::from_fn(|i| t.shape[perm[i]]),
        std::array::from_fn(|i| st[perm[i]]),
    )
}

fn run(ctx: &KernelCtx) -> Result<Vec<crate::value::Value>> {
    let (q, k, v) = (ctx.tensor(0)?, ctx.tensor(1)?, ctx.tensor(2)?);
    let qv = view(q, perm(ctx.attrs, "q_perm")?, "Q")?;
    let kt = view(k, perm(ctx.attrs, "k_perm")?, "K")?;
    let vv = view(v, perm(ctx.attrs, "v_perm")?, "V")?;
    let out_perm = perm(ctx.attrs, "out_perm")?;
    let bias = match ctx.opt_tensor(3)? {
        Some(b) if b.rank() > 4 => {
            return Err(format!(
                "the bias has shape {:?}, more axes than the scores",
                b.shape
            ))
        }
        Some(b) => {
            let Data::F32(d) = &b.data else {
                return Err(format!("the bias is {:?}, expected float32", b.dtype()));
            };
            let mut dims = [1; 4];
            dims[4 - b.rank()..].copy_from_slice(&b.shape);
            Some(Strided4::dense(d, dims)?)
        }
        None => None,
    };
    // The kernel takes K as [B, N, T, H]: Kᵀ's last two axes swapped.
    let k = Strided4 {
        dims: [kt.dims[0], kt.dims[1], kt.dims[3], kt.dims[2]],
        strides: [kt.strides[0], kt.strides[1], kt.strides[3], kt.strides[2]],
        ..kt
    };
    let a = Sdpa {
        isa: kiln_kernels::Isa::detect(),
        q: qv,
        k,
        v: vv,
        bias,
        scale: ctx.attrs.get_float("scale").unwrap_or(1.0),
        causal: None,
    };
    let c = a.out_dims()?;
    let shape: Vec<usize> = out_perm.iter().map(|&i| c[i]).collect();
    let ys = dense(&shape);
    let mut cs = [0; 4];
    for (i, &ax) in out_perm.iter().enumerate() {
        cs[ax] = ys[i];
    }
    let len = super::linalg::product(&shape)?;
    let mut y = kiln_kernels::vecmath::zeros(len);
    a.run(&mut y, cs)?;
    one(Tensor::new(shape, Data::F32(y)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;
    use kiln_ir::Attribute;

    fn t(shape: &[usize], seed: u32) -> Option<Tensor> {
        let n: usize = shape.iter().product();
        let mut s = seed.wrapping_mul(2_654_435_761) | 1;
        let v = (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect();
        Some(Tensor::new(shape.to_vec(), Data::F32(v)))
    }

    fn call(ins: &[Option<Tensor>], attrs: &[Attribute]) -> Result<Tensor> {
        let vals: Vec<Option<Value>> = ins.iter().map(|t| t.clone().map(Value::Tensor)).collect();
        let ctx = KernelCtx {
            op_type: "Sdpa",
            domain: super::super::kiln_fused::DOMAIN,
            opset: 1,
            attrs,
            inputs: vals.iter().map(|v| v.as_ref()).collect(),
            num_outputs: 1,
            subgraphs: None,
            donated: Default::default(),
        };
        match run(&ctx)?.remove(0) {
            Value::Tensor(t) => Ok(t),
            _ => unreachable!(),
        }
    }

    /// The unfused composition, in f64: transposes, MatMul, scale, Add, Softmax, MatMul.
    fn composed(q: &Tensor, k: &Tensor, v: &Tensor, bias: &Tensor, scale: f64) -> Vec<f64> {
        // q, v: [B, S, N, H] (transposed by [0, 2, 1, 3]); k: [B, S, N, H] (by [0, 2, 3, 1]);
        // output transposed back by [0, 2, 1, 3]; bias [B, 1, 1, T].
        let f = |t: &Tensor| -> Vec<f64> {
            let Data::F32(d) = &t.data else {
                unreachable!()
            };
            d.iter().map(|&x| x as f64).collect()
        };
        let (qd, kd, vd, bd) = (f(q), f(k), f(v), f(bias));
        let [b, s, n, h] = [q.shape[0], q.shape[1], q.shape[2], q.shape[3]];
        let t = k.shape[1];
        let mut y = vec![0f64; b * s * n * h];
        for bi in 0..b {
            for ni in 0..n {
                for i in 0..s {
                    let mut sc: Vec<f64> = (0..t)
                        .map(|j| {
                            let dot: f64 = (0..h)
                                .map(|d| {
                                    qd[((bi * s + i) * n + ni) * h + d]
                                        * kd[((bi * t + j) * n + ni) * h + d]
                                })
                                .sum();
                            dot * scale + bd[bi * t + j]
                        })
                        .collect();
                    let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    sc.iter_mut().for_each(|x| *x = (*x - m).exp());
                    let sum: f64 = sc.iter().sum();
                    for d in 0..h {
                        y[((bi * s + i) * n + ni) * h + d] = (0..t)
                            .map(|j| sc[j] / sum * vd[((bi * t + j) * n + ni) * h + d])
                            .sum();
                    }
                }
            }
        }
        y
    }

    #[test]
    fn matches_the_composition_it_replaces() {
        let (b, s, n, h) = (2, 9, 3, 8);
        let q = t(&[b, s, n, h], 1).unwrap();
        let k = t(&[b, s, n, h], 2).unwrap();
        let v = t(&[b, s, n, h], 3).unwrap();
        let bias = t(&[b, 1, 1, s], 4).unwrap();
        let attrs = [
            Attribute::ints("q_perm", &[0, 2, 1, 3]),
            Attribute::ints("k_perm", &[0, 2, 3, 1]),
            Attribute::ints("v_perm", &[0, 2, 1, 3]),
            Attribute::ints("out_perm", &[0, 2, 1, 3]),
            Attribute::float("scale", 0.35),
        ];
        let y = call(
            &[
                Some(q.clone()),
                Some(k.clone()),
                Some(v.clone()),
                Some(bias.clone()),
            ],
            &attrs,
        )
        .unwrap();
        assert_eq!(y.shape, vec![b, s, n, h]);
        let want = composed(&q, &k, &v, &bias, 0.35f32 as f64);
        let Data::F32(got) = &y.data else { panic!() };
        for (g, w) in got.iter().zip(&want) {
            assert!((*g as f64 - w).abs() < 1e-5 + 1e-4 * w.abs(), "{g} vs {w}");
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let q = t(&[1, 2, 3, 4], 1);
        let attrs = [Attribute::ints("q_perm", &[0, 1, 1, 3])];
        let e = call(&[q.clone(), q.clone(), q.clone()], &attrs).unwrap_err();
        assert!(e.contains("permutation"), "{e}");
        let e = call(&[q.clone(), t(&[1, 2, 5, 4], 2), q.clone()], &[]).unwrap_err();
        assert!(e.contains("head size"), "{e}");
        let e = call(&[t(&[2, 3, 4], 1), q.clone(), q.clone()], &[]).unwrap_err();
        assert!(e.contains("rank 4"), "{e}");
        let kt = t(&[1, 2, 4, 3], 3);
        let e = call(
            &[q.clone(), kt.clone(), q.clone(), t(&[1, 1, 1, 1, 3], 1)],
            &[],
        )
        .unwrap_err();
        assert!(e.contains("more axes"), "{e}");
        let e = call(
            &[q.clone(), kt.clone(), q.clone(), t(&[1, 1, 5, 3], 1)],
            &[],
        )
        .unwrap_err();
        assert!(e.contains("broadcast"), "{e}");
    }
}
