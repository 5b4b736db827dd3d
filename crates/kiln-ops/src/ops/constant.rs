//! Constant (every value_* attribute form) and ConstantOfShape.
use kiln_ir::{AttrValue, DataType, Dim};

use crate::ctx::{InferCtx, Inferred, Result, SymValue};

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let known = |n: usize| Some(vec![Dim::Known(n as i64)]);
    let (dtype, shape, value) = match ctx.attrs.first().map(|a| (a.name.as_str(), &a.value)) {
        Some(("value", AttrValue::Tensor(t))) => {
            let shape: Vec<Dim> = t.dims.iter().map(|&d| Dim::Known(d as i64)).collect();
            let value = if t.dims.len() <= 1 && t.len() <= 64 {
                t.to_i64_vec()
                    .filter(|_| t.dtype.is_int())
                    .map(|v| SymValue {
                        scalar: t.dims.is_empty(),
                        elems: v.into_iter().map(Dim::Known).collect(),
                    })
            } else {
                None
            };
            (Some(t.dtype), Some(shape), value)
        }
        Some(("value_float", AttrValue::Float(_))) => (Some(DataType::F32), Some(vec![]), None),
        Some(("value_floats", AttrValue::Floats(v))) => (Some(DataType::F32), known(v.len()), None),
        Some(("value_int", AttrValue::Int(v))) => (
            Some(DataType::I64),
            Some(vec![]),
            Some(SymValue {
                scalar: true,
                elems: vec![Dim::Known(*v)],
            }),
        ),
        Some(("value_ints", AttrValue::Ints(v))) => (
            Some(DataType::I64),
            known(v.len()),
            Some(SymValue {
                scalar: false,
                elems: v.iter().map(|&x| Dim::Known(x)).collect(),
            }),
        ),
        Some(("value_string", AttrValue::String(_))) => {
            (Some(DataType::String), Some(vec![]), None)
        }
        Some(("value_strings", AttrValue::Strings(v))) => {
            (Some(DataType::String), known(v.len()), None)
        }
        Some(("sparse_value", AttrValue::SparseTensor(s))) => (
            s.values
                .as_ref()
                .and_then(|v| v.data_type)
                .and_then(DataType::from_onnx),
            Some(s.dims.iter().map(|&d| Dim::Known(d)).collect()),
            None,
        ),
        _ if ctx.attrs.len() != 1 => {
            return Err("Constant needs exactly one value attribute".into())
        }
        Some((name, _)) => return Err(format!("unsupported Constant attribute '{name}'")),
        None => unreachable!("one attribute checked above"),
    };
    Ok(vec![Inferred::tensor(dtype, shape).with_value(value)])
}

pub fn infer_of_shape(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let (dtype, fill) = match ctx.attr("value") {
        Some(AttrValue::Tensor(t)) => (t.dtype, t.to_i64_vec().filter(|_| t.dtype.is_int())),
        _ => (DataType::F32, None),
    };
    let shape = ctx.int_values(0);
    if let Some(s) = &shape {
        if let Some(d) = s.iter().find_map(|d| d.known().filter(|v| *v < 0)) {
            return Err(format!("shape has a negative dimension ({d})"));
        }
    }
    // A small integer fill of a 1-D shape is a known value (e.g. ones for a Reshape target).
    let value = match (&shape, fill) {
        (Some(s), Some(f)) if s.len() == 1 && f.len() == 1 => {
            s[0].known().filter(|&n| n <= 64).map(|n| SymValue {
                scalar: false,
                elems: vec![Dim::Known(f[0]); n as usize],
            })
        }
        _ => None,
    };
    Ok(vec![Inferred::tensor(Some(dtype), shape).with_value(value)])
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    let _ = (domain, op_type);
    None
}
