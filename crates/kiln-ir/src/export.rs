//! Writing kiln graphs back to ONNX protobuf messages.
use kiln_onnx::proto::{
    self, attribute_proto::AttributeType, tensor_shape_proto::dimension, type_proto,
    AttributeProto, GraphProto, NodeProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

use crate::{AttrValue, Attribute, Dim, Graph, ValueId, ValueType};

pub(crate) fn export_graph(g: &Graph) -> GraphProto {
    let name_of = |v: Option<ValueId>| v.map(|v| g.value(v).name.clone()).unwrap_or_default();
    let info = |v: ValueId| {
        let val = g.value(v);
        ValueInfoProto {
            name: Some(val.name.clone()),
            r#type: val.declared.as_ref().map(export_type),
            doc_string: val.doc_string.clone(),
            ..Default::default()
        }
    };
    let mut gp = GraphProto {
        name: Some(g.name.clone()),
        doc_string: g.doc_string.clone(),
        metadata_props: g.metadata_props.clone(),
        quantization_annotation: g.quantization_annotation.clone(),
        ..Default::default()
    };
    for (id, v) in g.values() {
        if let Some(t) = v.initializer.as_ref().or(v.default.as_ref()) {
            let mut tp = t.to_proto(&v.name);
            tp.doc_string = v.doc_string.clone();
            gp.initializer.push(tp);
        } else if let Some(s) = &v.sparse_initializer {
            gp.sparse_initializer.push((**s).clone());
        } else if v.declared.is_some()
            && !v.outer
            && !g.inputs().contains(&id)
            && !g.outputs().contains(&id)
        {
            gp.value_info.push(info(id));
        }
    }
    gp.input = g.inputs().iter().map(|&v| info(v)).collect();
    gp.output = g.outputs().iter().map(|&v| info(v)).collect();
    for (_, n) in g.nodes() {
        gp.node.push(NodeProto {
            name: (!n.name.is_empty()).then(|| n.name.clone()),
            op_type: Some(n.op_type.clone()),
            domain: (!n.domain.is_empty()).then(|| n.domain.clone()),
            overload: n.overload.clone(),
            input: n.inputs().iter().map(|v| name_of(*v)).collect(),
            output: n.outputs().iter().map(|v| name_of(*v)).collect(),
            attribute: n.attrs.iter().map(export_attr).collect(),
            doc_string: n.doc_string.clone(),
            metadata_props: n.metadata_props.clone(),
            ..Default::default()
        });
    }
    gp
}

fn export_attr(a: &Attribute) -> AttributeProto {
    let mut p = AttributeProto {
        name: Some(a.name.clone()),
        doc_string: a.doc_string.clone(),
        ..Default::default()
    };
    let ty = match &a.value {
        AttrValue::Float(v) => {
            p.f = Some(*v);
            AttributeType::Float
        }
        AttrValue::Int(v) => {
            p.i = Some(*v);
            AttributeType::Int
        }
        AttrValue::String(v) => {
            p.s = Some(v.clone());
            AttributeType::String
        }
        AttrValue::Tensor(t) => {
            p.t = Some(t.to_proto(""));
            AttributeType::Tensor
        }
        AttrValue::Graph(g) => {
            p.g = Some(export_graph(g));
            AttributeType::Graph
        }
        AttrValue::SparseTensor(s) => {
            p.sparse_tensor = Some((**s).clone());
            AttributeType::SparseTensor
        }
        AttrValue::TypeProto(t) => {
            p.tp = Some((**t).clone());
            AttributeType::TypeProto
        }
        AttrValue::Floats(v) => {
            p.floats = v.clone();
            AttributeType::Floats
        }
        AttrValue::Ints(v) => {
            p.ints = v.clone();
            AttributeType::Ints
        }
        AttrValue::Strings(v) => {
            p.strings = v.clone();
            AttributeType::Strings
        }
        AttrValue::Tensors(v) => {
            p.tensors = v.iter().map(|t| t.to_proto("")).collect();
            AttributeType::Tensors
        }
        AttrValue::Graphs(v) => {
            p.graphs = v.iter().map(export_graph).collect();
            AttributeType::Graphs
        }
        AttrValue::SparseTensors(v) => {
            p.sparse_tensors = v.clone();
            AttributeType::SparseTensors
        }
        AttrValue::TypeProtos(v) => {
            p.type_protos = v.clone();
            AttributeType::TypeProtos
        }
        AttrValue::Ref(r, ty) => {
            p.ref_attr_name = Some(r.clone());
            p.r#type = Some(*ty);
            return p;
        }
    };
    p.r#type = Some(ty as i32);
    p
}

fn export_shape(shape: &Option<Vec<Dim>>) -> Option<TensorShapeProto> {
    shape.as_ref().map(|dims| TensorShapeProto {
        dim: dims
            .iter()
            .map(|d| proto::tensor_shape_proto::Dimension {
                value: match d {
                    Dim::Known(k) => Some(dimension::Value::DimValue(*k)),
                    Dim::Sym(_) => Some(dimension::Value::DimParam(d.to_string())),
                    Dim::Unknown => None,
                },
                denotation: None,
            })
            .collect(),
    })
}

pub(crate) fn export_type(t: &ValueType) -> TypeProto {
    let value = match t {
        ValueType::Tensor { dtype, shape } => {
            Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(dtype.map(|d| d.to_onnx()).unwrap_or(0)),
                shape: export_shape(shape),
            }))
        }
        ValueType::SparseTensor { dtype, shape } => Some(type_proto::Value::SparseTensorType(
            type_proto::SparseTensor {
                elem_type: Some(dtype.map(|d| d.to_onnx()).unwrap_or(0)),
                shape: export_shape(shape),
            },
        )),
        ValueType::Sequence(e) => Some(type_proto::Value::SequenceType(Box::new(
            type_proto::Sequence {
                elem_type: Some(Box::new(export_type(e))),
            },
        ))),
        ValueType::Optional(e) => Some(type_proto::Value::OptionalType(Box::new(
            type_proto::Optional {
                elem_type: Some(Box::new(export_type(e))),
            },
        ))),
        ValueType::Map(k, v) => Some(type_proto::Value::MapType(Box::new(type_proto::Map {
            key_type: Some(k.to_onnx()),
            value_type: Some(Box::new(export_type(v))),
        }))),
        ValueType::Unknown => None,
    };
    TypeProto {
        value,
        denotation: None,
    }
}
