//! kiln's GPU execution provider on `wgpu` (Vulkan, Metal, DX12, GL; headless). It claims the
//! float32 nodes it has WGSL kernels for — FusedConv with `Z` included — with a reason for
//! every node it declines, and compiles each partition into one [`program::Program`] whose
//! intermediates stay on the device: only partition inputs and outputs cross to the host.
//!
//! Options (`--ep wgpu:fused_conv=off,cpu` on the command line, [`WgpuOptions`] in Rust):
//! `fused_conv=on|off` turns claiming of FusedConv nodes off (to measure what a provider that
//! cannot run them leaves on the CPU). The adapter comes from the environment: `WGPU_BACKEND`
//! (wgpu's own: `vulkan`, `metal`, `dx12`, `gl`) and `KILN_WGPU_ADAPTER` (a part of the
//! adapter's name, such as `llvmpipe` or `nvidia`).
use std::sync::{Arc, OnceLock};

use kiln_ir::{Model, Node, NodeId};
use kiln_ops::KernelFn;
use kiln_runtime::{Capability, CompiledPartition, ExecutionProvider, PartitionSpec};

pub mod device;
mod ops;
pub mod program;
mod support;

pub use device::Gpu;

#[derive(Debug, thiserror::Error)]
pub enum WgpuError {
    #[error("wgpu provider: no usable GPU adapter: {0}")]
    NoAdapter(String),
    #[error("wgpu provider: {0}")]
    Device(String),
    #[error("wgpu provider: {0}")]
    Options(String),
}

#[derive(Debug, Clone)]
pub struct WgpuOptions {
    /// Claim FusedConv nodes (on by default).
    pub fused_conv: bool,
}

impl Default for WgpuOptions {
    fn default() -> Self {
        WgpuOptions { fused_conv: true }
    }
}

impl WgpuOptions {
    /// Parses `key=value` pairs separated by `:` (the part after `wgpu:` in `--ep`).
    pub fn parse(spec: &str) -> Result<WgpuOptions, WgpuError> {
        let mut o = WgpuOptions::default();
        for kv in spec.split(':').map(str::trim).filter(|s| !s.is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| WgpuError::Options(format!("option '{kv}' is not key=value")))?;
            match k {
                "fused_conv" => {
                    o.fused_conv = match v {
                        "on" | "true" | "1" => true,
                        "off" | "false" | "0" => false,
                        _ => {
                            return Err(WgpuError::Options(format!(
                                "fused_conv={v}: expected on or off"
                            )))
                        }
                    }
                }
                _ => {
                    return Err(WgpuError::Options(format!(
                        "unknown option '{k}' (wgpu has: fused_conv)"
                    )))
                }
            }
        }
        Ok(o)
    }
}

/// One device per process, opened on first use and shared by every session.
fn shared_gpu() -> Result<Arc<Gpu>, WgpuError> {
    static GPU: OnceLock<Result<Arc<Gpu>, String>> = OnceLock::new();
    GPU.get_or_init(|| Gpu::open().map(Arc::new).map_err(|e| e.to_string()))
        .clone()
        .map_err(WgpuError::NoAdapter)
}

#[derive(Debug)]
pub struct WgpuProvider {
    gpu: Arc<Gpu>,
    opts: WgpuOptions,
}

impl WgpuProvider {
    /// The provider on the environment's adapter; fails when there is none.
    pub fn new(opts: WgpuOptions) -> Result<WgpuProvider, WgpuError> {
        Ok(WgpuProvider {
            gpu: shared_gpu()?,
            opts,
        })
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// Why this provider would decline `node`, if it would.
    pub fn support(&self, model: &Model, node: &Node) -> Result<(), String> {
        support::check(model, node, self.gpu.max_binding(), self.opts.fused_conv)
    }
}

impl ExecutionProvider for WgpuProvider {
    fn name(&self) -> &str {
        "wgpu"
    }

    fn device(&self) -> Option<String> {
        Some(self.gpu.describe())
    }

    fn get_capability(&self, model: &Model, offered: &[NodeId]) -> Capability {
        let mut cap = Capability::default();
        for &id in offered {
            match self.support(model, model.graph.node(id)) {
                Ok(()) => cap.claimed.push(id),
                Err(reason) => cap.declined.push((id, reason)),
            }
        }
        cap
    }

    fn kernel(&self, _node: &Node) -> Option<KernelFn> {
        None
    }

    fn compiles(&self) -> bool {
        true
    }

    fn compile(
        &self,
        model: &Model,
        spec: &PartitionSpec,
    ) -> Result<Box<dyn CompiledPartition>, String> {
        Ok(Box::new(program::Program::new(
            self.gpu.clone(),
            model,
            spec,
        )?))
    }
}
