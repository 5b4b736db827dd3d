//! com.microsoft's quantized matrix products: MatMulNBits (blockwise 2-8-bit weights with
//! per-block scales and zero points, as weight-only quantizers write them), and the reference
//! MatMulIntegerToFloat / DynamicQuantizeMatMul (8-bit operands, float result) for the shapes
//! the integer kernels of `quant/qmatmul.rs` do not take. MatMulNBits with constant weights is
//! packed once per session for `kiln_kernels::qgemm`: the int8 kernel at accuracy level 4
//! (4-bit, AVX512-VNNI), else the f32 kernel that dequantizes inside; the reference paths here
//! dequantize to f32 and run the float GEMM.
use kiln_ir::{DataType, Dim};

use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{one, KernelCtx, KernelFn};
use crate::ops::linalg::{filled, gemm, Mat};
use crate::value::{Data, Tensor, Value};

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    match (domain, op_type) {
        ("com.microsoft", "MatMulNBits") => Some(run_nbits),
        _ => None,
    }
}

/// `[..., N]` in A's (float) type; N from the attribute (MatMulNBits) or B's last dim.
pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let n = if ctx.op_type == "MatMulNBits" {
        Some(Dim::Known(ctx.int_attr("N", 0)))
    } else {
        ctx.shape(1).and_then(|b| b.last().cloned())
    };
    let dt = match ctx.op_type {
        "MatMulIntegerToFloat" => ctx.dtype(2),
        _ => ctx.dtype(0),
    };
    let shape = match (ctx.shape(0), n) {
        (Some(a), Some(n)) if !a.is_empty() => {
            let mut s = a.to_vec();
            *s.last_mut().unwrap() = n;
            Some(s)
        }
        _ => None,
    };
    Ok(vec![Inferred::tensor(dt, shape)])
}

/// `Y[m, n] = sum_k A[m, k] W[k, n] (+ bias[n])` for row-major A `[.., K]` and W `[K, N]`.
fn product(
    a: &[f32],
    a_shape: &[usize],
    w: &[f32],
    k: usize,
    n: usize,
    bias: Option<&[f32]>,
) -> Result<Tensor> {
    if a_shape.last() != Some(&k) {
        return Err(format!("A of shape {a_shape:?} does not end in K = {k}"));
    }
    let m = a.len() / k.max(1);
    let mut y = filled(m * n, 0f32)?;
    gemm(
        m,
        n,
        k,
        1.0,
        Mat::rows(a, k),
        Mat::rows(w, n),
        0.0,
        &mut y,
        n,
    )?;
    if let Some(b) = bias {
        if b.len() != n {
            return Err(format!("bias has {} values for N = {n}", b.len()));
        }
        for row in y.chunks_mut(n) {
            for (o, &v) in row.iter_mut().zip(b) {
                *o += v;
            }
        }
    }
    let mut shape = a_shape.to_vec();
    *shape.last_mut().unwrap() = n;
    Ok(Tensor::from_vec(shape, y))
}

fn f32s(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_f64s()?.into_iter().map(|v| v as f32).collect())
}

/// Stores an f32 result in the type of `like` (f16 models stay f16).
fn as_type(t: Tensor, dt: DataType) -> Result<Tensor> {
    if dt == DataType::F32 {
        return Ok(t);
    }
    let v = t.to_f64s()?;
    Ok(Tensor::new(
        t.shape.clone(),
        crate::ops::linalg::store_f64(v, dt)?,
    ))
}

/// MatMulNBits' constant weights unpacked once per session: 4-bit at accuracy level 4 for the
/// int8 kernel where the CPU has it, every other case for the kernel that dequantizes inside.
enum NbitsKernel {
    Int8(kiln_kernels::qgemm::nbits::Q4Weights),
    F32(kiln_kernels::qgemm::nbits_f32::DqWeights),
}

struct PreparedNbits {
    w: NbitsKernel,
    shape: Vec<usize>,
}

/// MatMulNBits with constant weights, float32 scales and packed (or no) zero points.
pub fn prepare_nbits(
    ctx: &crate::kernel::PrepareCtx,
) -> Option<Box<dyn crate::kernel::PreparedKernel>> {
    use kiln_ir::AttrList;
    let attr = |n: &str| ctx.attrs.get_int(n);
    let bits = usize::try_from(attr("bits").unwrap_or(4)).ok()?;
    let (k, n, block) = (
        usize::try_from(attr("K")?).ok()?,
        usize::try_from(attr("N")?).ok()?,
        usize::try_from(attr("block_size")?).ok()?,
    );
    if ![2, 4, 8].contains(&bits)
        || block < 16
        || !block.is_power_of_two()
        || ctx.optional_constant(4)?.is_some()
    {
        return None;
    }
    let b = ctx.constant(1)?;
    let Data::U8(raw) = &b.data else { return None };
    let Data::F32(scales) = &ctx.constant(2)?.data else {
        return None;
    };
    let blocks = k.div_ceil(block);
    let blob = block * bits / 8;
    if raw.len() != n.checked_mul(blocks)?.checked_mul(blob)? || scales.len() != n * blocks {
        return None;
    }
    let zrow = (blocks * bits).div_ceil(8);
    let zp_raw: Option<&Vec<u8>> = match ctx.optional_constant(3)?.map(|t| &t.data) {
        None => None,
        Some(Data::U8(z)) if z.len() >= n * zrow => Some(z),
        Some(_) => return None,
    };
    let field = |bytes: &[u8], at: usize, bit: usize| -> i32 {
        let lo = bytes[at + bit / 8] as u32;
        let hi = bytes.get(at + bit / 8 + 1).copied().unwrap_or(0) as u32;
        (((lo | (hi << 8)) >> (bit % 8)) & ((1 << bits) - 1)) as i32
    };
    let q = |c: usize, kk: usize| field(raw, (c * blocks + kk / block) * blob, (kk % block) * bits);
    let scale = |c: usize, bl: usize| scales[c * blocks + bl];
    let zero = |c: usize, bl: usize| match zp_raw {
        None => 1 << (bits - 1),
        Some(z) => field(z, c * zrow, bl * bits),
    };
    use kiln_kernels::qgemm::{nbits, nbits_f32};
    let int8 = bits == 4 && attr("accuracy_level").unwrap_or(0) == 4;
    let w = match int8 {
        true if nbits::Q4Weights::available() => NbitsKernel::Int8(nbits::Q4Weights::pack(
            n,
            k,
            block,
            |c, kk| q(c, kk) as u8,
            scale,
            zero,
        )?),
        _ => NbitsKernel::F32(nbits_f32::DqWeights::pack(
            n,
            k,
            block,
            bits,
            |c, kk| q(c, kk) as u8,
            scale,
            |c, bl| zero(c, bl) as f32,
        )?),
    };
    Some(Box::new(PreparedNbits {
        w,
        shape: b.shape.clone(),
    }))
}

impl crate::kernel::PreparedKernel for PreparedNbits {
    fn run(&self, ctx: &KernelCtx) -> Result<Vec<Value>> {
        let a = ctx.tensor(0)?;
        let Data::F32(av) = &a.data else {
            return run_nbits(ctx);
        };
        let (k, n) = match &self.w {
            NbitsKernel::Int8(w) => (w.k(), w.n()),
            NbitsKernel::F32(w) => (w.k(), w.n()),
        };
        if ctx.tensor(1)?.shape != self.shape || a.shape.last() != Some(&k) {
            return run_nbits(ctx);
        }
        let bias = match ctx.opt_tensor(5)? {
            None => None,
            Some(t) => match &t.data {
                Data::F32(v) if v.len() == n => Some(v.as_slice()),
                _ => return run_nbits(ctx),
            },
        };
        let m = av.len() / k;
        let mut y = filled(m * n, 0f32)?;
        match &self.w {
            NbitsKernel::Int8(w) => kiln_kernels::qgemm::nbits::q4_matmul(av, m, w, bias, &mut y),
            NbitsKernel::F32(w) => {
                kiln_kernels::qgemm::nbits_f32::dq_matmul(av, m, w, bias, &mut y)
            }
        }
        let mut shape = a.shape.clone();
        *shape.last_mut().expect("rank >= 1") = n;
        one(Tensor::from_vec(shape, y))
    }
}

fn run_nbits(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let a = ctx.tensor(0)?;
    let qb = ctx.tensor(1)?;
    let scales = f32s(ctx.tensor(2)?)?;
    let attr = |n: &str| -> Result<usize> {
        usize::try_from(ctx.int_attr(n, 0))
            .map_err(|_| format!("attribute {n} must be non-negative"))
    };
    let (k, n, block) = (attr("K")?, attr("N")?, attr("block_size")?);
    let bits = ctx.int_attr("bits", 4);
    if ![2, 4, 8].contains(&bits) || block < 16 || !block.is_power_of_two() || k == 0 || n == 0 {
        return Err(format!(
            "MatMulNBits needs bits 2, 4 or 8, a power-of-two block_size >= 16 and positive K and N (bits {bits}, block {block}, K {k}, N {n})"
        ));
    }
    crate::ops::linalg::product(&[k, n])?;
    let bits = bits as usize;
    let blocks = k.div_ceil(block);
    let blob = block * bits / 8;
    let Data::U8(raw) = &qb.data else {
        return Err(format!("B must be uint8, got {}", qb.dtype()));
    };
    if raw.len() != n * blocks * blob || scales.len() != n * blocks {
        return Err(format!(
            "B has {} bytes and scales {} values; [N={n}, {blocks} blocks, {blob} bytes] needs {} and {}",
            raw.len(),
            scales.len(),
            n * blocks * blob,
            n * blocks
        ));
    }
    // Zero points: packed like B (uint8, `bits` each, rows padded to whole bytes) or float.
    let zp_t = ctx.opt_tensor(3)?;
    let zp_float: Option<Vec<f64>> = match zp_t {
        Some(t) if !matches!(t.data, Data::U8(_)) => Some(t.to_f64s()?),
        _ => None,
    };
    let default_zp = (1u32 << (bits - 1)) as f32;
    let zp_row_bytes = (blocks * bits).div_ceil(8);
    let zero = |col: usize, blk: usize| -> Result<f32> {
        Ok(match zp_t.map(|t| &t.data) {
            None => default_zp,
            Some(Data::U8(z)) => {
                let bit = blk * bits;
                let byte = *z
                    .get(col * zp_row_bytes + bit / 8)
                    .ok_or("zero_points is shorter than N x blocks")?;
                ((byte >> (bit % 8)) as u32 & ((1 << bits) - 1)) as f32
            }
            Some(_) => zp_float
                .as_ref()
                .and_then(|v| v.get(col * blocks + blk))
                .copied()
                .ok_or("zero_points is shorter than N x blocks")? as f32,
        })
    };
    if ctx.has_input(4) {
        return Err("g_idx (act-order) is not supported".into());
    }
    // W [K, N] dequantized.
    let mut w = filled(k * n, 0f32)?;
    for col in 0..n {
        for blk in 0..blocks {
            let s = scales[col * blocks + blk];
            let z = zero(col, blk)?;
            let base = (col * blocks + blk) * blob;
            for i in 0..block {
                let kk = blk * block + i;
                if kk >= k {
                    break;
                }
                let bit = i * bits;
                let lo = raw[base + bit / 8] as u32;
                let hi = raw.get(base + bit / 8 + 1).copied().unwrap_or(0) as u32;
                let q = ((lo | (hi << 8)) >> (bit % 8)) & ((1 << bits) - 1);
                w[kk * n + col] = (q as f32 - z) * s;
            }
        }
    }
    let bias = ctx.opt_tensor(5)?.map(f32s).transpose()?;
    let y = product(&f32s(a)?, &a.shape, &w, k, n, bias.as_deref())?;
    one(as_type(y, a.dtype())?)
}

/// Per-tensor or per-column (`[N]`) values, as a function of the column.
fn per_column(t: Option<&Tensor>, n: usize, default: f32, what: &str) -> Result<Vec<f32>> {
    let Some(t) = t else {
        return Ok(vec![default; n]);
    };
    let v = f32s(t)?;
    match v.len() {
        1 => Ok(vec![v[0]; n]),
        l if l == n => Ok(v),
        l => Err(format!("{what} has {l} values, expected 1 or {n}")),
    }
}

/// ONNX's DynamicQuantizeLinear: uint8 with a range that includes zero.
pub(crate) fn quantize_dynamic(a: &[f32]) -> (Vec<f32>, f32, f32) {
    let lo = a.iter().fold(0f32, |m, &v| m.min(v));
    let hi = a.iter().fold(0f32, |m, &v| m.max(v));
    let scale = (hi - lo) / 255.0;
    if scale == 0.0 {
        return (vec![0.0; a.len()], 0.0, 0.0);
    }
    let zp = (-lo / scale).round_ties_even().clamp(0.0, 255.0);
    let q = a
        .iter()
        .map(|&v| ((v / scale).round_ties_even() + zp).clamp(0.0, 255.0))
        .collect();
    (q, scale, zp)
}

pub(crate) fn run_int_to_float(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let dynamic = ctx.op_type == "DynamicQuantizeMatMul";
    let a = ctx.tensor(0)?;
    let b = ctx.tensor(1)?;
    if b.rank() != 2 {
        return Err(format!("B must be [K, N], got {:?}", b.shape));
    }
    let (k, n) = (b.shape[0], b.shape[1]);
    // (A as integers, A's scale, A's zero point), B's scales and zero points, bias, out type.
    let (aq, a_scale, a_zp, b_scale, b_zp, bias, dt) = if dynamic {
        let (q, s, z) = quantize_dynamic(&f32s(a)?);
        (
            q,
            s,
            z,
            per_column(Some(ctx.tensor(2)?), n, 1.0, "b_scale")?,
            per_column(ctx.opt_tensor(3)?, n, 0.0, "b_zero_point")?,
            ctx.opt_tensor(4)?,
            a.dtype(),
        )
    } else {
        let a_scale = per_column(Some(ctx.tensor(2)?), 1, 1.0, "a_scale")?[0];
        let a_zp = per_column(ctx.opt_tensor(4)?, 1, 0.0, "a_zero_point")?[0];
        (
            f32s(a)?,
            a_scale,
            a_zp,
            per_column(Some(ctx.tensor(3)?), n, 1.0, "b_scale")?,
            per_column(ctx.opt_tensor(5)?, n, 0.0, "b_zero_point")?,
            ctx.opt_tensor(6)?,
            ctx.tensor(2)?.dtype(),
        )
    };
    let bq = f32s(b)?;
    // Integer products are exact in f32 only up to 2^24; accumulate the centred values in f64
    // through the GEMM on f64.
    let a_c: Vec<f64> = aq.iter().map(|&v| (v - a_zp) as f64).collect();
    let mut w = vec![0f64; k * n];
    for kk in 0..k {
        for col in 0..n {
            w[kk * n + col] = (bq[kk * n + col] - b_zp[col]) as f64;
        }
    }
    if a.shape.last() != Some(&k) {
        return Err(format!("A of shape {:?} does not end in K = {k}", a.shape));
    }
    let m = a_c.len() / k.max(1);
    let mut acc = filled(m * n, 0f64)?;
    gemm(
        m,
        n,
        k,
        1.0,
        Mat::rows(&a_c, k),
        Mat::rows(&w, n),
        0.0,
        &mut acc,
        n,
    )?;
    let bias = bias.map(f32s).transpose()?;
    let y: Vec<f32> = acc
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let col = i % n;
            (v * a_scale as f64 * b_scale[col] as f64) as f32
                + bias.as_ref().map_or(0.0, |b| b[col])
        })
        .collect();
    let mut shape = a.shape.clone();
    *shape.last_mut().unwrap() = n;
    one(as_type(Tensor::from_vec(shape, y), dt)?)
}
