//! A compiled partition. At compile time the nodes are copied out of the graph and every
//! float constant they read is uploaded once. Per set of input shapes (cached), shapes are
//! inferred with kiln's own rules, each node is lowered to dispatches, intermediates are
//! packed into reused buffers by lifetime, and bind groups are made. A run then writes the
//! inputs, records every dispatch (submitted in batches, never a wait per node), copies the
//! partition outputs to mappable buffers and waits once.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kiln_ir::{Attribute, DataType, Dim, Model, ValueId, ValueType};
use kiln_ops::{InferCtx, InputInfo, SymValue, Tensor, Value};
use kiln_runtime::{CompiledPartition, PartitionSpec};
use wgpu::util::DeviceExt;

use crate::device::{Gpu, Pipeline};
use crate::ops::{op_info, Bind, In, LowerFn, Lowered, NodeIo};
use crate::support::domain_of;

/// Dispatches per command buffer submitted.
const BATCH: usize = 32;

/// Input shapes kept planned at once; a model fed ever new shapes drops old plans (and their
/// buffers) instead of growing without bound.
const PLANS: usize = 8;

struct PNode {
    label: String,
    op: String,
    domain: String,
    opset: i64,
    attrs: Vec<Attribute>,
    inputs: Vec<Option<ValueId>>,
    outputs: Vec<Option<ValueId>>,
    lower: LowerFn,
    infer: kiln_ops::InferFn,
}

/// A constant a partition reads: on the device when some node reads it as data, on the host
/// only when some node reads it as a parameter (weights are not kept twice in host memory).
struct Const {
    shape: Vec<usize>,
    host: Option<Tensor>,
    ir: Arc<kiln_ir::Tensor>,
    gpu: Option<wgpu::Buffer>,
}

pub struct Program {
    gpu: Arc<Gpu>,
    nodes: Vec<PNode>,
    inputs: Vec<ValueId>,
    outputs: Vec<ValueId>,
    names: HashMap<ValueId, String>,
    consts: HashMap<ValueId, Const>,
    cache: Mutex<HashMap<Key, Arc<Mutex<Prepared>>>>,
}

/// Input shapes, and the values of inputs read on the host.
type Key = Vec<(Vec<usize>, Option<Vec<i64>>)>;

/// Where a bound value lives.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Res {
    Storage(usize),
    Const(ValueId),
}

struct Prepared {
    buffers: Vec<wgpu::Buffer>,
    /// Per partition input: the buffer it is written to (None when read on the host only).
    input_buffer: Vec<Option<usize>>,
    outputs: Vec<Readback>,
    steps: Vec<(Arc<Pipeline>, wgpu::BindGroup, [u32; 3])>,
    /// Concat inputs written in place (no copy).
    in_place: usize,
}

/// A partition output: where it is (`Storage` holds a buffer index here) and at which byte
/// offset, its shape, and the mappable buffer it is copied to (none when it is empty).
struct Readback {
    at: Res,
    offset: u64,
    shape: Vec<usize>,
    staging: Option<wgpu::Buffer>,
    bytes: u64,
}

fn as_bytes(v: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding and any bit pattern is a valid u8; u8 needs no alignment.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

impl Program {
    pub fn new(gpu: Arc<Gpu>, model: &Model, spec: &PartitionSpec) -> Result<Program, String> {
        let g = &model.graph;
        let mut nodes = Vec::with_capacity(spec.nodes.len());
        let mut names = HashMap::new();
        let mut consts = HashMap::new();
        for &id in &spec.nodes {
            let n = g.node(id);
            let domain = domain_of(n).to_string();
            let info = op_info(&domain, &n.op_type)
                .ok_or_else(|| format!("{}: no GPU kernel", g.describe(id)))?;
            let infer = kiln_ops::infer_fn(&domain, &n.op_type)
                .ok_or_else(|| format!("{}: no shape inference rule", g.describe(id)))?;
            for (i, v) in n.inputs().iter().enumerate() {
                let Some(v) = v else { continue };
                names.insert(*v, g.value(*v).name.clone());
                if let Some(t) = &g.value(*v).initializer {
                    let c = consts.entry(*v).or_insert_with(|| Const {
                        shape: t.dims.clone(),
                        host: None,
                        ir: t.clone(),
                        gpu: None,
                    });
                    if info.params.contains(&i) {
                        if c.host.is_none() {
                            c.host = Some(Tensor::from_ir(t));
                        }
                        continue;
                    }
                    // Float data inputs go to the device once.
                    if c.gpu.is_none() {
                        let host = Tensor::from_ir(t);
                        let data = host.as_slice::<f32>().ok_or_else(|| {
                            format!("{}: constant input {i} is not float32", g.describe(id))
                        })?;
                        let buf = gpu
                            .checked("uploading a weight", || {
                                gpu.device
                                    .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                                        label: Some(&g.value(*v).name),
                                        contents: if data.is_empty() {
                                            &[0u8; 4]
                                        } else {
                                            as_bytes(data)
                                        },
                                        usage: wgpu::BufferUsages::STORAGE
                                            | wgpu::BufferUsages::COPY_SRC,
                                    })
                            })
                            .map_err(|e| e.to_string())?;
                        c.gpu = Some(buf);
                    }
                }
            }
            for v in n.outputs().iter().flatten() {
                names.insert(*v, g.value(*v).name.clone());
            }
            nodes.push(PNode {
                label: g.describe(id),
                op: n.op_type.clone(),
                domain: domain.clone(),
                opset: model.opset(&domain).unwrap_or(1),
                attrs: n.attrs.clone(),
                inputs: n.inputs().to_vec(),
                outputs: n.outputs().to_vec(),
                lower: info.lower,
                infer,
            });
        }
        for v in spec.inputs.iter().chain(&spec.outputs) {
            names.insert(*v, g.value(*v).name.clone());
        }
        Ok(Program {
            gpu,
            nodes,
            inputs: spec.inputs.clone(),
            outputs: spec.outputs.clone(),
            names,
            consts,
            cache: Mutex::new(HashMap::new()),
        })
    }

    fn name(&self, v: ValueId) -> &str {
        self.names.get(&v).map_or("?", |s| s.as_str())
    }

    fn prepare(&self, inputs: &[&Tensor]) -> Result<Prepared, String> {
        let mut shapes: HashMap<ValueId, Vec<usize>> = HashMap::new();
        let mut host: HashMap<ValueId, &Tensor> = HashMap::new();
        let mut res: HashMap<ValueId, Res> = HashMap::new();
        let mut sizes: Vec<u64> = Vec::new();
        let mut protected: Vec<bool> = Vec::new();
        let mut input_buffer = Vec::with_capacity(inputs.len());
        for (&v, t) in self.inputs.iter().zip(inputs) {
            shapes.insert(v, t.shape.clone());
            if t.dtype() == DataType::F32 {
                res.insert(v, Res::Storage(sizes.len()));
                input_buffer.push(Some(sizes.len()));
                sizes.push(t.len() as u64 * 4);
                protected.push(true);
            } else {
                host.insert(v, t);
                input_buffer.push(None);
            }
        }
        for (v, c) in &self.consts {
            shapes.insert(*v, c.shape.clone());
            if let Some(h) = &c.host {
                host.insert(*v, h);
            }
            if c.gpu.is_some() {
                res.insert(*v, Res::Const(*v));
            }
        }
        // Lower every node.
        let mut lowered = Vec::with_capacity(self.nodes.len());
        for n in &self.nodes {
            let err = |e: String| format!("{}: {e}", n.label);
            let out_shapes = self.infer(n, &shapes, &host).map_err(err)?;
            let io = NodeIo {
                op: &n.op,
                opset: n.opset,
                attrs: &n.attrs,
                ins: n
                    .inputs
                    .iter()
                    .map(|v| {
                        v.map(|v| In {
                            shape: shapes.get(&v).cloned().unwrap_or_default(),
                            host: host.get(&v).copied(),
                        })
                    })
                    .collect(),
                outs: out_shapes.clone(),
            };
            lowered.push((n.lower)(&io).map_err(err)?);
            for (slot, s) in n.outputs.iter().zip(&out_shapes) {
                if let Some(v) = slot {
                    shapes.insert(*v, s.clone());
                }
            }
        }
        let bytes_of = |v: &ValueId| shapes[v].iter().product::<usize>() as u64 * 4;
        let into = self.concat_in_place(&lowered, &shapes);
        let in_place = into.len();
        // Storages: every output of a dispatching node gets one, except values computed in
        // place inside a Concat's output, which are views of that output's storage.
        let mut view: HashMap<ValueId, u64> = HashMap::new();
        let mut last_use: HashMap<usize, usize> = HashMap::new();
        let mut first_def: HashMap<usize, usize> = HashMap::new();
        let mut temps: HashMap<(usize, usize), usize> = HashMap::new();
        for (i, (n, l)) in self.nodes.iter().zip(&lowered).enumerate() {
            let err = |e: String| format!("{}: {e}", n.label);
            match l {
                Lowered::Alias => {
                    let (Some(Some(src)), Some(Some(dst))) = (n.inputs.first(), n.outputs.first())
                    else {
                        return Err(err("an alias needs an input and an output".into()));
                    };
                    let r = *res.get(src).ok_or_else(|| {
                        err(format!("input '{}' is not on the GPU", self.name(*src)))
                    })?;
                    res.insert(*dst, r);
                    if let Some(&off) = view.get(src) {
                        view.insert(*dst, off);
                    }
                }
                Lowered::Run(ds) => {
                    // A node's temporaries live while it runs: defined and last used here.
                    for d in ds {
                        for b in &d.binds {
                            if let Bind::Temp { id, floats } = b {
                                let bytes = (*floats as u64 * 4).max(4);
                                match temps.entry((i, *id)) {
                                    std::collections::hash_map::Entry::Occupied(e) => {
                                        let s: usize = *e.get();
                                        sizes[s] = sizes[s].max(bytes);
                                    }
                                    std::collections::hash_map::Entry::Vacant(e) => {
                                        e.insert(sizes.len());
                                        first_def.insert(sizes.len(), i);
                                        sizes.push(bytes);
                                        protected.push(false);
                                    }
                                }
                            }
                        }
                    }
                    for v in n.outputs.iter().flatten() {
                        let (target, off) = into.get(v).copied().unwrap_or((*v, 0));
                        if let std::collections::hash_map::Entry::Vacant(e) = res.entry(target) {
                            let bytes = bytes_of(&target);
                            if bytes > self.gpu.max_binding() {
                                return Err(err(format!(
                                    "output '{}' ({bytes} bytes) is over the storage binding limit of {}",
                                    self.name(target),
                                    self.gpu.max_binding()
                                )));
                            }
                            e.insert(Res::Storage(sizes.len()));
                            first_def.insert(sizes.len(), i);
                            sizes.push(bytes);
                            protected.push(false);
                        }
                        if target != *v {
                            res.insert(*v, res[&target]);
                            view.insert(*v, off);
                        }
                    }
                }
            }
            for v in n.inputs.iter().flatten() {
                if let Some(Res::Storage(s)) = res.get(v) {
                    last_use.insert(*s, i);
                }
            }
        }
        // The copies of in-place inputs are not needed.
        for (n, l) in self.nodes.iter().zip(lowered.iter_mut()) {
            if let Lowered::Run(ds) = l {
                if n.op == "Concat" {
                    ds.retain(|d| match d.binds.first() {
                        Some(Bind::In(i)) => !n.inputs[*i].is_some_and(|v| into.contains_key(&v)),
                        _ => true,
                    });
                }
            }
        }
        for v in &self.outputs {
            if let Some(Res::Storage(s)) = res.get(v) {
                protected[*s] = true;
            }
        }
        // Storages to buffers: intermediates share buffers whose lifetimes do not overlap.
        let mut buffer_of: Vec<usize> = vec![usize::MAX; sizes.len()];
        let mut buffer_size: Vec<u64> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        let round = |b: u64| b.max(4).div_ceil(256) * 256;
        for s in 0..sizes.len() {
            if protected[s] {
                buffer_of[s] = buffer_size.len();
                buffer_size.push(round(sizes[s]));
            }
        }
        for i in 0..self.nodes.len() {
            let defs: Vec<usize> = (0..sizes.len())
                .filter(|s| !protected[*s] && first_def.get(s) == Some(&i))
                .collect();
            for &s in &defs {
                let want = round(sizes[s]);
                let best = free
                    .iter()
                    .enumerate()
                    .filter(|(_, &b)| buffer_size[b] >= want)
                    .min_by_key(|(_, &b)| buffer_size[b])
                    .map(|(k, _)| k);
                buffer_of[s] = match best {
                    Some(k) => free.swap_remove(k),
                    None => {
                        buffer_size.push(want);
                        buffer_size.len() - 1
                    }
                };
            }
            for s in 0..sizes.len() {
                let ends = last_use.get(&s).copied().or(first_def.get(&s).copied());
                if !protected[s] && ends == Some(i) && buffer_of[s] != usize::MAX {
                    free.push(buffer_of[s]);
                }
            }
        }
        let gpu = &self.gpu;
        let dev = &gpu.device;
        // Pipelines first: compiling one opens an error scope of its own.
        let mut pipes = Vec::new();
        for l in &lowered {
            if let Lowered::Run(ds) = l {
                for d in ds {
                    pipes.push(gpu.pipeline(d.kernel).map_err(|e| e.to_string())?);
                }
            }
        }
        let usage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC;
        gpu.checked("allocating buffers", || -> Result<Prepared, String> {
            let buffers: Vec<wgpu::Buffer> = buffer_size
                .iter()
                .map(|&size| {
                    dev.create_buffer(&wgpu::BufferDescriptor {
                        label: None,
                        size,
                        usage,
                        mapped_at_creation: false,
                    })
                })
                .collect();
            let dummy = dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some("unused binding"),
                size: 256,
                usage: wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            });
            // All parameter words in one buffer, each dispatch's at an aligned offset.
            let align = (gpu.limits.min_storage_buffer_offset_alignment as usize / 4).max(1);
            let mut words: Vec<u32> = Vec::new();
            let mut offsets = Vec::new();
            let mut datas: Vec<wgpu::Buffer> = Vec::new();
            for l in &lowered {
                if let Lowered::Run(ds) = l {
                    for d in ds {
                        offsets.push((words.len() * 4) as u64);
                        words.extend(&d.params);
                        words.resize(words.len().div_ceil(align) * align, 0);
                        for b in &d.binds {
                            if let Bind::Data(v) = b {
                                datas.push(dev.create_buffer_init(
                                    &wgpu::util::BufferInitDescriptor {
                                        label: None,
                                        contents: if v.is_empty() {
                                            &[0u8; 4]
                                        } else {
                                            as_bytes(v)
                                        },
                                        usage: wgpu::BufferUsages::STORAGE,
                                    },
                                ));
                            }
                        }
                    }
                }
            }
            if words.is_empty() {
                words.push(0);
            }
            let params = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("params"),
                contents: as_bytes(bytemuck_u32(&words)),
                usage: wgpu::BufferUsages::STORAGE,
            });
            let buf_of = |r: Res| -> &wgpu::Buffer {
                match r {
                    Res::Storage(s) => &buffers[buffer_of[s]],
                    Res::Const(v) => self.consts[&v].gpu.as_ref().expect("uploaded constant"),
                }
            };
            let mut steps = Vec::new();
            let (mut k, mut di) = (0usize, 0usize);
            for (ni, (n, l)) in self.nodes.iter().zip(&lowered).enumerate() {
                let Lowered::Run(ds) = l else { continue };
                for d in ds {
                    let pipe = pipes[k].clone();
                    let size = (d.params.len().max(1) * 4) as u64;
                    let mut entries = vec![wgpu::BindGroupEntry {
                        binding: 0,
                        resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                            buffer: &params,
                            offset: offsets[k],
                            size: std::num::NonZeroU64::new(size),
                        }),
                    }];
                    k += 1;
                    for (j, b) in d.binds.iter().enumerate() {
                        let (buffer, viewed) = match b {
                            Bind::In(i) => {
                                let v =
                                    n.inputs.get(*i).copied().flatten().ok_or_else(|| {
                                        format!("{}: input {i} is missing", n.label)
                                    })?;
                                let r = *res.get(&v).ok_or_else(|| {
                                    format!(
                                        "{}: input '{}' is not on the GPU",
                                        n.label,
                                        self.name(v)
                                    )
                                })?;
                                (buf_of(r), view.get(&v).map(|&o| (o, bytes_of(&v))))
                            }
                            Bind::Out(i) => {
                                let v = n.outputs.get(*i).copied().flatten().ok_or_else(|| {
                                    format!("{}: output {i} is not used", n.label)
                                })?;
                                (buf_of(res[&v]), view.get(&v).map(|&o| (o, bytes_of(&v))))
                            }
                            Bind::Data(_) => {
                                di += 1;
                                (&datas[di - 1], None)
                            }
                            Bind::Dummy => (&dummy, None),
                            Bind::Temp { id, .. } => (&buffers[buffer_of[temps[&(ni, *id)]]], None),
                        };
                        let resource = match viewed {
                            Some((offset, size)) => {
                                wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                                    buffer,
                                    offset,
                                    size: std::num::NonZeroU64::new(size),
                                })
                            }
                            None => buffer.as_entire_binding(),
                        };
                        entries.push(wgpu::BindGroupEntry {
                            binding: j as u32 + 1,
                            resource,
                        });
                    }
                    let bg = dev.create_bind_group(&wgpu::BindGroupDescriptor {
                        label: None,
                        layout: &pipe.layout,
                        entries: &entries,
                    });
                    if d.groups.iter().all(|&x| x > 0) {
                        steps.push((pipe, bg, d.groups));
                    }
                }
            }
            let mut outputs = Vec::new();
            for v in &self.outputs {
                let r = *res.get(v).ok_or_else(|| {
                    format!("partition output '{}' is not on the GPU", self.name(*v))
                })?;
                let shape = shapes.get(v).cloned().unwrap_or_default();
                let bytes = shape.iter().product::<usize>() as u64 * 4;
                let staging = (bytes > 0).then(|| {
                    dev.create_buffer(&wgpu::BufferDescriptor {
                        label: Some("readback"),
                        size: bytes,
                        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                        mapped_at_creation: false,
                    })
                });
                let r = match r {
                    Res::Storage(s) => Res::Storage(buffer_of[s]),
                    c => c,
                };
                outputs.push(Readback {
                    at: r,
                    offset: view.get(v).copied().unwrap_or(0),
                    shape,
                    staging,
                    bytes,
                });
            }
            Ok(Prepared {
                in_place,
                buffers,
                input_buffer: input_buffer
                    .iter()
                    .map(|s| s.map(|s| buffer_of[s]))
                    .collect(),
                outputs,
                steps,
            })
        })
        .map_err(|e| e.to_string())?
    }

    /// Concat inputs their producers can write straight into the Concat's output: a value
    /// maps to (the Concat's output, byte offset). Only where each input is one contiguous
    /// run of the output (everything before the axis is 1), the offset meets the device's
    /// binding alignment, the value is made by a dispatching node of this partition for this
    /// Concat alone (never a partition output, never read twice by it), and its producer reads
    /// no other in-place input of the same Concat (one dispatch cannot read and write one
    /// buffer).
    fn concat_in_place(
        &self,
        lowered: &[Lowered],
        shapes: &HashMap<ValueId, Vec<usize>>,
    ) -> HashMap<ValueId, (ValueId, u64)> {
        let align = self.gpu.limits.min_storage_buffer_offset_alignment.max(4) as u64;
        let mut made_by: HashMap<ValueId, usize> = HashMap::new();
        for (i, (n, l)) in self.nodes.iter().zip(lowered).enumerate() {
            if matches!(l, Lowered::Run(_)) && n.op != "Concat" {
                for v in n.outputs.iter().flatten() {
                    made_by.insert(*v, i);
                }
            }
        }
        let mut into = HashMap::new();
        for n in self
            .nodes
            .iter()
            .filter(|n| n.op == "Concat" && n.domain.is_empty())
        {
            let Some(Some(y)) = n.outputs.first() else {
                continue;
            };
            let ys = &shapes[y];
            let r = ys.len() as i64;
            let axis = n
                .attrs
                .iter()
                .find(|a| a.name == "axis")
                .and_then(|a| match a.value {
                    kiln_ir::AttrValue::Int(x) => Some(x),
                    _ => None,
                });
            let Some(axis) = axis.map(|a| if a < 0 { a + r } else { a }) else {
                continue;
            };
            if axis < 0 || axis >= r || ys[..axis as usize].iter().product::<usize>() != 1 {
                continue;
            }
            let inner: usize = ys[axis as usize + 1..].iter().product();
            let mut off = 0usize;
            let mut chosen: Vec<(ValueId, u64)> = Vec::new();
            for v in n.inputs.iter().flatten() {
                let len = shapes[v][axis as usize] * inner;
                let bytes = off as u64 * 4;
                let once = n.inputs.iter().flatten().filter(|x| *x == v).count() == 1;
                if made_by.contains_key(v)
                    && !self.outputs.contains(v)
                    && once
                    && len > 0
                    && bytes.is_multiple_of(align)
                {
                    chosen.push((*v, bytes));
                }
                off += len;
            }
            // A producer that reads a sibling would bind the buffer twice.
            let picked: Vec<ValueId> = chosen.iter().map(|c| c.0).collect();
            for (v, bytes) in chosen {
                let p = &self.nodes[made_by[&v]];
                if p.inputs.iter().flatten().any(|x| picked.contains(x)) {
                    continue;
                }
                into.insert(v, (*y, bytes));
            }
        }
        into
    }

    /// The concrete output shapes of a node, by kiln's inference rule.
    fn infer(
        &self,
        n: &PNode,
        shapes: &HashMap<ValueId, Vec<usize>>,
        host: &HashMap<ValueId, &Tensor>,
    ) -> Result<Vec<Vec<usize>>, String> {
        let mut tys: Vec<Option<ValueType>> = Vec::with_capacity(n.inputs.len());
        let mut syms: Vec<Option<SymValue>> = Vec::with_capacity(n.inputs.len());
        for v in &n.inputs {
            let Some(v) = v else {
                tys.push(None);
                syms.push(None);
                continue;
            };
            let shape = shapes
                .get(v)
                .ok_or_else(|| format!("input '{}' has no shape", self.name(*v)))?;
            let dtype = match host.get(v) {
                Some(t) => t.dtype(),
                None => DataType::F32,
            };
            tys.push(Some(ValueType::Tensor {
                dtype: Some(dtype),
                shape: Some(shape.iter().map(|&d| Dim::Known(d as i64)).collect()),
            }));
            let sym = match (self.consts.contains_key(v), host.get(v)) {
                (false, Some(t)) if t.rank() <= 1 => t.to_i64s().ok().map(|e| SymValue {
                    scalar: t.rank() == 0,
                    elems: e.into_iter().map(Dim::Known).collect(),
                }),
                _ => None,
            };
            syms.push(sym);
        }
        let ctx = InferCtx {
            op_type: &n.op,
            domain: &n.domain,
            opset: n.opset,
            attrs: &n.attrs,
            inputs: n
                .inputs
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.map(|v| InputInfo {
                        ty: tys[i].as_ref(),
                        constant: self.consts.get(&v).map(|c| c.ir.as_ref()),
                        value: syms[i].as_ref(),
                    })
                })
                .collect(),
            num_outputs: n.outputs.len(),
        };
        let out = (n.infer)(&ctx)?;
        out.iter()
            .enumerate()
            .map(|(i, o)| {
                let dims =
                    o.ty.as_ref()
                        .and_then(|t| t.shape())
                        .ok_or_else(|| format!("the shape of output {i} cannot be inferred"))?;
                dims.iter()
                    .map(|d| match d.known() {
                        Some(k) if k >= 0 => Ok(k as usize),
                        _ => Err(format!("output {i} has the unresolved dim {d}")),
                    })
                    .collect()
            })
            .collect()
    }

    /// How many Concat inputs the plan for these inputs writes in place.
    pub fn in_place_concat_inputs(&self, inputs: &[&Tensor]) -> Result<usize, String> {
        let p = self.prepared(inputs)?;
        let n = p.lock().expect("prepared run").in_place;
        Ok(n)
    }

    fn prepared(&self, inputs: &[&Tensor]) -> Result<Arc<Mutex<Prepared>>, String> {
        let key: Key = inputs
            .iter()
            .map(|t| {
                let vals = (t.dtype() != DataType::F32).then(|| t.to_i64s().unwrap_or_default());
                (t.shape.clone(), vals)
            })
            .collect();
        if let Some(p) = self.cache.lock().expect("cache").get(&key) {
            return Ok(p.clone());
        }
        let p = Arc::new(Mutex::new(self.prepare(inputs)?));
        let mut cache = self.cache.lock().expect("cache");
        while cache.len() >= PLANS {
            let Some(old) = cache.keys().next().cloned() else {
                break;
            };
            cache.remove(&old);
        }
        cache.insert(key, p.clone());
        Ok(p)
    }
}

fn bytemuck_u32(v: &[u32]) -> &[f32] {
    // SAFETY: u32 and f32 have the same size and alignment, and every bit pattern is valid.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<f32>(), v.len()) }
}

impl CompiledPartition for Program {
    fn run(&self, inputs: &[&Value]) -> Result<Vec<Value>, String> {
        let mut tensors = Vec::with_capacity(inputs.len());
        for (v, x) in self.inputs.iter().zip(inputs) {
            let t = x
                .tensor()
                .ok_or_else(|| format!("input '{}' is not a tensor", self.name(*v)))?;
            tensors.push(t);
        }
        let prepared = self.prepared(&tensors)?;
        let p = prepared.lock().expect("prepared run");
        let gpu = &self.gpu;
        let outs = gpu
            .checked("running the partition", || -> Result<Vec<Value>, String> {
                for (t, b) in tensors.iter().zip(&p.input_buffer) {
                    let Some(b) = b else { continue };
                    let data = t.as_slice::<f32>().ok_or("float input without f32 data")?;
                    if !data.is_empty() {
                        gpu.queue.write_buffer(&p.buffers[*b], 0, as_bytes(data));
                    }
                }
                for chunk in p.steps.chunks(BATCH) {
                    let mut enc = gpu
                        .device
                        .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
                    {
                        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                            label: None,
                            timestamp_writes: None,
                        });
                        for (pipe, bg, groups) in chunk {
                            pass.set_pipeline(&pipe.pipeline);
                            pass.set_bind_group(0, bg, &[]);
                            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
                        }
                    }
                    gpu.queue.submit(Some(enc.finish()));
                }
                let mut enc = gpu
                    .device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
                for o in &p.outputs {
                    if let Some(st) = &o.staging {
                        let src = match &o.at {
                            Res::Storage(b) => &p.buffers[*b],
                            Res::Const(v) => self.consts[v].gpu.as_ref().expect("uploaded"),
                        };
                        enc.copy_buffer_to_buffer(src, o.offset, st, 0, o.bytes);
                    }
                }
                gpu.queue.submit(Some(enc.finish()));
                let (tx, rx) = std::sync::mpsc::channel();
                for (k, o) in p.outputs.iter().enumerate() {
                    if let Some(st) = &o.staging {
                        let tx = tx.clone();
                        st.slice(..).map_async(wgpu::MapMode::Read, move |r| {
                            let _ = tx.send((k, r));
                        });
                    }
                }
                drop(tx);
                gpu.device
                    .poll(wgpu::PollType::wait_indefinitely())
                    .map_err(|e| format!("waiting for the GPU: {e}"))?;
                // After a full wait every mapping has been answered; never block on one more.
                let mut answered = 0;
                for (k, r) in rx.try_iter() {
                    r.map_err(|e| format!("reading output {k} back: {e}"))?;
                    answered += 1;
                }
                let wanted = p.outputs.iter().filter(|o| o.staging.is_some()).count();
                if answered != wanted {
                    return Err(format!(
                        "the GPU answered {answered} of {wanted} output readbacks"
                    ));
                }
                let mut outs = Vec::with_capacity(p.outputs.len());
                for o in &p.outputs {
                    let data = match &o.staging {
                        Some(st) => {
                            let view = st
                                .slice(..)
                                .get_mapped_range()
                                .map_err(|e| format!("reading an output back: {e}"))?;
                            let v: Vec<f32> = view
                                .chunks_exact(4)
                                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                                .collect();
                            drop(view);
                            st.unmap();
                            v
                        }
                        None => Vec::new(),
                    };
                    outs.push(Value::Tensor(Tensor::from_vec(o.shape.clone(), data)));
                }
                Ok(outs)
            })
            .map_err(|e| e.to_string())??;
        Ok(outs)
    }
}
