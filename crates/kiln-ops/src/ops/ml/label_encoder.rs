//! LabelEncoder: maps each element through `keys_* -> values_*` (lists or tensors of
//! strings, integers or floats), with a default for elements not among the keys.
use std::collections::HashMap;

use kiln_ir::{AttrList, AttrValue, DataType};

use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{one, KernelCtx};
use crate::ops::movement;
use crate::value::{Data, Tensor, Value};

/// A key, compared exactly (floats by value, with every NaN equal).
#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Int(i64),
    Str(String),
    Float(u64),
}

fn float_key(v: f64) -> Key {
    Key::Float(if v.is_nan() {
        f64::NAN.to_bits()
    } else {
        (v + 0.0).to_bits()
    })
}

fn keys_of(t: &Tensor) -> Result<Vec<Key>> {
    Ok(match &t.data {
        Data::Str(v) => v.iter().cloned().map(Key::Str).collect(),
        Data::F32(_) | Data::F64(_) | Data::F16(_) | Data::BF16(_) => {
            t.to_f64s()?.into_iter().map(float_key).collect()
        }
        _ => t.to_i64s()?.into_iter().map(Key::Int).collect(),
    })
}

fn strings<B: AsRef<[u8]>>(v: &[B]) -> Vec<String> {
    v.iter()
        .map(|b| String::from_utf8_lossy(b.as_ref()).into_owned())
        .collect()
}

/// The keys (as a tensor) from whichever `keys_*` attribute is set.
fn keys_attr(ctx: &KernelCtx) -> Result<Tensor> {
    if let Some(t) = ctx.attrs.get_tensor("keys_tensor") {
        return Ok(Tensor::from_ir(t));
    }
    match (
        ctx.attr("keys_strings"),
        ctx.attr("keys_int64s"),
        ctx.attr("keys_floats"),
    ) {
        (Some(AttrValue::Strings(v)), _, _) => {
            Ok(Tensor::new(vec![v.len()], Data::Str(strings(v))))
        }
        (_, Some(AttrValue::Ints(v)), _) => Ok(Tensor::from_vec(vec![v.len()], v.clone())),
        (_, _, Some(AttrValue::Floats(v))) => Ok(Tensor::from_vec(vec![v.len()], v.clone())),
        _ => Err("one of keys_strings, keys_int64s, keys_floats, keys_tensor is required".into()),
    }
}

/// The values and the default, as tensors of the output type.
fn values_attr(ctx: &KernelCtx) -> Result<(Tensor, Tensor)> {
    if let Some(t) = ctx.attrs.get_tensor("values_tensor") {
        let v = Tensor::from_ir(t);
        let d = match ctx.attrs.get_tensor("default_tensor") {
            Some(d) => Tensor::from_ir(d),
            None => Tensor::new(vec![1], Data::zeros(v.dtype(), 1)?),
        };
        if d.len() != 1 || d.dtype() != v.dtype() {
            return Err("default_tensor must be one value of values_tensor's type".into());
        }
        return Ok((v, d));
    }
    match (
        ctx.attr("values_strings"),
        ctx.attr("values_int64s"),
        ctx.attr("values_floats"),
    ) {
        (Some(AttrValue::Strings(v)), _, _) => {
            let d = ctx
                .str_attr("default_string")
                .unwrap_or("_Unused")
                .to_string();
            Ok((
                Tensor::new(vec![v.len()], Data::Str(strings(v))),
                Tensor::new(vec![1], Data::Str(vec![d])),
            ))
        }
        (_, Some(AttrValue::Ints(v)), _) => Ok((
            Tensor::from_vec(vec![v.len()], v.clone()),
            Tensor::from_vec(vec![1], vec![ctx.int_attr("default_int64", -1)]),
        )),
        (_, _, Some(AttrValue::Floats(v))) => Ok((
            Tensor::from_vec(vec![v.len()], v.clone()),
            Tensor::from_vec(vec![1], vec![ctx.float_attr("default_float", -0.0)]),
        )),
        _ => Err(
            "one of values_strings, values_int64s, values_floats, values_tensor is required".into(),
        ),
    }
}

/// Y has X's shape and the values' type.
pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let dt = if let Some(AttrValue::Tensor(t)) = ctx.attr("values_tensor") {
        Some(t.dtype)
    } else if ctx.attr("values_strings").is_some() {
        Some(DataType::String)
    } else if ctx.attr("values_int64s").is_some() {
        Some(DataType::I64)
    } else if ctx.attr("values_floats").is_some() {
        Some(DataType::F32)
    } else {
        None
    };
    Ok(vec![Inferred::tensor(dt, ctx.shape(0).map(|s| s.to_vec()))])
}

pub fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let keys = keys_attr(ctx)?;
    let (values, default) = values_attr(ctx)?;
    if keys.len() != values.len() {
        return Err(format!("{} keys but {} values", keys.len(), values.len()));
    }
    let mut map: HashMap<Key, usize> = HashMap::with_capacity(keys.len());
    for (i, k) in keys_of(&keys)?.into_iter().enumerate() {
        map.entry(k).or_insert(i);
    }
    let pairs: Vec<(usize, usize)> = keys_of(x)?
        .iter()
        .map(|k| map.get(k).map_or((1, 0), |&i| (0, i)))
        .collect();
    one(Tensor::new(
        x.shape.clone(),
        movement::take_from(&[&values.data, &default.data], &pairs)?,
    ))
}
