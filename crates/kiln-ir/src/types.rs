//! Value types: tensors with element type and (possibly symbolic) shape, and ONNX's other types
//! (sequence, optional, map, sparse tensor).
use std::fmt;

use crate::{DataType, Dim};

#[derive(Clone, Debug, PartialEq)]
pub enum ValueType {
    /// `dtype` is `None` when the element type is not known; `shape` is `None` when the rank is
    /// not known.
    Tensor {
        dtype: Option<DataType>,
        shape: Option<Vec<Dim>>,
    },
    SparseTensor {
        dtype: Option<DataType>,
        shape: Option<Vec<Dim>>,
    },
    Sequence(Box<ValueType>),
    Optional(Box<ValueType>),
    Map(DataType, Box<ValueType>),
    /// A type ONNX allows but kiln does not model (opaque), or a missing type.
    Unknown,
}

impl ValueType {
    pub fn tensor(dtype: DataType, shape: Vec<Dim>) -> ValueType {
        ValueType::Tensor {
            dtype: Some(dtype),
            shape: Some(shape),
        }
    }

    pub fn dtype(&self) -> Option<DataType> {
        match self {
            ValueType::Tensor { dtype, .. } | ValueType::SparseTensor { dtype, .. } => *dtype,
            _ => None,
        }
    }

    pub fn shape(&self) -> Option<&[Dim]> {
        match self {
            ValueType::Tensor { shape, .. } | ValueType::SparseTensor { shape, .. } => {
                shape.as_deref()
            }
            _ => None,
        }
    }

    /// The concrete shape when every dim is known.
    pub fn known_shape(&self) -> Option<Vec<i64>> {
        self.shape()?.iter().map(|d| d.known()).collect()
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dt = |d: &Option<DataType>| d.map(|d| d.name()).unwrap_or("unknown");
        match self {
            ValueType::Tensor { dtype, .. } => f.write_str(dt(dtype)),
            ValueType::SparseTensor { dtype, .. } => write!(f, "sparse<{}>", dt(dtype)),
            ValueType::Sequence(t) => write!(f, "sequence<{t}>"),
            ValueType::Optional(t) => write!(f, "optional<{t}>"),
            ValueType::Map(k, v) => write!(f, "map<{k},{v}>"),
            ValueType::Unknown => f.write_str("unknown"),
        }
    }
}
