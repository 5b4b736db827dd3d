//! What an op's inference rule sees (input types, known input values, attributes, opset) and
//! what it returns.
use kiln_ir::{AttrList, AttrValue, Attribute, DataType, Dim, Tensor, ValueType};

/// The known elements of a small integer tensor of rank 0 or 1 (a shape, an axis list, ...),
/// possibly symbolic.
#[derive(Clone, Debug, PartialEq)]
pub struct SymValue {
    pub scalar: bool,
    pub elems: Vec<Dim>,
}

/// What an inference rule returns for one output.
#[derive(Clone, Debug, Default)]
pub struct Inferred {
    pub ty: Option<ValueType>,
    pub value: Option<SymValue>,
}

impl Inferred {
    pub fn tensor(dtype: Option<DataType>, shape: Option<Vec<Dim>>) -> Inferred {
        Inferred {
            ty: Some(ValueType::Tensor { dtype, shape }),
            value: None,
        }
    }

    pub fn with_value(mut self, v: Option<SymValue>) -> Inferred {
        self.value = v;
        self
    }
}

/// One input as inference sees it.
#[derive(Clone, Debug, Default)]
pub struct InputInfo<'a> {
    pub ty: Option<&'a ValueType>,
    pub constant: Option<&'a Tensor>,
    pub value: Option<&'a SymValue>,
}

pub struct InferCtx<'a> {
    pub op_type: &'a str,
    pub domain: &'a str,
    pub opset: i64,
    pub attrs: &'a [Attribute],
    pub inputs: Vec<Option<InputInfo<'a>>>,
    pub num_outputs: usize,
}

pub type Result<T> = std::result::Result<T, String>;

impl<'a> InferCtx<'a> {
    pub fn has_input(&self, i: usize) -> bool {
        matches!(self.inputs.get(i), Some(Some(_)))
    }

    fn input(&self, i: usize) -> Option<&InputInfo<'a>> {
        self.inputs.get(i).and_then(|x| x.as_ref())
    }

    pub fn ty(&self, i: usize) -> Option<&'a ValueType> {
        self.input(i)?.ty
    }

    pub fn dtype(&self, i: usize) -> Option<DataType> {
        self.ty(i)?.dtype()
    }

    pub fn shape(&self, i: usize) -> Option<&'a [Dim]> {
        self.ty(i)?.shape()
    }

    pub fn rank(&self, i: usize) -> Option<usize> {
        self.shape(i).map(|s| s.len())
    }

    pub fn constant(&self, i: usize) -> Option<&'a Tensor> {
        self.input(i)?.constant
    }

    /// The elements of an integer input of rank 0 or 1 when known (constant or propagated).
    pub fn int_values(&self, i: usize) -> Option<Vec<Dim>> {
        let inp = self.input(i)?;
        if let Some(v) = inp.value {
            return Some(v.elems.clone());
        }
        let t = inp.constant?;
        if t.dims.len() > 1 {
            return None;
        }
        Some(t.to_i64_vec()?.into_iter().map(Dim::Known).collect())
    }

    /// Like `int_values`, but also reading float constants whose elements are whole numbers
    /// (Range and Resize take shape-derived values as floats).
    pub fn integral_values(&self, i: usize) -> Option<Vec<Dim>> {
        if let Some(v) = self.int_values(i) {
            return Some(v);
        }
        let t = self.constant(i)?;
        if t.dims.len() > 1 {
            return None;
        }
        t.to_f64_vec()?
            .into_iter()
            .map(|x| (x.fract() == 0.0 && x.abs() < 1e15).then_some(Dim::Known(x as i64)))
            .collect()
    }

    /// Like `int_values`, but only when every element is a known number.
    pub fn known_ints(&self, i: usize) -> Option<Vec<i64>> {
        self.int_values(i)?.iter().map(|d| d.known()).collect()
    }

    pub fn float_values(&self, i: usize) -> Option<Vec<f64>> {
        self.constant(i)?.to_f64_vec()
    }

    pub fn attr(&self, name: &str) -> Option<&'a AttrValue> {
        self.attrs.attr(name)
    }

    pub fn int_attr(&self, name: &str, default: i64) -> i64 {
        self.attrs.get_int(name).unwrap_or(default)
    }

    pub fn ints_attr(&self, name: &str) -> Option<&'a [i64]> {
        self.attrs.get_ints(name)
    }

    /// An ints attribute, or `n` copies of `fill` when absent.
    pub fn ints_or(&self, name: &str, fill: i64, n: usize) -> Vec<i64> {
        self.ints_attr(name)
            .map(|v| v.to_vec())
            .unwrap_or_else(|| vec![fill; n])
    }

    pub fn str_attr(&self, name: &str) -> Option<&'a str> {
        self.attrs.get_str(name)
    }

    /// Normalizes a possibly negative axis against `rank`.
    pub fn axis(&self, axis: i64, rank: usize) -> Result<usize> {
        let r = rank as i64;
        if axis < -r || axis >= r {
            return Err(format!("axis {axis} is out of range for rank {rank}"));
        }
        Ok(if axis < 0 { axis + r } else { axis } as usize)
    }

    /// The same type as input `i`, for ops that keep shape and type.
    pub fn same_as(&self, i: usize) -> Inferred {
        Inferred {
            ty: self.ty(i).cloned(),
            value: None,
        }
    }

    pub fn need_rank(&self, i: usize, what: &str) -> Result<Option<usize>> {
        match self.rank(i) {
            Some(r) => Ok(Some(r)),
            None if self.has_input(i) => Ok(None),
            None => Err(format!("{what} (input {i}) is missing")),
        }
    }
}

/// Attribute values beyond this magnitude (kernel sizes, strides, pads, ...) are refused: no
/// real model comes near it, and it keeps every size computation far from i64 overflow.
pub const MAX_ATTR: i64 = 1 << 40;

/// Checks that every value is within `±MAX_ATTR`.
pub fn small(name: &str, v: &[i64]) -> Result<()> {
    match v.iter().find(|x| x.unsigned_abs() > MAX_ATTR as u64) {
        Some(x) => Err(format!("{name} value {x} is out of range")),
        None => Ok(()),
    }
}

/// Multidirectional (numpy) broadcasting of shapes.
pub fn broadcast(shapes: &[&[Dim]]) -> Result<Vec<Dim>> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = Vec::with_capacity(rank);
    for i in 0..rank {
        let mut acc = Dim::Known(1);
        for s in shapes {
            let off = rank - s.len();
            if i < off {
                continue;
            }
            let d = &s[i - off];
            acc = match (&acc, d) {
                (_, Dim::Known(1)) => acc,
                (Dim::Known(1), _) => d.clone(),
                (a, b) if a == b => acc,
                (Dim::Known(a), Dim::Known(b)) => {
                    return Err(format!(
                        "shapes cannot broadcast: {a} vs {b} in dimension {i}"
                    ))
                }
                // A symbolic dim against a number other than 1 must equal that number.
                (Dim::Known(_), _) => acc,
                (_, Dim::Known(_)) => d.clone(),
                _ => Dim::Unknown,
            };
        }
        out.push(acc);
    }
    Ok(out)
}

/// Builds contexts for the rules' unit tests.
#[cfg(test)]
pub mod testing {
    use super::*;

    pub fn f32_ty(dims: &[Dim]) -> ValueType {
        ValueType::tensor(DataType::F32, dims.to_vec())
    }

    pub fn ctx<'a>(
        op: &'a str,
        types: &'a [ValueType],
        consts: &'a [Option<Tensor>],
        attrs: &'a [Attribute],
    ) -> InferCtx<'a> {
        InferCtx {
            op_type: op,
            domain: "",
            opset: 17,
            attrs,
            inputs: types
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    Some(InputInfo {
                        ty: Some(t),
                        constant: consts.get(i).and_then(|c| c.as_ref()),
                        value: None,
                    })
                })
                .collect(),
            num_outputs: 1,
        }
    }
}
