//! The column encoders of `ai.onnx.ml`: OneHotEncoder, CategoryMapper, Imputer,
//! FeatureVectorizer, and ZipMap (scores to one map of label → probability per row). A category
//! listed twice maps to its last position, as in ONNX Runtime.
use std::collections::HashMap;

use kiln_ir::{AttrList, AttrValue, DataType, Dim, ValueType};

use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{one, KernelCtx};
use crate::value::{Data, MapValue, Tensor, Value};

use super::strings_attr;

/// OneHotEncoder: X's shape plus the category count, float.
pub fn infer_one_hot(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let cats = match (ctx.attr("cats_int64s"), ctx.attr("cats_strings")) {
        (Some(AttrValue::Ints(v)), _) => Some(v.len()),
        (_, Some(AttrValue::Strings(v))) => Some(v.len()),
        _ => None,
    };
    let shape = ctx.shape(0).map(|s| {
        let mut s = s.to_vec();
        s.push(cats.map_or(Dim::Unknown, |c| Dim::Known(c as i64)));
        s
    });
    Ok(vec![Inferred::tensor(Some(DataType::F32), shape)])
}

/// One 1.0 per element at its category's position; an unknown category is all zeros, or an
/// error when `zeros` is 0. Numeric X is matched against `cats_int64s` after truncation to an
/// integer, as ONNX Runtime does.
pub fn one_hot(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let zeros = ctx.int_attr("zeros", 1) != 0;
    let pos: Vec<Option<usize>> = match &x.data {
        Data::Str(v) => {
            let cats = strings_attr(ctx, "cats_strings")
                .ok_or("string X needs the attribute cats_strings")?;
            let at: HashMap<&str, usize> = cats
                .iter()
                .enumerate()
                .map(|(i, c)| (c.as_str(), i))
                .collect();
            v.iter().map(|s| at.get(s.as_str()).copied()).collect()
        }
        _ => {
            let cats = ctx
                .ints_attr("cats_int64s")
                .ok_or("numeric X needs the attribute cats_int64s")?;
            let at: HashMap<i64, usize> = cats.iter().enumerate().map(|(i, &c)| (c, i)).collect();
            x.to_f64s()?
                .iter()
                .map(|&v| at.get(&(v as i64)).copied())
                .collect()
        }
    };
    let n = match (ctx.attr("cats_int64s"), ctx.attr("cats_strings")) {
        (Some(AttrValue::Ints(v)), _) if !matches!(x.data, Data::Str(_)) => v.len(),
        (_, Some(AttrValue::Strings(v))) => v.len(),
        _ => 0,
    };
    let mut shape = x.shape.clone();
    shape.push(n);
    let mut out = vec![0f32; crate::ops::movement::numel(&shape)?];
    for (i, p) in pos.iter().enumerate() {
        match p {
            Some(c) => out[i * n + c] = 1.0,
            None if zeros => {}
            None => {
                return Err(format!(
                    "element {i} is not one of the categories and zeros is 0"
                ))
            }
        }
    }
    one(Tensor::from_vec(shape, out))
}

/// CategoryMapper: strings to int64 or int64 to strings, X's shape.
pub fn infer_category_mapper(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let dt = match ctx.dtype(0) {
        Some(DataType::String) => Some(DataType::I64),
        Some(_) => Some(DataType::String),
        None => None,
    };
    Ok(vec![Inferred::tensor(dt, ctx.shape(0).map(|s| s.to_vec()))])
}

pub fn category_mapper(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let ints = ctx.ints_attr("cats_int64s").unwrap_or(&[]);
    let strs = strings_attr(ctx, "cats_strings").unwrap_or_default();
    if ints.len() != strs.len() {
        return Err(format!(
            "cats_int64s has {} values and cats_strings {}",
            ints.len(),
            strs.len()
        ));
    }
    let data = match &x.data {
        Data::Str(v) => {
            let at: HashMap<&str, i64> = strs
                .iter()
                .zip(ints)
                .map(|(s, &i)| (s.as_str(), i))
                .collect();
            let d = ctx.int_attr("default_int64", -1);
            Data::I64(
                v.iter()
                    .map(|s| at.get(s.as_str()).copied().unwrap_or(d))
                    .collect(),
            )
        }
        Data::I64(v) => {
            let at: HashMap<i64, &str> = ints
                .iter()
                .zip(&strs)
                .map(|(&i, s)| (i, s.as_str()))
                .collect();
            let d = ctx.str_attr("default_string").unwrap_or("_Unused");
            Data::Str(
                v.iter()
                    .map(|i| at.get(i).copied().unwrap_or(d).to_string())
                    .collect(),
            )
        }
        _ => return Err(format!("X must be string or int64, got {}", x.dtype())),
    };
    one(Tensor::new(x.shape.clone(), data))
}

/// Imputer: X with `replaced_value_*` (NaN for NaN) replaced by the column's imputed value.
pub fn imputer(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let cols = *x.shape.last().unwrap_or(&1);
    let pick = |len: usize, i: usize| if len == 1 { 0 } else { i % cols.max(1) };
    let data = match &x.data {
        Data::F32(v) => {
            let imp = ctx
                .attrs
                .get_floats("imputed_value_floats")
                .ok_or("float X needs imputed_value_floats")?;
            check_imputed(imp.len(), cols)?;
            let r = ctx.float_attr("replaced_value_float", 0.0);
            Data::F32(
                v.iter()
                    .enumerate()
                    .map(|(i, &e)| {
                        let hit = if r.is_nan() { e.is_nan() } else { e == r };
                        if hit {
                            imp[pick(imp.len(), i)]
                        } else {
                            e
                        }
                    })
                    .collect(),
            )
        }
        Data::I64(v) => {
            let imp = ctx
                .ints_attr("imputed_value_int64s")
                .ok_or("int64 X needs imputed_value_int64s")?;
            check_imputed(imp.len(), cols)?;
            let r = ctx.int_attr("replaced_value_int64", 0);
            Data::I64(
                v.iter()
                    .enumerate()
                    .map(|(i, &e)| if e == r { imp[pick(imp.len(), i)] } else { e })
                    .collect(),
            )
        }
        _ => return Err(format!("X must be float or int64, got {}", x.dtype())),
    };
    one(Tensor::new(x.shape.clone(), data))
}

fn check_imputed(len: usize, cols: usize) -> Result<()> {
    if len != 1 && len != cols {
        return Err(format!(
            "{len} imputed values for {cols} columns (want 1 or {cols})"
        ));
    }
    Ok(())
}

/// FeatureVectorizer: `[N, sum(inputdimensions)]` float.
pub fn infer_feature_vectorizer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let total = ctx
        .ints_attr("inputdimensions")
        .unwrap_or(&[])
        .iter()
        .try_fold(0i64, |a, &d| a.checked_add(d.max(0)));
    let n = ctx
        .shape(0)
        .map(|s| {
            if s.len() <= 1 {
                Dim::Known(1)
            } else {
                s[0].clone()
            }
        })
        .unwrap_or(Dim::Unknown);
    Ok(vec![Inferred::tensor(
        Some(DataType::F32),
        Some(vec![n, total.map_or(Dim::Unknown, Dim::Known)]),
    )])
}

/// Each row of each input (its trailing dims flattened) copied into its slot of
/// `inputdimensions[i]` columns: cut when longer, zero-padded when shorter.
pub fn feature_vectorizer(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let dims = ctx
        .ints_attr("inputdimensions")
        .ok_or("the attribute inputdimensions is required")?;
    if dims.len() != ctx.inputs.len() {
        return Err(format!(
            "inputdimensions has {} entries for {} inputs",
            dims.len(),
            ctx.inputs.len()
        ));
    }
    if dims.iter().any(|&d| d < 0) {
        return Err("inputdimensions must not be negative".into());
    }
    let total = dims
        .iter()
        .try_fold(0usize, |a, &d| a.checked_add(d as usize))
        .ok_or("inputdimensions add up to too many columns")?;
    let mut rows = None;
    let mut parts = Vec::with_capacity(dims.len());
    for i in 0..dims.len() {
        let t = ctx.tensor(i)?;
        let n = if t.rank() <= 1 { 1 } else { t.shape[0] };
        if *rows.get_or_insert(n) != n {
            return Err(format!(
                "input {i} has {n} rows, input 0 has {}",
                rows.unwrap_or(0)
            ));
        }
        parts.push((t.to_f64s()?, n));
    }
    let n = rows.unwrap_or(0);
    let mut out = vec![0f32; crate::ops::movement::numel(&[n, total])?];
    let mut at = 0;
    for ((v, _), &d) in parts.iter().zip(dims) {
        let d = d as usize;
        let stride = v.len().checked_div(n).unwrap_or(0);
        for r in 0..n {
            for c in 0..d.min(stride) {
                out[r * total + at + c] = v[r * stride + c] as f32;
            }
        }
        at += d;
    }
    one(Tensor::from_vec(vec![n, total], out))
}

/// ZipMap: a sequence of maps, label (int64 or string) → float.
pub fn infer_zip_map(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let key = if ctx.attr("classlabels_strings").is_some() {
        DataType::String
    } else {
        DataType::I64
    };
    Ok(vec![Inferred {
        ty: Some(ValueType::Sequence(Box::new(ValueType::Map(
            key,
            Box::new(ValueType::tensor(DataType::F32, vec![])),
        )))),
        value: None,
    }])
}

pub fn zip_map(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let keys = match (
        strings_attr(ctx, "classlabels_strings"),
        ctx.ints_attr("classlabels_int64s"),
    ) {
        (Some(s), None) => Tensor::new(vec![s.len()], Data::Str(s)),
        (None, Some(i)) => Tensor::from_vec(vec![i.len()], i.to_vec()),
        _ => {
            return Err(
                "exactly one of classlabels_strings and classlabels_int64s is required".into(),
            )
        }
    };
    let c = keys.len();
    let (n, cols) = match x.shape.as_slice() {
        [cols] => (1, *cols),
        [n, cols] => (*n, *cols),
        s => return Err(format!("X must be 1-D or 2-D, got shape {s:?}")),
    };
    if cols != c {
        return Err(format!("X has {cols} columns for {c} class labels"));
    }
    let v: Vec<f32> = x.to_f64s()?.iter().map(|&e| e as f32).collect();
    let maps = (0..n)
        .map(|r| MapValue {
            keys: keys.clone(),
            values: Tensor::from_vec(vec![c], v[r * c..(r + 1) * c].to_vec()),
        })
        .collect();
    Ok(vec![Value::MapSequence(maps)])
}
