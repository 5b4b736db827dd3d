//! `Session`: a model made ready to run with a set of execution providers. Sessions are
//! `Send + Sync`; `run` takes `&self`, so many threads may run one session at once.
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use kiln_ir::{DataType, Dim, Model, ValueId};
use kiln_ops::Value;

use crate::executor::{partition_spec, Plan, Unit};
use crate::memory::{Budget, LimitKind, MemLimit};
use crate::partition::{assign, assign_lenient, Assignment};
use crate::{CpuProvider, ExecutionProvider, RunStats, RuntimeError};

pub use kiln_kernels::Precision;
pub use kiln_opt::Level;

#[derive(Clone)]
pub struct SessionOptions {
    /// Threads for kernels; `None` uses all cores.
    pub threads: Option<usize>,
    pub level: Level,
    /// Providers in priority order. The CPU provider is appended as the fallback when absent.
    pub providers: Vec<Arc<dyn ExecutionProvider>>,
    /// Most bytes of intermediates one run may hold at once; `None` reads the environment's
    /// limit at every run (`memory::environment_limit`: the memory available, the headroom
    /// under `RLIMIT_AS`/`RLIMIT_DATA` and under the memory cgroup's limit, the smallest). A run
    /// that would exceed it is refused before it allocates.
    pub memory_limit: Option<u64>,
    /// The arithmetic of matrix products: [`Precision::Bf16`] rounds weights (once) and
    /// activations to bfloat16 at MatMul and Attention's projections, with f32 sums; refused
    /// where the CPU has no bfloat16 product.
    pub precision: Precision,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            threads: None,
            level: Level::All,
            providers: Vec::new(),
            memory_limit: None,
            precision: Precision::F32,
        }
    }
}

/// A graph input as the session checks it.
#[derive(Debug, Clone)]
pub struct InputSpec {
    pub name: String,
    pub dtype: Option<DataType>,
    pub shape: Option<Vec<Dim>>,
    id: ValueId,
}

pub struct Session {
    model: Model,
    opsets: Vec<(String, i64)>,
    providers: Vec<Arc<dyn ExecutionProvider>>,
    assignment: Assignment,
    plan: Plan,
    pool: rayon::ThreadPool,
    inputs: Vec<InputSpec>,
    /// Inputs with a default value (overridable initializers) and that value.
    overridable: Vec<(InputSpec, Arc<Value>)>,
    budget: Budget,
    report: kiln_opt::OptimizeReport,
    linger: Arc<Linger>,
    /// Runs in progress.
    running: std::sync::atomic::AtomicUsize,
}

/// Optimizes and partitions a model for `providers`: the basic passes, then partitioning, then
/// the extended passes on the nodes of the providers they are valid for, then partitioning
/// again (fused nodes go to the provider whose nodes they replaced). `in_session` allows
/// kiln-only fusions (never for a model that will be saved) and requires every node to find a
/// provider; a model only being saved may keep nodes kiln cannot run.
pub fn prepare(
    mut model: Model,
    providers: &[Arc<dyn ExecutionProvider>],
    level: Level,
    portable: bool,
    in_session: bool,
    allow_unknown_ops: bool,
) -> Result<(Model, Assignment, kiln_opt::OptimizeReport), RuntimeError> {
    // A session refuses unknown ops when it partitions (no provider claims them, and that
    // error says why); saving refuses them here unless asked to keep them.
    crate::validate(&model, allow_unknown_ops || in_session)?;
    // A node whose types contradict its op (a Conv weight of rank 2) is an error naming the
    // node before anything is rewritten, as ONNX Runtime's load-time inference makes it.
    kiln_ops::infer_shapes(&mut model)?;
    let opt = kiln_opt::Optimizer::default();
    let mut report = kiln_opt::OptimizeReport::default();
    let nobody = |_: kiln_ir::NodeId| None;
    if level >= Level::Basic {
        report.merge(opt.run_phase(&mut model, Level::Basic, &nobody, portable, in_session)?);
    }
    let partition = |m: &Model| -> Result<Assignment, RuntimeError> {
        if in_session {
            assign(m, providers)
        } else {
            Ok(assign_lenient(m, providers))
        }
    };
    // Providers judge nodes by their types and shapes, which a model may not state (and no
    // pass has inferred at --level disabled). Inference only fills in what is unknown, and a
    // graph it cannot fully type is still partitioned on what it does know.
    let _ = kiln_ops::infer_shapes(&mut model);
    let mut assignment = partition(&model)?;
    if level >= Level::Extended {
        let names: Vec<String> = providers.iter().map(|p| p.name().to_string()).collect();
        // Nodes an extended pass creates are assigned on the next partitioning; a few rounds
        // let later passes build on them (QuickGelu, then Conv+QuickGelu).
        let mut phase = kiln_opt::OptimizeReport::default();
        for _ in 0..4 {
            let before = assignment.clone();
            let provider_of = |n: kiln_ir::NodeId| before.ep(n).map(|i| names[i].clone());
            let mut r = opt.run_phase(
                &mut model,
                Level::Extended,
                &provider_of,
                portable,
                in_session,
            )?;
            let applied: usize = r.passes.iter().map(|p| p.applied).sum();
            // Counts add up over the rounds; the declines that stand are the last round's.
            for p in &mut r.passes {
                if let Some(prev) = phase.passes.iter().find(|x| x.name == p.name) {
                    p.applied += prev.applied;
                }
            }
            r.iterations += phase.iterations;
            phase = r;
            assignment = partition(&model)?;
            if applied == 0 {
                break;
            }
        }
        report.merge(phase);
    }
    // The blocked layout last, on the final assignment: it is machine-specific, so only a
    // session gets it (the pass checks `in_session` too).
    if level >= Level::All && in_session && !portable {
        let names: Vec<String> = providers.iter().map(|p| p.name().to_string()).collect();
        let before = assignment.clone();
        let provider_of = |n: kiln_ir::NodeId| before.ep(n).map(|i| names[i].clone());
        let r = opt.run_phase(&mut model, Level::All, &provider_of, portable, in_session)?;
        if r.passes.iter().any(|p| p.applied > 0) {
            assignment = partition(&model)?;
        }
        report.merge(r);
    }
    Ok((model, assignment, report))
}

impl Session {
    pub fn from_path(path: &Path, opts: SessionOptions) -> Result<Session, RuntimeError> {
        Session::from_model(Model::load(path)?, opts)
    }

    pub fn from_bytes(bytes: &[u8], opts: SessionOptions) -> Result<Session, RuntimeError> {
        Session::from_model(Model::from_bytes(bytes)?, opts)
    }

    pub fn from_model(model: Model, opts: SessionOptions) -> Result<Session, RuntimeError> {
        if opts.precision == Precision::Bf16 && !kiln_kernels::bf16::available() {
            return Err(RuntimeError::Options(
                "precision bf16 needs a CPU with AVX512-BF16 (AMX-BF16 CPUs have it too); this \
                 one has neither"
                    .into(),
            ));
        }
        let mut providers = opts.providers.clone();
        if !providers.iter().any(|p| p.name() == "cpu") {
            providers.push(Arc::new(CpuProvider));
        }
        let (model, assignment, report) =
            prepare(model, &providers, opts.level, false, true, false)?;
        let opsets: Vec<(String, i64)> = model
            .opsets
            .iter()
            .map(|o| (o.domain.clone(), o.version))
            .collect();
        let g = &model.graph;
        let ep_of = |id| assignment.ep(id).expect("every node is assigned");
        let mut units = Vec::with_capacity(assignment.order.len());
        for part in &assignment.partitions {
            let p = &providers[part.ep];
            if p.compiles() {
                let spec = partition_spec(g, &part.nodes);
                let unit = p
                    .compile(&model, &spec)
                    .map_err(|reason| RuntimeError::Node {
                        node: format!(
                            "{} partition of {} nodes from {}",
                            p.name(),
                            part.nodes.len(),
                            g.describe(part.nodes[0])
                        ),
                        reason,
                    })?;
                units.push(Unit::Compiled(spec, unit));
            } else {
                units.extend(part.nodes.iter().map(|&n| Unit::Node(n)));
            }
        }
        let plan = Plan::new(
            g,
            &opsets,
            units,
            &|id| {
                let ep = ep_of(id);
                providers[ep]
                    .kernel(g.node(id))
                    .ok_or_else(|| RuntimeError::Node {
                        node: g.describe(id),
                        reason: format!("provider {} has no kernel for it", providers[ep].name()),
                    })
            },
            &|id, opset, consts| {
                providers[ep_of(id)].prepare(g.node(id), opset, consts, opts.precision)
            },
        )?;
        let spec = |id: ValueId| {
            let v = g.value(id);
            let ty = v.declared.as_ref().or(v.ty.as_ref());
            InputSpec {
                name: v.name.clone(),
                dtype: ty.and_then(|t| t.dtype()),
                shape: ty.and_then(|t| t.shape().map(|s| s.to_vec())),
                id,
            }
        };
        let inputs = g.real_inputs().map(spec).collect();
        let overridable = g
            .overridable_inputs()
            .filter_map(|id| {
                let t = g.value(id).default.as_ref()?;
                Some((
                    spec(id),
                    Arc::new(Value::Tensor(kiln_ops::Tensor::from_ir(t))),
                ))
            })
            .collect();
        let mut pool = rayon::ThreadPoolBuilder::new();
        if let Some(n) = opts.threads {
            if n == 0 {
                return Err(RuntimeError::Options("threads must be at least 1".into()));
            }
            pool = pool.num_threads(n);
        }
        let pool = pool
            .build()
            .map_err(|e| RuntimeError::Options(format!("cannot start threads: {e}")))?;
        Ok(Session {
            model,
            opsets,
            providers,
            assignment,
            plan,
            pool,
            inputs,
            overridable,
            budget: Budget::new(
                opts.memory_limit
                    .map_or(LimitKind::Environment, LimitKind::Fixed),
            ),
            report,
            linger: Arc::default(),
            running: Default::default(),
        })
    }

    /// What the optimizer did when the session was made.
    pub fn optimize_report(&self) -> &kiln_opt::OptimizeReport {
        &self.report
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The memory limit a run starting now is checked against, if any (the environment's is
    /// read anew each time).
    pub fn memory_limit(&self) -> Option<MemLimit> {
        self.budget.current()
    }

    /// The inputs a run must feed.
    pub fn inputs(&self) -> &[InputSpec] {
        &self.inputs
    }

    /// Inputs a run may feed to replace their default (initializers the model also lists as
    /// inputs, as ONNX Runtime's overridable initializers).
    pub fn overridable_inputs(&self) -> impl Iterator<Item = &InputSpec> {
        self.overridable.iter().map(|(s, _)| s)
    }

    pub fn output_names(&self) -> Vec<String> {
        let g = &self.model.graph;
        g.outputs()
            .iter()
            .map(|o| g.value(*o).name.clone())
            .collect()
    }

    /// Compiled partitions that fell back to the CPU for some input shapes (their lowering or
    /// device failed), with the reason each; each was also warned about on stderr once.
    pub fn fallbacks(&self) -> Vec<String> {
        self.plan.fallbacks()
    }

    /// The nodes prepared once at session creation (e.g. weights packed), in run order.
    pub fn prepared_nodes(&self) -> Vec<kiln_ir::NodeId> {
        self.plan.prepared_nodes()
    }

    pub fn providers(&self) -> &[Arc<dyn ExecutionProvider>] {
        &self.providers
    }

    pub fn assignment(&self) -> &Assignment {
        &self.assignment
    }

    /// Checks the memory a run on these input shapes (by name) needs now, ahead of the runs:
    /// later runs on shapes no larger (a generator's decode steps against its max-length step)
    /// are then checked against that peak without walking the graph each time.
    pub fn warm_memory_check(&self, shapes: &[(&str, Vec<usize>)]) {
        let find = |name: &str| {
            shapes
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, s)| s.clone())
        };
        let mut fed = Vec::with_capacity(shapes.len());
        for spec in &self.inputs {
            match find(&spec.name) {
                Some(s) => fed.push((spec.id, s, true)),
                None => return,
            }
        }
        for (spec, default) in &self.overridable {
            match (find(&spec.name), default.tensor()) {
                (Some(s), _) => fed.push((spec.id, s, true)),
                (None, Some(t)) => fed.push((spec.id, t.shape.clone(), false)),
                (None, None) => {}
            }
        }
        self.budget.warm(&self.model, &self.assignment.order, &fed);
    }

    /// Runs the model once. Inputs are by name; outputs come in the graph's order.
    pub fn run(&self, inputs: Vec<(String, Value)>) -> Result<Vec<(String, Value)>, RuntimeError> {
        self.run_with_stats(inputs).map(|(o, _)| o)
    }

    pub fn run_with_stats(
        &self,
        inputs: Vec<(String, Value)>,
    ) -> Result<(Vec<(String, Value)>, RunStats), RuntimeError> {
        self.run_inner(inputs, None)
    }

    /// Runs the model once and also returns the seconds each node's kernel took, in run order.
    pub fn run_profiled(
        &self,
        inputs: Vec<(String, Value)>,
    ) -> Result<(Vec<(String, Value)>, Vec<(kiln_ir::NodeId, f64)>), RuntimeError> {
        let mut prof = Vec::new();
        let (outs, _) = self.run_inner(inputs, Some(&mut prof))?;
        Ok((outs, prof))
    }

    fn run_inner(
        &self,
        inputs: Vec<(String, Value)>,
        profile: Option<&mut Vec<(kiln_ir::NodeId, f64)>>,
    ) -> Result<(Vec<(String, Value)>, RunStats), RuntimeError> {
        let mut given: HashMap<String, Value> = HashMap::new();
        for (name, v) in inputs {
            if !self
                .inputs
                .iter()
                .chain(self.overridable_inputs())
                .any(|s| s.name == name)
            {
                return Err(RuntimeError::Input {
                    name,
                    reason: "the model has no such input".into(),
                });
            }
            if given.insert(name.clone(), v).is_some() {
                return Err(RuntimeError::Input {
                    name,
                    reason: "given twice".into(),
                });
            }
        }
        let mut bound: HashMap<String, i64> = HashMap::new();
        let mut feeds = Vec::with_capacity(self.inputs.len());
        for spec in &self.inputs {
            let v = given
                .remove(&spec.name)
                .ok_or_else(|| RuntimeError::Input {
                    name: spec.name.clone(),
                    reason: "missing".into(),
                })?;
            check_input(spec, &v, &mut bound).map_err(|reason| RuntimeError::Input {
                name: spec.name.clone(),
                reason,
            })?;
            feeds.push((spec.id, Arc::new(v)));
        }
        for (spec, default) in &self.overridable {
            match given.remove(&spec.name) {
                Some(v) => {
                    check_input(spec, &v, &mut bound).map_err(|reason| RuntimeError::Input {
                        name: spec.name.clone(),
                        reason,
                    })?;
                    feeds.push((spec.id, Arc::new(v)));
                }
                None => feeds.push((spec.id, default.clone())),
            }
        }
        {
            let b = &self.budget;
            // Defaults left in place are already resident (they are the model's weights).
            let shapes: Vec<(ValueId, Vec<usize>, bool)> = feeds
                .iter()
                .filter_map(|(id, v)| {
                    let counted = !self
                        .overridable
                        .iter()
                        .any(|(s, d)| s.id == *id && Arc::ptr_eq(d, v));
                    v.tensor().map(|t| (*id, t.shape.clone(), counted))
                })
                .collect();
            b.check(&self.model, &self.assignment.order, &shapes)
                .map_err(RuntimeError::Memory)?;
        }
        let g = &self.model.graph;
        // Runs from several threads at once keep the workers busy by themselves; keeping them
        // awake with spinner jobs then costs latency instead: a worker spinning for run A picks
        // up run B inside that job, and A cannot return before B is done (8 concurrent clients
        // of a server: p99 1.1 s against a p50 of 37 ms).
        let alone = self
            .running
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel)
            == 0;
        // Counted down however the run ends (a panicking kernel included).
        struct Running<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Running<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
            }
        }
        let running = Running(&self.running);
        let ran = self.pool.install(|| {
            if alone {
                with_awake_workers(|| self.plan.run(g, &self.opsets, feeds, None, profile))
            } else {
                self.plan.run(g, &self.opsets, feeds, None, profile)
            }
        });
        drop(running);
        self.linger.after_run(&self.pool);
        let (outs, stats) = ran?;
        let names = self.output_names();
        Ok((
            names
                .into_iter()
                .zip(outs)
                .map(|(n, v)| (n, Arc::try_unwrap(v).unwrap_or_else(|a| (*a).clone())))
                .collect(),
            stats,
        ))
    }
}

/// Checks a fed value against the declared input type, binding named dims as it goes so that
/// one name means one size across all inputs.
fn check_input(
    spec: &InputSpec,
    v: &Value,
    bound: &mut HashMap<String, i64>,
) -> Result<(), String> {
    let Value::Tensor(t) = v else {
        // Sequence and optional inputs are checked by the kernels that read them.
        return Ok(());
    };
    if let Some(dt) = spec.dtype {
        if t.dtype() != dt {
            return Err(format!("expected {dt}, got {}", t.dtype()));
        }
    }
    let Some(shape) = &spec.shape else {
        return Ok(());
    };
    if shape.len() != t.rank() {
        return Err(format!(
            "expected rank {} ({}), got shape {:?}",
            shape.len(),
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("x"),
            t.shape
        ));
    }
    for (i, (d, &n)) in shape.iter().zip(&t.shape).enumerate() {
        let n = n as i64;
        match d {
            Dim::Known(k) if *k != n => {
                return Err(format!(
                    "dimension {i} must be {k}, got {n} (shape {:?})",
                    t.shape
                ))
            }
            Dim::Sym(_) => {
                let syms = d.symbols();
                if syms.len() == 1 && d.to_string() == *syms[0] {
                    let name = syms[0].to_string();
                    match bound.get(&name) {
                        Some(&b) if b != n => {
                            return Err(format!(
                                "dimension {i} ('{name}') is {n}, but another input set '{name}' to {b}"
                            ))
                        }
                        _ => {
                            bound.insert(name, n);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// How long the workers stay awake after a run for the next one.
const LINGER_NS: u64 = 100_000;

/// Workers kept awake after a run, picking up the next run the moment it is handed over: a
/// caller that runs small models in a loop (a Python client, a server) otherwise waits for a
/// sleeping worker to wake at every run, which was 20-25 µs of the 28 µs a tiny model's run
/// cost from Python (2-core VM). ONNX Runtime's pool spins before it sleeps in the same way.
#[derive(Default)]
struct Linger {
    /// Nanoseconds after `epoch` until which the workers stay awake.
    deadline: std::sync::atomic::AtomicU64,
    /// Workers staying awake now.
    active: std::sync::atomic::AtomicUsize,
    epoch: std::sync::OnceLock<std::time::Instant>,
}

impl Linger {
    fn now(&self) -> u64 {
        let epoch = self.epoch.get_or_init(std::time::Instant::now);
        epoch.elapsed().as_nanos() as u64
    }

    /// Extends the wakeful window and starts a waiting job on every worker not already in one.
    fn after_run(self: &Arc<Self>, pool: &rayon::ThreadPool) {
        use std::sync::atomic::Ordering;
        self.deadline
            .store(self.now() + LINGER_NS, Ordering::Release);
        let n = pool.current_num_threads();
        let mut active = self.active.load(Ordering::Acquire);
        while active < n {
            match self.active.compare_exchange(
                active,
                active + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    let me = Arc::clone(self);
                    pool.spawn(move || {
                        while me.now() < me.deadline.load(Ordering::Acquire) {
                            if rayon::yield_now() != Some(rayon::Yield::Executed) {
                                std::hint::spin_loop();
                            }
                        }
                        me.active.fetch_sub(1, Ordering::AcqRel);
                    });
                    active += 1;
                }
                Err(now) => active = now,
            }
        }
    }
}

/// Runs `f` on the current worker while the pool's other workers stay awake, running any
/// job `f` spreads out as soon as it appears. A rayon worker with nothing to do falls asleep
/// after a few microseconds, and waking it takes tens: a node that spends 20 µs on one
/// thread (a reshape, an allocation) then ran the next node's parallel loop on one thread
/// for its first 50 µs (measured on a 2-core VM), most of a small node's time. ONNX
/// Runtime's pool spins between nodes the same way.
fn with_awake_workers<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    use std::sync::atomic::{AtomicBool, Ordering};
    if rayon::current_num_threads() < 2 {
        return f();
    }
    let done = AtomicBool::new(false);
    let mut out = None;
    rayon::scope(|s| {
        for _ in 1..rayon::current_num_threads() {
            s.spawn(|_| {
                while !done.load(Ordering::Acquire) {
                    if rayon::yield_now() != Some(rayon::Yield::Executed) {
                        std::hint::spin_loop();
                    }
                }
            });
        }
        // Set on the way out even if `f` panics, or the spinners would never return.
        struct Done<'a>(&'a AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Release);
            }
        }
        let _done = Done(&done);
        out = Some(f());
    });
    out.expect("the run finished")
}
