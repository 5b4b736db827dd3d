//! The executor: runs a graph's nodes in topological order with their kernels, keeping each
//! intermediate value only until its last consumer has run, and runs subgraphs (If/Loop/Scan
//! bodies) on request of their kernels.
use std::sync::Arc;

use kiln_ir::{Graph, NodeId, ValueId};
use kiln_ops::{KernelCtx, KernelFn, PreparedKernel, SubgraphRunner, Tensor, Value};

use crate::RuntimeError;

/// Memory use of one run, counting intermediate values (not inputs or initializers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Most bytes of intermediates alive at once.
    pub peak_bytes: usize,
    /// Bytes of all intermediates produced, as if none were freed.
    pub total_bytes: usize,
}

struct Step {
    node: NodeId,
    kernel: KernelFn,
    /// Set when the provider prepared the node at plan time; runs instead of `kernel`.
    prepared: Option<Box<dyn PreparedKernel>>,
    opset: i64,
    /// Values whose last reader is this step.
    free_after: Vec<ValueId>,
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
    /// Builds a plan; `kernel` gives the kernel of each node (from its provider), `prepare`
    /// a prepared kernel for the node given its opset and which inputs are constants.
    pub fn new(
        g: &Graph,
        opsets: &Opsets,
        kernel: &dyn Fn(NodeId) -> Result<KernelFn, RuntimeError>,
        prepare: &dyn Fn(NodeId, i64, &[Option<&Tensor>]) -> Option<Box<dyn PreparedKernel>>,
    ) -> Result<Plan, RuntimeError> {
        let slots = g
            .values()
            .map(|(id, _)| id.0 as usize + 1)
            .max()
            .unwrap_or(0);
        let mut last_use: Vec<Option<usize>> = vec![None; slots];
        for (i, (_, n)) in g.nodes().enumerate() {
            for v in n.inputs().iter().flatten().chain(n.implicit_inputs()) {
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
        for (id, v) in &constants {
            if let Value::Tensor(t) = v.as_ref() {
                constant_of[id.0 as usize] = Some(t);
            }
        }
        let mut steps = Vec::with_capacity(g.node_count());
        for (i, (id, n)) in g.nodes().enumerate() {
            let mut free_after = Vec::new();
            for v in n.inputs().iter().flatten().chain(n.implicit_inputs()) {
                let keep = g.is_graph_output(*v)
                    || g.value(*v).initializer.is_some()
                    || g.value(*v).outer
                    || g.inputs().contains(v);
                if last_use[v.0 as usize] == Some(i) && !keep && !free_after.contains(v) {
                    free_after.push(*v);
                }
            }
            // Outputs nobody reads can go at once.
            for v in n.outputs().iter().flatten() {
                if last_use[v.0 as usize].is_none() && !g.is_graph_output(*v) {
                    free_after.push(*v);
                }
            }
            let opset = opset_of(opsets, &n.domain);
            let kernel = kernel(id)?;
            let consts: Vec<Option<&Tensor>> = n
                .inputs()
                .iter()
                .map(|v| v.and_then(|v| constant_of[v.0 as usize]))
                .collect();
            steps.push(Step {
                node: id,
                kernel,
                prepared: prepare(id, opset, &consts),
                opset,
                free_after,
            });
        }
        Ok(Plan {
            steps,
            constants,
            slots,
        })
    }

    /// Runs the graph. `inputs` are the graph inputs' values; `outer` resolves names a subgraph
    /// reads from enclosing graphs. Returns the graph outputs in order.
    pub fn run(
        &self,
        g: &Graph,
        opsets: &Opsets,
        inputs: Vec<(ValueId, Arc<Value>)>,
        outer: Option<&dyn Fn(&str) -> Option<Arc<Value>>>,
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
            let node = g.node(step.node);
            let mut ins = Vec::with_capacity(node.inputs().len());
            for (i, v) in node.inputs().iter().enumerate() {
                match v {
                    None => ins.push(None),
                    Some(v) => match &env[v.0 as usize] {
                        Some(x) => ins.push(Some(x.as_ref())),
                        None => {
                            return Err(RuntimeError::Node {
                                node: g.describe(step.node),
                                reason: format!("input {i} ('{}') has no value", g.value(*v).name),
                            })
                        }
                    },
                }
            }
            let frame = Frame {
                graph: g,
                env: &env,
                outer,
                opsets,
            };
            let ctx = KernelCtx {
                op_type: &node.op_type,
                domain: &node.domain,
                opset: step.opset,
                attrs: &node.attrs,
                inputs: ins,
                num_outputs: node.outputs().len(),
                subgraphs: Some(&frame),
            };
            let start = profile.as_ref().map(|_| std::time::Instant::now());
            let outs = match &step.prepared {
                Some(p) => p.run(&ctx),
                None => (step.kernel)(&ctx),
            }
            .map_err(|reason| RuntimeError::Node {
                node: g.describe(step.node),
                reason,
            })?;
            if let (Some(p), Some(t)) = (profile.as_deref_mut(), start) {
                p.push((step.node, t.elapsed().as_secs_f64()));
            }
            let mut outs = outs.into_iter();
            for (i, slot) in node.outputs().iter().enumerate() {
                let value = outs.next();
                let Some(v) = slot else { continue };
                let Some(value) = value else {
                    return Err(RuntimeError::Node {
                        node: g.describe(step.node),
                        reason: format!("the kernel produced no output {i}"),
                    });
                };
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

/// What a subgraph sees of the graph that runs it: the current values, and beyond them the
/// enclosing graphs'.
struct Frame<'a> {
    graph: &'a Graph,
    env: &'a [Option<Arc<Value>>],
    outer: Option<&'a dyn Fn(&str) -> Option<Arc<Value>>>,
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
