//! Building kiln graphs from ONNX protobuf messages, with every reference checked: duplicate
//! definitions, dangling inputs, cycles and malformed tensors are errors naming the node.
use kiln_onnx::proto::{
    self, attribute_proto::AttributeType, tensor_shape_proto::dimension, type_proto,
    AttributeProto, GraphProto, NodeProto, TypeProto, ValueInfoProto,
};

use crate::{AttrValue, Attribute, DataType, Dim, Graph, IrError, Node, Tensor, ValueType};

/// Nested subgraphs deeper than this are refused (protobuf decoding already caps nesting, this
/// keeps the recursion of the importer bounded as well).
const MAX_DEPTH: usize = 64;

/// Reads a graph. `outer` says whether a name is defined in an enclosing graph (for subgraphs).
pub(crate) fn import_graph(
    gp: &GraphProto,
    outer: Option<&dyn Fn(&str) -> bool>,
    depth: usize,
) -> Result<Graph, IrError> {
    let gname = gp.name.clone().unwrap_or_default();
    if depth > MAX_DEPTH {
        return Err(IrError::BadProto {
            owner: format!("graph '{gname}'"),
            reason: format!("subgraphs nested more than {MAX_DEPTH} deep"),
        });
    }
    let mut g = Graph::new(&gname);
    g.doc_string = gp.doc_string.clone();
    g.metadata_props = gp.metadata_props.clone();
    g.quantization_annotation = gp.quantization_annotation.clone();

    for t in &gp.initializer {
        let name = t.name.clone().unwrap_or_default();
        let owner = format!("initializer '{name}'");
        if name.is_empty() {
            return Err(IrError::BadProto {
                owner,
                reason: "initializer has no name".into(),
            });
        }
        let tensor = Tensor::from_proto(t).map_err(|e| IrError::tensor(&owner, e))?;
        let id = g.add_initializer(&name, tensor)?;
        g.value_mut(id).doc_string = t.doc_string.clone();
    }
    for s in &gp.sparse_initializer {
        let values = s.values.as_ref();
        let name = values.and_then(|v| v.name.clone()).unwrap_or_default();
        if name.is_empty() {
            return Err(IrError::BadProto {
                owner: "sparse initializer".into(),
                reason: "sparse initializer has no name".into(),
            });
        }
        let owner = format!("sparse initializer '{name}'");
        let dtype = values
            .and_then(|v| v.data_type)
            .and_then(DataType::from_onnx);
        crate::tensor::element_count(&s.dims).map_err(|e| IrError::tensor(&owner, e))?;
        let ty = ValueType::SparseTensor {
            dtype,
            shape: Some(s.dims.iter().map(|&d| Dim::Known(d)).collect()),
        };
        let id = g.add_value(&name, Some(ty))?;
        g.value_mut(id).sparse_initializer = Some(Box::new(s.clone()));
    }
    for vi in &gp.input {
        let name = vi.name.clone().unwrap_or_default();
        let ty = import_value_info(vi)?;
        let id = match g.find_value(&name) {
            Some(id) if g.value(id).initializer.is_some() && !g.inputs().contains(&id) => id,
            Some(_) => return Err(IrError::DuplicateValue { name }),
            None => g.add_value(&name, None).map_err(|e| match e {
                IrError::Invalid(_) => IrError::BadProto {
                    owner: "graph input".into(),
                    reason: "graph input has no name".into(),
                },
                e => e,
            })?,
        };
        set_declared(&mut g, id, ty, vi);
        g.push_input(id);
    }

    // Pass 1: every node output becomes a value, so that inputs can refer to nodes listed later.
    let mut outputs = Vec::with_capacity(gp.node.len());
    for (i, np) in gp.node.iter().enumerate() {
        let label = label(np, i);
        if np.op_type.as_deref().unwrap_or("").is_empty() {
            return Err(IrError::BadProto {
                owner: label,
                reason: "node has no op_type".into(),
            });
        }
        let mut outs = Vec::with_capacity(np.output.len());
        for o in &np.output {
            if o.is_empty() {
                outs.push(None);
                continue;
            }
            if g.find_value(o).is_some() {
                return Err(IrError::TwoProducers {
                    value: o.clone(),
                    node: label,
                });
            }
            outs.push(Some(g.add_value(o, None)?));
        }
        outputs.push(outs);
    }

    // Pass 2: inputs, attributes and subgraphs.
    for (i, (np, outs)) in gp.node.iter().zip(outputs).enumerate() {
        let label = label(np, i);
        let mut attrs = Vec::with_capacity(np.attribute.len());
        let mut implicit_names: Vec<String> = Vec::new();
        {
            let known = |n: &str| g.find_value(n).is_some() || outer.is_some_and(|f| f(n));
            for a in &np.attribute {
                let attr = import_attr(a, &label, &known, depth)?;
                for sub in attr_graphs(&attr.value) {
                    for (_, v) in sub.values().filter(|(_, v)| v.outer) {
                        if !implicit_names.contains(&v.name) {
                            implicit_names.push(v.name.clone());
                        }
                    }
                }
                attrs.push(attr);
            }
        }
        let mut inputs = Vec::with_capacity(np.input.len());
        for name in &np.input {
            if name.is_empty() {
                inputs.push(None);
            } else {
                inputs.push(Some(resolve(&mut g, name, outer, &label)?));
            }
        }
        let mut implicit = Vec::with_capacity(implicit_names.len());
        for name in &implicit_names {
            implicit.push(resolve(&mut g, name, outer, &label)?);
        }
        let mut node = Node::new(
            np.name.as_deref().unwrap_or(""),
            np.op_type.as_deref().unwrap_or(""),
            np.domain.as_deref().unwrap_or(""),
        )
        .with_inputs(&inputs)
        .with_outputs(&outs)
        .with_attrs(attrs);
        node.overload = np.overload.clone();
        node.doc_string = np.doc_string.clone();
        node.metadata_props = np.metadata_props.clone();
        node.set_implicit_unchecked(implicit);
        g.push_node_unsorted(node)?;
    }

    let mut outs = Vec::with_capacity(gp.output.len());
    for vi in &gp.output {
        let name = vi.name.clone().unwrap_or_default();
        let id = match g.find_value(&name) {
            Some(id) => id,
            None if outer.is_some_and(|f| f(&name)) => {
                let id = g.add_value(&name, None)?;
                g.value_mut(id).outer = true;
                id
            }
            None => return Err(IrError::UnknownOutput { name }),
        };
        let ty = import_value_info(vi)?;
        if g.value(id).declared.is_none() {
            set_declared(&mut g, id, ty, vi);
        }
        outs.push(id);
    }
    g.set_outputs(outs);

    for vi in &gp.value_info {
        let name = vi.name.as_deref().unwrap_or("");
        if let Some(id) = g.find_value(name) {
            let ty = import_value_info(vi)?;
            if g.value(id).declared.is_none() {
                set_declared(&mut g, id, ty, vi);
            }
        }
    }
    g.toposort()?;
    Ok(g)
}

fn set_declared(g: &mut Graph, id: crate::ValueId, ty: Option<ValueType>, vi: &ValueInfoProto) {
    let v = g.value_mut(id);
    if ty.is_some() {
        v.ty = ty.clone();
    }
    v.declared = ty;
    if vi.doc_string.is_some() {
        v.doc_string = vi.doc_string.clone();
    }
}

fn resolve(
    g: &mut Graph,
    name: &str,
    outer: Option<&dyn Fn(&str) -> bool>,
    label: &str,
) -> Result<crate::ValueId, IrError> {
    if let Some(id) = g.find_value(name) {
        return Ok(id);
    }
    if outer.is_some_and(|f| f(name)) {
        let id = g.add_value(name, None)?;
        g.value_mut(id).outer = true;
        return Ok(id);
    }
    Err(IrError::DanglingInput {
        node: label.to_string(),
        input: name.to_string(),
    })
}

fn label(np: &NodeProto, i: usize) -> String {
    let op = match np.domain.as_deref() {
        None | Some("") | Some("ai.onnx") => np.op_type.clone().unwrap_or_default(),
        Some(d) => format!("{d}:{}", np.op_type.as_deref().unwrap_or("")),
    };
    match np.name.as_deref() {
        Some(n) if !n.is_empty() => format!("node '{n}' ({op})"),
        _ => format!("node #{i} ({op})"),
    }
}

fn attr_graphs(v: &AttrValue) -> Vec<&Graph> {
    match v {
        AttrValue::Graph(g) => vec![g.as_ref()],
        AttrValue::Graphs(gs) => gs.iter().collect(),
        _ => Vec::new(),
    }
}

fn import_attr(
    a: &AttributeProto,
    label: &str,
    known: &dyn Fn(&str) -> bool,
    depth: usize,
) -> Result<Attribute, IrError> {
    let name = a.name.clone().unwrap_or_default();
    let owner = || format!("{label}, attribute '{name}'");
    let ty = a.r#type.unwrap_or(0);
    if let Some(r) = a.ref_attr_name.as_ref().filter(|r| !r.is_empty()) {
        return Ok(Attribute {
            name,
            value: AttrValue::Ref(r.clone(), ty),
            doc_string: a.doc_string.clone(),
        });
    }
    let ty = AttributeType::try_from(ty).unwrap_or(AttributeType::Undefined);
    // IR versions before 2 had no type field: infer it from the field that is set.
    let ty = if ty == AttributeType::Undefined {
        if a.f.is_some() {
            AttributeType::Float
        } else if a.i.is_some() {
            AttributeType::Int
        } else if a.s.is_some() {
            AttributeType::String
        } else if a.t.is_some() {
            AttributeType::Tensor
        } else if a.g.is_some() {
            AttributeType::Graph
        } else if !a.floats.is_empty() {
            AttributeType::Floats
        } else if !a.ints.is_empty() {
            AttributeType::Ints
        } else if !a.strings.is_empty() {
            AttributeType::Strings
        } else if !a.tensors.is_empty() {
            AttributeType::Tensors
        } else if !a.graphs.is_empty() {
            AttributeType::Graphs
        } else {
            return Err(IrError::BadProto {
                owner: owner(),
                reason: "attribute has no type and no value".into(),
            });
        }
    } else {
        ty
    };
    let tensor =
        |t: &proto::TensorProto| Tensor::from_proto(t).map_err(|e| IrError::tensor(owner(), e));
    let graph = |gp: &GraphProto| import_graph(gp, Some(known), depth + 1);
    let missing = || IrError::BadProto {
        owner: owner(),
        reason: format!("attribute of type {ty:?} has no value"),
    };
    let value = match ty {
        AttributeType::Float => AttrValue::Float(a.f.unwrap_or(0.0)),
        AttributeType::Int => AttrValue::Int(a.i.unwrap_or(0)),
        AttributeType::String => AttrValue::String(a.s.clone().unwrap_or_default()),
        AttributeType::Tensor => AttrValue::Tensor(tensor(a.t.as_ref().ok_or_else(missing)?)?),
        AttributeType::Graph => {
            AttrValue::Graph(Box::new(graph(a.g.as_ref().ok_or_else(missing)?)?))
        }
        AttributeType::SparseTensor => {
            AttrValue::SparseTensor(Box::new(a.sparse_tensor.clone().ok_or_else(missing)?))
        }
        AttributeType::TypeProto => {
            AttrValue::TypeProto(Box::new(a.tp.clone().ok_or_else(missing)?))
        }
        AttributeType::Floats => AttrValue::Floats(a.floats.clone()),
        AttributeType::Ints => AttrValue::Ints(a.ints.clone()),
        AttributeType::Strings => AttrValue::Strings(a.strings.clone()),
        AttributeType::Tensors => {
            AttrValue::Tensors(a.tensors.iter().map(tensor).collect::<Result<_, _>>()?)
        }
        AttributeType::Graphs => {
            AttrValue::Graphs(a.graphs.iter().map(graph).collect::<Result<_, _>>()?)
        }
        AttributeType::SparseTensors => AttrValue::SparseTensors(a.sparse_tensors.clone()),
        AttributeType::TypeProtos => AttrValue::TypeProtos(a.type_protos.clone()),
        AttributeType::Undefined => unreachable!("resolved above"),
    };
    Ok(Attribute {
        name,
        value,
        doc_string: a.doc_string.clone(),
    })
}

fn import_value_info(vi: &ValueInfoProto) -> Result<Option<ValueType>, IrError> {
    let owner = || format!("value '{}'", vi.name.as_deref().unwrap_or(""));
    match &vi.r#type {
        None => Ok(None),
        Some(t) => import_type(t, 0)
            .map(Some)
            .map_err(|reason| IrError::BadProto {
                owner: owner(),
                reason,
            }),
    }
}

fn import_shape(s: Option<&proto::TensorShapeProto>) -> Result<Option<Vec<Dim>>, String> {
    let Some(s) = s else { return Ok(None) };
    s.dim
        .iter()
        .map(|d| match &d.value {
            // Some exporters write -1 for "dynamic"; ONNX Runtime reads any negative value
            // as an unknown dim, and so does kiln (tensor data dims stay strict).
            Some(dimension::Value::DimValue(v)) if *v < 0 => Ok(Dim::Unknown),
            Some(dimension::Value::DimValue(v)) => Ok(Dim::Known(*v)),
            // "?" is how several exporters spell "unknown": it names no shared size.
            Some(dimension::Value::DimParam(p)) if !p.is_empty() && p != "?" => Ok(Dim::sym(p)),
            _ => Ok(Dim::Unknown),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

pub(crate) fn import_type(t: &TypeProto, depth: usize) -> Result<ValueType, String> {
    if depth > MAX_DEPTH {
        return Err("type nested too deep".into());
    }
    let elem = |e: Option<i32>| e.and_then(DataType::from_onnx);
    Ok(match &t.value {
        Some(type_proto::Value::TensorType(tt)) => ValueType::Tensor {
            dtype: elem(tt.elem_type),
            shape: import_shape(tt.shape.as_ref())?,
        },
        Some(type_proto::Value::SparseTensorType(tt)) => ValueType::SparseTensor {
            dtype: elem(tt.elem_type),
            shape: import_shape(tt.shape.as_ref())?,
        },
        Some(type_proto::Value::SequenceType(s)) => {
            ValueType::Sequence(Box::new(match &s.elem_type {
                Some(e) => import_type(e, depth + 1)?,
                None => ValueType::Unknown,
            }))
        }
        Some(type_proto::Value::OptionalType(s)) => {
            ValueType::Optional(Box::new(match &s.elem_type {
                Some(e) => import_type(e, depth + 1)?,
                None => ValueType::Unknown,
            }))
        }
        Some(type_proto::Value::MapType(m)) => {
            let k = elem(m.key_type).ok_or("map with an unknown key type")?;
            ValueType::Map(
                k,
                Box::new(match &m.value_type {
                    Some(e) => import_type(e, depth + 1)?,
                    None => ValueType::Unknown,
                }),
            )
        }
        Some(type_proto::Value::OpaqueType(_)) | None => ValueType::Unknown,
    })
}
