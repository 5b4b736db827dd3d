//! Visits every tensor stored in a model: initializers, sparse initializers, tensor-valued
//! attributes, and all of these inside subgraphs and functions.
use crate::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, SparseTensorProto, TensorProto,
};

/// Calls `f` on every `TensorProto` in the model, depth first. Stops at the first error.
pub fn for_each_tensor_mut<E>(
    model: &mut ModelProto,
    f: &mut dyn FnMut(&mut TensorProto) -> Result<(), E>,
) -> Result<(), E> {
    if let Some(g) = model.graph.as_mut() {
        graph(g, f)?;
    }
    for func in &mut model.functions {
        nodes(&mut func.node, f)?;
    }
    for t in &mut model.training_info {
        if let Some(g) = t.initialization.as_mut() {
            graph(g, f)?;
        }
        if let Some(g) = t.algorithm.as_mut() {
            graph(g, f)?;
        }
    }
    Ok(())
}

fn graph<E>(
    g: &mut GraphProto,
    f: &mut dyn FnMut(&mut TensorProto) -> Result<(), E>,
) -> Result<(), E> {
    for t in &mut g.initializer {
        f(t)?;
    }
    for s in &mut g.sparse_initializer {
        sparse(s, f)?;
    }
    nodes(&mut g.node, f)
}

fn nodes<E>(
    ns: &mut [NodeProto],
    f: &mut dyn FnMut(&mut TensorProto) -> Result<(), E>,
) -> Result<(), E> {
    for n in ns {
        for a in &mut n.attribute {
            attribute(a, f)?;
        }
    }
    Ok(())
}

fn sparse<E>(
    s: &mut SparseTensorProto,
    f: &mut dyn FnMut(&mut TensorProto) -> Result<(), E>,
) -> Result<(), E> {
    if let Some(v) = s.values.as_mut() {
        f(v)?;
    }
    if let Some(i) = s.indices.as_mut() {
        f(i)?;
    }
    Ok(())
}

fn attribute<E>(
    a: &mut AttributeProto,
    f: &mut dyn FnMut(&mut TensorProto) -> Result<(), E>,
) -> Result<(), E> {
    if let Some(t) = a.t.as_mut() {
        f(t)?;
    }
    for t in &mut a.tensors {
        f(t)?;
    }
    if let Some(s) = a.sparse_tensor.as_mut() {
        sparse(s, f)?;
    }
    for s in &mut a.sparse_tensors {
        sparse(s, f)?;
    }
    if let Some(g) = a.g.as_mut() {
        graph(g, f)?;
    }
    for g in &mut a.graphs {
        graph(g, f)?;
    }
    Ok(())
}
