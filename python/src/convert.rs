//! numpy arrays to kiln tensors and kiln values back to Python: a feed is copied once into
//! kiln's typed storage (in C order, whatever its strides); an output tensor's buffer is handed
//! to numpy without a copy. Type names are ONNX Runtime's (`tensor(float)`, `seq(...)`, ...).
use half::f16;
use numpy::{
    Element, PyArray1, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn,
    PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use kiln_ir::{DataType, Dim, ValueType};
use kiln_ops::{Data, MapValue, Tensor, Value};

use crate::errors::{Fail, InvalidArgument};

/// ONNX Runtime's name of an element type.
pub fn elem_name(t: DataType) -> &'static str {
    match t {
        DataType::F32 => "float",
        DataType::F64 => "double",
        other => other.name(),
    }
}

/// ONNX Runtime's name of a value type (`tensor(float)`, `seq(map(int64,tensor(float)))`).
pub fn type_name(t: &ValueType) -> String {
    let elem = |d: &Option<DataType>| d.map_or("undefined", elem_name);
    match t {
        ValueType::Tensor { dtype, .. } => format!("tensor({})", elem(dtype)),
        ValueType::SparseTensor { dtype, .. } => format!("sparse_tensor({})", elem(dtype)),
        ValueType::Sequence(inner) => format!("seq({})", type_name(inner)),
        ValueType::Optional(inner) => format!("optional({})", type_name(inner)),
        ValueType::Map(k, v) => format!("map({},{})", elem_name(*k), type_name(v)),
        ValueType::Unknown => "unknown".into(),
    }
}

/// A shape as ONNX Runtime reports it: ints, strings for named dims, `None` for unknown ones;
/// empty for a value that is not a tensor or whose rank is unknown.
pub fn shape_of<'py>(py: Python<'py>, t: &ValueType) -> PyResult<Bound<'py, PyList>> {
    let dims = match t {
        ValueType::Tensor { shape: Some(s), .. }
        | ValueType::SparseTensor { shape: Some(s), .. } => s.as_slice(),
        _ => &[],
    };
    let items: Vec<Bound<'py, PyAny>> = dims
        .iter()
        .map(|d| match d {
            Dim::Known(k) => k
                .into_pyobject(py)
                .map_err(PyErr::from)
                .map(|v| v.into_any()),
            Dim::Sym(_) => d
                .to_string()
                .into_pyobject(py)
                .map_err(PyErr::from)
                .map(|v| v.into_any()),
            Dim::Unknown => Ok(py.None().into_bound(py)),
        })
        .collect::<PyResult<_>>()?;
    PyList::new(py, items)
}

/// The environment's memory limit now, with the runtime's margin.
pub fn memory_limit() -> Option<u64> {
    kiln_runtime::memory::usable_limit().map(|l| l.bytes)
}

/// Refuses to copy a feed larger than the memory the environment leaves: the copy would abort
/// the interpreter (or bring an OOM kill) instead of raising.
fn check_size(name: &str, a: &Bound<'_, PyUntypedArray>) -> PyResult<()> {
    let bytes = a
        .shape()
        .iter()
        .try_fold(a.dtype().itemsize() as u64, |acc, &d| {
            acc.checked_mul(d as u64)
        });
    // Reading the limit costs about 90 us; a feed this small cannot be the one that crosses it
    // (and the run's own check still counts it).
    const SMALL: u64 = 16 << 20;
    let limit = match bytes {
        Some(b) if b <= SMALL => None,
        _ => memory_limit(),
    };
    match (bytes, limit) {
        (None, _) => Err(pyo3::exceptions::PyMemoryError::new_err(format!(
            "input '{name}': its size overflows 64 bits"
        ))),
        (Some(b), Some(l)) if b > l => Err(pyo3::exceptions::PyMemoryError::new_err(format!(
            "input '{name}': a copy of {} is over the memory limit of {}",
            kiln_runtime::memory::human(b),
            kiln_runtime::memory::human(l)
        ))),
        _ => Ok(()),
    }
}

fn typed<T: Element + Copy>(a: &Bound<'_, PyUntypedArray>) -> PyResult<Option<Vec<T>>> {
    let Ok(a) = a.cast::<PyArrayDyn<T>>() else {
        return Ok(None);
    };
    let ro: PyReadonlyArrayDyn<T> = a
        .try_readonly()
        .map_err(|e| InvalidArgument::new_err(format!("a feed cannot be read: {e}")))?;
    // `as_slice` also takes Fortran-ordered memory, whose order is not the shape's.
    Ok(Some(if ro.is_c_contiguous() {
        ro.as_slice()
            .map_err(|e| InvalidArgument::new_err(e.to_string()))?
            .to_vec()
    } else {
        ro.as_array().iter().copied().collect()
    }))
}

/// A feed for input `name` as a kiln tensor (one copy into kiln's storage).
pub fn feed(name: &str, obj: &Bound<'_, PyAny>) -> PyResult<Tensor> {
    let arr = obj.cast::<PyUntypedArray>().map_err(|_| {
        InvalidArgument::new_err(format!(
            "input '{name}': expected a numpy array, got {}",
            obj.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        ))
    })?;
    let shape = arr.shape().to_vec();
    check_size(name, arr)?;
    macro_rules! try_types {
        ($($t:ty),*) => {
            $(if let Some(v) = typed::<$t>(arr)? {
                return Ok(Tensor::from_vec(shape, v));
            })*
        };
    }
    try_types!(f32, f64, i64, i32, u8, i8, bool, f16, i16, u16, u32, u64);
    let kind = arr.dtype().kind();
    if matches!(kind, b'U' | b'S' | b'O') {
        // Strings: numpy's fixed-width or object arrays, read through Python.
        let flat = obj.call_method1("reshape", (-1,))?.call_method0("tolist")?;
        let items: Vec<String> = flat
            .cast::<PyList>()?
            .iter()
            .map(|v| match v.extract::<String>() {
                Ok(s) => Ok(s),
                Err(_) => v
                    .extract::<Vec<u8>>()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .map_err(|_| {
                        InvalidArgument::new_err(format!(
                            "input '{name}': an object array must hold strings"
                        ))
                    }),
            })
            .collect::<PyResult<_>>()?;
        return Ok(Tensor::new(shape, Data::Str(items)));
    }
    Err(InvalidArgument::new_err(format!(
        "input '{name}': numpy dtype {} has no ONNX tensor type kiln takes",
        arr.dtype()
    )))
}

fn array<'py, T: Element>(
    py: Python<'py>,
    shape: &[usize],
    v: Vec<T>,
) -> PyResult<Bound<'py, PyAny>> {
    let flat = PyArray1::from_vec(py, v);
    Ok(flat.reshape(shape.to_vec())?.into_any())
}

/// A kiln tensor as a numpy array (numeric: the buffer moves to numpy; strings: an object array).
pub fn tensor<'py>(py: Python<'py>, name: &str, t: Tensor) -> PyResult<Bound<'py, PyAny>> {
    let Tensor { shape, data } = t;
    match data {
        Data::F32(v) => array(py, &shape, v),
        Data::F64(v) => array(py, &shape, v),
        Data::F16(v) => array(py, &shape, v),
        Data::I8(v) => array(py, &shape, v),
        Data::I16(v) => array(py, &shape, v),
        Data::I32(v) => array(py, &shape, v),
        Data::I64(v) => array(py, &shape, v),
        Data::U8(v) => array(py, &shape, v),
        Data::U16(v) => array(py, &shape, v),
        Data::U32(v) => array(py, &shape, v),
        Data::U64(v) => array(py, &shape, v),
        Data::Bool(v) => array(py, &shape, v),
        Data::Str(v) => {
            let np = py.import("numpy")?;
            let kw = PyDict::new(py);
            kw.set_item("dtype", np.getattr("object_")?)?;
            let a = np.call_method("array", (PyList::new(py, v)?,), Some(&kw))?;
            // A list of no strings makes an array of shape (0,): reshape to the real shape.
            a.call_method1("reshape", (shape,))
        }
        Data::BF16(_) | Data::Packed { .. } => Err(Fail::new_err(format!(
            "output '{name}': its element type has no numpy dtype"
        ))),
    }
}

fn map<'py>(py: Python<'py>, name: &str, m: MapValue) -> PyResult<Bound<'py, PyAny>> {
    let d = PyDict::new(py);
    let keys = tensor(py, name, m.keys)?.call_method0("tolist")?;
    let values = tensor(py, name, m.values)?.call_method0("tolist")?;
    for (k, v) in keys.try_iter()?.zip(values.try_iter()?) {
        d.set_item(k?, v?)?;
    }
    Ok(d.into_any())
}

/// Any kiln value as Python: tensors as arrays, sequences as lists, maps as dicts, an empty
/// optional as `None`.
pub fn value<'py>(py: Python<'py>, name: &str, v: Value) -> PyResult<Bound<'py, PyAny>> {
    match v {
        Value::Tensor(t) => tensor(py, name, t),
        Value::Sequence(_, ts) => {
            let items = ts
                .into_iter()
                .map(|t| tensor(py, name, t))
                .collect::<PyResult<Vec<_>>>()?;
            Ok(PyList::new(py, items)?.into_any())
        }
        Value::Optional(None) => Ok(py.None().into_bound(py)),
        Value::Optional(Some(b)) => value(py, name, *b),
        Value::Map(m) => map(py, name, m),
        Value::MapSequence(ms) => {
            let items = ms
                .into_iter()
                .map(|m| map(py, name, m))
                .collect::<PyResult<Vec<_>>>()?;
            Ok(PyList::new(py, items)?.into_any())
        }
    }
}
