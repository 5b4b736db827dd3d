//! MatMul (numpy semantics: 1-D operands are promoted and the added dim removed; batch dims
//! broadcast), also used for com.microsoft FusedMatMul: `alpha`, `transA`/`transB`, and
//! `transBatchA`/`transBatchB`, which move an operand's first dim to just before its last two
//! (ORT writes them when it folds a Transpose of the batch dims into the product).

use super::linalg::{filled, float_dispatch, gemm, product, same_dtype, Mat, Real, Scalar};
use crate::ctx::{broadcast, InferCtx, Inferred, Result};
use crate::kernel::{
    broadcast_index, broadcast_shape, broadcast_strides, one, KernelCtx, PrepareCtx, PreparedKernel,
};
use crate::value::{Data, Tensor, Value};
use kiln_ir::AttrList;

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    infer_with(ctx, 1, ctx.dtype(0))
}

/// QLinearMatMul: B is input 3; the output has y_zero_point's type (uint8 without).
pub fn infer_qlinear(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let dt = if ctx.has_input(7) {
        ctx.dtype(7)
    } else {
        Some(kiln_ir::DataType::U8)
    };
    infer_with(ctx, 3, dt)
}

fn infer_with(
    ctx: &InferCtx,
    b_slot: usize,
    dt: Option<kiln_ir::DataType>,
) -> Result<Vec<Inferred>> {
    let (Some(a), Some(b)) = (ctx.shape(0), ctx.shape(b_slot)) else {
        return Ok(vec![Inferred::tensor(dt, None)]);
    };
    if a.is_empty() || b.is_empty() {
        return Err("MatMul operands must have rank >= 1".into());
    }
    let mut a2 = a.to_vec();
    let mut b2 = b.to_vec();
    if a.len() == 1 {
        a2.insert(0, kiln_ir::Dim::Known(1));
    }
    if b.len() == 1 {
        b2.push(kiln_ir::Dim::Known(1));
    }
    if ctx.domain == "com.microsoft" {
        let ra = a2.len();
        let rb = b2.len();
        if ctx.int_attr("transBatchA", 0) != 0 {
            a2 = batch_perm(ra).iter().map(|&i| a2[i].clone()).collect();
        }
        if ctx.int_attr("transBatchB", 0) != 0 {
            b2 = batch_perm(rb).iter().map(|&i| b2[i].clone()).collect();
        }
        if ctx.int_attr("transA", 0) != 0 {
            a2.swap(ra - 2, ra - 1);
        }
        if ctx.int_attr("transB", 0) != 0 {
            b2.swap(rb - 2, rb - 1);
        }
    }
    let (ka, kb) = (&a2[a2.len() - 1], &b2[b2.len() - 2]);
    if let (Some(x), Some(y)) = (ka.known(), kb.known()) {
        if x != y {
            return Err(format!("inner dimensions differ: {x} vs {y}"));
        }
    }
    let mut shape = broadcast(&[&a2[..a2.len() - 2], &b2[..b2.len() - 2]])?;
    if a.len() > 1 {
        shape.push(a2[a2.len() - 2].clone());
    }
    if b.len() > 1 {
        shape.push(b2[b2.len() - 1].clone());
    }
    Ok(vec![Inferred::tensor(dt, Some(shape))])
}

/// MatMulInteger: MatMul's shapes, int32 elements.
pub fn infer_integer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let mut out = infer(ctx)?;
    if let Some(kiln_ir::ValueType::Tensor { dtype, .. }) = out[0].ty.as_mut() {
        *dtype = Some(kiln_ir::DataType::I32);
    }
    Ok(out)
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    match (domain, op_type) {
        ("", "MatMul") => Some(run_matmul),
        ("com.microsoft", "FusedMatMul") => Some(run_matmul),
        _ => None,
    }
}

/// The permutation `transBatch` applies to an operand of rank `r` (identity below rank 3):
/// dim 0 moves behind the batch dims, before the matrix dims.
fn batch_perm(r: usize) -> Vec<usize> {
    if r < 3 {
        return (0..r).collect();
    }
    let mut p: Vec<usize> = (1..r - 1).collect();
    p.push(0);
    p.push(r - 1);
    p
}

/// The shape of a (batched) product, from the operand shapes.
struct Plan {
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
    out_shape: Vec<usize>,
    /// Per output matrix: the matrix index into A and into B.
    pairs: Vec<(usize, usize)>,
    /// A's matrices are stacked rows of one big matrix, against a single B: one GEMM.
    fold: bool,
}

fn plan(ash: &[usize], bsh: &[usize], ta: bool, tb: bool) -> Result<Plan> {
    if ash.is_empty() || bsh.is_empty() {
        return Err("MatMul operands must have rank >= 1".into());
    }
    let mut a2 = ash.to_vec();
    let mut b2 = bsh.to_vec();
    if ash.len() == 1 {
        a2.insert(0, 1);
    }
    if bsh.len() == 1 {
        b2.push(1);
    }
    let (ra, rb) = (a2.len(), b2.len());
    let (m, ka) = if ta {
        (a2[ra - 1], a2[ra - 2])
    } else {
        (a2[ra - 2], a2[ra - 1])
    };
    let (kb, n) = if tb {
        (b2[rb - 1], b2[rb - 2])
    } else {
        (b2[rb - 2], b2[rb - 1])
    };
    if ka != kb {
        return Err(format!(
            "inner dimensions differ: shapes {ash:?} and {bsh:?} give {ka} and {kb}"
        ));
    }
    let (ba, bb) = (&a2[..ra - 2], &b2[..rb - 2]);
    let batch = broadcast_shape(&[ba, bb])?;
    let count = product(&batch)?;
    product(&[count, m, n])?;
    // No pairs when the output is empty (its batch may still be huge).
    let pairs: Vec<(usize, usize)> = if count * m * n == 0 {
        Vec::new()
    } else {
        let ia = broadcast_index(&batch, &broadcast_strides(ba, &batch));
        let ib = broadcast_index(&batch, &broadcast_strides(bb, &batch));
        ia.into_iter().zip(ib).collect()
    };
    let mut out_shape = batch;
    if ash.len() > 1 {
        out_shape.push(m);
    }
    if bsh.len() > 1 {
        out_shape.push(n);
    }
    let b_count: usize = bb.iter().product();
    let fold =
        !ta && b_count == 1 && pairs.len() > 1 && pairs.iter().enumerate().all(|(i, p)| p.0 == i);
    Ok(Plan {
        m,
        n,
        k: ka,
        ta,
        tb,
        out_shape,
        pairs,
        fold,
    })
}

/// Runs the plan: `Y = alpha * op(A) * op(B)` per matrix pair.
fn batched<T: Scalar>(p: &Plan, a: &[T], b: &[T], alpha: T) -> Result<Vec<T>> {
    let (m, n, k) = (p.m, p.n, p.k);
    let count = p.pairs.len();
    // The plan checked that this product fits.
    let mut y = filled(count * m * n, T::ZERO)?;
    let bview = |bi: usize| -> Result<Mat<T>> {
        let bs = b
            .get(bi * k * n..(bi + 1) * k * n)
            .ok_or("B is shorter than its shape")?;
        Ok(if p.tb {
            Mat::rows(bs, k).t()
        } else {
            Mat::rows(bs, n)
        })
    };
    if p.fold {
        let av = Mat::rows(a, k);
        gemm(count * m, n, k, alpha, av, bview(0)?, T::ZERO, &mut y, n)?;
        return Ok(y);
    }
    if m * n == 0 {
        return Ok(y);
    }
    let one_pair = |(out, &(ai, bi)): (&mut [T], &(usize, usize))| -> Result<()> {
        let as_ = a
            .get(ai * m * k..(ai + 1) * m * k)
            .ok_or("A is shorter than its shape")?;
        let av = if p.ta {
            Mat::rows(as_, m).t()
        } else {
            Mat::rows(as_, k)
        };
        gemm(m, n, k, alpha, av, bview(bi)?, T::ZERO, out, n)
    };
    // Many small products (attention's per-head QKᵀ and ·V): the products go over the threads,
    // each on one thread, instead of each being split again.
    if count >= 2 * rayon::current_num_threads() && m * n * k <= 1 << 21 {
        use rayon::prelude::*;
        y.par_chunks_mut(m * n)
            .zip(&p.pairs)
            .try_for_each(|pair| kiln_kernels::gemm::serial(|| one_pair(pair)))?;
    } else {
        y.chunks_mut(m * n).zip(&p.pairs).try_for_each(one_pair)?;
    }
    Ok(y)
}

fn run_matmul(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let a = ctx.tensor(0)?;
    let b = ctx.tensor(1)?;
    same_dtype(&[("A", a), ("B", b)])?;
    let fused = ctx.domain == "com.microsoft";
    let (pa, pb);
    let (a, b) = if fused && (ctx.int_attr("transBatchA", 0) | ctx.int_attr("transBatchB", 0)) != 0
    {
        if a.rank() < 3 || a.rank() != b.rank() {
            return Err(format!(
                "transBatchA/transBatchB need operands of one rank >= 3, got shapes {:?} and {:?}",
                a.shape, b.shape
            ));
        }
        let moved = |t: &Tensor, name: &str| -> Result<Tensor> {
            if ctx.int_attr(name, 0) != 0 && t.rank() >= 3 {
                super::transpose::permute(t, &batch_perm(t.rank()))
            } else {
                Ok(t.clone())
            }
        };
        pa = moved(a, "transBatchA")?;
        pb = moved(b, "transBatchB")?;
        (&pa, &pb)
    } else {
        (a, b)
    };
    let ta = fused && ctx.int_attr("transA", 0) != 0;
    let tb = fused && ctx.int_attr("transB", 0) != 0;
    let alpha = if fused {
        ctx.float_attr("alpha", 1.0)
    } else {
        1.0
    };
    let p = plan(&a.shape, &b.shape, ta, tb)?;
    let data = match (&a.data, &b.data) {
        (Data::I32(x), Data::I32(y)) => Data::I32(batched(&p, x, y, int_alpha(alpha)? as i32)?),
        (Data::I64(x), Data::I64(y)) => Data::I64(batched(&p, x, y, int_alpha(alpha)?)?),
        (Data::U32(x), Data::U32(y)) => Data::U32(batched(&p, x, y, int_alpha(alpha)? as u32)?),
        (Data::U64(x), Data::U64(y)) => Data::U64(batched(&p, x, y, int_alpha(alpha)? as u64)?),
        _ => float_dispatch!(a.dtype(), float_matmul(&p, a, b, alpha))?,
    };
    one(Tensor::new(p.out_shape, data))
}

/// A MatMul (or FusedMatMul) whose B is a constant f32 matrix: B packed once, at session
/// creation, into the GEMM's column panels, so each run packs only A (the activations).
struct PreparedMatMul {
    packed: kiln_kernels::PackedB,
    shape: Vec<usize>,
    alpha: f32,
    tb: bool,
}

/// Packs a constant 2-D f32 B; `None` leaves the node to the plain kernel.
pub fn prepare(ctx: &PrepareCtx) -> Option<Box<dyn PreparedKernel>> {
    let fused = ctx.domain == "com.microsoft";
    let b = ctx.constant(1)?;
    let Data::F32(bv) = &b.data else { return None };
    if b.rank() != 2 || b.shape.contains(&0) {
        return None;
    }
    let attr = |name: &str| fused && ctx.attrs.get_int(name).unwrap_or(0) != 0;
    if attr("transA") || attr("transBatchA") || attr("transBatchB") {
        return None;
    }
    let tb = attr("transB");
    let (r, c) = (b.shape[0], b.shape[1]);
    let view = if tb {
        kiln_kernels::View::new(bv, c, r, 1, c)
    } else {
        kiln_kernels::View::new(bv, r, c, c, 1)
    };
    let alpha = if fused {
        ctx.attrs.get_float("alpha").unwrap_or(1.0)
    } else {
        1.0
    };
    Some(Box::new(PreparedMatMul {
        packed: kiln_kernels::PackedB::with_precision(
            kiln_kernels::Isa::detect(),
            view,
            ctx.precision,
        ),
        shape: b.shape.clone(),
        alpha,
        tb,
    }))
}

impl PreparedKernel for PreparedMatMul {
    fn run(&self, ctx: &KernelCtx) -> Result<Vec<Value>> {
        let a = ctx.tensor(0)?;
        let b = ctx.tensor(1)?;
        let Data::F32(av) = &a.data else {
            return run_matmul(ctx);
        };
        // The constant may have been overridden by a feed: then the plain kernel runs.
        if b.shape != self.shape || !matches!(b.data, Data::F32(_)) {
            return run_matmul(ctx);
        }
        let p = plan(&a.shape, &b.shape, false, self.tb)?;
        // A's matrices stacked are one M·batch × K matrix against the single B.
        let rows = p.pairs.len() * p.m;
        let y = if rows > 0 && p.k > 0 {
            // The product writes every element: no zeros first.
            let mut y = kiln_kernels::vecmath::unfilled(rows * p.n, f32::NAN);
            let view = kiln_kernels::View::new(av, rows, p.k, p.k, 1);
            kiln_kernels::sgemm_view(self.alpha, view, &self.packed, 0.0, &mut y, p.n);
            y
        } else {
            kiln_kernels::vecmath::zeros(rows * p.n)
        };
        one(Tensor::new(p.out_shape, Data::F32(y)))
    }
}

fn int_alpha(alpha: f32) -> Result<i64> {
    if alpha == 1.0 {
        Ok(1)
    } else {
        Err(format!("alpha {alpha} needs float tensors"))
    }
}

fn float_matmul<T: Real>(p: &Plan, a: &Tensor, b: &Tensor, alpha: f32) -> Result<Data> {
    let y = batched(p, &T::load(a)?, &T::load(b)?, T::of(alpha as f64))?;
    Ok(T::store(y, a.dtype()))
}

/// An 8-bit integer operand widened to i32.
fn widen(t: &Tensor, what: &str) -> Result<Vec<i32>> {
    match &t.data {
        Data::U8(v) => Ok(v.iter().map(|&x| x as i32).collect()),
        Data::I8(v) => Ok(v.iter().map(|&x| x as i32).collect()),
        other => Err(format!(
            "{what} must be uint8 or int8, got {}",
            other.dtype()
        )),
    }
}

/// MatMulInteger: `(A - a_zero_point) * (B - b_zero_point)` in int32. A's zero point is a
/// scalar or one per row of A; B's a scalar or one per column of B (optionally per matrix).
pub(crate) fn run_matmul_integer(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let a = ctx.tensor(0)?;
    let b = ctx.tensor(1)?;
    let p = plan(&a.shape, &b.shape, false, false)?;
    let mut av = widen(a, "A")?;
    let mut bv = widen(b, "B")?;
    if let Some(z) = ctx.opt_tensor(2)? {
        if z.dtype() != a.dtype() {
            return Err("a_zero_point must have A's type".into());
        }
        let z = widen(z, "a_zero_point")?;
        let k = p.k.max(1);
        let rows = av.len() / k;
        match z.len() {
            1 => av.iter_mut().for_each(|x| *x -= z[0]),
            l if l == p.m || (l == rows && l > 0) => {
                for (r, row) in av.chunks_mut(k).enumerate() {
                    let zp = z[r % l];
                    row.iter_mut().for_each(|x| *x -= zp);
                }
            }
            l => {
                return Err(format!(
                    "a_zero_point has {l} elements; expected 1 or one per row"
                ))
            }
        }
    }
    if let Some(z) = ctx.opt_tensor(3)? {
        if z.dtype() != b.dtype() {
            return Err("b_zero_point must have B's type".into());
        }
        let z = widen(z, "b_zero_point")?;
        let n = p.n.max(1);
        let mats = bv.len() / (p.k * n).max(1);
        match z.len() {
            1 => bv.iter_mut().for_each(|x| *x -= z[0]),
            l if l == p.n || (l == mats * n && l > 0) => {
                for (r, row) in bv.chunks_mut(n).enumerate() {
                    let base = if l == p.n { 0 } else { (r / p.k.max(1)) * n };
                    for (j, x) in row.iter_mut().enumerate() {
                        *x -= z[base + j];
                    }
                }
            }
            l => {
                return Err(format!(
                    "b_zero_point has {l} elements; expected 1 or one per column"
                ))
            }
        }
    }
    let y = batched(&p, &av, &bv, 1i32)?;
    one(Tensor::from_vec(p.out_shape, y))
}

#[cfg(test)]
mod kernel_tests {
    use super::*;
    use kiln_ir::Attribute;

    fn call(op: &str, domain: &str, ins: &[Option<Tensor>], attrs: &[Attribute]) -> Result<Tensor> {
        let vals: Vec<Option<Value>> = ins.iter().map(|t| t.clone().map(Value::Tensor)).collect();
        let ctx = KernelCtx {
            op_type: op,
            domain,
            opset: 13,
            attrs,
            inputs: vals.iter().map(|v| v.as_ref()).collect(),
            num_outputs: 1,
            subgraphs: None,
            donated: Default::default(),
        };
        let f = crate::ops::kernel_fn(domain, op).unwrap();
        Ok(f(&ctx)?.remove(0).into_tensor().unwrap())
    }

    fn f(shape: &[usize], v: &[f32]) -> Option<Tensor> {
        Some(Tensor::from_vec(shape.to_vec(), v.to_vec()))
    }

    /// A constant B packed at preparation gives what the plain kernel gives (f64 reference),
    /// for 1-D, 2-D and batched A, FusedMatMul's transB and alpha, and ragged sizes; a B fed
    /// with another shape goes back to the plain kernel.
    #[test]
    fn prepared_matches_plain() {
        let val = |n: usize, s: usize| -> Vec<f32> {
            (0..n)
                .map(|i| ((i * 7919 + s * 31) % 1001) as f32 / 500.0 - 1.0)
                .collect()
        };
        let cases: &[(&[usize], &[usize], &str, bool)] = &[
            (&[2, 37, 19], &[19, 70], "", false),
            (&[19], &[19, 5], "", false),
            (&[3, 1, 8, 64], &[64, 33], "", false),
            (&[128, 40], &[40, 17], "com.microsoft", false),
            (&[2, 9, 40], &[17, 40], "com.microsoft", true),
        ];
        for &(ash, bsh, domain, tb) in cases {
            let op = if domain.is_empty() {
                "MatMul"
            } else {
                "FusedMatMul"
            };
            let mut attrs = Vec::new();
            if !domain.is_empty() {
                attrs.push(Attribute::float("alpha", 0.5));
                attrs.push(Attribute::int("transB", tb as i64));
            }
            let a = f(ash, &val(ash.iter().product(), 1)).unwrap();
            let b = f(bsh, &val(bsh.iter().product(), 2)).unwrap();
            let want = call(op, domain, &[Some(a.clone()), Some(b.clone())], &attrs).unwrap();
            let prep = prepare(&PrepareCtx {
                op_type: op,
                domain,
                opset: 13,
                attrs: &attrs,
                constants: vec![None, Some(&b)],
                absent: vec![],
                precision: kiln_kernels::Precision::F32,
            })
            .expect("prepared");
            let vals = [Value::Tensor(a.clone()), Value::Tensor(b.clone())];
            let ctx = KernelCtx {
                op_type: op,
                domain,
                opset: 13,
                attrs: &attrs,
                inputs: vals.iter().map(Some).collect(),
                num_outputs: 1,
                subgraphs: None,
                donated: Default::default(),
            };
            let got = prep.run(&ctx).unwrap().remove(0).into_tensor().unwrap();
            assert_eq!(got.shape, want.shape, "{ash:?} x {bsh:?}");
            for (x, y) in got
                .as_slice::<f32>()
                .unwrap()
                .iter()
                .zip(want.as_slice::<f32>().unwrap())
            {
                assert!(
                    (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                    "{ash:?} x {bsh:?}: {x} vs {y}"
                );
            }
            // Fed a B of another shape (an overridden initializer): the plain kernel answers.
            let other = f(&[ash[ash.len() - 1], 3], &val(ash[ash.len() - 1] * 3, 3)).unwrap();
            if !tb {
                let vals = [Value::Tensor(a.clone()), Value::Tensor(other.clone())];
                let ctx = KernelCtx {
                    inputs: vals.iter().map(Some).collect(),
                    ..ctx
                };
                let got = prep.run(&ctx).unwrap().remove(0).into_tensor().unwrap();
                let want = call(op, domain, &[Some(a), Some(other)], &attrs).unwrap();
                assert_eq!(got.shape, want.shape);
            }
        }
        let int_b = Tensor::from_vec(vec![2, 2], vec![1i64, 2, 3, 4]);
        let c = PrepareCtx {
            op_type: "MatMul",
            domain: "",
            opset: 13,
            attrs: &[],
            constants: vec![None, Some(&int_b)],
            absent: vec![],
            precision: kiln_kernels::Precision::F32,
        };
        assert!(prepare(&c).is_none(), "integer B stays on the plain kernel");
    }

    /// Random shapes (many invalid): every call returns, none panics.
    #[test]
    fn random_shapes_never_panic() {
        let mut seed = 9u64;
        let mut r = move |n: i64| -> i64 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as i64).rem_euclid(n)
        };
        let mut ok = 0;
        for _ in 0..5000 {
            let mut shape = || -> Vec<usize> { (0..1 + r(4)).map(|_| r(4) as usize).collect() };
            let (sa, sb) = (shape(), shape());
            let a: Vec<f32> = (0..sa.iter().product::<usize>())
                .map(|v| v as f32)
                .collect();
            let b: Vec<f32> = (0..sb.iter().product::<usize>())
                .map(|v| v as f32)
                .collect();
            let attrs = [
                Attribute::int("transA", r(2)),
                Attribute::int("transB", r(2)),
            ];
            let (op, dom) = if r(2) == 0 {
                ("MatMul", "")
            } else {
                ("FusedMatMul", "com.microsoft")
            };
            ok += call(op, dom, &[f(&sa, &a), f(&sb, &b)], &attrs).is_ok() as usize;
        }
        assert!(ok > 300, "only {ok} valid cases");
    }

    #[test]
    fn shapes_and_broadcasting() {
        // [2,1,2,2] x [3,2,1] -> [2,3,2,1]
        let a: Vec<f32> = (0..8).map(|x| x as f32).collect();
        let b: Vec<f32> = (0..6).map(|x| x as f32).collect();
        let y = call(
            "MatMul",
            "",
            &[f(&[2, 1, 2, 2], &a), f(&[3, 2, 1], &b)],
            &[],
        )
        .unwrap();
        assert_eq!(y.shape, vec![2, 3, 2, 1]);
        let mut want = Vec::new();
        for i in 0..2 {
            for j in 0..3 {
                for r in 0..2 {
                    let x = &a[i * 4 + r * 2..i * 4 + r * 2 + 2];
                    want.push(x[0] * b[j * 2] + x[1] * b[j * 2 + 1]);
                }
            }
        }
        assert_eq!(y.as_slice::<f32>().unwrap(), &want[..]);
        // 1-D x 1-D is a scalar; 1-D x 3-D drops the row dim.
        let y = call(
            "MatMul",
            "",
            &[f(&[3], &[1., 2., 3.]), f(&[3], &[4., 5., 6.])],
            &[],
        )
        .unwrap();
        assert_eq!(y.shape, Vec::<usize>::new());
        assert_eq!(y.as_slice::<f32>().unwrap(), &[32.0]);
        let y = call(
            "MatMul",
            "",
            &[f(&[2], &[1., 2.]), f(&[2, 2, 1], &[1., 1., 2., 3.])],
            &[],
        )
        .unwrap();
        assert_eq!(y.shape, vec![2, 1]);
        assert_eq!(y.as_slice::<f32>().unwrap(), &[3.0, 8.0]);
        // Folded batch against one matrix.
        let y = call(
            "MatMul",
            "",
            &[f(&[2, 1, 2], &[1., 2., 3., 4.]), f(&[2, 1], &[1., 10.])],
            &[],
        )
        .unwrap();
        assert_eq!(y.shape, vec![2, 1, 1]);
        assert_eq!(y.as_slice::<f32>().unwrap(), &[21.0, 43.0]);
        assert!(call(
            "MatMul",
            "",
            &[f(&[2, 3], &[0.; 6]), f(&[2, 3], &[0.; 6])],
            &[]
        )
        .is_err());
        assert!(call(
            "MatMul",
            "",
            &[f(&[2, 2, 2], &[0.; 8]), f(&[3, 2, 2], &[0.; 12])],
            &[]
        )
        .is_err());
    }

    #[test]
    fn fused_matmul_transposes_and_alpha() {
        let attrs = [
            Attribute::int("transA", 1),
            Attribute::int("transB", 1),
            Attribute::float("alpha", 0.5),
        ];
        // A' = [[1,3],[2,4]]^T... A stored [[1,2],[3,4]] so A' = [[1,3],[2,4]].
        let y = call(
            "FusedMatMul",
            "com.microsoft",
            &[f(&[2, 2], &[1., 2., 3., 4.]), f(&[1, 2], &[1., 1.])],
            &attrs,
        )
        .unwrap();
        assert_eq!(y.shape, vec![2, 1]);
        assert_eq!(y.as_slice::<f32>().unwrap(), &[2.0, 3.0]);
        assert_eq!(batch_perm(4), vec![1, 2, 0, 3]);
        assert_eq!(batch_perm(2), vec![0, 1]);
        // As in ORT, the batch transposes need operands of one rank >= 3.
        let bad = call(
            "FusedMatMul",
            "com.microsoft",
            &[f(&[2, 1, 2], &[1.; 4]), f(&[2, 1], &[1.; 2])],
            &[Attribute::int("transBatchA", 1)],
        );
        assert!(bad.is_err());
    }

    #[test]
    fn matmul_integer_zero_points() {
        let a = Tensor::from_vec(vec![2, 2], vec![10u8, 11, 12, 13]);
        let b = Tensor::from_vec(vec![2, 2], vec![1i8, 2, 3, 4]);
        let az = Tensor::scalar(10u8);
        let bz = Tensor::from_vec(vec![2], vec![1i8, 2]);
        let y = call(
            "MatMulInteger",
            "",
            &[Some(a), Some(b), Some(az), Some(bz)],
            &[],
        )
        .unwrap();
        // A - 10 = [[0,1],[2,3]], B - [1,2] = [[0,0],[2,2]]
        assert_eq!(y.as_slice::<i32>().unwrap(), &[2, 2, 6, 6]);
        let y = call(
            "MatMul",
            "",
            &[
                Some(Tensor::from_vec(vec![1, 2], vec![i32::MAX, 1])),
                Some(Tensor::from_vec(vec![2, 1], vec![2, 2])),
            ],
            &[],
        )
        .unwrap();
        assert_eq!(
            y.as_slice::<i32>().unwrap(),
            &[i32::MAX.wrapping_mul(2).wrapping_add(2)]
        );
    }
}
