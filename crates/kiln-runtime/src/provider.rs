//! Execution providers. A provider looks at the graph, claims the nodes it can run exactly as
//! specified and says why it declines the others; the CPU provider runs every op kiln has a
//! kernel for and is the fallback. `OpTypeProvider` claims a configured set of op types (using
//! the same kernels), to prove the partitioner.
use std::collections::BTreeSet;

use kiln_ir::{Model, Node, NodeId, ValueId};
use kiln_kernels::Precision;
use kiln_ops::{KernelFn, PreparedKernel, Tensor, Value};

/// Which of the offered nodes a provider takes.
#[derive(Debug, Default, Clone)]
pub struct Capability {
    pub claimed: Vec<NodeId>,
    /// Offered nodes it declines, with the reason.
    pub declined: Vec<(NodeId, String)>,
}

/// A group of nodes a provider compiled into one unit (ORT's `Compile`): it runs them all,
/// keeping the intermediates to itself; only the group's inputs and outputs cross over.
pub trait CompiledPartition: Send + Sync {
    /// Runs the group on its inputs (in the order of [`PartitionSpec::inputs`]) and returns its
    /// outputs (in the order of [`PartitionSpec::outputs`]).
    fn run(&self, inputs: &[&Value]) -> Result<Vec<Value>, String>;
}

/// What the runtime hands a compiling provider: the nodes (in run order), the values they read
/// that come from outside the group (graph inputs or other providers' outputs; initializers are
/// left out, the provider reads them from the model), and the values the group must hand back.
#[derive(Debug, Clone)]
pub struct PartitionSpec {
    pub nodes: Vec<NodeId>,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
}

pub trait ExecutionProvider: Send + Sync {
    fn name(&self) -> &str;

    /// One line on where it runs (an adapter, a device), for reports.
    fn device(&self) -> Option<String> {
        None
    }

    /// Whether this provider compiles its partitions ([`Self::compile`]) instead of handing
    /// out a kernel per node.
    fn compiles(&self) -> bool {
        false
    }

    /// Compiles one partition of nodes it claimed (only called when `compiles`).
    fn compile(
        &self,
        _model: &Model,
        spec: &PartitionSpec,
    ) -> Result<Box<dyn CompiledPartition>, String> {
        Err(format!(
            "{} does not compile partitions ({} nodes)",
            self.name(),
            spec.nodes.len()
        ))
    }

    /// Claims nodes among `offered` (not yet assigned to a provider of higher priority).
    fn get_capability(&self, model: &Model, offered: &[NodeId]) -> Capability;

    /// The kernel for a node this provider claimed.
    fn kernel(&self, node: &Node) -> Option<KernelFn>;

    /// A kernel prepared once for a node it claimed (say, with pre-packed constant weights),
    /// given the node's opset and its inputs that are constants; `None` runs `kernel`.
    fn prepare(
        &self,
        _node: &Node,
        _opset: i64,
        _constants: &[Option<&Tensor>],
        _precision: Precision,
    ) -> Option<Box<dyn PreparedKernel>> {
        None
    }
}

/// Prepares a node with the CPU kernels' preparation, when its op has one.
pub fn cpu_prepare(
    node: &Node,
    opset: i64,
    constants: &[Option<&Tensor>],
    precision: Precision,
) -> Option<Box<dyn PreparedKernel>> {
    let domain = if node.domain == "ai.onnx" {
        ""
    } else {
        &node.domain
    };
    let prepare = kiln_ops::prepare_fn(domain, &node.op_type)?;
    prepare(&kiln_ops::PrepareCtx {
        op_type: &node.op_type,
        domain,
        opset,
        attrs: &node.attrs,
        constants: constants.to_vec(),
        absent: node
            .inputs()
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.is_none().then_some(i))
            .collect(),
        precision,
    })
}

/// Why the CPU kernels cannot run `node`, if they cannot.
pub fn cpu_support(model: &Model, node: &Node) -> Result<KernelFn, String> {
    let domain = if node.domain == "ai.onnx" {
        ""
    } else {
        &node.domain
    };
    let Some(def) = kiln_ops::op_def(domain, &node.op_type) else {
        return Err(format!("kiln does not know the op {}", node.op_key()));
    };
    let Some(run) = def.run else {
        return Err(format!("no CPU kernel for {}", node.op_key()));
    };
    if let Some(check) = def.check {
        let opset = model.opset(domain).unwrap_or(1);
        check(&node.attrs, opset)?;
    }
    // A node with a body runs every node of it on the CPU too.
    for body in node.subgraphs() {
        for (_, inner) in body.nodes() {
            cpu_support(model, inner).map_err(|e| format!("its subgraph '{}': {e}", body.name))?;
        }
    }
    Ok(run)
}

/// kiln's CPU provider.
#[derive(Debug, Default)]
pub struct CpuProvider;

impl ExecutionProvider for CpuProvider {
    fn name(&self) -> &str {
        "cpu"
    }

    fn get_capability(&self, model: &Model, offered: &[NodeId]) -> Capability {
        let mut cap = Capability::default();
        for &id in offered {
            match cpu_support(model, model.graph.node(id)) {
                Ok(_) => cap.claimed.push(id),
                Err(reason) => cap.declined.push((id, reason)),
            }
        }
        cap
    }

    fn kernel(&self, node: &Node) -> Option<KernelFn> {
        let domain = if node.domain == "ai.onnx" {
            ""
        } else {
            &node.domain
        };
        kiln_ops::kernel_fn(domain, &node.op_type)
    }

    fn prepare(
        &self,
        node: &Node,
        opset: i64,
        constants: &[Option<&Tensor>],
        precision: Precision,
    ) -> Option<Box<dyn PreparedKernel>> {
        cpu_prepare(node, opset, constants, precision)
    }
}

/// A provider that claims only the listed op types (keys as `kiln inspect` prints them), and
/// runs them with kiln's CPU kernels. Used to test partitioning.
#[derive(Debug)]
pub struct OpTypeProvider {
    name: String,
    ops: BTreeSet<String>,
}

impl OpTypeProvider {
    pub fn new(name: &str, ops: &[&str]) -> OpTypeProvider {
        OpTypeProvider {
            name: name.to_string(),
            ops: ops.iter().map(|s| s.to_string()).collect(),
        }
    }
}

impl ExecutionProvider for OpTypeProvider {
    fn name(&self) -> &str {
        &self.name
    }

    fn get_capability(&self, model: &Model, offered: &[NodeId]) -> Capability {
        let mut cap = Capability::default();
        for &id in offered {
            let node = model.graph.node(id);
            if !self.ops.contains(&node.op_key()) {
                cap.declined
                    .push((id, format!("{} is not among its op types", node.op_key())));
                continue;
            }
            match cpu_support(model, node) {
                Ok(_) => cap.claimed.push(id),
                Err(reason) => cap.declined.push((id, reason)),
            }
        }
        cap
    }

    fn kernel(&self, node: &Node) -> Option<KernelFn> {
        CpuProvider.kernel(node)
    }

    fn prepare(
        &self,
        node: &Node,
        opset: i64,
        constants: &[Option<&Tensor>],
        precision: Precision,
    ) -> Option<Box<dyn PreparedKernel>> {
        cpu_prepare(node, opset, constants, precision)
    }
}
