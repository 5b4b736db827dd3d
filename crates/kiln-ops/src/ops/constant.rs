//! Constant (every value_* attribute form) and ConstantOfShape.
use kiln_ir::{AttrValue, DataType, Dim};

use crate::ctx::{InferCtx, Inferred, Result, SymValue};
use crate::kernel::{one, strides, KernelCtx};
use crate::ops::movement;
use crate::value::{Data, Tensor, Value};

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
    match (domain, op_type) {
        ("", "Constant") => Some(run_constant),
        ("", "ConstantOfShape") => Some(run_of_shape),
        _ => None,
    }
}

fn bytes_str(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A sparse tensor made dense (zeros, or empty strings, where no value is given).
fn densify(s: &kiln_onnx::proto::SparseTensorProto) -> Result<Tensor> {
    let values = s.values.as_ref().ok_or("sparse_value has no values")?;
    let values = kiln_ir::Tensor::from_proto(values).map_err(|e| format!("sparse values: {e}"))?;
    let values = Tensor::from_ir(&values);
    let shape = movement::dims_of(&s.dims, "sparse_value")?;
    let n = movement::numel(&shape)?;
    let nnz = movement::numel(&values.shape)?;
    let indices = match &s.indices {
        Some(i) => {
            let t = kiln_ir::Tensor::from_proto(i).map_err(|e| format!("sparse indices: {e}"))?;
            let v = t.to_i64_vec().ok_or("sparse indices must be integers")?;
            (t.dims, v)
        }
        None => (vec![0], Vec::new()),
    };
    let st = strides(&shape);
    let flat: Vec<usize> = match indices.0.as_slice() {
        [k] if *k == nnz => indices
            .1
            .iter()
            .map(|&i| {
                if i < 0 {
                    return Err(format!("sparse index {i} is negative"));
                }
                movement::norm_index(i, n, "sparse index")
            })
            .collect::<Result<_>>()?,
        [k, r] if *k == nnz && *r == shape.len() => indices
            .1
            .chunks_exact(shape.len().max(1))
            .map(|c| {
                c.iter().enumerate().try_fold(0usize, |acc, (d, &i)| {
                    if i < 0 {
                        return Err(format!("sparse index {i} is negative"));
                    }
                    Ok(acc + movement::norm_index(i, shape[d], "sparse index")? * st[d])
                })
            })
            .collect::<Result<_>>()?,
        d => {
            return Err(format!(
                "sparse indices of shape {d:?} do not match {nnz} values of rank {}",
                shape.len()
            ))
        }
    };
    let zeros = Data::zeros(values.dtype(), n)?;
    let from: Vec<usize> = (0..flat.len()).collect();
    Ok(Tensor::new(
        shape,
        movement::overwrite(&zeros, &flat, &values.data, &from)?,
    ))
}

fn run_constant(ctx: &KernelCtx) -> Result<Vec<Value>> {
    use kiln_ir::AttrValue;
    let values: Vec<_> = ctx
        .attrs
        .iter()
        .filter(|a| a.name.starts_with("value") || a.name == "sparse_value")
        .collect();
    let [a] = values.as_slice() else {
        return Err(format!(
            "Constant needs exactly one value attribute, got {}",
            values.len()
        ));
    };
    let t = match (a.name.as_str(), &a.value) {
        ("value", AttrValue::Tensor(t)) => {
            let v = Tensor::from_ir(t);
            movement::check_len(&v, "value")?;
            v
        }
        ("value_float", AttrValue::Float(f)) => Tensor::scalar(*f),
        ("value_floats", AttrValue::Floats(f)) => Tensor::from_vec(vec![f.len()], f.clone()),
        ("value_int", AttrValue::Int(i)) => Tensor::scalar(*i),
        ("value_ints", AttrValue::Ints(i)) => Tensor::from_vec(vec![i.len()], i.clone()),
        ("value_string", AttrValue::String(s)) => {
            Tensor::new(vec![], Data::Str(vec![bytes_str(s)]))
        }
        ("value_strings", AttrValue::Strings(s)) => Tensor::new(
            vec![s.len()],
            Data::Str(s.iter().map(|b| bytes_str(b)).collect()),
        ),
        ("sparse_value", AttrValue::SparseTensor(s)) => densify(s)?,
        (name, _) => return Err(format!("unsupported Constant attribute '{name}'")),
    };
    one(t)
}

fn run_of_shape(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let s = ctx.tensor(0)?;
    if s.rank() > 1 {
        return Err(format!("shape must be 1-D, got shape {:?}", s.shape));
    }
    let shape = movement::dims_of(&s.to_i64s()?, "shape")?;
    let n = movement::numel(&shape)?;
    let value = match ctx.attr("value") {
        Some(kiln_ir::AttrValue::Tensor(t)) => movement::scalar_data(&Tensor::from_ir(t), "value")?,
        Some(_) => return Err("value must be a tensor".into()),
        None => Data::F32(vec![0.0]),
    };
    one(Tensor::new(shape, movement::take(&value, &vec![0; n])?))
}

#[cfg(test)]
mod kernel_tests {
    use crate::ops::movement::testing::*;
    use crate::value::Data;
    use kiln_ir::{AttrValue, Attribute};

    #[test]
    fn constants() {
        let y = run("Constant", &[Attribute::ints("value_ints", &[1, 2])], &[]).unwrap();
        assert_eq!(y.as_slice::<i64>().unwrap(), &[1, 2]);
        let y = run("Constant", &[Attribute::float("value_float", 1.5)], &[]).unwrap();
        assert_eq!(y.shape, Vec::<usize>::new());
        let y = run("Constant", &[Attribute::string("value_string", "hi")], &[]).unwrap();
        assert_eq!(y.data, Data::Str(vec!["hi".into()]));
        let t = kiln_ir::Tensor::from_f32(vec![2], &[3.0, 4.0]);
        let y = run(
            "Constant",
            &[Attribute::new("value", AttrValue::Tensor(t))],
            &[],
        )
        .unwrap();
        assert_eq!(vals(&y), vec![3.0, 4.0]);
        assert!(run("Constant", &[], &[]).is_err());
        // Sparse, linear indices.
        let values = kiln_onnx::proto::TensorProto {
            data_type: Some(1),
            dims: vec![2],
            float_data: vec![7.0, 8.0],
            ..Default::default()
        };
        let idx = kiln_onnx::proto::TensorProto {
            data_type: Some(7),
            dims: vec![2, 2],
            int64_data: vec![0, 1, 1, 0],
            ..Default::default()
        };
        let sp = kiln_onnx::proto::SparseTensorProto {
            values: Some(values),
            indices: Some(idx),
            dims: vec![2, 2],
        };
        let a = Attribute::new("sparse_value", AttrValue::SparseTensor(Box::new(sp)));
        let y = run("Constant", &[a], &[]).unwrap();
        assert_eq!(vals(&y), vec![0.0, 7.0, 8.0, 0.0]);
    }

    #[test]
    fn constant_of_shape() {
        let y = run("ConstantOfShape", &[], &[i64s(&[2], &[2, 3])]).unwrap();
        assert_eq!(vals(&y), vec![0.0; 6]);
        let t = kiln_ir::Tensor::from_i64(vec![1], &[7]);
        let a = [Attribute::new("value", AttrValue::Tensor(t))];
        let y = run("ConstantOfShape", &a, &[i64s(&[1], &[0])]).unwrap();
        assert_eq!(y.shape, vec![0]);
        assert_eq!(y.dtype(), kiln_ir::DataType::I64);
        let y = run("ConstantOfShape", &a, &[i64s(&[0], &[])]).unwrap();
        assert_eq!(y.as_slice::<i64>().unwrap(), &[7]);
        assert!(run("ConstantOfShape", &a, &[i64s(&[1], &[-1])]).is_err());
    }
}
