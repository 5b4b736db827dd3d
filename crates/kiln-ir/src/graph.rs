//! The graph: values, nodes, producer/consumer maps and a topological order, changed only through
//! the methods here, which keep all of them consistent. `check_consistency` verifies that.
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

use kiln_onnx::proto;

use crate::{AttrValue, Attribute, IrError, Tensor, ValueType};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

/// Where a value is consumed: an explicit input slot, or an implicit input (a value a node's
/// subgraph reads from this graph).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    Input(usize),
    Implicit(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Use {
    pub node: NodeId,
    pub slot: Slot,
}

#[derive(Clone, Debug)]
pub struct Value {
    pub name: String,
    /// What is known of the type; `None` when nothing is.
    pub ty: Option<ValueType>,
    /// The type the model itself stated (graph input/output or `value_info`); saving writes
    /// this one, so inference never changes what a saved model declares.
    pub declared: Option<ValueType>,
    pub doc_string: Option<String>,
    pub initializer: Option<Arc<Tensor>>,
    /// The value of a graph input when the caller does not feed it: an initializer that the
    /// model also lists as an input (IR version 4 and later), which a feed may override. It is
    /// not a constant to the optimizer; saving writes it back as an initializer.
    pub default: Option<Arc<Tensor>>,
    pub sparse_initializer: Option<Box<proto::SparseTensorProto>>,
    /// Defined in an enclosing graph (only in subgraphs).
    pub outer: bool,
    producer: Option<(NodeId, usize)>,
    consumers: Vec<Use>,
}

impl Value {
    fn new(name: &str, ty: Option<ValueType>) -> Value {
        Value {
            name: name.to_string(),
            ty,
            declared: None,
            doc_string: None,
            initializer: None,
            default: None,
            sparse_initializer: None,
            outer: false,
            producer: None,
            consumers: Vec::new(),
        }
    }

    /// The node and output index that produce this value.
    pub fn producer(&self) -> Option<(NodeId, usize)> {
        self.producer
    }

    pub fn consumers(&self) -> &[Use] {
        &self.consumers
    }

    pub fn is_constant(&self) -> bool {
        self.initializer.is_some()
    }
}

#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub op_type: String,
    pub domain: String,
    pub overload: Option<String>,
    pub attrs: Vec<Attribute>,
    pub doc_string: Option<String>,
    pub metadata_props: Vec<proto::StringStringEntryProto>,
    inputs: Vec<Option<ValueId>>,
    outputs: Vec<Option<ValueId>>,
    implicit: Vec<ValueId>,
}

impl Node {
    /// A node to pass to [`Graph::add_node`].
    pub fn new(name: &str, op_type: &str, domain: &str) -> Node {
        Node {
            name: name.to_string(),
            op_type: op_type.to_string(),
            domain: domain.to_string(),
            overload: None,
            attrs: Vec::new(),
            doc_string: None,
            metadata_props: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            implicit: Vec::new(),
        }
    }

    pub fn with_inputs(mut self, inputs: &[Option<ValueId>]) -> Node {
        self.inputs = inputs.to_vec();
        self
    }

    pub fn with_outputs(mut self, outputs: &[Option<ValueId>]) -> Node {
        self.outputs = outputs.to_vec();
        self
    }

    pub fn with_attrs(mut self, attrs: Vec<Attribute>) -> Node {
        self.attrs = attrs;
        self
    }

    pub fn inputs(&self) -> &[Option<ValueId>] {
        &self.inputs
    }

    pub fn input(&self, i: usize) -> Option<ValueId> {
        self.inputs.get(i).copied().flatten()
    }

    pub fn outputs(&self) -> &[Option<ValueId>] {
        &self.outputs
    }

    pub fn output(&self, i: usize) -> Option<ValueId> {
        self.outputs.get(i).copied().flatten()
    }

    /// Values of this graph that the node's subgraphs read.
    pub fn implicit_inputs(&self) -> &[ValueId] {
        &self.implicit
    }

    /// `domain:op_type`, or `op_type` for the default ONNX domain.
    pub fn op_key(&self) -> String {
        if self.domain.is_empty() || self.domain == "ai.onnx" {
            self.op_type.clone()
        } else {
            format!("{}:{}", self.domain, self.op_type)
        }
    }

    /// Subgraphs held in attributes.
    pub fn subgraphs(&self) -> impl Iterator<Item = &Graph> {
        self.attrs.iter().flat_map(|a| match &a.value {
            AttrValue::Graph(g) => std::slice::from_ref(g.as_ref()).iter(),
            AttrValue::Graphs(gs) => gs.iter(),
            _ => [].iter(),
        })
    }
}

/// A computation graph (the main graph or a subgraph).
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub name: String,
    pub doc_string: Option<String>,
    pub metadata_props: Vec<proto::StringStringEntryProto>,
    pub quantization_annotation: Vec<proto::TensorAnnotation>,
    nodes: Vec<Option<Node>>,
    values: Vec<Option<Value>>,
    names: HashMap<String, ValueId>,
    order: Vec<NodeId>,
    inputs: Vec<ValueId>,
    outputs: Vec<ValueId>,
}

impl Graph {
    pub fn new(name: &str) -> Graph {
        Graph {
            name: name.to_string(),
            ..Default::default()
        }
    }

    // ---- reading ----

    pub fn value(&self, id: ValueId) -> &Value {
        self.values[id.0 as usize]
            .as_ref()
            .expect("value id refers to a removed value")
    }

    /// Mutable access to a value's descriptive fields (type, initializer data, doc). Its
    /// connections can only change through the graph's methods.
    pub fn value_mut(&mut self, id: ValueId) -> &mut Value {
        self.values[id.0 as usize]
            .as_mut()
            .expect("value id refers to a removed value")
    }

    pub fn node(&self, id: NodeId) -> &Node {
        self.nodes[id.0 as usize]
            .as_ref()
            .expect("node id refers to a removed node")
    }

    /// Mutable access to a node's name, op, attributes. Its connections can only change through
    /// the graph's methods.
    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        self.nodes[id.0 as usize]
            .as_mut()
            .expect("node id refers to a removed node")
    }

    pub fn contains_node(&self, id: NodeId) -> bool {
        self.nodes.get(id.0 as usize).is_some_and(|n| n.is_some())
    }

    pub fn find_value(&self, name: &str) -> Option<ValueId> {
        self.names.get(name).copied()
    }

    /// Node ids in topological order.
    pub fn order(&self) -> &[NodeId] {
        &self.order
    }

    /// Nodes in topological order.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.order.iter().map(move |&id| (id, self.node(id)))
    }

    pub fn node_count(&self) -> usize {
        self.order.len()
    }

    /// Live values in creation order.
    pub fn values(&self) -> impl Iterator<Item = (ValueId, &Value)> {
        self.values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_ref().map(|v| (ValueId(i as u32), v)))
    }

    pub fn inputs(&self) -> &[ValueId] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[ValueId] {
        &self.outputs
    }

    pub fn is_graph_output(&self, v: ValueId) -> bool {
        self.outputs.contains(&v)
    }

    /// Inputs the caller must feed: graph inputs that are neither initializers nor have a
    /// default.
    pub fn real_inputs(&self) -> impl Iterator<Item = ValueId> + '_ {
        self.inputs.iter().copied().filter(move |&v| {
            let val = self.value(v);
            val.initializer.is_none() && val.default.is_none()
        })
    }

    /// Inputs the caller may feed or leave to their default (overridable initializers).
    pub fn overridable_inputs(&self) -> impl Iterator<Item = ValueId> + '_ {
        self.inputs
            .iter()
            .copied()
            .filter(move |&v| self.value(v).default.is_some())
    }

    /// Turns initializers that are also graph inputs into inputs with a default, which feeds
    /// may override (what IR version 4 and later mean by listing an initializer as an input).
    pub fn make_inputs_overridable(&mut self) {
        for v in self.inputs.clone() {
            let val = self.value_mut(v);
            if let Some(t) = val.initializer.take() {
                val.default = Some(t);
            }
        }
    }

    /// `node 'name' (Op)`; `node #i (Op)` for an unnamed node, and `node 'name' #i (Op)` for a
    /// name that several nodes share (ONNX only requires value names to be unique): how errors
    /// name nodes.
    pub fn describe(&self, id: NodeId) -> String {
        let n = self.node(id);
        let pos = || {
            self.order
                .iter()
                .position(|&x| x == id)
                .unwrap_or(id.0 as usize)
        };
        if n.name.is_empty() {
            format!("node #{} ({})", pos(), n.op_key())
        } else if self
            .order
            .iter()
            .any(|&o| o != id && self.node(o).name == n.name)
        {
            format!("node '{}' #{} ({})", n.name, pos(), n.op_key())
        } else {
            format!("node '{}' ({})", n.name, n.op_key())
        }
    }

    /// The constant tensor behind a value, if it is an initializer.
    pub fn constant(&self, v: ValueId) -> Option<&Tensor> {
        self.value(v).initializer.as_deref()
    }

    /// A value name not yet used in this graph, built from `base`.
    pub fn unique_name(&self, base: &str) -> String {
        if !self.names.contains_key(base) && !base.is_empty() {
            return base.to_string();
        }
        (1..)
            .map(|i| format!("{base}_{i}"))
            .find(|n| !self.names.contains_key(n))
            .expect("some suffix is free")
    }

    // ---- building and changing ----

    /// Adds an unconnected value. Names are unique within a graph.
    pub fn add_value(&mut self, name: &str, ty: Option<ValueType>) -> Result<ValueId, IrError> {
        if name.is_empty() {
            return Err(IrError::Invalid("a value needs a name".into()));
        }
        if self.names.contains_key(name) {
            return Err(IrError::DuplicateValue {
                name: name.to_string(),
            });
        }
        let id = ValueId(self.values.len() as u32);
        self.values.push(Some(Value::new(name, ty)));
        self.names.insert(name.to_string(), id);
        Ok(id)
    }

    /// Adds a value holding a constant tensor.
    pub fn add_initializer(&mut self, name: &str, t: Tensor) -> Result<ValueId, IrError> {
        let ty = ValueType::tensor(
            t.dtype,
            t.dims
                .iter()
                .map(|&d| crate::Dim::Known(d as i64))
                .collect(),
        );
        let id = self.add_value(name, Some(ty))?;
        self.value_mut(id).initializer = Some(Arc::new(t));
        Ok(id)
    }

    /// Makes an existing value a graph input (appended).
    pub fn push_input(&mut self, v: ValueId) {
        self.inputs.push(v);
    }

    /// Replaces the list of graph outputs.
    pub fn set_outputs(&mut self, outputs: Vec<ValueId>) {
        self.outputs = outputs;
    }

    /// Replaces the list of graph inputs.
    pub fn set_inputs(&mut self, inputs: Vec<ValueId>) {
        self.inputs = inputs;
    }

    /// Adds `node` (built with [`Node::new`]), wiring its inputs and outputs and placing it in
    /// the topological order. Its outputs must not have a producer yet. On error the graph is
    /// unchanged.
    pub fn add_node(&mut self, node: Node) -> Result<NodeId, IrError> {
        let id = NodeId(self.nodes.len() as u32);
        for v in node.inputs.iter().flatten().chain(node.implicit.iter()) {
            self.check_live(*v)?;
        }
        let mut seen = HashSet::new();
        for v in node.outputs.iter().flatten() {
            self.check_live(*v)?;
            if !seen.insert(*v) {
                return Err(IrError::DuplicateValue {
                    name: self.value(*v).name.clone(),
                });
            }
            if self.value(*v).producer.is_some()
                || self.value(*v).initializer.is_some()
                || self.inputs.contains(v)
            {
                return Err(IrError::TwoProducers {
                    value: self.value(*v).name.clone(),
                    node: node_label(&node, self.order.len()),
                });
            }
        }
        // Place it right after the last producer of anything it reads.
        let pos_of: HashMap<NodeId, usize> = self
            .order
            .iter()
            .enumerate()
            .map(|(i, n)| (*n, i))
            .collect();
        let mut at = 0;
        for v in node.inputs.iter().flatten().chain(node.implicit.iter()) {
            if let Some((p, _)) = self.value(*v).producer {
                at = at.max(pos_of[&p] + 1);
            }
        }
        let late_consumer = node.outputs.iter().flatten().any(|v| {
            self.value(*v)
                .consumers
                .iter()
                .any(|u| pos_of.get(&u.node).is_some_and(|&p| p < at))
        });
        self.nodes.push(Some(node));
        self.connect(id);
        self.order.insert(at, id);
        if late_consumer {
            if let Err(e) = self.toposort() {
                self.disconnect(id);
                self.order.retain(|&n| n != id);
                self.nodes.pop();
                return Err(e);
            }
        }
        Ok(id)
    }

    /// Removes a node. Its outputs must have no consumers left and must not be graph outputs;
    /// they stay in the graph as unproduced values (use [`Graph::remove_dead`] to drop them).
    pub fn remove_node(&mut self, id: NodeId) -> Result<Node, IrError> {
        for v in self.node(id).outputs.iter().flatten() {
            let val = self.value(*v);
            if !val.consumers.is_empty() || self.outputs.contains(v) {
                return Err(IrError::StillUsed {
                    value: val.name.clone(),
                    node: self.describe(id),
                });
            }
        }
        self.disconnect(id);
        self.order.retain(|&n| n != id);
        let node = self.nodes[id.0 as usize].take().expect("live node");
        Ok(node)
    }

    /// Removes a node even when its outputs are used, keeping those outputs as values with no
    /// producer, so that a replacement node can take them over with [`Graph::add_node`].
    pub fn detach_node(&mut self, id: NodeId) -> Node {
        self.disconnect(id);
        self.order.retain(|&n| n != id);
        self.nodes[id.0 as usize].take().expect("live node")
    }

    /// Points input `slot` of `node` at `v` (or at nothing).
    pub fn set_input(
        &mut self,
        node: NodeId,
        slot: usize,
        v: Option<ValueId>,
    ) -> Result<(), IrError> {
        if let Some(v) = v {
            self.check_live(v)?;
        }
        let n = self.node(node);
        if slot >= n.inputs.len() {
            if v.is_none() {
                return Ok(());
            }
            let len = slot + 1;
            self.node_mut(node).inputs.resize(len, None);
        }
        let old = self.node(node).inputs[slot];
        self.rewire(node, slot, v);
        if let Err(e) = self.fix_order_after_rewire(node) {
            self.rewire(node, slot, old);
            return Err(e);
        }
        Ok(())
    }

    fn rewire(&mut self, node: NodeId, slot: usize, v: Option<ValueId>) {
        let u = Use {
            node,
            slot: Slot::Input(slot),
        };
        if let Some(old) = self.node(node).inputs[slot] {
            self.unuse(old, u);
        }
        self.node_mut(node).inputs[slot] = v;
        if let Some(v) = v {
            self.value_mut(v).consumers.push(u);
        }
    }

    /// Makes every consumer of `old` read `new` instead; when `outputs_too`, graph outputs
    /// naming `old` name `new`. On a cycle nothing changes.
    pub fn replace_uses(
        &mut self,
        old: ValueId,
        new: ValueId,
        outputs_too: bool,
    ) -> Result<(), IrError> {
        self.check_live(new)?;
        if old == new {
            return Ok(());
        }
        let uses = std::mem::take(&mut self.value_mut(old).consumers);
        self.point_uses(&uses, new);
        self.value_mut(new).consumers.extend(uses.iter().copied());
        // The new value may be produced later in the order than some consumers.
        let late = match self.value(new).producer {
            Some((p, _)) => {
                let pp = self.order.iter().position(|&n| n == p);
                uses.iter()
                    .any(|u| self.order.iter().position(|&n| n == u.node) <= pp)
            }
            None => false,
        };
        if late {
            if let Err(e) = self.toposort() {
                self.point_uses(&uses, old);
                self.value_mut(new).consumers.retain(|c| !uses.contains(c));
                self.value_mut(old).consumers = uses;
                return Err(e);
            }
        }
        if outputs_too {
            for o in self.outputs.iter_mut() {
                if *o == old {
                    *o = new;
                }
            }
        }
        Ok(())
    }

    fn point_uses(&mut self, uses: &[Use], v: ValueId) {
        for u in uses {
            match u.slot {
                Slot::Input(i) => self.node_mut(u.node).inputs[i] = Some(v),
                Slot::Implicit(i) => self.node_mut(u.node).implicit[i] = v,
            }
        }
    }

    /// Sets the values a node's subgraphs read from this graph.
    pub fn set_implicit_inputs(&mut self, node: NodeId, vs: Vec<ValueId>) -> Result<(), IrError> {
        for v in &vs {
            self.check_live(*v)?;
        }
        let old = std::mem::take(&mut self.node_mut(node).implicit);
        for (i, v) in old.iter().enumerate() {
            self.unuse(
                *v,
                Use {
                    node,
                    slot: Slot::Implicit(i),
                },
            );
        }
        for (i, v) in vs.iter().enumerate() {
            self.value_mut(*v).consumers.push(Use {
                node,
                slot: Slot::Implicit(i),
            });
        }
        self.node_mut(node).implicit = vs;
        self.fix_order_after_rewire(node)
    }

    /// Removes a value that nothing produces, consumes or lists.
    pub fn remove_value(&mut self, v: ValueId) -> Result<(), IrError> {
        let val = self.value(v);
        if val.producer.is_some()
            || !val.consumers.is_empty()
            || self.inputs.contains(&v)
            || self.outputs.contains(&v)
        {
            return Err(IrError::StillUsed {
                value: val.name.clone(),
                node: "the graph".into(),
            });
        }
        let name = val.name.clone();
        self.names.remove(&name);
        self.values[v.0 as usize] = None;
        Ok(())
    }

    /// Drops nodes whose outputs nobody uses (repeatedly), then values that are neither produced,
    /// consumed nor listed (unused initializers included). Graph inputs are kept. Returns the
    /// numbers of nodes and values removed.
    pub fn remove_dead(&mut self) -> (usize, usize) {
        let mut nodes = 0;
        loop {
            let dead: Vec<NodeId> =
                self.order
                    .iter()
                    .rev()
                    .copied()
                    .filter(|&n| {
                        self.node(n).outputs.iter().flatten().all(|v| {
                            self.value(*v).consumers.is_empty() && !self.outputs.contains(v)
                        })
                    })
                    .collect();
            if dead.is_empty() {
                break;
            }
            for n in dead {
                if self.contains_node(n) && self.remove_node(n).is_ok() {
                    nodes += 1;
                }
            }
        }
        let unused: Vec<ValueId> = self
            .values()
            .filter(|(id, v)| {
                v.producer.is_none()
                    && v.consumers.is_empty()
                    && !self.inputs.contains(id)
                    && !self.outputs.contains(id)
            })
            .map(|(id, _)| id)
            .collect();
        let values = unused.len();
        for v in unused {
            self.remove_value(v).expect("checked unused");
        }
        (nodes, values)
    }

    /// Re-sorts the nodes topologically, keeping the current order wherever it is valid.
    /// Fails, naming a node on the cycle, if there is one.
    pub fn toposort(&mut self) -> Result<(), IrError> {
        let rank: HashMap<NodeId, usize> = self
            .order
            .iter()
            .enumerate()
            .map(|(i, n)| (*n, i))
            .collect();
        let mut indegree: HashMap<NodeId, usize> = HashMap::new();
        for &n in &self.order {
            let mut preds = HashSet::new();
            let node = self.node(n);
            for v in node.inputs.iter().flatten().chain(node.implicit.iter()) {
                if let Some((p, _)) = self.value(*v).producer {
                    preds.insert(p);
                }
            }
            indegree.insert(n, preds.len());
        }
        let mut ready: BinaryHeap<Reverse<(usize, NodeId)>> = indegree
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(n, _)| Reverse((rank[n], *n)))
            .collect();
        let mut out = Vec::with_capacity(self.order.len());
        while let Some(Reverse((_, n))) = ready.pop() {
            out.push(n);
            let mut succ = HashSet::new();
            for v in self.node(n).outputs.iter().flatten() {
                for u in &self.value(*v).consumers {
                    succ.insert(u.node);
                }
            }
            for s in succ {
                let d = indegree.get_mut(&s).expect("consumer is a live node");
                *d -= 1;
                if *d == 0 {
                    ready.push(Reverse((rank[&s], s)));
                }
            }
        }
        if out.len() != self.order.len() {
            let stuck = self
                .order
                .iter()
                .copied()
                .find(|n| indegree[n] > 0)
                .expect("some node is on the cycle");
            return Err(IrError::Cycle {
                node: self.describe(stuck),
            });
        }
        self.order = out;
        Ok(())
    }

    // ---- internals ----

    pub(crate) fn node_slots(&self) -> usize {
        self.nodes.len()
    }

    pub(crate) fn value_is_live(&self, v: ValueId) -> bool {
        matches!(self.values.get(v.0 as usize), Some(Some(_)))
    }

    fn check_live(&self, v: ValueId) -> Result<(), IrError> {
        match self.values.get(v.0 as usize) {
            Some(Some(_)) => Ok(()),
            _ => Err(IrError::Invalid(format!("value id {} does not exist", v.0))),
        }
    }

    fn connect(&mut self, id: NodeId) {
        let node = self.node(id).clone_connections();
        for (i, v) in node.0.iter().enumerate() {
            if let Some(v) = v {
                self.value_mut(*v).consumers.push(Use {
                    node: id,
                    slot: Slot::Input(i),
                });
            }
        }
        for (i, v) in node.1.iter().enumerate() {
            if let Some(v) = v {
                self.value_mut(*v).producer = Some((id, i));
            }
        }
        for (i, v) in node.2.iter().enumerate() {
            self.value_mut(*v).consumers.push(Use {
                node: id,
                slot: Slot::Implicit(i),
            });
        }
    }

    fn disconnect(&mut self, id: NodeId) {
        let node = self.node(id).clone_connections();
        for v in node.0.iter().flatten().chain(node.2.iter()) {
            self.value_mut(*v).consumers.retain(|u| u.node != id);
        }
        for v in node.1.iter().flatten() {
            self.value_mut(*v).producer = None;
        }
    }

    fn unuse(&mut self, v: ValueId, u: Use) {
        let cs = &mut self.value_mut(v).consumers;
        if let Some(i) = cs.iter().position(|x| *x == u) {
            cs.swap_remove(i);
        }
    }

    fn fix_order_after_rewire(&mut self, node: NodeId) -> Result<(), IrError> {
        let pos = self.order.iter().position(|&n| n == node);
        let n = self.node(node);
        let late = n.inputs.iter().flatten().chain(n.implicit.iter()).any(|v| {
            self.value(*v)
                .producer
                .is_some_and(|(p, _)| self.order.iter().position(|&x| x == p) >= pos)
        });
        if late {
            self.toposort()?;
        }
        Ok(())
    }

    /// Low-level access for the loader, which wires values by name before sorting.
    pub(crate) fn push_node_unsorted(&mut self, node: Node) -> Result<NodeId, IrError> {
        let id = NodeId(self.nodes.len() as u32);
        for v in node.outputs.iter().flatten() {
            if self.value(*v).producer.is_some()
                || self.value(*v).initializer.is_some()
                || self.inputs.contains(v)
            {
                return Err(IrError::TwoProducers {
                    value: self.value(*v).name.clone(),
                    node: node_label(&node, id.0 as usize),
                });
            }
        }
        self.nodes.push(Some(node));
        self.connect(id);
        self.order.push(id);
        Ok(id)
    }
}

impl Node {
    #[allow(clippy::type_complexity)]
    fn clone_connections(&self) -> (Vec<Option<ValueId>>, Vec<Option<ValueId>>, Vec<ValueId>) {
        (
            self.inputs.clone(),
            self.outputs.clone(),
            self.implicit.clone(),
        )
    }

    pub(crate) fn set_implicit_unchecked(&mut self, vs: Vec<ValueId>) {
        self.implicit = vs;
    }
}

fn node_label(n: &Node, index: usize) -> String {
    if n.name.is_empty() {
        format!("node #{index} ({})", n.op_type)
    } else {
        format!("node '{}' ({})", n.name, n.op_type)
    }
}
