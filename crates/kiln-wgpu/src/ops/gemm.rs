//! Gemm (transposes, alpha, beta, broadcast C), com.microsoft:FusedGemm (plus its activation)
//! and MatMul with NumPy batch broadcasting, all on the tiled GEMM kernel.
use kiln_ir::AttrList;

use super::eltwise::broadcast_strides;
use super::{act_code, merge_dims, no_check, strides, u, Bind, Dispatch, Lowered, NodeIo, OpInfo};
use crate::device::Kernel;

pub fn info(op: &str) -> Option<OpInfo> {
    let (opsets, lower): (_, super::LowerFn) = match op {
        "Gemm" => ((1, 24), gemm),
        "FusedGemm" => ((1, 1), gemm),
        "MatMul" => ((1, 24), matmul),
        _ => return None,
    };
    Some(OpInfo {
        opsets,
        params: &[],
        constant_params: &[],
        check: if op == "FusedGemm" {
            check_fused
        } else {
            no_check
        },
        lower,
    })
}

fn check_fused(c: &super::CheckCtx) -> Result<(), String> {
    kiln_ops::Act::fused_gemm(c.attrs).map(|_| ())
}

struct Mm {
    m: usize,
    n: usize,
    k: usize,
    a: (usize, usize),
    b: (usize, usize),
    /// Batch dims with A's and B's strides along them.
    batch: Vec<usize>,
    a_batch: Vec<usize>,
    b_batch: Vec<usize>,
    alpha: f32,
    beta: f32,
    c: Option<(usize, usize)>,
    act: kiln_ops::Act,
}

fn dispatch(mm: Mm, has_c: bool) -> Result<Vec<Dispatch>, String> {
    let count: usize = mm.batch.iter().product();
    if count > 65535 {
        return Err(format!("{count} matrices in one batch (at most 65535)"));
    }
    let (code, aa, ab) = act_code(mm.act);
    let four = |v: &[usize]| -> Result<[u32; 4], String> {
        let mut w = [0u32; 4];
        for (i, &x) in v.iter().enumerate() {
            w[i] = u(x, "a batch dim or stride")?;
        }
        Ok(w)
    };
    let mut p = vec![
        u(mm.m, "M")?,
        u(mm.n, "N")?,
        u(mm.k, "K")?,
        u(mm.a.0, "stride")?,
        u(mm.a.1, "stride")?,
        u(mm.b.0, "stride")?,
        u(mm.b.1, "stride")?,
        mm.batch.len() as u32,
    ];
    p.extend(four(&mm.batch)?);
    p.extend(four(&mm.a_batch)?);
    p.extend(four(&mm.b_batch)?);
    let (cm, cn) = mm.c.unwrap_or((0, 0));
    p.extend([
        mm.alpha.to_bits(),
        mm.beta.to_bits(),
        mm.c.is_some() as u32,
        u(cm, "stride")?,
        u(cn, "stride")?,
        code,
        aa.to_bits(),
        ab.to_bits(),
    ]);
    let k = mm.k;
    super::split_k(
        Dispatch {
            kernel: Kernel::Gemm,
            params: p,
            binds: vec![
                Bind::In(0),
                Bind::In(1),
                if has_c { Bind::In(2) } else { Bind::Dummy },
                Bind::Out(0),
            ],
            groups: [
                u(mm.n.div_ceil(64), "column tiles")?,
                u(mm.m.div_ceil(64), "row tiles")?,
                count.max(1) as u32,
            ],
        },
        k,
    )
}

fn gemm(io: &NodeIo) -> Result<Lowered, String> {
    let a = io.shape(0)?;
    let b = io.shape(1)?;
    if a.len() != 2 || b.len() != 2 {
        return Err("Gemm of inputs not of rank 2".into());
    }
    let ta = io.attrs.get_int("transA").unwrap_or(0) != 0;
    let tb = io.attrs.get_int("transB").unwrap_or(0) != 0;
    let (m, k) = if ta { (a[1], a[0]) } else { (a[0], a[1]) };
    let n = if tb { b[0] } else { b[1] };
    let beta = io.attrs.get_float("beta").unwrap_or(1.0);
    let has_c = io.has(2) && io.shape(2)?.iter().product::<usize>() > 0;
    let c = if has_c {
        let s = broadcast_strides(io.shape(2)?, &[m, n]);
        Some((s[0], s[1]))
    } else {
        None
    };
    let act = if io.op == "FusedGemm" {
        kiln_ops::Act::fused_gemm(io.attrs)?
    } else {
        kiln_ops::Act::Identity
    };
    let mm = Mm {
        m,
        n,
        k,
        a: if ta { (1, m) } else { (k, 1) },
        b: if tb { (1, k) } else { (n, 1) },
        batch: vec![],
        a_batch: vec![],
        b_batch: vec![],
        alpha: io.attrs.get_float("alpha").unwrap_or(1.0),
        beta,
        c,
        act,
    };
    Ok(Lowered::Run(dispatch(mm, has_c)?))
}

fn matmul(io: &NodeIo) -> Result<Lowered, String> {
    let mut a = io.shape(0)?.to_vec();
    let mut b = io.shape(1)?.to_vec();
    if a.len() == 1 {
        a.insert(0, 1);
    }
    if b.len() == 1 {
        b.push(1);
    }
    let (m, k) = (a[a.len() - 2], a[a.len() - 1]);
    let n = b[b.len() - 1];
    let ab = &a[..a.len() - 2];
    let bb = &b[..b.len() - 2];
    let rank = ab.len().max(bb.len());
    let pad = |s: &[usize]| -> Vec<usize> {
        let mut v = vec![1; rank - s.len()];
        v.extend_from_slice(s);
        v
    };
    let (ab, bb) = (pad(ab), pad(bb));
    let batch: Vec<usize> = ab.iter().zip(&bb).map(|(&x, &y)| x.max(y)).collect();
    let bstr = |s: &[usize], mat: usize| -> Vec<usize> {
        let st = strides(s);
        s.iter()
            .zip(st)
            .map(|(&d, st)| if d == 1 { 0 } else { st * mat })
            .collect()
    };
    let (sa, sb) = (bstr(&ab, m * k), bstr(&bb, k * n));
    let (dims, st) = merge_dims(&batch, &[strides(&batch), sa, sb])?;
    if dims.len() > 4 {
        return Err(format!("{} batch dims (at most 4)", dims.len()));
    }
    let mm = Mm {
        m,
        n,
        k,
        a: (k, 1),
        b: (n, 1),
        batch: dims,
        a_batch: st[1].clone(),
        b_batch: st[2].clone(),
        alpha: 1.0,
        beta: 0.0,
        c: None,
        act: kiln_ops::Act::Identity,
    };
    Ok(Lowered::Run(dispatch(mm, false)?))
}
