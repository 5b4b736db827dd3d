//! Tensors as the Open Inference Protocol carries them: datatype names (`FP32`, `INT64`,
//! `BYTES`, ...), JSON `data` (flat or nested row-major arrays) and the binary tensor data
//! extension (little-endian elements; `BYTES` elements each prefixed by a 4-byte length).
use half::{bf16, f16};
use kiln_ir::DataType;
use kiln_ops::{Data, Tensor};
use serde_json::Value as Json;

use crate::error::ServeError;

/// The protocol's name of an element type.
pub fn datatype(t: DataType) -> Option<&'static str> {
    Some(match t {
        DataType::Bool => "BOOL",
        DataType::U8 => "UINT8",
        DataType::U16 => "UINT16",
        DataType::U32 => "UINT32",
        DataType::U64 => "UINT64",
        DataType::I8 => "INT8",
        DataType::I16 => "INT16",
        DataType::I32 => "INT32",
        DataType::I64 => "INT64",
        DataType::F16 => "FP16",
        DataType::BF16 => "BF16",
        DataType::F32 => "FP32",
        DataType::F64 => "FP64",
        DataType::String => "BYTES",
        _ => return None,
    })
}

pub fn from_datatype(s: &str) -> Option<DataType> {
    Some(match s {
        "BOOL" => DataType::Bool,
        "UINT8" => DataType::U8,
        "UINT16" => DataType::U16,
        "UINT32" => DataType::U32,
        "UINT64" => DataType::U64,
        "INT8" => DataType::I8,
        "INT16" => DataType::I16,
        "INT32" => DataType::I32,
        "INT64" => DataType::I64,
        "FP16" => DataType::F16,
        "BF16" => DataType::BF16,
        "FP32" => DataType::F32,
        "FP64" => DataType::F64,
        "BYTES" => DataType::String,
        _ => return None,
    })
}

/// The largest dimension a request may give.
const MAX_DIM: i64 = i32::MAX as i64;

/// The most elements a request's tensor may describe (counting zero-sized dimensions as 1).
const MAX_ELEMENTS: usize = 1 << 40;

/// Elements of a shape the protocol gave, checked to be non-negative and of a sane count.
pub fn elements(name: &str, shape: &[i64]) -> Result<(Vec<usize>, usize), ServeError> {
    let too_large = || ServeError::bad(format!("input '{name}': shape {shape:?} is too large"));
    let mut dims = Vec::with_capacity(shape.len());
    let (mut n, mut extent): (usize, usize) = (1, 1);
    for &d in shape {
        if d < 0 {
            return Err(ServeError::bad(format!(
                "input '{name}': shape {shape:?} has a negative dimension"
            )));
        }
        if d > MAX_DIM {
            return Err(too_large());
        }
        n = n.checked_mul(d as usize).ok_or_else(too_large)?;
        // Zero-sized dimensions aside, the shape must still describe a sane tensor: kernels
        // compute strides from the other dimensions.
        extent = extent
            .checked_mul((d as usize).max(1))
            .ok_or_else(too_large)?;
        dims.push(d as usize);
    }
    if extent > MAX_ELEMENTS {
        return Err(too_large());
    }
    Ok((dims, n))
}

fn flatten<'a>(v: &'a Json, out: &mut Vec<&'a Json>) {
    match v {
        Json::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other),
    }
}

/// A tensor from JSON `data` (flat or nested), `n` elements of `dt`.
pub fn from_json(
    name: &str,
    dt: DataType,
    dims: Vec<usize>,
    n: usize,
    data: &Json,
) -> Result<Tensor, ServeError> {
    let mut flat = Vec::new();
    flatten(data, &mut flat);
    if flat.len() != n {
        return Err(ServeError::bad(format!(
            "input '{name}': shape {dims:?} needs {n} values, the data has {}",
            flat.len()
        )));
    }
    let bad = |v: &Json| {
        ServeError::bad(format!(
            "input '{name}': {v} is not a {} value",
            datatype(dt).unwrap_or("?")
        ))
    };
    macro_rules! nums {
        ($t:ty, $get:ident) => {{
            let v: Result<Vec<$t>, ServeError> = flat
                .iter()
                .map(|v| {
                    v.$get()
                        .and_then(|x| <$t>::try_from(x).ok())
                        .ok_or_else(|| bad(v))
                })
                .collect();
            Tensor::from_vec(dims.clone(), v?)
        }};
    }
    macro_rules! floats {
        ($conv:expr) => {{
            let v: Result<Vec<_>, ServeError> = flat
                .iter()
                .map(|v| v.as_f64().map($conv).ok_or_else(|| bad(v)))
                .collect();
            Tensor::from_vec(dims.clone(), v?)
        }};
    }
    Ok(match dt {
        DataType::F32 => floats!(|x| x as f32),
        DataType::F64 => floats!(|x| x),
        DataType::F16 => floats!(f16::from_f64),
        DataType::BF16 => floats!(bf16::from_f64),
        DataType::I8 => nums!(i8, as_i64),
        DataType::I16 => nums!(i16, as_i64),
        DataType::I32 => nums!(i32, as_i64),
        DataType::I64 => nums!(i64, as_i64),
        DataType::U8 => nums!(u8, as_u64),
        DataType::U16 => nums!(u16, as_u64),
        DataType::U32 => nums!(u32, as_u64),
        DataType::U64 => nums!(u64, as_u64),
        DataType::Bool => {
            let v: Result<Vec<bool>, ServeError> = flat
                .iter()
                .map(|v| v.as_bool().ok_or_else(|| bad(v)))
                .collect();
            Tensor::new(dims, Data::Bool(v?))
        }
        DataType::String => {
            let v: Result<Vec<String>, ServeError> = flat
                .iter()
                .map(|v| v.as_str().map(str::to_string).ok_or_else(|| bad(v)))
                .collect();
            Tensor::new(dims, Data::Str(v?))
        }
        _ => {
            return Err(ServeError::bad(format!(
                "input '{name}': unsupported datatype"
            )))
        }
    })
}

/// Bytes per element of a fixed-size type.
fn width(dt: DataType) -> Option<usize> {
    Some(match dt {
        DataType::Bool | DataType::U8 | DataType::I8 => 1,
        DataType::U16 | DataType::I16 | DataType::F16 | DataType::BF16 => 2,
        DataType::U32 | DataType::I32 | DataType::F32 => 4,
        DataType::U64 | DataType::I64 | DataType::F64 => 8,
        _ => return None,
    })
}

/// A tensor from the binary extension's raw bytes.
pub fn from_binary(
    name: &str,
    dt: DataType,
    dims: Vec<usize>,
    n: usize,
    raw: &[u8],
) -> Result<Tensor, ServeError> {
    if dt == DataType::String {
        let mut out = Vec::with_capacity(n.min(raw.len() / 4));
        let mut rest = raw;
        while !rest.is_empty() {
            if rest.len() < 4 {
                return Err(ServeError::bad(format!(
                    "input '{name}': a BYTES element's length is cut off"
                )));
            }
            let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            if rest.len() - 4 < len {
                return Err(ServeError::bad(format!(
                    "input '{name}': a BYTES element of {len} bytes runs past the data"
                )));
            }
            out.push(String::from_utf8_lossy(&rest[4..4 + len]).into_owned());
            rest = &rest[4 + len..];
        }
        if out.len() != n {
            return Err(ServeError::bad(format!(
                "input '{name}': shape {dims:?} needs {n} elements, the data has {}",
                out.len()
            )));
        }
        return Ok(Tensor::new(dims, Data::Str(out)));
    }
    let w = width(dt)
        .ok_or_else(|| ServeError::bad(format!("input '{name}': unsupported datatype")))?;
    let bytes = n
        .checked_mul(w)
        .ok_or_else(|| ServeError::bad(format!("input '{name}': shape {dims:?} is too large")))?;
    if raw.len() != bytes {
        return Err(ServeError::bad(format!(
            "input '{name}': shape {dims:?} needs {} bytes of {}, the data has {}",
            bytes,
            datatype(dt).unwrap_or("?"),
            raw.len()
        )));
    }
    macro_rules! le {
        ($t:ty) => {
            Tensor::from_vec(
                dims,
                raw.chunks_exact(std::mem::size_of::<$t>())
                    .map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk width")))
                    .collect::<Vec<$t>>(),
            )
        };
    }
    Ok(match dt {
        DataType::F32 => le!(f32),
        DataType::F64 => le!(f64),
        DataType::I8 => le!(i8),
        DataType::I16 => le!(i16),
        DataType::I32 => le!(i32),
        DataType::I64 => le!(i64),
        DataType::U8 => le!(u8),
        DataType::U16 => le!(u16),
        DataType::U32 => le!(u32),
        DataType::U64 => le!(u64),
        DataType::F16 => le!(f16),
        DataType::BF16 => le!(bf16),
        DataType::Bool => Tensor::new(dims, Data::Bool(raw.iter().map(|&b| b != 0).collect())),
        _ => unreachable!("width() covers the fixed-size types"),
    })
}

/// A tensor's elements as a flat JSON array.
pub fn to_json(t: &Tensor) -> Result<Json, ServeError> {
    let nums = |v: Vec<f64>| Json::Array(v.into_iter().map(Json::from).collect());
    Ok(match &t.data {
        Data::F32(v) => nums(v.iter().map(|&x| x as f64).collect()),
        Data::F64(v) => nums(v.clone()),
        Data::F16(v) => nums(v.iter().map(|x| x.to_f64()).collect()),
        Data::BF16(v) => nums(v.iter().map(|x| x.to_f64()).collect()),
        Data::I8(v) => Json::from(v.clone()),
        Data::I16(v) => Json::from(v.clone()),
        Data::I32(v) => Json::from(v.clone()),
        Data::I64(v) => Json::from(v.clone()),
        Data::U8(v) => Json::from(v.clone()),
        Data::U16(v) => Json::from(v.clone()),
        Data::U32(v) => Json::from(v.clone()),
        Data::U64(v) => Json::from(v.clone()),
        Data::Bool(v) => Json::from(v.clone()),
        Data::Str(v) => Json::from(v.clone()),
        Data::Packed { dtype, .. } => {
            return Err(ServeError::internal(format!(
                "an output of type {dtype} has no protocol datatype"
            )))
        }
    })
}

/// A tensor's elements as the binary extension lays them out.
pub fn to_binary(t: &Tensor) -> Result<Vec<u8>, ServeError> {
    macro_rules! le {
        ($v:expr) => {
            $v.iter().flat_map(|x| x.to_le_bytes()).collect()
        };
    }
    Ok(match &t.data {
        Data::F32(v) => le!(v),
        Data::F64(v) => le!(v),
        Data::F16(v) => le!(v),
        Data::BF16(v) => le!(v),
        Data::I8(v) => le!(v),
        Data::I16(v) => le!(v),
        Data::I32(v) => le!(v),
        Data::I64(v) => le!(v),
        Data::U8(v) => v.clone(),
        Data::U16(v) => le!(v),
        Data::U32(v) => le!(v),
        Data::U64(v) => le!(v),
        Data::Bool(v) => v.iter().map(|&b| b as u8).collect(),
        Data::Str(v) => {
            let mut out = Vec::new();
            for s in v {
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            out
        }
        Data::Packed { dtype, .. } => {
            return Err(ServeError::internal(format!(
                "an output of type {dtype} has no protocol datatype"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_and_binary_round_trips() {
        let t = from_json(
            "x",
            DataType::F32,
            vec![2, 2],
            4,
            &json!([[1.5, -2], [3, 4.25]]),
        )
        .unwrap();
        assert_eq!(t.as_slice::<f32>().unwrap(), &[1.5, -2.0, 3.0, 4.25]);
        let raw = to_binary(&t).unwrap();
        let back = from_binary("x", DataType::F32, vec![2, 2], 4, &raw).unwrap();
        assert_eq!(back, t);
        let s = from_json("s", DataType::String, vec![2], 2, &json!(["ab", ""])).unwrap();
        let raw = to_binary(&s).unwrap();
        assert_eq!(raw, [2, 0, 0, 0, b'a', b'b', 0, 0, 0, 0]);
        assert_eq!(
            from_binary("s", DataType::String, vec![2], 2, &raw).unwrap(),
            s
        );
        assert_eq!(to_json(&s).unwrap(), json!(["ab", ""]));
        let b = from_binary("b", DataType::Bool, vec![3], 3, &[1, 0, 1]).unwrap();
        assert_eq!(to_json(&b).unwrap(), json!([true, false, true]));
    }

    #[test]
    fn bad_data_is_refused_with_the_input_named() {
        let cases = [
            from_json("x", DataType::F32, vec![3], 3, &json!([1, 2])),
            from_json("x", DataType::I64, vec![1], 1, &json!(["a"])),
            from_json("x", DataType::U8, vec![1], 1, &json!([300])),
            from_binary("x", DataType::F32, vec![2], 2, &[0; 7]),
            from_binary("x", DataType::String, vec![1], 1, &[9, 0, 0, 0, b'a']),
            from_binary("x", DataType::String, vec![1], 1, &[1, 0]),
        ];
        for c in cases {
            let e = c.unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
            assert!(e.message.contains("'x'"), "{}", e.message);
        }
        assert!(elements("x", &[2, -1]).is_err());
        assert!(elements("x", &[i64::MAX, i64::MAX]).is_err());
        assert!(elements("x", &[0, i64::from(i32::MAX), i64::from(i32::MAX)]).is_err());
        assert!(from_binary("x", DataType::F64, vec![1 << 61], 1 << 61, &[]).is_err());
        assert_eq!(elements("x", &[2, 3]).unwrap(), (vec![2, 3], 6));
        assert_eq!(from_datatype("FP32"), Some(DataType::F32));
        assert_eq!(datatype(DataType::I64), Some("INT64"));
    }
}
