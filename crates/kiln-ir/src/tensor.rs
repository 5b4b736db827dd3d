//! Constant tensors (initializers and tensor attributes) as kiln stores them: element type,
//! dims, and little-endian packed bytes (the layout of ONNX's `raw_data`), or strings.
use bytes::Bytes;
use kiln_onnx::proto::TensorProto;

use crate::DataType;

/// Larger tensors than this many elements are refused as absurd (2^40: far above any memory).
pub const MAX_ELEMENTS: u64 = 1 << 40;

#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    /// Packed little-endian bytes, exactly as `raw_data`.
    Raw(Bytes),
    Strings(Vec<Bytes>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub dtype: DataType,
    pub dims: Vec<usize>,
    pub data: TensorData,
}

/// Why a `TensorProto` cannot become a tensor.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TensorError {
    #[error("data type {0} is not a valid ONNX tensor type")]
    BadType(i32),
    #[error("dimension {index} is negative ({value})")]
    NegativeDim { index: usize, value: i64 },
    #[error("shape {0:?} has more elements than any machine can hold")]
    TooLarge(Vec<i64>),
    #[error("raw_data has {got} bytes, but {dtype} {dims:?} needs {want}")]
    RawLength {
        dtype: DataType,
        dims: Vec<usize>,
        got: usize,
        want: usize,
    },
    #[error("{field} has {got} entries, but {dtype} {dims:?} needs {want}")]
    FieldLength {
        field: &'static str,
        dtype: DataType,
        dims: Vec<usize>,
        got: usize,
        want: usize,
    },
    #[error("{field} cannot hold {dtype} data")]
    WrongField {
        field: &'static str,
        dtype: DataType,
    },
    #[error("segmented tensors are not supported")]
    Segmented,
    #[error("external data was not loaded (load the model from a file)")]
    ExternalNotLoaded,
}

/// Number of elements of `dims`, refusing negative and absurd shapes.
pub fn element_count(dims: &[i64]) -> Result<usize, TensorError> {
    let mut n: u64 = 1;
    for (index, &value) in dims.iter().enumerate() {
        if value < 0 {
            return Err(TensorError::NegativeDim { index, value });
        }
        n = n
            .checked_mul(value as u64)
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or_else(|| TensorError::TooLarge(dims.to_vec()))?;
    }
    Ok(n as usize)
}

impl Tensor {
    pub fn len(&self) -> usize {
        self.dims.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn raw(&self) -> Option<&[u8]> {
        match &self.data {
            TensorData::Raw(b) => Some(b),
            TensorData::Strings(_) => None,
        }
    }

    /// A tensor from packed little-endian bytes; the length must match.
    pub fn from_raw(dtype: DataType, dims: Vec<usize>, raw: Bytes) -> Result<Tensor, TensorError> {
        let want = dtype
            .storage_bytes(dims.iter().product())
            .ok_or(TensorError::WrongField {
                field: "raw_data",
                dtype,
            })?;
        if raw.len() != want {
            return Err(TensorError::RawLength {
                dtype,
                dims,
                got: raw.len(),
                want,
            });
        }
        Ok(Tensor {
            dtype,
            dims,
            data: TensorData::Raw(raw),
        })
    }

    pub fn from_i64(dims: Vec<usize>, v: &[i64]) -> Tensor {
        let raw: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        Tensor::from_raw(DataType::I64, dims, raw.into()).expect("length matches")
    }

    pub fn from_f32(dims: Vec<usize>, v: &[f32]) -> Tensor {
        let raw: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        Tensor::from_raw(DataType::F32, dims, raw.into()).expect("length matches")
    }

    /// The elements as i64, for integer tensors of 8 bits or more (shape computations).
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        let raw = self.raw()?;
        let v = match self.dtype {
            DataType::I64 => raw
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            DataType::I32 => raw
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64)
                .collect(),
            DataType::U64 => raw
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap()) as i64)
                .collect(),
            DataType::U32 => raw
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as i64)
                .collect(),
            DataType::I16 => raw
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes(c.try_into().unwrap()) as i64)
                .collect(),
            DataType::U16 => raw
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes(c.try_into().unwrap()) as i64)
                .collect(),
            DataType::I8 => raw.iter().map(|&b| b as i8 as i64).collect(),
            DataType::U8 | DataType::Bool => raw.iter().map(|&b| b as i64).collect(),
            _ => return None,
        };
        Some(v)
    }

    /// The elements as f64, for f32/f64/f16 tensors (attribute-like constants).
    pub fn to_f64_vec(&self) -> Option<Vec<f64>> {
        let raw = self.raw()?;
        match self.dtype {
            DataType::F32 => Some(
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                    .collect(),
            ),
            DataType::F64 => Some(
                raw.chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            ),
            _ => self
                .to_i64_vec()
                .map(|v| v.into_iter().map(|x| x as f64).collect()),
        }
    }

    /// Reads a `TensorProto` whose external data (if any) has been resolved.
    pub fn from_proto(t: &TensorProto) -> Result<Tensor, TensorError> {
        let code = t.data_type.unwrap_or(0);
        let dtype = DataType::from_onnx(code).ok_or(TensorError::BadType(code))?;
        if t.segment.is_some() {
            return Err(TensorError::Segmented);
        }
        if t.data_location == Some(1) {
            return Err(TensorError::ExternalNotLoaded);
        }
        let n = element_count(&t.dims)?;
        let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
        if dtype == DataType::String {
            if t.raw_data.as_ref().is_some_and(|r| !r.is_empty()) {
                return Err(TensorError::WrongField {
                    field: "raw_data",
                    dtype,
                });
            }
            if t.string_data.len() != n {
                return Err(TensorError::FieldLength {
                    field: "string_data",
                    dtype,
                    dims,
                    got: t.string_data.len(),
                    want: n,
                });
            }
            return Ok(Tensor {
                dtype,
                dims,
                data: TensorData::Strings(t.string_data.clone()),
            });
        }
        if let Some(raw) = &t.raw_data {
            return Tensor::from_raw(dtype, dims, raw.clone());
        }
        let raw = typed_to_raw(t, dtype, n, &dims)?;
        Tensor::from_raw(dtype, dims, raw.into())
    }

    /// Writes the tensor as a `TensorProto` (bytes in `raw_data`, strings in `string_data`).
    pub fn to_proto(&self, name: &str) -> TensorProto {
        let mut t = TensorProto {
            name: (!name.is_empty()).then(|| name.to_string()),
            dims: self.dims.iter().map(|&d| d as i64).collect(),
            data_type: Some(self.dtype.to_onnx()),
            ..Default::default()
        };
        match &self.data {
            TensorData::Raw(b) => t.raw_data = Some(b.clone()),
            TensorData::Strings(s) => t.string_data = s.clone(),
        }
        t
    }
}

fn check_len(
    field: &'static str,
    got: usize,
    want: usize,
    dtype: DataType,
    dims: &[usize],
) -> Result<(), TensorError> {
    if got != want {
        return Err(TensorError::FieldLength {
            field,
            dtype,
            dims: dims.to_vec(),
            got,
            want,
        });
    }
    Ok(())
}

/// Converts ONNX's typed fields (`float_data`, `int32_data`, ...) to packed raw bytes.
fn typed_to_raw(
    t: &TensorProto,
    dtype: DataType,
    n: usize,
    dims: &[usize],
) -> Result<Vec<u8>, TensorError> {
    use DataType::*;
    let wrong = |field| Err(TensorError::WrongField { field, dtype });
    // A tensor with no elements may carry no field at all.
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut out = Vec::with_capacity(dtype.storage_bytes(n).unwrap_or(0));
    match dtype {
        F32 | Complex64 => {
            let want = if dtype == Complex64 { 2 * n } else { n };
            check_len("float_data", t.float_data.len(), want, dtype, dims)?;
            for v in &t.float_data {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        F64 | Complex128 => {
            let want = if dtype == Complex128 { 2 * n } else { n };
            check_len("double_data", t.double_data.len(), want, dtype, dims)?;
            for v in &t.double_data {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        I64 => {
            check_len("int64_data", t.int64_data.len(), n, dtype, dims)?;
            for v in &t.int64_data {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        U32 | U64 => {
            check_len("uint64_data", t.uint64_data.len(), n, dtype, dims)?;
            for v in &t.uint64_data {
                if dtype == U32 {
                    out.extend_from_slice(&(*v as u32).to_le_bytes());
                } else {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
        I32 => {
            check_len("int32_data", t.int32_data.len(), n, dtype, dims)?;
            for v in &t.int32_data {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        I16 | U16 | F16 | BF16 => {
            check_len("int32_data", t.int32_data.len(), n, dtype, dims)?;
            for v in &t.int32_data {
                out.extend_from_slice(&(*v as u16).to_le_bytes());
            }
        }
        I8 | U8 | Bool | F8E4M3FN | F8E4M3FNUZ | F8E5M2 | F8E5M2FNUZ | F8E8M0 => {
            check_len("int32_data", t.int32_data.len(), n, dtype, dims)?;
            out.extend(t.int32_data.iter().map(|v| *v as u8));
        }
        // Sub-byte types: each int32 holds the already-packed bits of one byte of raw_data.
        U4 | I4 | F4E2M1 | U2 | I2 => {
            let per = if matches!(dtype, U2 | I2) { 4 } else { 2 };
            check_len(
                "int32_data",
                t.int32_data.len(),
                n.div_ceil(per),
                dtype,
                dims,
            )?;
            out.extend(t.int32_data.iter().map(|v| *v as u8));
        }
        F6E2M3 | F6E3M2 => {
            // One 6-bit element per int32, repacked into a little-endian bit stream.
            check_len("int32_data", t.int32_data.len(), n, dtype, dims)?;
            let mut acc: u32 = 0;
            let mut bits = 0;
            for v in &t.int32_data {
                acc |= ((*v as u32) & 0x3f) << bits;
                bits += 6;
                while bits >= 8 {
                    out.push(acc as u8);
                    acc >>= 8;
                    bits -= 8;
                }
            }
            if bits > 0 {
                out.push(acc as u8);
            }
        }
        String => return wrong("int32_data"),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_fields_become_raw() {
        let t = TensorProto {
            dims: vec![2],
            data_type: Some(DataType::F32.to_onnx()),
            float_data: vec![1.0, -2.0],
            ..Default::default()
        };
        let x = Tensor::from_proto(&t).unwrap();
        assert_eq!(x.to_f64_vec().unwrap(), vec![1.0, -2.0]);
        let t = TensorProto {
            dims: vec![3],
            data_type: Some(DataType::I4.to_onnx()),
            int32_data: vec![0x21, 0x03],
            ..Default::default()
        };
        assert_eq!(
            Tensor::from_proto(&t).unwrap().raw().unwrap(),
            &[0x21, 0x03]
        );
        let t = TensorProto {
            dims: vec![2],
            data_type: Some(DataType::F16.to_onnx()),
            int32_data: vec![0x3c00, 0xc000],
            ..Default::default()
        };
        assert_eq!(
            Tensor::from_proto(&t).unwrap().raw().unwrap(),
            &[0x00, 0x3c, 0x00, 0xc0]
        );
    }

    #[test]
    fn malformed_tensors_are_errors() {
        let base = TensorProto {
            dims: vec![2, 3],
            data_type: Some(DataType::F32.to_onnx()),
            raw_data: Some(vec![0u8; 20].into()),
            ..Default::default()
        };
        assert!(matches!(
            Tensor::from_proto(&base),
            Err(TensorError::RawLength {
                want: 24,
                got: 20,
                ..
            })
        ));
        let mut t = base.clone();
        t.dims = vec![-1, 3];
        assert!(matches!(
            Tensor::from_proto(&t),
            Err(TensorError::NegativeDim { .. })
        ));
        t.dims = vec![i64::MAX, i64::MAX];
        assert!(matches!(
            Tensor::from_proto(&t),
            Err(TensorError::TooLarge(_))
        ));
        t.dims = vec![1 << 30, 1 << 30];
        assert!(matches!(
            Tensor::from_proto(&t),
            Err(TensorError::TooLarge(_))
        ));
        let mut t = base.clone();
        t.data_type = Some(99);
        assert!(matches!(
            Tensor::from_proto(&t),
            Err(TensorError::BadType(99))
        ));
        let mut t = base;
        t.raw_data = None;
        t.float_data = vec![1.0; 5];
        assert!(matches!(
            Tensor::from_proto(&t),
            Err(TensorError::FieldLength { .. })
        ));
    }

    #[test]
    fn proto_round_trip() {
        let x = Tensor::from_i64(vec![3], &[1, -2, 3]);
        let back = Tensor::from_proto(&x.to_proto("x")).unwrap();
        assert_eq!(back, x);
        assert_eq!(back.to_i64_vec().unwrap(), vec![1, -2, 3]);
    }
}
