//! What a CPU kernel sees (attributes, opset, input values, a way to run subgraphs) and the
//! shared helpers kernels use: attribute access, broadcasting, strides.
use std::sync::Mutex;

use kiln_ir::{AttrList, AttrValue, Attribute, Graph};

use crate::value::{Tensor, Value};

pub type Result<T> = std::result::Result<T, String>;

/// A kernel: computes a node's outputs from its inputs.
pub type KernelFn = fn(&KernelCtx) -> Result<Vec<Value>>;

/// A kernel made for one node when a session is created, holding what it derived from the
/// node's constant inputs (pre-packed weights), so that work happens once per session instead
/// of once per run. It gets the same context a plain kernel does.
pub trait PreparedKernel: Send + Sync {
    fn run(&self, ctx: &KernelCtx) -> Result<Vec<Value>>;
}

/// What preparing a node sees: its attributes and which inputs are constants (initializers).
pub struct PrepareCtx<'a> {
    pub op_type: &'a str,
    pub domain: &'a str,
    pub opset: i64,
    pub attrs: &'a [Attribute],
    pub constants: Vec<Option<&'a Tensor>>,
    /// The input slots the node leaves empty (an optional input given as `""`), which
    /// `constants` cannot tell from inputs computed at run time.
    pub absent: Vec<usize>,
    /// The session's arithmetic for matrix products (weights packed in bfloat16 at
    /// [`kiln_kernels::Precision::Bf16`]).
    pub precision: kiln_kernels::Precision,
}

impl PrepareCtx<'_> {
    pub fn constant(&self, i: usize) -> Option<&Tensor> {
        self.constants.get(i).copied().flatten()
    }

    /// An optional input: `Some(None)` when the node does not give it, `Some(Some(t))` when it
    /// is the constant `t`, `None` when it is computed at run time (nothing to prepare with).
    pub fn optional_constant(&self, i: usize) -> Option<Option<&Tensor>> {
        if i >= self.constants.len() || self.absent.contains(&i) {
            return Some(None);
        }
        self.constant(i).map(Some)
    }
}

/// Prepares a node, or says (with `None`) that the plain kernel should run it.
pub type PrepareFn = fn(&PrepareCtx) -> Option<Box<dyn PreparedKernel>>;

/// Runs a subgraph (If/Loop/Scan bodies) with the given explicit inputs; values the body reads
/// from enclosing graphs are resolved by the runner.
pub trait SubgraphRunner {
    fn run(&self, body: &Graph, inputs: Vec<Value>) -> Result<Vec<Value>>;
}

pub struct KernelCtx<'a> {
    pub op_type: &'a str,
    pub domain: &'a str,
    pub opset: i64,
    pub attrs: &'a [Attribute],
    pub inputs: Vec<Option<&'a Value>>,
    pub num_outputs: usize,
    pub subgraphs: Option<&'a dyn SubgraphRunner>,
    /// Inputs the runner handed over to the kernel (see [`donatable_inputs`]): their slot in
    /// `inputs` is empty and [`KernelCtx::take_input`] moves them out.
    ///
    /// [`donatable_inputs`]: crate::donatable_inputs
    pub donated: Donated,
}

/// Input values a kernel may own and reuse as an output's buffer: the runner hands over a value
/// only where this node is its last reader and nothing else holds it, so writing into it is
/// invisible to the rest of the run.
#[derive(Default)]
pub struct Donated(Vec<(usize, Mutex<Option<Value>>)>);

impl Donated {
    pub fn new(values: Vec<(usize, Value)>) -> Donated {
        Donated(
            values
                .into_iter()
                .map(|(i, v)| (i, Mutex::new(Some(v))))
                .collect(),
        )
    }

    fn slot(&self, i: usize) -> Option<&Mutex<Option<Value>>> {
        self.0.iter().find(|(j, _)| *j == i).map(|(_, m)| m)
    }
}

impl<'a> KernelCtx<'a> {
    pub fn has_input(&self, i: usize) -> bool {
        matches!(self.inputs.get(i), Some(Some(_))) || self.donated.slot(i).is_some()
    }

    /// Input `i` as an owned value, where the runner donated it (once; `None` otherwise).
    pub fn take_input(&self, i: usize) -> Option<Value> {
        self.donated.slot(i)?.lock().ok()?.take()
    }

    pub fn value(&self, i: usize) -> Result<&'a Value> {
        self.inputs
            .get(i)
            .copied()
            .flatten()
            .ok_or_else(|| match self.donated.slot(i) {
                Some(_) => format!("input {i} was handed to the kernel: take_input({i}) reads it"),
                None => format!("input {i} is missing"),
            })
    }

    pub fn tensor(&self, i: usize) -> Result<&'a Tensor> {
        match self.value(i)? {
            Value::Tensor(t) => Ok(t),
            _ => Err(format!("input {i} is not a tensor")),
        }
    }

    /// An optional tensor input (absent, or present).
    pub fn opt_tensor(&self, i: usize) -> Result<Option<&'a Tensor>> {
        if self.has_input(i) {
            self.tensor(i).map(Some)
        } else {
            Ok(None)
        }
    }

    pub fn attr(&self, name: &str) -> Option<&'a AttrValue> {
        self.attrs.attr(name)
    }

    pub fn int_attr(&self, name: &str, default: i64) -> i64 {
        self.attrs.get_int(name).unwrap_or(default)
    }

    pub fn float_attr(&self, name: &str, default: f32) -> f32 {
        self.attrs.get_float(name).unwrap_or(default)
    }

    pub fn ints_attr(&self, name: &str) -> Option<&'a [i64]> {
        self.attrs.get_ints(name)
    }

    pub fn ints_or(&self, name: &str, fill: i64, n: usize) -> Vec<i64> {
        self.ints_attr(name)
            .map(|v| v.to_vec())
            .unwrap_or_else(|| vec![fill; n])
    }

    pub fn str_attr(&self, name: &str) -> Option<&'a str> {
        self.attrs.get_str(name)
    }

    /// Normalizes a possibly negative axis.
    pub fn axis(&self, axis: i64, rank: usize) -> Result<usize> {
        norm_axis(axis, rank)
    }
}

pub fn norm_axis(axis: i64, rank: usize) -> Result<usize> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(if axis < 0 { axis + r } else { axis } as usize)
}

/// Row-major strides of a shape.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Numpy broadcasting of shapes.
pub fn broadcast_shape(shapes: &[&[usize]]) -> Result<Vec<usize>> {
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; rank];
    for s in shapes {
        let off = rank - s.len();
        for (i, &d) in s.iter().enumerate() {
            let o = &mut out[off + i];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return Err(format!("shapes {shapes:?} cannot broadcast"));
            }
        }
    }
    Ok(out)
}

/// Strides to read an input of `shape` broadcast to `out` (0 along broadcast dims).
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let st = strides(shape);
    let off = out.len() - shape.len();
    (0..out.len())
        .map(|i| {
            if i < off || shape[i - off] == 1 {
                0
            } else {
                st[i - off]
            }
        })
        .collect()
}

/// For every element of `out` (row-major), the flat index into an input read with `st`.
pub fn broadcast_index(out: &[usize], st: &[usize]) -> Vec<usize> {
    let n: usize = out.iter().product();
    let mut idx = Vec::with_capacity(n);
    if n == 0 {
        return idx;
    }
    let rank = out.len();
    let mut counter = vec![0usize; rank];
    let mut pos = 0usize;
    for _ in 0..n {
        idx.push(pos);
        for d in (0..rank).rev() {
            counter[d] += 1;
            pos += st[d];
            if counter[d] < out[d] {
                break;
            }
            pos -= st[d] * out[d];
            counter[d] = 0;
        }
    }
    idx
}

/// Applies `f` element-wise to two broadcast inputs.
///
/// Dims along which both inputs advance alike are merged first, so the inner loop runs over
/// the longest stretch where each input is either contiguous or a repeated scalar (a
/// per-channel operand over NCHW is a scalar per plane); those loops vectorize.
pub fn zip_broadcast<A: Copy, B: Copy, R>(
    a: &[A],
    ash: &[usize],
    b: &[B],
    bsh: &[usize],
    f: impl Fn(A, B) -> R,
) -> Result<(Vec<usize>, Vec<R>)> {
    let out = broadcast_shape(&[ash, bsh])?;
    let n: usize = out.iter().product();
    let mut v = Vec::with_capacity(n);
    if n == 0 {
        return Ok((out, v));
    }
    let (sa, sb) = (broadcast_strides(ash, &out), broadcast_strides(bsh, &out));
    // (size, stride in a, stride in b), outermost first, size-1 dims dropped.
    let mut dims: Vec<(usize, usize, usize)> = Vec::with_capacity(out.len());
    for i in 0..out.len() {
        if out[i] == 1 {
            continue;
        }
        if let Some(last) = dims.last_mut() {
            if last.1 == sa[i] * out[i] && last.2 == sb[i] * out[i] {
                *last = (last.0 * out[i], sa[i], sb[i]);
                continue;
            }
        }
        dims.push((out[i], sa[i], sb[i]));
    }
    let (m, ia, ib) = dims.pop().unwrap_or((1, 0, 0));
    let outer: usize = dims.iter().map(|d| d.0).product();
    let mut counter = vec![0usize; dims.len()];
    let (mut pa, mut pb) = (0usize, 0usize);
    for _ in 0..outer {
        match (ia, ib) {
            (1, 1) => v.extend(
                a[pa..pa + m]
                    .iter()
                    .zip(&b[pb..pb + m])
                    .map(|(&x, &y)| f(x, y)),
            ),
            (1, 0) => {
                let y = b[pb];
                v.extend(a[pa..pa + m].iter().map(|&x| f(x, y)));
            }
            (0, 1) => {
                let x = a[pa];
                v.extend(b[pb..pb + m].iter().map(|&y| f(x, y)));
            }
            _ => v.extend((0..m).map(|i| f(a[pa + i * ia], b[pb + i * ib]))),
        }
        for d in (0..dims.len()).rev() {
            counter[d] += 1;
            pa += dims[d].1;
            pb += dims[d].2;
            if counter[d] < dims[d].0 {
                break;
            }
            pa -= dims[d].1 * dims[d].0;
            pb -= dims[d].2 * dims[d].0;
            counter[d] = 0;
        }
    }
    Ok((out, v))
}

/// Calls `f(out, ia, ib, ic)` over the broadcast of three inputs, in row-major output order
/// (`out` is the output position, the others are flat indices into each input). Dims along which
/// all three advance alike are merged, so the loop is one counter bump per element and a carry
/// only at the end of the innermost run.
pub fn walk3_broadcast(
    shapes: [&[usize]; 3],
    mut f: impl FnMut(usize, usize, usize, usize),
) -> Result<Vec<usize>> {
    let out = broadcast_shape(&shapes)?;
    let n: usize = out.iter().product();
    if n == 0 {
        return Ok(out);
    }
    let st: Vec<Vec<usize>> = shapes.iter().map(|s| broadcast_strides(s, &out)).collect();
    // (size, strides), outermost first, size-1 dims dropped, mergeable dims merged.
    let mut dims: Vec<(usize, [usize; 3])> = Vec::with_capacity(out.len());
    for i in 0..out.len() {
        if out[i] == 1 {
            continue;
        }
        let s = [st[0][i], st[1][i], st[2][i]];
        if let Some(last) = dims.last_mut() {
            if (0..3).all(|k| last.1[k] == s[k] * out[i]) {
                *last = (last.0 * out[i], s);
                continue;
            }
        }
        dims.push((out[i], s));
    }
    let (m, inner) = dims.pop().unwrap_or((1, [0; 3]));
    let outer: usize = dims.iter().map(|d| d.0).product();
    let mut counter = vec![0usize; dims.len()];
    let mut p = [0usize; 3];
    let mut o = 0;
    for _ in 0..outer {
        for i in 0..m {
            f(
                o + i,
                p[0] + i * inner[0],
                p[1] + i * inner[1],
                p[2] + i * inner[2],
            );
        }
        o += m;
        for d in (0..dims.len()).rev() {
            counter[d] += 1;
            for k in 0..3 {
                p[k] += dims[d].1[k];
            }
            if counter[d] < dims[d].0 {
                break;
            }
            for k in 0..3 {
                p[k] -= dims[d].1[k] * dims[d].0;
            }
            counter[d] = 0;
        }
    }
    Ok(out)
}

/// One tensor output.
pub fn one(t: Tensor) -> Result<Vec<Value>> {
    Ok(vec![Value::Tensor(t)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting() {
        assert_eq!(
            broadcast_shape(&[&[2, 1, 3], &[4, 1]]).unwrap(),
            vec![2, 4, 3]
        );
        assert!(broadcast_shape(&[&[2, 3], &[4]]).is_err());
        let (s, v) = zip_broadcast(&[1, 2, 3], &[3, 1], &[10, 20], &[2], |a, b| a + b).unwrap();
        assert_eq!(s, vec![3, 2]);
        assert_eq!(v, vec![11, 21, 12, 22, 13, 23]);
        // Per-channel operand over NCHW, and a middle broadcast dim.
        let x: Vec<i32> = (0..24).collect();
        let (s, v) =
            zip_broadcast(&x, &[1, 2, 3, 4], &[100, 200], &[2, 1, 1], |a, b| a + b).unwrap();
        assert_eq!(s, vec![1, 2, 3, 4]);
        let want: Vec<i32> = (0..24)
            .map(|i| i + if i < 12 { 100 } else { 200 })
            .collect();
        assert_eq!(v, want);
        let (s, v) =
            zip_broadcast(&[1, 2], &[2, 1, 1], &[10, 20, 30], &[1, 3, 1], |a, b| a * b).unwrap();
        assert_eq!(s, vec![2, 3, 1]);
        assert_eq!(v, vec![10, 20, 30, 20, 40, 60]);
        let (_, v) =
            zip_broadcast(&[1, 2, 3], &[3, 1], &[1, 2], &[1, 2], |a, b| a * 10 + b).unwrap();
        assert_eq!(v, vec![11, 12, 21, 22, 31, 32]);
        assert_eq!(strides(&[2, 3, 4]), vec![12, 4, 1]);
    }
}
