//! The GPU itself: adapter choice (by `WGPU_BACKEND`, and by name with `KILN_WGPU_ADAPTER`),
//! a device opened with explicitly requested limits, the compiled pipelines (each WGSL kernel
//! compiled once per device), and error scopes that turn wgpu validation errors into `Err`s.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::WgpuError;

/// The WGSL kernels; each is `common.wgsl`, its own source, and the entry point it shares:
/// `tile.wgsl` for the matrix kernels, `flat.wgsl` for one thread per item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    Unary,
    Binary,
    Copy,
    Fill,
    Conv,
    ConvDirect,
    Gemm,
    Pool,
    Reduce,
    Softmax,
    Resize,
    Affine,
    ReduceWg,
    SoftmaxStats,
    SoftmaxApply,
    PoolWg,
}

impl Kernel {
    fn source(self) -> String {
        let common = include_str!("wgsl/common.wgsl");
        let tile = include_str!("wgsl/tile.wgsl");
        let own = match self {
            Kernel::Unary => include_str!("wgsl/unary.wgsl"),
            Kernel::Binary => include_str!("wgsl/binary.wgsl"),
            Kernel::Copy => include_str!("wgsl/copy.wgsl"),
            Kernel::Fill => include_str!("wgsl/fill.wgsl"),
            Kernel::Conv => include_str!("wgsl/conv.wgsl"),
            Kernel::ConvDirect => include_str!("wgsl/conv_direct.wgsl"),
            Kernel::Gemm => include_str!("wgsl/gemm.wgsl"),
            Kernel::Pool => concat!(
                include_str!("wgsl/pool_tap.wgsl"),
                include_str!("wgsl/pool.wgsl")
            ),
            Kernel::Reduce => concat!(
                include_str!("wgsl/reduce_index.wgsl"),
                include_str!("wgsl/reduce.wgsl")
            ),
            Kernel::Softmax => include_str!("wgsl/softmax.wgsl"),
            Kernel::Resize => include_str!("wgsl/resize.wgsl"),
            Kernel::Affine => include_str!("wgsl/affine.wgsl"),
            Kernel::ReduceWg => concat!(
                include_str!("wgsl/reduce_index.wgsl"),
                include_str!("wgsl/reduce_wg.wgsl")
            ),
            Kernel::SoftmaxStats => include_str!("wgsl/softmax_stats.wgsl"),
            Kernel::SoftmaxApply => include_str!("wgsl/softmax_apply.wgsl"),
            Kernel::PoolWg => concat!(
                include_str!("wgsl/pool_tap.wgsl"),
                include_str!("wgsl/pool_wg.wgsl")
            ),
        };
        let entry = match self {
            Kernel::Conv | Kernel::Gemm => tile,
            // Workgroup kernels with an entry point of their own.
            Kernel::ReduceWg | Kernel::SoftmaxStats | Kernel::PoolWg => "",
            _ => include_str!("wgsl/flat.wgsl"),
        };
        format!("{common}\n{own}\n{entry}")
    }

    pub const ALL: [Kernel; 16] = [
        Kernel::Unary,
        Kernel::Binary,
        Kernel::Copy,
        Kernel::Fill,
        Kernel::Conv,
        Kernel::ConvDirect,
        Kernel::Gemm,
        Kernel::Pool,
        Kernel::Reduce,
        Kernel::Softmax,
        Kernel::Resize,
        Kernel::Affine,
        Kernel::ReduceWg,
        Kernel::SoftmaxStats,
        Kernel::SoftmaxApply,
        Kernel::PoolWg,
    ];
}

pub struct Pipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

/// An open device and what kiln keeps per device.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    pub limits: wgpu::Limits,
    pipelines: Mutex<HashMap<Kernel, Arc<Pipeline>>>,
    /// wgpu keeps one stack of error scopes per device: regions that push scopes must not
    /// interleave across threads, so they hold this lock (and never nest).
    scopes: Mutex<()>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gpu({})", self.describe())
    }
}

impl Gpu {
    /// Opens the adapter the environment picks: `WGPU_BACKEND` narrows the backends (as in
    /// wgpu), `KILN_WGPU_ADAPTER` picks the first adapter whose name contains it
    /// (case-insensitive); otherwise the high-performance default.
    pub fn open() -> Result<Gpu, WgpuError> {
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::all());
        let adapters = pollster::block_on(instance.enumerate_adapters(backends));
        let names: Vec<String> = adapters
            .iter()
            .map(|a| {
                let i = a.get_info();
                format!("{} ({:?})", i.name, i.backend)
            })
            .collect();
        let wanted = std::env::var("KILN_WGPU_ADAPTER")
            .ok()
            .filter(|s| !s.is_empty());
        let adapter = match &wanted {
            Some(w) => {
                let w = w.to_lowercase();
                adapters
                    .into_iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&w))
                    .ok_or_else(|| {
                        WgpuError::NoAdapter(format!(
                            "no adapter's name contains KILN_WGPU_ADAPTER='{w}' (adapters: {})",
                            if names.is_empty() {
                                "none".to_string()
                            } else {
                                names.join(", ")
                            }
                        ))
                    })?
            }
            None => pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false,
            }))
            .map_err(|e| {
                WgpuError::NoAdapter(format!(
                    "{e} (backends {backends:?}; is a Vulkan driver such as mesa-vulkan-drivers installed?)"
                ))
            })?,
        };
        let info = adapter.get_info();
        // Ask for what the adapter offers of the limits kernels depend on, explicitly: the
        // defaults cap storage bindings at 128 MiB whatever the GPU can do.
        let offered = adapter.limits();
        let limits = wgpu::Limits {
            max_storage_buffer_binding_size: offered.max_storage_buffer_binding_size,
            max_buffer_size: offered.max_buffer_size,
            max_storage_buffers_per_shader_stage: offered.max_storage_buffers_per_shader_stage,
            max_compute_workgroup_storage_size: offered.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: offered.max_compute_invocations_per_workgroup,
            max_compute_workgroups_per_dimension: offered.max_compute_workgroups_per_dimension,
            ..wgpu::Limits::downlevel_defaults()
        };
        let need = |what: &str, have: u64, want: u64| -> Result<(), WgpuError> {
            if have < want {
                Err(WgpuError::NoAdapter(format!(
                    "adapter {} offers {what} = {have}, kiln's kernels need {want}",
                    info.name
                )))
            } else {
                Ok(())
            }
        };
        need(
            "max_compute_invocations_per_workgroup",
            limits.max_compute_invocations_per_workgroup as u64,
            256,
        )?;
        need(
            "max_compute_workgroup_storage_size",
            limits.max_compute_workgroup_storage_size as u64,
            8192,
        )?;
        need(
            "max_storage_buffers_per_shader_stage",
            limits.max_storage_buffers_per_shader_stage as u64,
            6,
        )?;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("kiln"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| WgpuError::NoAdapter(format!("cannot open {}: {e}", info.name)))?;
        // Errors are caught by error scopes where kiln can act on them; anything else is
        // reported, never a panic inside wgpu's default handler.
        device.on_uncaptured_error(Arc::new(|e| {
            eprintln!("warning: wgpu: {e}");
        }));
        Ok(Gpu {
            device,
            queue,
            info,
            limits,
            pipelines: Mutex::new(HashMap::new()),
            scopes: Mutex::new(()),
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?}, driver {} {})",
            self.info.name,
            self.info.backend,
            self.info.device_type,
            self.info.driver,
            self.info.driver_info
        )
    }

    /// The largest tensor one binding can hold, in bytes.
    pub fn max_binding(&self) -> u64 {
        self.limits
            .max_storage_buffer_binding_size
            .min(self.limits.max_buffer_size)
    }

    /// The compiled pipeline of a kernel (compiled on first use).
    pub fn pipeline(&self, k: Kernel) -> Result<Arc<Pipeline>, WgpuError> {
        if let Some(p) = self.pipelines.lock().expect("pipelines").get(&k) {
            return Ok(p.clone());
        }
        let _one = self.scopes.lock().expect("error scopes");
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&format!("{k:?}")),
                source: wgpu::ShaderSource::Wgsl(k.source().into()),
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&format!("{k:?}")),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(WgpuError::Device(format!("compiling kernel {k:?}: {e}")));
        }
        let layout = pipeline.get_bind_group_layout(0);
        let p = Arc::new(Pipeline { pipeline, layout });
        self.pipelines
            .lock()
            .expect("pipelines")
            .insert(k, p.clone());
        Ok(p)
    }

    /// Runs `f` and returns the first validation or out-of-memory error wgpu raised in it.
    /// `f` must not call `checked` or `pipeline` itself.
    pub fn checked<T>(&self, what: &str, f: impl FnOnce() -> T) -> Result<T, WgpuError> {
        let _one = self.scopes.lock().expect("error scopes");
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let v = pollster::block_on(val.pop());
        let o = pollster::block_on(oom.pop());
        match v.or(o) {
            Some(e) => Err(WgpuError::Device(format!("{what}: {e}"))),
            None => Ok(out),
        }
    }
}
