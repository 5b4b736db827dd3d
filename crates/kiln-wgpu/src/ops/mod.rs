//! The ops the GPU runs: for each, the opsets it implements, which inputs are parameters read
//! on the host (shapes, axes, pads: never uploaded), what it cannot do (`check`, a reason per
//! node), and its lowering — from the node's concrete shapes to the kernel dispatches that
//! compute it, or to an alias of its input's buffer (the reshapes).
use kiln_ir::Attribute;
use kiln_ops::Tensor;

use crate::device::Kernel;

mod conv;
mod eltwise;
mod gemm;
mod movement;
mod pool;
mod reduce;
mod resize;
mod softmax;

/// One input of a node being lowered: its shape and, where the host knows it (constants,
/// and the parameter inputs computed elsewhere), its value.
pub struct In<'a> {
    pub shape: Vec<usize>,
    pub host: Option<&'a Tensor>,
}

/// A node with concrete shapes, as its lowering sees it.
pub struct NodeIo<'a> {
    pub op: &'a str,
    pub opset: i64,
    pub attrs: &'a [Attribute],
    pub ins: Vec<Option<In<'a>>>,
    pub outs: Vec<Vec<usize>>,
}

impl NodeIo<'_> {
    pub fn shape(&self, i: usize) -> Result<&[usize], String> {
        self.ins
            .get(i)
            .and_then(|x| x.as_ref())
            .map(|x| x.shape.as_slice())
            .ok_or_else(|| format!("input {i} is missing"))
    }

    pub fn has(&self, i: usize) -> bool {
        matches!(self.ins.get(i), Some(Some(_)))
    }

    /// A parameter input's values (host-side), as integers.
    pub fn ints(&self, i: usize) -> Result<Option<Vec<i64>>, String> {
        match self.ins.get(i).and_then(|x| x.as_ref()) {
            None => Ok(None),
            Some(x) => match x.host {
                Some(t) => t.to_i64s().map(Some),
                None => Err(format!("input {i} is not known on the host")),
            },
        }
    }

    pub fn floats(&self, i: usize) -> Result<Option<Vec<f64>>, String> {
        match self.ins.get(i).and_then(|x| x.as_ref()) {
            None => Ok(None),
            Some(x) => match x.host {
                Some(t) => t.to_f64s().map(Some),
                None => Err(format!("input {i} is not known on the host")),
            },
        }
    }
}

/// A buffer a dispatch binds (after the parameter words at binding 0).
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    In(usize),
    Out(usize),
    /// Data the lowering computed on the host (uploaded once per input shape).
    Data(Vec<f32>),
    /// An unused optional binding.
    Dummy,
    /// A buffer of the node's own, `floats` long, alive while the node runs: one pass of a
    /// multi-pass kernel writes it, the next reads it (same `id`, same buffer).
    Temp {
        id: usize,
        floats: usize,
    },
}

#[derive(Debug, Clone)]
pub struct Dispatch {
    pub kernel: Kernel,
    pub params: Vec<u32>,
    pub binds: Vec<Bind>,
    pub groups: [u32; 3],
}

pub enum Lowered {
    /// Output 0 is input 0's buffer under another shape.
    Alias,
    Run(Vec<Dispatch>),
}

/// What `check` sees of a node at partitioning time.
pub struct CheckCtx<'a> {
    pub op: &'a str,
    pub opset: i64,
    pub attrs: &'a [Attribute],
    /// Input ranks where known (None for absent inputs or unknown ranks).
    pub ranks: Vec<Option<usize>>,
    /// Constant inputs.
    pub constants: Vec<Option<&'a kiln_ir::Tensor>>,
    /// Whether FusedConv nodes may be claimed.
    pub fused_conv: bool,
}

pub type CheckFn = fn(&CheckCtx) -> Result<(), String>;
pub type LowerFn = fn(&NodeIo) -> Result<Lowered, String>;

pub struct OpInfo {
    /// Opsets the kernel implements (inclusive).
    pub opsets: (i64, i64),
    /// Inputs read on the host; they may be of any type.
    pub params: &'static [usize],
    /// Of those, the ones that must be constants (float parameters never come from the GPU).
    pub constant_params: &'static [usize],
    pub check: CheckFn,
    pub lower: LowerFn,
}

impl OpInfo {
    /// An op whose inputs are all data (no host-side parameters).
    pub fn plain(opsets: (i64, i64), check: CheckFn, lower: LowerFn) -> OpInfo {
        OpInfo {
            opsets,
            params: &[],
            constant_params: &[],
            check,
            lower,
        }
    }
}

pub fn no_check(_: &CheckCtx) -> Result<(), String> {
    Ok(())
}

/// Input 0 must be an NCHW tensor: the window kernels are 2-D.
pub fn spatial_2d(c: &CheckCtx, what: &str) -> Result<(), String> {
    match c.ranks.first().copied().flatten() {
        Some(4) => Ok(()),
        Some(r) => Err(format!(
            "{}-D {what} (the GPU kernel is 2-D)",
            r.saturating_sub(2)
        )),
        None => Err("input rank unknown".into()),
    }
}

/// The op table: a plain function of (domain, op type).
pub fn op_info(domain: &str, op: &str) -> Option<OpInfo> {
    match domain {
        "" | "ai.onnx" => eltwise::info(op)
            .or_else(|| conv::info(op))
            .or_else(|| gemm::info(op))
            .or_else(|| pool::info(op))
            .or_else(|| reduce::info(op))
            .or_else(|| movement::info(op))
            .or_else(|| softmax::info(op))
            .or_else(|| resize::info(op)),
        "com.microsoft" => match op {
            "FusedConv" => conv::info(op),
            "FusedGemm" => gemm::info(op),
            _ => eltwise::info_ms(op),
        },
        kiln_ops::ops_domain::KILN if op == "FusedConv" => conv::info_kiln(),
        _ => None,
    }
}

/// Grid for `n` threads of 256 (kernels using `flat_index`): rows of at most 65535 groups.
pub fn flat_groups(n: usize) -> Result<[u32; 3], String> {
    let groups = n.div_ceil(256);
    let x = groups.min(65535);
    let y = groups.div_ceil(x.max(1));
    if y > 65535 {
        return Err(format!("{n} elements are more than one launch can cover"));
    }
    Ok([x as u32, y as u32, 1])
}

/// K summed by one launch of the tile kernels: 128 steps of 32, a few thousand loop iterations
/// per invocation (lavapipe stops a loop after 65,535).
pub const K_PART: usize = 4096;

/// The launches of a tile kernel over `k`: (k_begin, k_end, part) with part 0 for all of K in
/// one, else 1 (first), 2 (middle), 3 (last).
pub fn k_parts(k: usize) -> Result<Vec<[u32; 3]>, String> {
    let k32 = u(k, "K")?;
    if k <= K_PART {
        return Ok(vec![[0, k32, 0]]);
    }
    let n = k.div_ceil(K_PART);
    Ok((0..n)
        .map(|i| {
            let part = if i == 0 {
                1
            } else if i + 1 == n {
                3
            } else {
                2
            };
            [(i * K_PART) as u32, ((i + 1) * K_PART).min(k) as u32, part]
        })
        .collect())
}

/// One dispatch per part of K (`k_parts`), its (k_begin, k_end, part) after `d`'s parameters.
pub fn split_k(d: Dispatch, k: usize) -> Result<Vec<Dispatch>, String> {
    Ok(k_parts(k)?
        .into_iter()
        .map(|kp| {
            let mut d = d.clone();
            d.params.extend(kp);
            d
        })
        .collect())
}

/// `u32` of a size, or an error naming what overflowed.
pub fn u(x: usize, what: &str) -> Result<u32, String> {
    u32::try_from(x).map_err(|_| format!("{what} = {x} does not fit in 32 bits"))
}

pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut st = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        st[d] = st[d + 1] * shape[d + 1];
    }
    st
}

/// Merges neighbouring dims that every stride set walks contiguously, drops size-1 dims, and
/// checks that at most 6 remain (the kernels' limit). Returns (dims, strides per set).
pub fn merge_dims(
    dims: &[usize],
    sets: &[Vec<usize>],
) -> Result<(Vec<usize>, Vec<Vec<usize>>), String> {
    let mut out_d: Vec<usize> = Vec::new();
    let mut out_s: Vec<Vec<usize>> = vec![Vec::new(); sets.len()];
    for (i, &d) in dims.iter().enumerate() {
        if d == 1 {
            continue;
        }
        let can_merge = !out_d.is_empty()
            && sets.iter().zip(&out_s).all(|(s, o)| {
                let last = *o.last().expect("same length as out_d");
                last == s[i] * d
            });
        if can_merge {
            *out_d.last_mut().expect("non-empty") *= d;
            for (s, o) in sets.iter().zip(out_s.iter_mut()) {
                *o.last_mut().expect("non-empty") = s[i];
            }
        } else {
            out_d.push(d);
            for (s, o) in sets.iter().zip(out_s.iter_mut()) {
                o.push(s[i]);
            }
        }
    }
    if out_d.is_empty() {
        out_d.push(1);
        for o in out_s.iter_mut() {
            o.push(0);
        }
    }
    if out_d.len() > 6 {
        return Err(format!(
            "{} dims remain after merging; the kernels take at most 6",
            out_d.len()
        ));
    }
    Ok((out_d, out_s))
}

/// `v` as 6 words (zeros after its end).
pub fn six(v: &[usize]) -> Result<[u32; 6], String> {
    let mut w = [0u32; 6];
    for (i, &x) in v.iter().enumerate() {
        w[i] = u(x, "a dim or stride")?;
    }
    Ok(w)
}

/// Activations the kernels' `act` implements, with their code and two parameters.
pub fn act_code(a: kiln_ops::Act) -> (u32, f32, f32) {
    use kiln_ops::Act;
    match a {
        Act::Identity => (0, 0.0, 0.0),
        Act::Relu => (1, 0.0, 0.0),
        Act::LeakyRelu(al) => (2, al, 0.0),
        Act::Sigmoid => (3, 0.0, 0.0),
        Act::Tanh => (4, 0.0, 0.0),
        Act::Clip(lo, hi) => (5, lo, hi),
        Act::HardSigmoid(al, be) => (6, al, be),
        Act::Silu(al) => (8, al, 0.0),
        Act::Elu(al) => (9, al, 0.0),
        Act::Selu(al, ga) => (10, al, ga),
        Act::ThresholdedRelu(al) => (11, al, 0.0),
        Act::Softplus => (12, 0.0, 0.0),
        Act::Softsign => (13, 0.0, 0.0),
    }
}
