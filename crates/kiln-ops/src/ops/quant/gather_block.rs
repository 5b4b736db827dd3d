//! com.microsoft GatherBlockQuantized: Gather over a blockwise-quantized table (a language
//! model's token embeddings at 2, 4 or 8 bits), each gathered element dequantized as
//! `(q - zero) · scale` into the scales' float type, with ONNX Runtime's layouts:
//!
//! - `uint8` data packs `8 / bits` values per byte along the last axis (low bits first), which
//!   must be the quantize axis, and the gather axis 0; zero points pack the same way along the
//!   scales' last axis; without them the zero is `2^(bits-1)`, MatMulNBits' convention.
//! - `int4` / `uint4` data have the logical shape; zero points (same type) default to 0.
//!
//! Only the gathered rows are decoded, never the whole table. An index outside the gather axis
//! is an error naming it (ORT writes zeros there).
use half::f16;
use kiln_ir::{DataType, Dim};

use crate::ctx::{InferCtx, Inferred};
use crate::kernel::{one, KernelCtx, Result};
use crate::value::{Data, Tensor, Value};

/// The packed quantized values, read by logical flat index.
enum Values<'a> {
    /// `uint8` with `bits` per value.
    Bytes(&'a [u8], usize),
    /// `int4` (signed) or `uint4`.
    Nibbles(&'a [u8], bool),
}

impl Values<'_> {
    fn of(t: &Tensor, bits: usize) -> Result<Values<'_>> {
        match &t.data {
            Data::U8(v) => Ok(Values::Bytes(v, bits)),
            Data::Packed { dtype, raw } if matches!(dtype, DataType::I4 | DataType::U4) => {
                Ok(Values::Nibbles(raw, *dtype == DataType::I4))
            }
            _ => Err(format!(
                "data must be uint8, int4 or uint4, got {}",
                t.dtype()
            )),
        }
    }

    fn get(&self, i: usize) -> i32 {
        match *self {
            Values::Bytes(v, 8) => v[i] as i32,
            Values::Bytes(v, bits) => {
                let per = 8 / bits;
                ((v[i / per] >> ((i % per) * bits)) & ((1u8 << bits) - 1)) as i32
            }
            Values::Nibbles(v, signed) => {
                let q = (v[i / 2] >> (4 * (i % 2))) & 15;
                if signed {
                    ((q << 4) as i8 >> 4) as i32
                } else {
                    q as i32
                }
            }
        }
    }
}

struct Layout {
    /// Values per byte of `uint8` data (1 for int4 / uint4, whose shape is logical).
    per: usize,
    bits: usize,
    gather_axis: usize,
    quantize_axis: usize,
    block: usize,
}

fn layout(dtype: Option<DataType>, rank: usize, attr: impl Fn(&str, i64) -> i64) -> Result<Layout> {
    if rank == 0 {
        return Err("data must have rank >= 1".into());
    }
    let axis = |name: &str, default: i64| -> Result<usize> {
        let a = attr(name, default);
        crate::kernel::norm_axis(a, rank)
            .map_err(|_| format!("{name} {a} is outside data's rank {rank}"))
    };
    let (gather_axis, quantize_axis) = (axis("gather_axis", 0)?, axis("quantize_axis", 1)?);
    let block = attr("block_size", 128);
    if block < 16 || block.count_ones() != 1 {
        return Err(format!(
            "block_size must be a power of 2 of at least 16, got {block}"
        ));
    }
    let bits = attr("bits", 4);
    let per = match dtype {
        Some(DataType::U8) => {
            if ![2, 4, 8].contains(&bits) {
                return Err(format!("uint8 data takes bits 2, 4 or 8, got {bits}"));
            }
            if gather_axis != 0 || quantize_axis != rank - 1 || rank < 2 {
                return Err(format!(
                    "uint8 data needs gather_axis 0 and quantize_axis the last of rank >= 2 (got {gather_axis} and {quantize_axis} of rank {rank})"
                ));
            }
            8 / bits as usize
        }
        _ => {
            if bits != 4 {
                return Err(format!("int4 / uint4 data takes bits 4, got {bits}"));
            }
            if gather_axis == quantize_axis {
                return Err("gather_axis and quantize_axis must differ".into());
            }
            1
        }
    };
    Ok(Layout {
        per,
        bits: bits as usize,
        gather_axis,
        quantize_axis,
        block: block as usize,
    })
}

/// `data[:g] + indices + data[g+1:]` (the last axis unpacked for uint8), in the scales' type.
pub fn infer(ctx: &InferCtx) -> crate::ctx::Result<Vec<Inferred>> {
    let dt = ctx.dtype(2);
    let (Some(d), Some(ix)) = (ctx.shape(0), ctx.shape(1)) else {
        return Ok(vec![Inferred::tensor(dt, None)]);
    };
    let l = layout(ctx.dtype(0), d.len(), |n, v| ctx.int_attr(n, v))?;
    let mut shape: Vec<Dim> = d[..l.gather_axis].to_vec();
    shape.extend(ix.iter().cloned());
    shape.extend(d[l.gather_axis + 1..].iter().cloned());
    if l.per > 1 {
        let last = shape.last_mut().expect("rank >= 2");
        *last = match last {
            Dim::Known(v) => Dim::Known(*v * l.per as i64),
            _ => Dim::Unknown,
        };
    }
    Ok(vec![Inferred::tensor(dt, Some(shape))])
}

pub(super) fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (data, indices, scales) = (ctx.tensor(0)?, ctx.tensor(1)?, ctx.tensor(2)?);
    let zeros = ctx.opt_tensor(3)?;
    let rank = data.rank();
    let l = layout(Some(data.dtype()), rank, |n, v| ctx.int_attr(n, v))?;
    let values = Values::of(data, l.bits)?;
    // Logical data shape.
    let mut dims = data.shape.clone();
    dims[rank - 1] *= l.per;
    let qa = l.quantize_axis;
    let blocks = dims[qa].div_ceil(l.block);
    let mut want_scales = dims.clone();
    want_scales[qa] = blocks;
    if scales.shape != want_scales {
        return Err(format!(
            "scales have shape {:?}; data of logical shape {dims:?} in blocks of {} along axis {qa} needs {want_scales:?}",
            scales.shape, l.block
        ));
    }
    let scale: Vec<f32> = match &scales.data {
        Data::F32(v) => v.clone(),
        Data::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
        _ => {
            return Err(format!(
                "scales must be float or float16, got {}",
                scales.dtype()
            ))
        }
    };
    // Zero points by scale index.
    let zero: Box<dyn Fn(usize) -> i32 + '_> = match zeros {
        None if l.per > 1 || data.dtype() == DataType::U8 => {
            let z = 1 << (l.bits - 1);
            Box::new(move |_| z)
        }
        None => Box::new(|_| 0),
        Some(z) => {
            if z.dtype() != data.dtype() {
                return Err(format!(
                    "zero_points must be {} like data, got {}",
                    data.dtype(),
                    z.dtype()
                ));
            }
            let mut want = want_scales.clone();
            if l.per > 1 {
                want[rank - 1] = blocks.div_ceil(l.per);
            }
            if z.shape != want {
                return Err(format!(
                    "zero_points have shape {:?}; expected {want:?}",
                    z.shape
                ));
            }
            let zv = Values::of(z, l.bits)?;
            if l.per > 1 {
                // Rows of `blocks` values, each row padded to whole bytes.
                let row = blocks.div_ceil(l.per) * l.per;
                Box::new(move |s| zv.get((s / blocks) * row + s % blocks))
            } else {
                Box::new(move |s| zv.get(s))
            }
        }
    };
    let idx = indices.to_i64s()?;
    let g = l.gather_axis;
    let gdim = dims[g];
    let outer: usize = dims[..g].iter().product();
    let inner: usize = dims[g + 1..].iter().product();
    let (qdim, qinner) = (dims[qa], dims[qa + 1..].iter().product::<usize>());
    let mut shape = dims[..g].to_vec();
    shape.extend(&indices.shape);
    shape.extend(&dims[g + 1..]);
    let n = super::super::linalg::product(&shape)?;
    let mut out = super::super::linalg::filled(n, 0f32)?;
    let mut at = 0;
    for o in 0..outer {
        for (pos, &i) in idx.iter().enumerate() {
            let row = if (0..gdim as i64).contains(&i) {
                i as usize
            } else if (-(gdim as i64)..0).contains(&i) {
                (i + gdim as i64) as usize
            } else {
                return Err(format!(
                    "indices[{pos}] = {i} is outside the gather axis of size {gdim}"
                ));
            };
            let base = (o * gdim + row) * inner;
            for e in 0..inner {
                let f = base + e;
                let (x, y, z) = (f / (qdim * qinner), f / qinner % qdim, f % qinner);
                let s = (x * blocks + y / l.block) * qinner + z;
                out[at] = (values.get(f) - zero(s)) as f32 * scale[s];
                at += 1;
            }
        }
    }
    match scales.dtype() {
        DataType::F16 => one(Tensor::from_vec(
            shape,
            out.iter().map(|&v| f16::from_f32(v)).collect(),
        )),
        _ => one(Tensor::from_vec(shape, out)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::movement::testing::run_domain;
    use kiln_ir::Attribute;

    fn call(inputs: Vec<Tensor>, attrs: &[(&str, i64)]) -> Result<Tensor> {
        let a: Vec<Attribute> = attrs.iter().map(|(k, v)| Attribute::int(k, *v)).collect();
        run_domain("com.microsoft", "GatherBlockQuantized", 1, &inputs, &a)
    }

    /// uint8 at 4 bits: two values a byte, default zero 8, a negative index.
    #[test]
    fn uint8_nibbles() {
        // 3 rows of 32 values (16 bytes), one block each.
        let q: Vec<u8> = (0..96).map(|i| (i % 16) as u8).collect();
        let raw: Vec<u8> = q.chunks(2).map(|p| p[0] | (p[1] << 4)).collect();
        let data = Tensor::from_vec(vec![3, 16], raw);
        let scales = Tensor::from_vec(vec![3, 1], vec![0.5f32, 1.0, 2.0]);
        let idx = Tensor::from_vec(vec![2], vec![2i64, -3]);
        let y = call(
            vec![data, idx, scales],
            &[("quantize_axis", 1), ("block_size", 32)],
        )
        .unwrap();
        assert_eq!(y.shape, vec![2, 32]);
        let v = y.as_slice::<f32>().unwrap();
        for e in 0..32 {
            assert_eq!(v[e], (q[64 + e] as f32 - 8.0) * 2.0);
            assert_eq!(v[32 + e], (q[e] as f32 - 8.0) * 0.5);
        }
    }

    #[test]
    fn index_out_of_range_is_named() {
        let data = Tensor::from_vec(vec![2, 8], vec![0u8; 16]);
        let scales = Tensor::from_vec(vec![2, 1], vec![1f32; 2]);
        let idx = Tensor::from_vec(vec![1], vec![5i64]);
        let e = call(vec![data, idx, scales], &[("block_size", 16)]).unwrap_err();
        assert!(e.contains("indices[0] = 5"), "{e}");
    }
}
