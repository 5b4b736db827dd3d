//! Transpose: dims permuted by `perm` (reversed by default).
use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{one, strides, KernelCtx};
use crate::ops::movement;
use crate::value::{Tensor, Value};

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let Some(s) = ctx.shape(0) else {
        return Ok(vec![Inferred::tensor(ctx.dtype(0), None)]);
    };
    let perm: Vec<i64> = match ctx.ints_attr("perm") {
        Some(p) => p.to_vec(),
        None => (0..s.len() as i64).rev().collect(),
    };
    if perm.len() != s.len() {
        return Err(format!(
            "perm has {} entries for rank {}",
            perm.len(),
            s.len()
        ));
    }
    let mut seen = vec![false; s.len()];
    let mut shape = Vec::with_capacity(s.len());
    for &p in &perm {
        let a = ctx.axis(p, s.len())?;
        if std::mem::replace(&mut seen[a], true) {
            return Err(format!("perm {perm:?} is not a permutation"));
        }
        shape.push(s[a].clone());
    }
    Ok(vec![Inferred::tensor(ctx.dtype(0), Some(shape))])
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    match (domain, op_type) {
        ("", "Transpose") => Some(run),
        _ => None,
    }
}

/// `x` with its dims permuted: output dim `i` is input dim `perm[i]`.
pub fn permute(x: &Tensor, perm: &[usize]) -> Result<Tensor> {
    movement::check_len(x, "input")?;
    let st = strides(&x.shape);
    let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return Ok(x.clone());
    }
    if let Some(t) = channels_move(x, perm, &shape) {
        return Ok(t);
    }
    let offs: Vec<Vec<Option<usize>>> = perm
        .iter()
        .map(|&p| (0..x.shape[p]).map(|c| Some(c * st[p])).collect())
        .collect();
    Ok(Tensor::new(
        shape,
        movement::take_tables(&x.data, &offs, None)?,
    ))
}

/// 8-bit images between channel-first and channel-last (`[0, 2, 3, 1]`, `[0, 3, 1, 2]`), the
/// edges of the quantized channels-last regions: a tiled transpose per image.
fn channels_move(x: &Tensor, perm: &[usize], shape: &[usize]) -> Option<Tensor> {
    let bytes = crate::ops::quant::bytes(x)?;
    let (rows, cols) = match perm {
        [0, 2, 3, 1] => (x.shape[1], x.shape[2] * x.shape[3]),
        [0, 3, 1, 2] => (x.shape[1] * x.shape[2], x.shape[3]),
        _ => return None,
    };
    let img = rows * cols;
    let mut out = vec![0u8; bytes.0.len()];
    if img > 0 {
        for (s, d) in bytes.0.chunks(img).zip(out.chunks_mut(img)) {
            kiln_kernels::transpose8::transpose_bytes(s, rows, cols, d);
        }
    }
    Some(crate::ops::quant::tensor_of(shape.to_vec(), out, bytes.1))
}

fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let r = x.rank();
    let perm: Vec<usize> = match ctx.ints_attr("perm") {
        Some(p) => {
            if p.len() != r {
                return Err(format!("perm has {} entries for rank {r}", p.len()));
            }
            movement::norm_axes(p, r)
                .map_err(|e| format!("perm {p:?} is not a permutation: {e}"))?
        }
        None => (0..r).rev().collect(),
    };
    one(permute(x, &perm)?)
}

#[cfg(test)]
mod kernel_tests {
    use crate::ops::movement::testing::*;
    use kiln_ir::Attribute;

    #[test]
    fn transpose_kernel() {
        let x = iota(&[2, 3]);
        let y = run("Transpose", &[], &[x.clone()]).unwrap();
        assert_eq!(y.shape, vec![3, 2]);
        assert_eq!(vals(&y), vec![0., 3., 1., 4., 2., 5.]);
        let x = iota(&[2, 3, 4]);
        let y = run("Transpose", &[Attribute::ints("perm", &[1, 2, 0])], &[x]).unwrap();
        assert_eq!(y.shape, vec![3, 4, 2]);
        // y[i][j][k] = x[k][i][j] = 12k + 4i + j
        assert_eq!(&vals(&y)[..4], &[0., 12., 1., 13.]);
        assert!(run(
            "Transpose",
            &[Attribute::ints("perm", &[0, 0])],
            &[iota(&[2, 2])]
        )
        .is_err());
        assert!(run(
            "Transpose",
            &[Attribute::ints("perm", &[0])],
            &[iota(&[2, 2])]
        )
        .is_err());
    }
}
