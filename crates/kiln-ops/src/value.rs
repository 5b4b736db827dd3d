//! Run-time values: tensors with typed element storage, sequences and optionals. Kernels read
//! and produce these; `kiln_ir::Tensor` (packed bytes) converts to and from them.
use half::{bf16, f16};
use kiln_ir::{DataType, TensorData};

/// Element storage. Types kiln computes with have typed vectors; the rest (8-bit floats,
/// sub-byte types, complex) are kept packed so that data-movement ops can still pass them on.
#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F32(Vec<f32>),
    F64(Vec<f64>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    Bool(Vec<bool>),
    Str(Vec<String>),
    Packed { dtype: DataType, raw: Vec<u8> },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Data,
}

/// A value flowing through the graph.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Tensor(Tensor),
    /// A sequence with its element type (known even when empty).
    Sequence(Option<DataType>, Vec<Tensor>),
    Optional(Option<Box<Value>>),
    /// A map (DictVectorizer's and CastMap's input).
    Map(MapValue),
    /// A sequence of maps (ZipMap's output: one map of label to probability per row).
    MapSequence(Vec<MapValue>),
}

/// A map as two 1-D tensors of one length: the keys (int64 or string) and their values.
#[derive(Clone, Debug, PartialEq)]
pub struct MapValue {
    pub keys: Tensor,
    pub values: Tensor,
}

/// Element types that have a typed `Data` variant.
pub trait Elem: Copy + Default + PartialEq + Send + Sync + 'static {
    const DTYPE: DataType;
    fn wrap(v: Vec<Self>) -> Data;
    fn slice(d: &Data) -> Option<&[Self]>;
}

macro_rules! elem {
    ($t:ty, $variant:ident, $dt:ident) => {
        impl Elem for $t {
            const DTYPE: DataType = DataType::$dt;
            fn wrap(v: Vec<Self>) -> Data {
                Data::$variant(v)
            }
            fn slice(d: &Data) -> Option<&[Self]> {
                match d {
                    Data::$variant(v) => Some(v),
                    _ => None,
                }
            }
        }
    };
}
elem!(f32, F32, F32);
elem!(f64, F64, F64);
elem!(f16, F16, F16);
elem!(bf16, BF16, BF16);
elem!(i8, I8, I8);
elem!(i16, I16, I16);
elem!(i32, I32, I32);
elem!(i64, I64, I64);
elem!(u8, U8, U8);
elem!(u16, U16, U16);
elem!(u32, U32, U32);
elem!(u64, U64, U64);
elem!(bool, Bool, Bool);

/// Runs `$body` with `$v` bound to the typed slice of every numeric variant (not bool, strings
/// or packed types); evaluates `$other` for those.
#[macro_export]
macro_rules! with_numeric {
    ($data:expr, $v:ident => $body:expr, _ => $other:expr) => {
        match $data {
            $crate::Data::F32($v) => $body,
            $crate::Data::F64($v) => $body,
            $crate::Data::F16($v) => $body,
            $crate::Data::BF16($v) => $body,
            $crate::Data::I8($v) => $body,
            $crate::Data::I16($v) => $body,
            $crate::Data::I32($v) => $body,
            $crate::Data::I64($v) => $body,
            $crate::Data::U8($v) => $body,
            $crate::Data::U16($v) => $body,
            $crate::Data::U32($v) => $body,
            $crate::Data::U64($v) => $body,
            #[allow(unreachable_patterns)]
            _ => $other,
        }
    };
}

/// Like `with_numeric!`, over every typed variant including bool and strings (for data movement:
/// gather, slice, concat, transpose...). Packed data falls to `$other`.
#[macro_export]
macro_rules! with_any {
    ($data:expr, $v:ident => $body:expr, _ => $other:expr) => {
        match $data {
            $crate::Data::F32($v) => $body,
            $crate::Data::F64($v) => $body,
            $crate::Data::F16($v) => $body,
            $crate::Data::BF16($v) => $body,
            $crate::Data::I8($v) => $body,
            $crate::Data::I16($v) => $body,
            $crate::Data::I32($v) => $body,
            $crate::Data::I64($v) => $body,
            $crate::Data::U8($v) => $body,
            $crate::Data::U16($v) => $body,
            $crate::Data::U32($v) => $body,
            $crate::Data::U64($v) => $body,
            $crate::Data::Bool($v) => $body,
            $crate::Data::Str($v) => $body,
            #[allow(unreachable_patterns)]
            _ => $other,
        }
    };
}

impl Data {
    pub fn dtype(&self) -> DataType {
        match self {
            Data::F32(_) => DataType::F32,
            Data::F64(_) => DataType::F64,
            Data::F16(_) => DataType::F16,
            Data::BF16(_) => DataType::BF16,
            Data::I8(_) => DataType::I8,
            Data::I16(_) => DataType::I16,
            Data::I32(_) => DataType::I32,
            Data::I64(_) => DataType::I64,
            Data::U8(_) => DataType::U8,
            Data::U16(_) => DataType::U16,
            Data::U32(_) => DataType::U32,
            Data::U64(_) => DataType::U64,
            Data::Bool(_) => DataType::Bool,
            Data::Str(_) => DataType::String,
            Data::Packed { dtype, .. } => *dtype,
        }
    }

    /// Number of elements, when stored unpacked.
    pub fn len(&self) -> usize {
        with_any!(self, v => v.len(), _ => 0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held (for memory accounting).
    pub fn bytes(&self) -> usize {
        match self {
            Data::Str(v) => v.iter().map(|s| s.len() + 24).sum(),
            Data::Packed { raw, .. } => raw.len(),
            Data::Bool(v) => v.len(),
            _ => with_numeric!(self, v => std::mem::size_of_val(v.as_slice()), _ => 0),
        }
    }

    /// A vector of `n` default elements of `dtype`.
    pub fn zeros(dtype: DataType, n: usize) -> Result<Data, String> {
        Ok(match dtype {
            DataType::F32 => Data::F32(vec![0.0; n]),
            DataType::F64 => Data::F64(vec![0.0; n]),
            DataType::F16 => Data::F16(vec![f16::ZERO; n]),
            DataType::BF16 => Data::BF16(vec![bf16::ZERO; n]),
            DataType::I8 => Data::I8(vec![0; n]),
            DataType::I16 => Data::I16(vec![0; n]),
            DataType::I32 => Data::I32(vec![0; n]),
            DataType::I64 => Data::I64(vec![0; n]),
            DataType::U8 => Data::U8(vec![0; n]),
            DataType::U16 => Data::U16(vec![0; n]),
            DataType::U32 => Data::U32(vec![0; n]),
            DataType::U64 => Data::U64(vec![0; n]),
            DataType::Bool => Data::Bool(vec![false; n]),
            DataType::String => Data::Str(vec![String::new(); n]),
            other => return Err(format!("kiln cannot create {other} tensors")),
        })
    }
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Data) -> Tensor {
        Tensor { shape, data }
    }

    pub fn from_vec<T: Elem>(shape: Vec<usize>, v: Vec<T>) -> Tensor {
        debug_assert_eq!(shape.iter().product::<usize>(), v.len());
        Tensor {
            shape,
            data: T::wrap(v),
        }
    }

    pub fn scalar<T: Elem>(v: T) -> Tensor {
        Tensor::from_vec(vec![], vec![v])
    }

    pub fn dtype(&self) -> DataType {
        self.data.dtype()
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn as_slice<T: Elem>(&self) -> Option<&[T]> {
        T::slice(&self.data)
    }

    /// Elements as i64 (integer and bool tensors): indices, axes, shapes.
    pub fn to_i64s(&self) -> Result<Vec<i64>, String> {
        Ok(match &self.data {
            Data::I64(v) => v.clone(),
            Data::I32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I16(v) => v.iter().map(|&x| x as i64).collect(),
            Data::I8(v) => v.iter().map(|&x| x as i64).collect(),
            Data::U8(v) => v.iter().map(|&x| x as i64).collect(),
            Data::U16(v) => v.iter().map(|&x| x as i64).collect(),
            Data::U32(v) => v.iter().map(|&x| x as i64).collect(),
            Data::U64(v) => v.iter().map(|&x| x as i64).collect(),
            Data::Bool(v) => v.iter().map(|&x| x as i64).collect(),
            other => return Err(format!("expected an integer tensor, got {}", other.dtype())),
        })
    }

    /// Elements as f64 (any numeric tensor): scales, scalar parameters.
    pub fn to_f64s(&self) -> Result<Vec<f64>, String> {
        Ok(match &self.data {
            Data::F32(v) => v.iter().map(|&x| x as f64).collect(),
            Data::F64(v) => v.clone(),
            Data::F16(v) => v.iter().map(|x| x.to_f64()).collect(),
            Data::BF16(v) => v.iter().map(|x| x.to_f64()).collect(),
            other => match Tensor::new(vec![other.len()], other.clone()).to_i64s() {
                Ok(v) => v.into_iter().map(|x| x as f64).collect(),
                Err(_) => return Err(format!("expected a numeric tensor, got {}", other.dtype())),
            },
        })
    }

    /// Converts kiln's stored tensor (packed little-endian bytes) to typed storage.
    pub fn from_ir(t: &kiln_ir::Tensor) -> Tensor {
        let shape = t.dims.clone();
        let raw = match &t.data {
            TensorData::Strings(s) => {
                let v = s
                    .iter()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .collect();
                return Tensor::new(shape, Data::Str(v));
            }
            TensorData::Raw(b) => b.as_ref(),
        };
        fn le<T, const N: usize>(raw: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
            raw.chunks_exact(N)
                .map(|c| f(c.try_into().expect("chunk of N")))
                .collect()
        }
        let data = match t.dtype {
            DataType::F32 => Data::F32(le(raw, f32::from_le_bytes)),
            DataType::F64 => Data::F64(le(raw, f64::from_le_bytes)),
            DataType::F16 => Data::F16(le(raw, f16::from_le_bytes)),
            DataType::BF16 => Data::BF16(le(raw, bf16::from_le_bytes)),
            DataType::I8 => Data::I8(raw.iter().map(|&b| b as i8).collect()),
            DataType::I16 => Data::I16(le(raw, i16::from_le_bytes)),
            DataType::I32 => Data::I32(le(raw, i32::from_le_bytes)),
            DataType::I64 => Data::I64(le(raw, i64::from_le_bytes)),
            DataType::U8 => Data::U8(raw.to_vec()),
            DataType::U16 => Data::U16(le(raw, u16::from_le_bytes)),
            DataType::U32 => Data::U32(le(raw, u32::from_le_bytes)),
            DataType::U64 => Data::U64(le(raw, u64::from_le_bytes)),
            DataType::Bool => Data::Bool(raw.iter().map(|&b| b != 0).collect()),
            dtype => Data::Packed {
                dtype,
                raw: raw.to_vec(),
            },
        };
        Tensor::new(shape, data)
    }

    /// Converts back to packed little-endian bytes (for saving and for .pb/.npy output).
    pub fn to_ir(&self) -> kiln_ir::Tensor {
        let raw: Vec<u8> = match &self.data {
            Data::Str(v) => {
                return kiln_ir::Tensor {
                    dtype: DataType::String,
                    dims: self.shape.clone(),
                    data: TensorData::Strings(
                        v.iter().map(|s| s.clone().into_bytes().into()).collect(),
                    ),
                }
            }
            Data::Packed { raw, .. } => raw.clone(),
            Data::Bool(v) => v.iter().map(|&b| b as u8).collect(),
            Data::U8(v) => v.clone(),
            Data::I8(v) => v.iter().map(|&x| x as u8).collect(),
            Data::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::F64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::F16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::BF16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::I64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::U16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::U32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Data::U64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        };
        kiln_ir::Tensor {
            dtype: self.dtype(),
            dims: self.shape.clone(),
            data: TensorData::Raw(raw.into()),
        }
    }
}

impl Value {
    pub fn tensor(&self) -> Option<&Tensor> {
        match self {
            Value::Tensor(t) => Some(t),
            _ => None,
        }
    }

    pub fn into_tensor(self) -> Option<Tensor> {
        match self {
            Value::Tensor(t) => Some(t),
            _ => None,
        }
    }

    /// Bytes held (for memory accounting).
    pub fn bytes(&self) -> usize {
        match self {
            Value::Tensor(t) => t.data.bytes(),
            Value::Sequence(_, ts) => ts.iter().map(|t| t.data.bytes()).sum(),
            Value::Optional(v) => v.as_ref().map(|v| v.bytes()).unwrap_or(0),
            Value::Map(m) => m.keys.data.bytes() + m.values.data.bytes(),
            Value::MapSequence(ms) => ms
                .iter()
                .map(|m| m.keys.data.bytes() + m.values.data.bytes())
                .sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ir_round_trip_every_storable_type() {
        for dt in kiln_ir::ALL_DATA_TYPES {
            if dt == DataType::String {
                continue;
            }
            let n = 6;
            let bytes = dt.storage_bytes(n).unwrap();
            let raw: Vec<u8> = (0..bytes).map(|i| (i * 37 % 251) as u8).collect();
            let raw = if dt == DataType::Bool {
                raw.iter().map(|b| b & 1).collect()
            } else {
                raw
            };
            let t = kiln_ir::Tensor::from_raw(dt, vec![2, 3], raw.into()).unwrap();
            let v = Tensor::from_ir(&t);
            assert_eq!(v.dtype(), dt);
            assert_eq!(v.to_ir(), t, "{dt}");
        }
    }
}
