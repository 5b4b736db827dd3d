//! Node attributes. Subgraph attributes (If/Loop/Scan bodies) hold kiln graphs; the rarely used
//! sparse-tensor and type-proto attributes are kept as their protobuf messages.
use bytes::Bytes;
use kiln_onnx::proto;

use crate::{Graph, Tensor};

#[derive(Clone, Debug)]
pub enum AttrValue {
    Float(f32),
    Int(i64),
    String(Bytes),
    Tensor(Tensor),
    Graph(Box<Graph>),
    SparseTensor(Box<proto::SparseTensorProto>),
    TypeProto(Box<proto::TypeProto>),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    Strings(Vec<Bytes>),
    Tensors(Vec<Tensor>),
    Graphs(Vec<Graph>),
    SparseTensors(Vec<proto::SparseTensorProto>),
    TypeProtos(Vec<proto::TypeProto>),
    /// A reference to an attribute of the enclosing function (`ref_attr_name`), with the
    /// declared attribute type.
    Ref(String, i32),
}

#[derive(Clone, Debug)]
pub struct Attribute {
    pub name: String,
    pub value: AttrValue,
    pub doc_string: Option<String>,
}

impl Attribute {
    pub fn new(name: &str, value: AttrValue) -> Attribute {
        Attribute {
            name: name.to_string(),
            value,
            doc_string: None,
        }
    }

    pub fn int(name: &str, v: i64) -> Attribute {
        Attribute::new(name, AttrValue::Int(v))
    }

    pub fn float(name: &str, v: f32) -> Attribute {
        Attribute::new(name, AttrValue::Float(v))
    }

    pub fn ints(name: &str, v: &[i64]) -> Attribute {
        Attribute::new(name, AttrValue::Ints(v.to_vec()))
    }

    pub fn string(name: &str, v: &str) -> Attribute {
        Attribute::new(
            name,
            AttrValue::String(Bytes::copy_from_slice(v.as_bytes())),
        )
    }

    pub fn floats(name: &str, v: &[f32]) -> Attribute {
        Attribute::new(name, AttrValue::Floats(v.to_vec()))
    }

    pub fn strings(name: &str, v: &[&str]) -> Attribute {
        Attribute::new(
            name,
            AttrValue::Strings(
                v.iter()
                    .map(|s| Bytes::copy_from_slice(s.as_bytes()))
                    .collect(),
            ),
        )
    }
}

/// Typed lookups over a node's attribute list.
pub trait AttrList {
    fn attr(&self, name: &str) -> Option<&AttrValue>;

    fn get_int(&self, name: &str) -> Option<i64> {
        match self.attr(name)? {
            AttrValue::Int(v) => Some(*v),
            _ => None,
        }
    }

    fn get_float(&self, name: &str) -> Option<f32> {
        match self.attr(name)? {
            AttrValue::Float(v) => Some(*v),
            _ => None,
        }
    }

    fn get_ints(&self, name: &str) -> Option<&[i64]> {
        match self.attr(name)? {
            AttrValue::Ints(v) => Some(v),
            _ => None,
        }
    }

    fn get_floats(&self, name: &str) -> Option<&[f32]> {
        match self.attr(name)? {
            AttrValue::Floats(v) => Some(v),
            _ => None,
        }
    }

    fn get_str(&self, name: &str) -> Option<&str> {
        match self.attr(name)? {
            AttrValue::String(v) => std::str::from_utf8(v).ok(),
            _ => None,
        }
    }

    fn get_tensor(&self, name: &str) -> Option<&Tensor> {
        match self.attr(name)? {
            AttrValue::Tensor(v) => Some(v),
            _ => None,
        }
    }
}

impl AttrList for [Attribute] {
    fn attr(&self, name: &str) -> Option<&AttrValue> {
        self.iter().find(|a| a.name == name).map(|a| &a.value)
    }
}

impl AttrList for Vec<Attribute> {
    fn attr(&self, name: &str) -> Option<&AttrValue> {
        self.as_slice().attr(name)
    }
}
