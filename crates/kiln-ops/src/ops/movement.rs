//! Shared helpers of the data-movement kernels: moving the elements of any storage (typed
//! vectors, strings, and the bit patterns of packed types) by index lists, and the index
//! arithmetic those lists come from (strided walks, shape checks).
use kiln_ir::DataType;

use crate::kernel::Result;
use crate::value::{Data, Tensor};

/// Kernels refuse outputs with more elements than this rather than die allocating them.
pub const MAX_OUTPUT_ELEMENTS: usize = 1 << 32;

/// Element types of typed storage, strings included.
pub trait Item: Clone + Send + Sync + 'static {
    fn slice(d: &Data) -> Option<&[Self]>;
    fn wrap(v: Vec<Self>) -> Data;
}

macro_rules! item {
    ($t:ty, $variant:ident) => {
        impl Item for $t {
            fn slice(d: &Data) -> Option<&[Self]> {
                match d {
                    Data::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn wrap(v: Vec<Self>) -> Data {
                Data::$variant(v)
            }
        }
    };
}
item!(f32, F32);
item!(f64, F64);
item!(half::f16, F16);
item!(half::bf16, BF16);
item!(i8, I8);
item!(i16, I16);
item!(i32, I32);
item!(i64, I64);
item!(u8, U8);
item!(u16, U16);
item!(u32, U32);
item!(u64, U64);
item!(bool, Bool);
item!(String, Str);

/// Runs `$body` with the type alias `$T` set to the item type of the typed storage `$data`;
/// packed storage evaluates `$packed`.
macro_rules! per_item {
    ($data:expr, $T:ident => $body:expr, packed => $packed:expr) => {
        match $data {
            Data::F32(_) => {
                type $T = f32;
                $body
            }
            Data::F64(_) => {
                type $T = f64;
                $body
            }
            Data::F16(_) => {
                type $T = half::f16;
                $body
            }
            Data::BF16(_) => {
                type $T = half::bf16;
                $body
            }
            Data::I8(_) => {
                type $T = i8;
                $body
            }
            Data::I16(_) => {
                type $T = i16;
                $body
            }
            Data::I32(_) => {
                type $T = i32;
                $body
            }
            Data::I64(_) => {
                type $T = i64;
                $body
            }
            Data::U8(_) => {
                type $T = u8;
                $body
            }
            Data::U16(_) => {
                type $T = u16;
                $body
            }
            Data::U32(_) => {
                type $T = u32;
                $body
            }
            Data::U64(_) => {
                type $T = u64;
                $body
            }
            Data::Bool(_) => {
                type $T = bool;
                $body
            }
            Data::Str(_) => {
                type $T = String;
                $body
            }
            Data::Packed { .. } => $packed,
        }
    };
}
pub(crate) use per_item;

/// Bits per element of a packed type that can be moved element by element.
fn packed_bits(dtype: DataType) -> Result<usize> {
    match dtype.bits() {
        Some(b @ (2 | 4 | 8 | 16 | 32 | 64 | 128)) => Ok(b),
        _ => Err(format!("kiln cannot move elements of {dtype} tensors")),
    }
}

/// The elements of packed storage as bit patterns (as many as the bytes hold).
pub fn unpack(dtype: DataType, raw: &[u8]) -> Result<Vec<u128>> {
    let bits = packed_bits(dtype)?;
    if bits >= 8 {
        let bytes = bits / 8;
        return Ok(raw
            .chunks_exact(bytes)
            .map(|c| c.iter().rev().fold(0u128, |acc, &b| (acc << 8) | b as u128))
            .collect());
    }
    let per = 8 / bits;
    let mask = (1u8 << bits) - 1;
    let mut out = Vec::with_capacity(raw.len() * per);
    for &b in raw {
        for k in 0..per {
            out.push(((b >> (k * bits)) & mask) as u128);
        }
    }
    Ok(out)
}

/// Packs bit patterns as `raw_data` stores them (little-endian, low bits first).
pub fn pack(dtype: DataType, v: &[u128]) -> Result<Vec<u8>> {
    let bits = packed_bits(dtype)?;
    if bits >= 8 {
        let bytes = bits / 8;
        let mut out = Vec::with_capacity(v.len() * bytes);
        for &x in v {
            out.extend_from_slice(&x.to_le_bytes()[..bytes]);
        }
        return Ok(out);
    }
    let per = 8 / bits;
    let mask = (1u128 << bits) - 1;
    let mut out = vec![0u8; v.len().div_ceil(per)];
    for (i, &x) in v.iter().enumerate() {
        out[i / per] |= ((x & mask) as u8) << ((i % per) * bits);
    }
    Ok(out)
}

/// The elements of `data` at `idx`, in order. Indices must be in range (callers validate
/// user-given indices first).
pub fn take(data: &Data, idx: &[usize]) -> Result<Data> {
    fn go<T: Item>(data: &Data, idx: &[usize]) -> Data {
        let v = T::slice(data).unwrap_or(&[]);
        T::wrap(idx.iter().map(|&i| v[i].clone()).collect())
    }
    per_item!(data, T => Ok(go::<T>(data, idx)), packed => {
        let Data::Packed { dtype, raw } = data else { unreachable!() };
        let v = unpack(*dtype, raw)?;
        let out: Vec<u128> = idx.iter().map(|&i| v[i]).collect();
        Ok(Data::Packed { dtype: *dtype, raw: pack(*dtype, &out)? })
    })
}

/// Elements read through per-dim offset tables: the output has dims `offs[d].len()`, and
/// the element at coordinates `c` is `data[sum(offs[d][c_d])]`, or `fill` where any offset is
/// `None`. Offsets must be in range (callers build them from validated shapes). Runs of
/// consecutive offsets along the last dim are copied as slices.
pub fn take_tables(data: &Data, offs: &[Vec<Option<usize>>], fill: Option<&Data>) -> Result<Data> {
    let needs_fill = offs.iter().any(|t| t.iter().any(|o| o.is_none()));
    let fill = match fill {
        Some(f) if f.dtype() != data.dtype() => {
            return Err(format!(
                "fill value has type {} but data has {}",
                f.dtype(),
                data.dtype()
            ))
        }
        Some(f) => Some(f),
        None if needs_fill => return Err("padding needs a fill value".into()),
        None => None,
    };
    let total = numel(&offs.iter().map(|t| t.len()).collect::<Vec<_>>())?;
    fn go<T: Clone>(
        v: &[T],
        offs: &[Vec<Option<usize>>],
        fill: Option<&T>,
        total: usize,
    ) -> Vec<T> {
        let mut out: Vec<T> = Vec::with_capacity(total);
        if total == 0 {
            return out;
        }
        let Some((last, outer)) = offs.split_last() else {
            out.push(v[0].clone());
            return out;
        };
        // Segments of the last dim: (first offset, length), consecutive offsets merged.
        let mut segs: Vec<(Option<usize>, usize)> = Vec::new();
        for &o in last {
            match (segs.last_mut(), o) {
                (Some((Some(s), n)), Some(o)) if *s + *n == o => *n += 1,
                (Some((None, n)), None) => *n += 1,
                _ => segs.push((o, 1)),
            }
        }
        // Short runs (a nearest upsample repeats each element): gather element by element
        // rather than copying runs of one.
        let gather: Option<Vec<usize>> = if segs.len() * 2 > last.len() {
            last.iter().copied().collect()
        } else {
            None
        };
        let mut counter = vec![0usize; outer.len()];
        loop {
            let base = counter
                .iter()
                .zip(outer)
                .try_fold(0usize, |acc, (&c, t)| t[c].map(|o| acc + o));
            match base {
                Some(b) if gather.is_some() => {
                    let row = &v[b..];
                    out.extend(gather.iter().flatten().map(|&o| row[o].clone()));
                }
                Some(b) => {
                    for &(s, n) in &segs {
                        match (s, fill) {
                            (Some(s), _) => out.extend_from_slice(&v[b + s..b + s + n]),
                            (None, Some(f)) => out.extend(std::iter::repeat_n(f.clone(), n)),
                            (None, None) => {}
                        }
                    }
                }
                None => {
                    if let Some(f) = fill {
                        out.extend(std::iter::repeat_n(f.clone(), last.len()));
                    }
                }
            }
            let mut d = outer.len();
            loop {
                if d == 0 {
                    return out;
                }
                d -= 1;
                counter[d] += 1;
                if counter[d] < outer[d].len() {
                    break;
                }
                counter[d] = 0;
            }
        }
    }
    per_item!(data, T => {
        let v = T::slice(data).unwrap_or(&[]);
        let f = fill.and_then(|f| T::slice(f)).and_then(|f| f.first());
        Ok(T::wrap(go::<T>(v, offs, f, total)))
    }, packed => {
        let Data::Packed { dtype, raw } = data else { unreachable!() };
        let v = unpack(*dtype, raw)?;
        let f = match fill {
            Some(Data::Packed { raw, .. }) => unpack(*dtype, raw)?.first().copied(),
            _ => None,
        };
        let out = go::<u128>(&v, offs, f.as_ref(), total);
        Ok(Data::Packed { dtype: *dtype, raw: pack(*dtype, &out)? })
    })
}

/// Offset tables reading every element of `shape` in place (to be edited along some dims).
pub fn identity_tables(shape: &[usize]) -> Vec<Vec<Option<usize>>> {
    let st = crate::kernel::strides(shape);
    shape
        .iter()
        .zip(&st)
        .map(|(&d, &s)| (0..d).map(|c| Some(c * s)).collect())
        .collect()
}

/// Runs `(source, start, len)` of elements copied in order into one new storage (Concat).
pub fn copy_runs(srcs: &[&Data], runs: &[(usize, usize, usize)]) -> Result<Data> {
    let Some(first) = srcs.first() else {
        return Err("no inputs to copy elements from".into());
    };
    let dtype = first.dtype();
    if let Some(d) = srcs.iter().find(|d| d.dtype() != dtype) {
        return Err(format!(
            "inputs must have one element type, got {dtype} and {}",
            d.dtype()
        ));
    }
    fn go<T: Clone>(s: &[&[T]], runs: &[(usize, usize, usize)]) -> Vec<T> {
        let mut out = Vec::with_capacity(runs.iter().map(|r| r.2).sum());
        for &(k, start, n) in runs {
            out.extend_from_slice(&s[k][start..start + n]);
        }
        out
    }
    per_item!(*first, T => {
        let s: Vec<&[T]> = srcs.iter().map(|d| T::slice(d).unwrap_or(&[])).collect();
        Ok(T::wrap(go::<T>(&s, runs)))
    }, packed => {
        let mut u = Vec::with_capacity(srcs.len());
        for d in srcs {
            if let Data::Packed { raw, .. } = d {
                u.push(unpack(dtype, raw)?);
            }
        }
        let s: Vec<&[u128]> = u.iter().map(|v| v.as_slice()).collect();
        Ok(Data::Packed { dtype, raw: pack(dtype, &go::<u128>(&s, runs))? })
    })
}

/// Elements picked from several sources of one type: `(source, index)` per output element.
pub fn take_from(srcs: &[&Data], idx: &[(usize, usize)]) -> Result<Data> {
    let Some(first) = srcs.first() else {
        return Err("no inputs to take elements from".into());
    };
    let dtype = first.dtype();
    if let Some(d) = srcs.iter().find(|d| d.dtype() != dtype) {
        return Err(format!(
            "inputs must have one element type, got {dtype} and {}",
            d.dtype()
        ));
    }
    fn go<T: Item>(srcs: &[&Data], idx: &[(usize, usize)]) -> Data {
        let s: Vec<&[T]> = srcs.iter().map(|d| T::slice(d).unwrap_or(&[])).collect();
        T::wrap(idx.iter().map(|&(k, i)| s[k][i].clone()).collect())
    }
    per_item!(*first, T => Ok(go::<T>(srcs, idx)), packed => {
        let mut s = Vec::with_capacity(srcs.len());
        for d in srcs {
            if let Data::Packed { raw, .. } = d {
                s.push(unpack(dtype, raw)?);
            }
        }
        let out: Vec<u128> = idx.iter().map(|&(k, i)| s[k][i]).collect();
        Ok(Data::Packed { dtype, raw: pack(dtype, &out)? })
    })
}

/// `data` with the elements at `pos` replaced by the elements of `src` at `from` (in order, a
/// later write to one position winning). `src` must have `data`'s type.
pub fn overwrite(data: &Data, pos: &[usize], src: &Data, from: &[usize]) -> Result<Data> {
    if data.dtype() != src.dtype() {
        return Err(format!(
            "updates have type {} but data has {}",
            src.dtype(),
            data.dtype()
        ));
    }
    fn go<T: Item>(data: &Data, pos: &[usize], src: &Data, from: &[usize]) -> Data {
        let mut out = T::slice(data).unwrap_or(&[]).to_vec();
        let s = T::slice(src).unwrap_or(&[]);
        for (&p, &f) in pos.iter().zip(from) {
            out[p] = s[f].clone();
        }
        T::wrap(out)
    }
    per_item!(data, T => Ok(go::<T>(data, pos, src, from)), packed => {
        let (Data::Packed { dtype, raw }, Data::Packed { raw: sraw, .. }) = (data, src) else {
            unreachable!()
        };
        let mut out = unpack(*dtype, raw)?;
        let s = unpack(*dtype, sraw)?;
        for (&p, &f) in pos.iter().zip(from) {
            out[p] = s[f];
        }
        Ok(Data::Packed { dtype: *dtype, raw: pack(*dtype, &out)? })
    })
}

/// Number of elements of a shape, refusing overflow and absurd sizes.
pub fn numel(shape: &[usize]) -> Result<usize> {
    let mut n: usize = 1;
    for &d in shape {
        n = n
            .checked_mul(d)
            .ok_or_else(|| format!("shape {shape:?} is too large"))?;
    }
    if n > MAX_OUTPUT_ELEMENTS {
        return Err(format!("shape {shape:?} has too many elements ({n})"));
    }
    Ok(n)
}

/// Dims given as i64 (a shape input or attribute), refusing negative ones.
pub fn dims_of(v: &[i64], what: &str) -> Result<Vec<usize>> {
    v.iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("{what} has a negative dimension ({d})")))
        .collect()
}

/// Checks that a tensor's storage holds as many elements as its shape says.
pub fn check_len(t: &Tensor, what: &str) -> Result<usize> {
    let n = numel(&t.shape)?;
    let have = match &t.data {
        Data::Packed { dtype, raw } => {
            let bits = dtype.bits().unwrap_or(8);
            let want = n.checked_mul(bits).map(|b| b.div_ceil(8));
            if want != Some(raw.len()) {
                return Err(format!(
                    "{what} has {} bytes for shape {:?} of {dtype}",
                    raw.len(),
                    t.shape
                ));
            }
            n
        }
        d => d.len(),
    };
    if have != n {
        return Err(format!(
            "{what} holds {have} elements but its shape {:?} needs {n}",
            t.shape
        ));
    }
    Ok(n)
}

/// For every element of a tensor of `out` shape (row-major), `base + sum(coord * strides)`.
/// Strides may be negative; the caller makes sure every index lands in range.
pub fn strided(out: &[usize], base: usize, st: &[isize]) -> Vec<usize> {
    let n: usize = out.iter().product();
    let mut idx = Vec::with_capacity(n);
    if n == 0 {
        return idx;
    }
    let rank = out.len();
    let mut counter = vec![0usize; rank];
    let mut pos = base as isize;
    for _ in 0..n {
        idx.push(pos as usize);
        for d in (0..rank).rev() {
            counter[d] += 1;
            pos += st[d];
            if counter[d] < out[d] {
                break;
            }
            pos -= st[d] * out[d] as isize;
            counter[d] = 0;
        }
    }
    idx
}

/// A tensor with the same elements and a new shape.
pub fn reshaped(t: &Tensor, shape: Vec<usize>) -> Tensor {
    Tensor::new(shape, t.data.clone())
}

/// Normalizes a list of possibly negative axes, refusing duplicates.
pub fn norm_axes(axes: &[i64], rank: usize) -> Result<Vec<usize>> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let n = crate::kernel::norm_axis(a, rank)?;
        if out.contains(&n) {
            return Err(format!("axis {a} is repeated"));
        }
        out.push(n);
    }
    Ok(out)
}

/// A possibly negative index into a dim of size `n`, refusing (and naming) one out of range.
pub fn norm_index(i: i64, n: usize, what: &str) -> Result<usize> {
    let j = if i < 0 {
        i as i128 + n as i128
    } else {
        i as i128
    };
    if j < 0 || j >= n as i128 {
        return Err(format!(
            "{what} {i} is out of range for a dimension of size {n}"
        ));
    }
    Ok(j as usize)
}

/// A one-element tensor's only element as a `Data` of length 1.
pub fn scalar_data(t: &Tensor, what: &str) -> Result<Data> {
    if numel(&t.shape)? != 1 {
        return Err(format!(
            "{what} must have one element, got shape {:?}",
            t.shape
        ));
    }
    check_len(t, what)?;
    Ok(t.data.clone())
}

#[cfg(test)]
pub mod testing {
    //! Runs kernels on literal tensors for the modules' unit tests.
    use kiln_ir::Attribute;

    use crate::kernel::{KernelCtx, Result};
    use crate::value::{Tensor, Value};

    pub fn run_opset(
        op: &str,
        opset: i64,
        attrs: &[Attribute],
        inputs: &[Option<Tensor>],
        num_outputs: usize,
    ) -> Result<Vec<Tensor>> {
        run_in("", op, opset, attrs, inputs, num_outputs)
    }

    /// One output of an op of another domain.
    pub fn run_domain(
        domain: &str,
        op: &str,
        opset: i64,
        inputs: &[Tensor],
        attrs: &[Attribute],
    ) -> Result<Tensor> {
        let ins: Vec<Option<Tensor>> = inputs.iter().cloned().map(Some).collect();
        Ok(run_in(domain, op, opset, attrs, &ins, 1)?.remove(0))
    }

    fn run_in(
        domain: &str,
        op: &str,
        opset: i64,
        attrs: &[Attribute],
        inputs: &[Option<Tensor>],
        num_outputs: usize,
    ) -> Result<Vec<Tensor>> {
        let values: Vec<Option<Value>> = inputs
            .iter()
            .map(|t| t.clone().map(Value::Tensor))
            .collect();
        let ctx = KernelCtx {
            op_type: op,
            domain,
            opset,
            attrs,
            inputs: values.iter().map(|v| v.as_ref()).collect(),
            num_outputs,
            subgraphs: None,
            donated: Default::default(),
        };
        let f = crate::ops::kernel_fn(domain, op).ok_or_else(|| format!("no kernel for {op}"))?;
        let out = f(&ctx)?;
        assert_eq!(out.len(), num_outputs, "{op} output count");
        Ok(out.into_iter().map(|v| v.into_tensor().unwrap()).collect())
    }

    pub fn run(op: &str, attrs: &[Attribute], inputs: &[Tensor]) -> Result<Tensor> {
        let ins: Vec<Option<Tensor>> = inputs.iter().cloned().map(Some).collect();
        Ok(run_opset(op, 21, attrs, &ins, 1)?.remove(0))
    }

    pub fn f32s(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(shape.to_vec(), v.to_vec())
    }

    pub fn i64s(shape: &[usize], v: &[i64]) -> Tensor {
        Tensor::from_vec(shape.to_vec(), v.to_vec())
    }

    pub fn iota(shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        Tensor::from_vec(shape.to_vec(), (0..n).map(|x| x as f32).collect::<Vec<_>>())
    }

    pub fn vals(t: &Tensor) -> Vec<f32> {
        t.as_slice::<f32>().expect("f32 tensor").to_vec()
    }

    /// An f32 tensor as f64: the same values down a kernel's generic (non-f32) path.
    pub fn widened(t: &Tensor) -> Tensor {
        let v: Vec<f64> = vals(t).iter().map(|&v| v as f64).collect();
        Tensor::from_vec(t.shape.clone(), v)
    }

    /// The values of an f64 tensor as f32, to compare with an f32 path's.
    pub fn narrowed(t: &Tensor) -> Vec<f32> {
        let v = t.as_slice::<f64>().expect("f64 tensor");
        v.iter().map(|&v| v as f32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_round_trip_and_take() {
        for dt in [
            DataType::I4,
            DataType::U2,
            DataType::F8E4M3FN,
            DataType::Complex64,
        ] {
            let bits = dt.bits().unwrap();
            let n = 7;
            let raw: Vec<u8> = (0..dt.storage_bytes(n).unwrap())
                .map(|i| (i * 53 % 256) as u8)
                .collect();
            // The padding bits after the last element are zero.
            let mut raw = raw;
            let used = n * bits % 8;
            if used != 0 {
                *raw.last_mut().unwrap() &= (1u8 << used) - 1;
            }
            let mut v = unpack(dt, &raw).unwrap();
            v.truncate(n);
            assert_eq!(pack(dt, &v).unwrap(), raw, "{dt}");
            let d = Data::Packed {
                dtype: dt,
                raw: raw.clone(),
            };
            let rev: Vec<usize> = (0..n).rev().collect();
            let Data::Packed { raw: r2, .. } = take(&d, &rev).unwrap() else {
                panic!()
            };
            let mut w = unpack(dt, &r2).unwrap();
            w.truncate(n);
            v.reverse();
            assert_eq!(w, v, "{dt} bits {bits}");
        }
        assert!(unpack(DataType::F6E2M3, &[0]).is_err());
    }

    #[test]
    fn takes_and_walks() {
        let d = Data::Str(vec!["a".into(), "b".into(), "c".into()]);
        assert_eq!(
            take(&d, &[2, 0]).unwrap(),
            Data::Str(vec!["c".into(), "a".into()])
        );
        let a = Data::I32(vec![1, 2]);
        let b = Data::I32(vec![3]);
        assert_eq!(
            take_from(&[&a, &b], &[(1, 0), (0, 1)]).unwrap(),
            Data::I32(vec![3, 2])
        );
        assert!(take_from(&[&a, &Data::F32(vec![1.0])], &[]).is_err());
        assert_eq!(strided(&[2, 3], 0, &[1, 2]), vec![0, 2, 4, 1, 3, 5]);
        assert_eq!(strided(&[3], 4, &[-2]), vec![4, 2, 0]);
        assert!(numel(&[usize::MAX, 2]).is_err());
        assert_eq!(norm_axes(&[-1, 0], 3).unwrap(), vec![2, 0]);
        assert!(norm_axes(&[1, -2], 3).is_err());
    }
}
