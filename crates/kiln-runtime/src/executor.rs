//! The executor: runs a graph's nodes in topological order with their kernels, or whole
//! compiled partitions in one step, keeping each intermediate value only until its last consumer
//! has run, and runs subgraphs (If/Loop/Scan bodies) on request of their kernels.
use std::sync::Arc;

use kiln_ir::{Graph, NodeId, ValueId};
use kiln_ops::{KernelCtx, KernelFn, PreparedKernel, SubgraphRunner, Tensor, Value};

use crate::{CompiledPartition, PartitionSpec, RuntimeError};

/// Memory use of one run, counting intermediate values (not inputs or initializers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Most bytes of intermediates alive at once.
    pub peak_bytes: usize,
    /// Bytes of all intermediates produced, as if none were freed.
    pub total_bytes: usize,
}

/// What the plan runs, in order: single nodes, or partitions a provider compiled.
pub enum Unit {
    Node(NodeId),
    Compiled(PartitionSpec, Box<dyn CompiledPartition>),
}

enum Work {
    Node {
        node: NodeId,
        kernel: KernelFn,
        /// Set when the provider prepared the node at plan time; runs instead of `kernel`.
        prepared: Option<Box<dyn PreparedKernel>>,
        opset: i64,
        /// Inputs the kernel may take over (`kiln_ops::donatable_inputs`) whose value this
        /// node reads last: handed over at run time when nothing else holds them.
        donate: Vec<(usize, ValueId)>,
    },
    Compiled(PartitionSpec, Box<dyn CompiledPartition>, Fallback),
}

/// What a compiled partition falls back to when it fails for the inputs a run brings (a
/// kernel limit that shows only with concrete shapes, a device error): its nodes on the CPU
/// kernels, for that set of input shapes from then on, with one warning naming the reason.
struct Fallback {
    /// The partition's nodes with their CPU kernels and opsets; `None` when some node has none.
    nodes: Option<Vec<(NodeId, KernelFn, i64)>>,
    /// The input shapes (and small integer values) the unit failed on, with the reason.
    failed: std::sync::Mutex<std::collections::HashMap<Vec<(Vec<usize>, Vec<i64>)>, String>>,
}

/// A compiled unit's inputs as a key: shapes, and the values of small integer tensors (shape
/// and axes parameters decide a lowering as much as shapes do).
fn fallback_key(ins: &[&Value]) -> Vec<(Vec<usize>, Vec<i64>)> {
    ins.iter()
        .map(|v| match v.tensor() {
            Some(t) => {
                let small_ints = !t.dtype().is_float() && t.len() <= 64;
                let vals = if small_ints {
                    t.to_i64s().unwrap_or_default()
                } else {
                    Vec::new()
                };
                (t.shape.clone(), vals)
            }
            None => (Vec::new(), Vec::new()),
        })
        .collect()
}

struct Step {
    work: Work,
    /// Values whose last reader is this step.
    free_after: Vec<ValueId>,
}

/// The values a group of nodes reads from outside it (not initializers) and those it must
/// hand out (read by a node outside it, or graph outputs), each once, in first-use order.
pub fn partition_spec(g: &Graph, nodes: &[NodeId]) -> PartitionSpec {
    let inside = |n: NodeId| nodes.contains(&n);
    let mut inputs = Vec::new();
    let mut outputs = Vec::new();
    for &n in nodes {
        let node = g.node(n);
        for v in node.inputs().iter().flatten().chain(node.implicit_inputs()) {
            let val = g.value(*v);
            let produced_inside = val.producer().is_some_and(|(p, _)| inside(p));
            if !produced_inside && val.initializer.is_none() && !inputs.contains(v) {
                inputs.push(*v);
            }
        }
        for v in node.outputs().iter().flatten() {
            let read_outside = g.value(*v).consumers().iter().any(|u| !inside(u.node));
            if (read_outside || g.is_graph_output(*v)) && !outputs.contains(v) {
                outputs.push(*v);
            }
        }
    }
    PartitionSpec {
        nodes: nodes.to_vec(),
        inputs,
        outputs,
    }
}

/// A graph made ready to run: kernels chosen (and prepared where the provider can, e.g. with
/// pre-packed weights), constants converted, lifetimes computed.
pub struct Plan {
    steps: Vec<Step>,
    constants: Vec<(ValueId, Arc<Value>)>,
    slots: usize,
}

/// Opset version of `domain` ("" for ONNX's own).
pub type Opsets = [(String, i64)];

fn opset_of(opsets: &Opsets, domain: &str) -> i64 {
    let d = if domain == "ai.onnx" { "" } else { domain };
    opsets
        .iter()
        .find(|(x, _)| x == d)
        .map(|(_, v)| *v)
        .unwrap_or(1)
}

impl Plan {
    /// Builds a plan running `units` in order; `kernel` gives the kernel of each single node
    /// (from its provider), `prepare` a prepared kernel for the node given its opset and which
    /// inputs are constants.
    pub fn new(
        g: &Graph,
        opsets: &Opsets,
        units: Vec<Unit>,
        kernel: &dyn Fn(NodeId) -> Result<KernelFn, RuntimeError>,
        prepare: &dyn Fn(NodeId, i64, &[Option<&Tensor>]) -> Option<Box<dyn PreparedKernel>>,
    ) -> Result<Plan, RuntimeError> {
        let slots = g
            .values()
            .map(|(id, _)| id.0 as usize + 1)
            .max()
            .unwrap_or(0);
        let reads = |u: &Unit| -> Vec<ValueId> {
            match u {
                Unit::Node(id) => {
                    let n = g.node(*id);
                    n.inputs()
                        .iter()
                        .flatten()
                        .chain(n.implicit_inputs())
                        .copied()
                        .collect()
                }
                Unit::Compiled(spec, _) => spec.inputs.clone(),
            }
        };
        let writes = |u: &Unit| -> Vec<ValueId> {
            match u {
                Unit::Node(id) => g.node(*id).outputs().iter().flatten().copied().collect(),
                Unit::Compiled(spec, _) => spec.outputs.clone(),
            }
        };
        let mut last_use: Vec<Option<usize>> = vec![None; slots];
        for (i, u) in units.iter().enumerate() {
            for v in reads(u) {
                last_use[v.0 as usize] = Some(i);
            }
        }
        let constants = g
            .values()
            .filter_map(|(id, v)| {
                v.initializer
                    .as_ref()
                    .map(|t| (id, Arc::new(Value::Tensor(Tensor::from_ir(t)))))
            })
            .collect::<Vec<_>>();
        let mut constant_of: Vec<Option<&Tensor>> = vec![None; slots];
        // An initializer a feed may override (IR version 4 and later) is held as an input's
        // `default`, not as an initializer; one that is still an initializer, though listed
        // as an input (before IR version 4 every initializer had to be), is a constant that
        // no feed can reach, and prepared kernels may bake it in.
        for (id, v) in &constants {
            if let Value::Tensor(t) = v.as_ref() {
                constant_of[id.0 as usize] = Some(t);
            }
        }
        let mut steps = Vec::with_capacity(units.len());
        for (i, u) in units.into_iter().enumerate() {
            let mut free_after = Vec::new();
            for v in reads(&u) {
                let keep = g.is_graph_output(v)
                    || g.value(v).initializer.is_some()
                    || g.value(v).outer
                    || g.inputs().contains(&v);
                if last_use[v.0 as usize] == Some(i) && !keep && !free_after.contains(&v) {
                    free_after.push(v);
                }
            }
            // Outputs nobody reads can go at once.
            for v in writes(&u) {
                if last_use[v.0 as usize].is_none() && !g.is_graph_output(v) {
                    free_after.push(v);
                }
            }
            let work = match u {
                Unit::Compiled(spec, unit) => {
                    let nodes = spec
                        .nodes
                        .iter()
                        .map(|&id| {
                            let n = g.node(id);
                            let domain = if n.domain == "ai.onnx" { "" } else { &n.domain };
                            kiln_ops::kernel_fn(domain, &n.op_type)
                                .map(|k| (id, k, opset_of(opsets, &n.domain)))
                        })
                        .collect();
                    let fallback = Fallback {
                        nodes,
                        failed: Default::default(),
                    };
                    Work::Compiled(spec, unit, fallback)
                }
                Unit::Node(id) => {
                    let n = g.node(id);
                    let opset = opset_of(opsets, &n.domain);
                    let kernel = kernel(id)?;
                    let consts: Vec<Option<&Tensor>> = n
                        .inputs()
                        .iter()
                        .map(|v| v.and_then(|v| constant_of[v.0 as usize]))
                        .collect();
                    let domain = if n.domain == "ai.onnx" { "" } else { &n.domain };
                    let donate = kiln_ops::donatable_inputs(domain, &n.op_type)
                        .iter()
                        .filter_map(|&k| Some((k, (*n.inputs().get(k)?)?)))
                        .filter(|&(_, v)| {
                            let val = g.value(v);
                            last_use[v.0 as usize] == Some(i)
                                && !g.is_graph_output(v)
                                && val.initializer.is_none()
                                && !val.outer
                                && n.inputs().iter().filter(|x| **x == Some(v)).count() == 1
                        })
                        .collect();
                    Work::Node {
                        node: id,
                        kernel,
                        prepared: prepare(id, opset, &consts),
                        opset,
                        donate,
                    }
                }
            };
            steps.push(Step { work, free_after });
        }
        Ok(Plan {
            steps,
            constants,
            slots,
        })
    }

    /// Compiled partitions that ran on the CPU for some input shapes, with the reason each.
    pub fn fallbacks(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.steps {
            if let Work::Compiled(_, _, f) = &s.work {
                if let Ok(f) = f.failed.lock() {
                    out.extend(f.values().cloned());
                }
            }
        }
        out
    }

    /// The nodes whose provider prepared them at plan time (constant weights packed once).
    pub fn prepared_nodes(&self) -> Vec<NodeId> {
        self.steps
            .iter()
            .filter_map(|s| match &s.work {
                Work::Node {
                    node,
                    prepared: Some(_),
                    ..
                } => Some(*node),
                _ => None,
            })
            .collect()
    }

    /// Runs the graph. `inputs` are the graph inputs' values; `outer` resolves names a subgraph
    /// reads from enclosing graphs. Returns the graph outputs in order.
    pub fn run(
        &self,
        g: &Graph,
        opsets: &Opsets,
        inputs: Vec<(ValueId, Arc<Value>)>,
        outer: Outer,
        mut profile: Option<&mut Vec<(NodeId, f64)>>,
    ) -> Result<(Vec<Arc<Value>>, RunStats), RuntimeError> {
        let mut env: Vec<Option<Arc<Value>>> = vec![None; self.slots];
        for (id, v) in &self.constants {
            env[id.0 as usize] = Some(v.clone());
        }
        for (id, v) in inputs {
            env[id.0 as usize] = Some(v);
        }
        if let Some(outer) = outer {
            for (id, v) in g.values().filter(|(_, v)| v.outer) {
                if let Some(x) = outer(&v.name) {
                    env[id.0 as usize] = Some(x);
                }
            }
        }
        let mut stats = RunStats::default();
        let mut live = 0usize;
        for step in &self.steps {
            let start = profile.as_ref().map(|_| std::time::Instant::now());
            let (first, produced) = match &step.work {
                Work::Node {
                    node: id,
                    kernel,
                    prepared,
                    opset,
                    donate,
                } => {
                    // Only the run's own reference may go: a caller's or a constant's stays.
                    let mut given = Vec::new();
                    for &(k, v) in donate {
                        let slot = &mut env[v.0 as usize];
                        if slot.as_ref().is_some_and(|a| Arc::strong_count(a) == 1) {
                            if let Some(Ok(value)) = slot.take().map(Arc::try_unwrap) {
                                live = live.saturating_sub(value.bytes());
                                given.push((k, value));
                            }
                        }
                    }
                    let outs =
                        run_node(g, &env, outer, opsets, *id, kernel, prepared, *opset, given)?;
                    (*id, outs)
                }
                Work::Compiled(spec, unit, fallback) => {
                    let first = spec.nodes[0];
                    let describe = || {
                        format!(
                            "partition of {} nodes from {}",
                            spec.nodes.len(),
                            g.describe(first)
                        )
                    };
                    let (ran, key) = {
                        let mut ins = Vec::with_capacity(spec.inputs.len());
                        for v in &spec.inputs {
                            match &env[v.0 as usize] {
                                Some(x) => ins.push(x.as_ref()),
                                None => {
                                    return Err(RuntimeError::Node {
                                        node: g.describe(first),
                                        reason: format!(
                                            "partition input '{}' has no value",
                                            g.value(*v).name
                                        ),
                                    })
                                }
                            }
                        }
                        let key = fallback_key(&ins);
                        let known_bad = fallback
                            .failed
                            .lock()
                            .map_or(false, |f| f.contains_key(&key));
                        ((!known_bad).then(|| unit.run(&ins)), key)
                    };
                    let outs = match (ran, &fallback.nodes) {
                        (Some(Ok(outs)), _) => outs,
                        (Some(Err(reason)), None) => {
                            return Err(RuntimeError::Node {
                                node: describe(),
                                reason,
                            })
                        }
                        (failed, Some(nodes)) => {
                            if let Some(Err(reason)) = failed {
                                let shapes: Vec<&Vec<usize>> = key.iter().map(|(s, _)| s).collect();
                                eprintln!(
                                    "warning: {} runs on the CPU for input shapes {shapes:?}: {reason}",
                                    describe()
                                );
                                if let Ok(mut f) = fallback.failed.lock() {
                                    // Shapes that change every run would fill it: start over.
                                    if f.len() >= 64 {
                                        f.clear();
                                    }
                                    f.insert(key, format!("{}: {reason}", describe()));
                                }
                            }
                            run_on_cpu(g, &mut env, outer, opsets, nodes, &spec.outputs)?
                        }
                        (None, None) => {
                            unreachable!("a shape set is marked failed only with a fallback")
                        }
                    };
                    if outs.len() != spec.outputs.len() {
                        return Err(RuntimeError::Node {
                            node: g.describe(first),
                            reason: format!(
                                "the compiled partition returned {} outputs, not {}",
                                outs.len(),
                                spec.outputs.len()
                            ),
                        });
                    }
                    let produced = spec.outputs.iter().map(|v| Some(*v)).zip(outs).collect();
                    (first, produced)
                }
            };
            if let (Some(p), Some(t)) = (profile.as_deref_mut(), start) {
                p.push((first, t.elapsed().as_secs_f64()));
            }
            for (slot, value) in produced {
                let Some(v) = slot else { continue };
                let b = value.bytes();
                live += b;
                stats.total_bytes += b;
                env[v.0 as usize] = Some(Arc::new(value));
            }
            stats.peak_bytes = stats.peak_bytes.max(live);
            for v in &step.free_after {
                if let Some(x) = env[v.0 as usize].take() {
                    live = live.saturating_sub(x.bytes());
                }
            }
        }
        let mut outputs = Vec::with_capacity(g.outputs().len());
        for o in g.outputs() {
            let v = env[o.0 as usize]
                .clone()
                .ok_or_else(|| RuntimeError::Node {
                    node: format!("graph output '{}'", g.value(*o).name),
                    reason: "was never computed".into(),
                })?;
            outputs.push(v);
        }
        Ok((outputs, stats))
    }
}

/// Runs a compiled partition's nodes one by one on their CPU kernels, writing intermediates
/// into `env` and clearing them after; returns the partition's outputs.
fn run_on_cpu(
    g: &Graph,
    env: &mut [Option<Arc<Value>>],
    outer: Outer,
    opsets: &Opsets,
    nodes: &[(NodeId, KernelFn, i64)],
    outputs: &[ValueId],
) -> Result<Vec<Value>, RuntimeError> {
    let mut made = Vec::new();
    let ran = (|| {
        for (id, kernel, opset) in nodes {
            for (slot, value) in run_node(
                g,
                env,
                outer,
                opsets,
                *id,
                kernel,
                &None,
                *opset,
                Vec::new(),
            )? {
                if let Some(v) = slot {
                    env[v.0 as usize] = Some(Arc::new(value));
                    made.push(v);
                }
            }
        }
        outputs
            .iter()
            .map(|v| {
                env[v.0 as usize]
                    .take()
                    .map(|a| Arc::try_unwrap(a).unwrap_or_else(|a| (*a).clone()))
                    .ok_or_else(|| RuntimeError::Node {
                        node: format!("value '{}'", g.value(*v).name),
                        reason: "the partition's CPU fallback did not compute it".into(),
                    })
            })
            .collect()
    })();
    for v in made {
        env[v.0 as usize] = None;
    }
    ran
}

/// Resolves names a subgraph reads from the graphs around it.
type Outer<'a> = Option<&'a dyn Fn(&str) -> Option<Arc<Value>>>;

/// Runs one node's kernel; returns its output slots paired with the values produced.
#[allow(clippy::too_many_arguments)]
fn run_node(
    g: &Graph,
    env: &[Option<Arc<Value>>],
    outer: Outer,
    opsets: &Opsets,
    id: NodeId,
    kernel: &KernelFn,
    prepared: &Option<Box<dyn PreparedKernel>>,
    opset: i64,
    donated: Vec<(usize, Value)>,
) -> Result<Vec<(Option<ValueId>, Value)>, RuntimeError> {
    let node = g.node(id);
    let mut ins = Vec::with_capacity(node.inputs().len());
    for (i, v) in node.inputs().iter().enumerate() {
        match v {
            None => ins.push(None),
            Some(_) if donated.iter().any(|(k, _)| *k == i) => ins.push(None),
            Some(v) => match &env[v.0 as usize] {
                Some(x) => ins.push(Some(x.as_ref())),
                None => {
                    return Err(RuntimeError::Node {
                        node: g.describe(id),
                        reason: format!("input {i} ('{}') has no value", g.value(*v).name),
                    })
                }
            },
        }
    }
    let frame = Frame {
        graph: g,
        env,
        outer,
        opsets,
    };
    let ctx = KernelCtx {
        op_type: &node.op_type,
        domain: &node.domain,
        opset,
        attrs: &node.attrs,
        inputs: ins,
        num_outputs: node.outputs().len(),
        subgraphs: Some(&frame),
        donated: kiln_ops::Donated::new(donated),
    };
    let outs = match prepared {
        Some(p) => p.run(&ctx),
        None => kernel(&ctx),
    }
    .map_err(|reason| RuntimeError::Node {
        node: g.describe(id),
        reason,
    })?;
    let mut outs = outs.into_iter();
    let mut produced = Vec::with_capacity(node.outputs().len());
    for (i, slot) in node.outputs().iter().enumerate() {
        let value = outs.next();
        if slot.is_none() {
            continue;
        }
        let Some(value) = value else {
            return Err(RuntimeError::Node {
                node: g.describe(id),
                reason: format!("the kernel produced no output {i}"),
            });
        };
        produced.push((*slot, value));
    }
    Ok(produced)
}

/// What a subgraph sees of the graph that runs it: the current values, and beyond them the
/// enclosing graphs'.
struct Frame<'a> {
    graph: &'a Graph,
    env: &'a [Option<Arc<Value>>],
    outer: Outer<'a>,
    opsets: &'a Opsets,
}

impl SubgraphRunner for Frame<'_> {
    fn run(&self, body: &Graph, inputs: Vec<Value>) -> Result<Vec<Value>, String> {
        let lookup = |name: &str| -> Option<Arc<Value>> {
            match self.graph.find_value(name) {
                Some(id) => self.env[id.0 as usize]
                    .clone()
                    .or_else(|| self.outer.and_then(|f| f(name))),
                None => self.outer.and_then(|f| f(name)),
            }
        };
        let plan = Plan::new(
            body,
            self.opsets,
            body.order().iter().map(|&n| Unit::Node(n)).collect(),
            &|id| {
                let n = body.node(id);
                let domain = if n.domain == "ai.onnx" { "" } else { &n.domain };
                kiln_ops::kernel_fn(domain, &n.op_type).ok_or_else(|| RuntimeError::Node {
                    node: body.describe(id),
                    reason: format!("no CPU kernel for {}", n.op_key()),
                })
            },
            // Bodies are planned on every run; packing their weights would not pay.
            &|_, _, _| None,
        )
        .map_err(|e| e.to_string())?;
        let real: Vec<ValueId> = body.real_inputs().collect();
        if real.len() != inputs.len() {
            return Err(format!(
                "subgraph '{}' takes {} inputs, {} were given",
                body.name,
                real.len(),
                inputs.len()
            ));
        }
        let ins = real
            .into_iter()
            .zip(inputs.into_iter().map(Arc::new))
            .collect();
        let (outs, _) = plan
            .run(body, self.opsets, ins, Some(&lookup), None)
            .map_err(|e| format!("in subgraph '{}': {e}", body.name))?;
        Ok(outs
            .into_iter()
            .map(|v| Arc::try_unwrap(v).unwrap_or_else(|a| (*a).clone()))
            .collect())
    }
}
