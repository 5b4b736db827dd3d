//! The recurrent layers RNN, GRU and LSTM: inference and one CPU kernel for all three.
//!
//! The input projection `X·Wᵀ` of every time step is one GEMM per direction before the loop;
//! each step then multiplies the batch's hidden state by `Rᵀ` (one GEMM for all gates) and applies
//! the gate equations. `sequence_lens` gives each batch row its own length: a row stops updating
//! after its last step (so `Y_h`/`Y_c` hold its last valid state) and its later rows of `Y` are
//! zero (a row of length zero gets zero states); a reverse direction starts at each row's own
//! last step. `layout = 1` (batch first) is
//! handled by transposing at the edges. f16/bf16 compute in f32.
use kiln_ir::{AttrValue, Dim};

use super::linalg::{filled, float_dispatch, gemm, product, Mat, Real};
use super::microsoft::matmul::quantize_dynamic;
use crate::ctx::{InferCtx, Inferred, Result};
use crate::kernel::{KernelCtx, KernelFn};
use crate::value::{Tensor, Value};

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    match (domain, op_type) {
        ("", "RNN" | "GRU" | "LSTM") => Some(run),
        ("com.microsoft", "DynamicQuantizeLSTM") => Some(run_quantized),
        _ => None,
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Rnn,
    Gru,
    Lstm,
}

impl Kind {
    fn of(op: &str) -> Kind {
        match op {
            "GRU" => Kind::Gru,
            "LSTM" | "DynamicQuantizeLSTM" => Kind::Lstm,
            _ => Kind::Rnn,
        }
    }

    /// Gate blocks in W and R.
    fn gates(self) -> usize {
        match self {
            Kind::Rnn => 1,
            Kind::Gru => 3,
            Kind::Lstm => 4,
        }
    }

    /// Activations per direction.
    fn acts(self) -> usize {
        match self {
            Kind::Rnn => 1,
            Kind::Gru => 2,
            Kind::Lstm => 3,
        }
    }

    fn default_acts(self) -> &'static [&'static str] {
        match self {
            Kind::Rnn => &["Tanh"],
            Kind::Gru => &["Sigmoid", "Tanh"],
            Kind::Lstm => &["Sigmoid", "Tanh", "Tanh"],
        }
    }
}

/// Directions from the `direction` attribute.
fn num_directions(dir: &str) -> Result<usize> {
    match dir {
        "forward" | "reverse" => Ok(1),
        "bidirectional" => Ok(2),
        other => Err(format!(
            "direction must be forward, reverse or bidirectional, got '{other}'"
        )),
    }
}

/// Y: `[seq, dirs, batch, hidden]` (layout 1: `[batch, seq, dirs, hidden]`); Y_h and Y_c:
/// `[dirs, batch, hidden]` (layout 1: `[batch, dirs, hidden]`).
pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let dt = ctx.dtype(0);
    let layout = ctx.int_attr("layout", 0);
    let dirs = num_directions(ctx.str_attr("direction").unwrap_or("forward"))?;
    let hidden = match ctx.attr("hidden_size") {
        Some(_) => Dim::Known(ctx.int_attr("hidden_size", 0)),
        None => ctx
            .shape(2)
            .and_then(|r| r.get(2).cloned())
            .unwrap_or(Dim::Unknown),
    };
    let (seq, batch) = match ctx.shape(0) {
        Some(s) if s.len() == 3 => {
            if layout == 0 {
                (s[0].clone(), s[1].clone())
            } else {
                (s[1].clone(), s[0].clone())
            }
        }
        _ => (Dim::Unknown, Dim::Unknown),
    };
    let d = Dim::Known(dirs as i64);
    let y = if layout == 0 {
        vec![seq, d.clone(), batch.clone(), hidden.clone()]
    } else {
        vec![batch.clone(), seq, d.clone(), hidden.clone()]
    };
    let state = if layout == 0 {
        vec![d, batch, hidden]
    } else {
        vec![batch, d, hidden]
    };
    let mut out = vec![Inferred::tensor(dt, Some(y))];
    for _ in 1..ctx.num_outputs {
        out.push(Inferred::tensor(dt, Some(state.clone())));
    }
    Ok(out)
}

/// An activation of the recurrent ops' list, with its alpha and beta.
#[derive(Clone, Copy, Debug)]
enum Act {
    Relu,
    Tanh,
    Sigmoid,
    Affine(f64, f64),
    LeakyRelu(f64),
    ThresholdedRelu(f64),
    ScaledTanh(f64, f64),
    HardSigmoid(f64, f64),
    Elu(f64),
    Softsign,
    Softplus,
}

impl Act {
    /// Parses the activation names; `alpha`/`beta` are consumed in order by the activations
    /// that take them (as ONNX Runtime reads the lists), the rest get ONNX's defaults.
    fn parse_list(names: &[String], alphas: &[f32], betas: &[f32]) -> Result<Vec<Act>> {
        let (mut ai, mut bi) = (alphas.iter(), betas.iter());
        let take = |it: &mut std::slice::Iter<f32>, default: f64| {
            it.next().map(|v| *v as f64).unwrap_or(default)
        };
        names
            .iter()
            .map(|n| {
                Ok(match n.to_ascii_lowercase().as_str() {
                    "relu" => Act::Relu,
                    "tanh" => Act::Tanh,
                    "sigmoid" => Act::Sigmoid,
                    "affine" => Act::Affine(take(&mut ai, 1.0), take(&mut bi, 0.0)),
                    "leakyrelu" => Act::LeakyRelu(take(&mut ai, 0.01)),
                    "thresholdedrelu" => Act::ThresholdedRelu(take(&mut ai, 1.0)),
                    "scaledtanh" => Act::ScaledTanh(take(&mut ai, 1.0), take(&mut bi, 1.0)),
                    "hardsigmoid" => Act::HardSigmoid(take(&mut ai, 0.2), take(&mut bi, 0.5)),
                    "elu" => Act::Elu(take(&mut ai, 1.0)),
                    "softsign" => Act::Softsign,
                    "softplus" => Act::Softplus,
                    _ => return Err(format!("unknown activation '{n}'")),
                })
            })
            .collect()
    }

    #[inline]
    fn apply<T: Real>(self, x: T) -> T {
        let one = T::one();
        match self {
            Act::Relu => x.max(T::zero()),
            Act::Tanh => x.tanh(),
            Act::Sigmoid => one / (one + (-x).exp()),
            Act::Affine(a, b) => T::of(a) * x + T::of(b),
            Act::LeakyRelu(a) => {
                if x >= T::zero() {
                    x
                } else {
                    T::of(a) * x
                }
            }
            Act::ThresholdedRelu(a) => {
                if x > T::of(a) {
                    x
                } else {
                    T::zero()
                }
            }
            Act::ScaledTanh(a, b) => T::of(a) * (T::of(b) * x).tanh(),
            Act::HardSigmoid(a, b) => (T::of(a) * x + T::of(b)).max(T::zero()).min(one),
            Act::Elu(a) => {
                if x >= T::zero() {
                    x
                } else {
                    T::of(a) * (x.exp() - one)
                }
            }
            Act::Softsign => x / (one + x.abs()),
            Act::Softplus => {
                // log(1 + e^x) without overflow for large x.
                if x > T::of(20.0) {
                    x
                } else {
                    x.exp().ln_1p()
                }
            }
        }
    }
}

/// Everything the kernel reads from the attributes.
struct Spec {
    kind: Kind,
    hidden: usize,
    dirs: usize,
    reverse_only: bool,
    /// `kind.acts()` per direction.
    acts: Vec<Act>,
    clip: Option<f64>,
    input_forget: bool,
    linear_before_reset: bool,
    layout: i64,
}

fn spec(ctx: &KernelCtx, hidden_from_r: usize) -> Result<Spec> {
    let kind = Kind::of(ctx.op_type);
    let dir = ctx.str_attr("direction").unwrap_or("forward");
    let dirs = num_directions(dir)?;
    let hidden = match ctx.attrs.iter().any(|a| a.name == "hidden_size") {
        true => {
            let h = ctx.int_attr("hidden_size", 0);
            if h <= 0 || h as usize != hidden_from_r {
                return Err(format!(
                    "hidden_size {h} does not match R's last dimension {hidden_from_r}"
                ));
            }
            h as usize
        }
        false => hidden_from_r,
    };
    let names: Vec<String> = match ctx.attr("activations") {
        Some(AttrValue::Strings(v)) => v
            .iter()
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
        _ => kind
            .default_acts()
            .iter()
            .cycle()
            .take(kind.acts() * dirs)
            .map(|s| s.to_string())
            .collect(),
    };
    // A forward-only list given to a bidirectional layer is used for both directions.
    let names = if names.len() == kind.acts() && dirs == 2 {
        [names.clone(), names].concat()
    } else {
        names
    };
    if names.len() != kind.acts() * dirs {
        return Err(format!(
            "activations lists {} functions, {} expects {} for {dirs} direction(s)",
            names.len(),
            ctx.op_type,
            kind.acts() * dirs
        ));
    }
    let floats = |n: &str| match ctx.attr(n) {
        Some(AttrValue::Floats(v)) => v.clone(),
        _ => Vec::new(),
    };
    let acts = Act::parse_list(
        &names,
        &floats("activation_alpha"),
        &floats("activation_beta"),
    )?;
    let clip = match ctx.attrs.iter().any(|a| a.name == "clip") {
        true => {
            let c = ctx.float_attr("clip", 0.0) as f64;
            if c.is_nan() || c < 0.0 {
                return Err(format!("clip must be non-negative, got {c}"));
            }
            Some(c)
        }
        false => None,
    };
    let layout = ctx.int_attr("layout", 0);
    if layout != 0 && layout != 1 {
        return Err(format!("layout must be 0 or 1, got {layout}"));
    }
    Ok(Spec {
        kind,
        hidden,
        dirs,
        reverse_only: dir == "reverse",
        acts,
        clip,
        input_forget: ctx.int_attr("input_forget", 0) != 0,
        linear_before_reset: ctx.int_attr("linear_before_reset", 0) != 0,
        layout,
    })
}

/// Checks a tensor's shape against what the op expects.
fn expect_shape(t: &Tensor, want: &[usize], what: &str) -> Result<()> {
    if t.shape != want {
        return Err(format!("{what} has shape {:?}, expected {want:?}", t.shape));
    }
    Ok(())
}

/// Swaps the first two axes of a rank-3 (or more) row-major array.
fn swap01<T: Copy>(v: &[T], a: usize, b: usize, inner: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(v.len());
    for j in 0..b {
        for i in 0..a {
            out.extend_from_slice(&v[(i * b + j) * inner..][..inner]);
        }
    }
    out
}

/// The weights of the gate projections: ONNX's float `W` (`[dirs, gates·h, input]`) and `R`
/// (`[dirs, gates·h, h]`), or com.microsoft DynamicQuantizeLSTM's 8-bit ones
/// (`[dirs, input, 4h]`, `[dirs, h, 4h]`) with their scales.
enum Weights<'a, T: Clone> {
    Float {
        w: std::borrow::Cow<'a, [T]>,
        r: std::borrow::Cow<'a, [T]>,
    },
    /// Centred on their zero points, as f64 (integer products summed exactly, as ONNX
    /// Runtime's int32 accumulators do); one scale per direction and gate column.
    Quant {
        w: Vec<f64>,
        r: Vec<f64>,
        w_scale: Vec<f32>,
        r_scale: Vec<f32>,
    },
}

impl<T: Real> Weights<'_, T> {
    /// `out[m × n]` (row stride `ldo`) = `a[m × k]` times the transposed first `n` gate rows
    /// of direction `dir`'s input (`recurrent` false) or recurrent weights. The quantized form
    /// quantizes `a` as a whole to uint8 first (DynamicQuantizeLinear), as ONNX Runtime does for
    /// each product, and scales the integer sums back.
    #[allow(clippy::too_many_arguments)]
    fn project(
        &self,
        recurrent: bool,
        dir: usize,
        m: usize,
        n: usize,
        k: usize,
        gh: usize,
        a: &[T],
        out: &mut [T],
        ldo: usize,
    ) -> Result<()> {
        match self {
            Weights::Float { w, r } => {
                let all = if recurrent { r } else { w };
                let wd = &all[dir * gh * k..(dir + 1) * gh * k];
                gemm(
                    m,
                    n,
                    k,
                    T::one(),
                    Mat::rows(a, k),
                    Mat::rows(&wd[..n * k], k).t(),
                    T::zero(),
                    out,
                    ldo,
                )
            }
            Weights::Quant {
                w,
                r,
                w_scale,
                r_scale,
            } => {
                let (all, scale) = if recurrent {
                    (r, r_scale)
                } else {
                    (w, w_scale)
                };
                let wd = &all[dir * k * gh..(dir + 1) * k * gh];
                let scale = &scale[dir * gh..(dir + 1) * gh];
                let af: Vec<f32> = a[..m * k].iter().map(|v| v.f64() as f32).collect();
                let (q, a_scale, a_zp) = quantize_dynamic(&af);
                let centred: Vec<f64> = q.iter().map(|&v| (v - a_zp) as f64).collect();
                let mut acc = filled(m * n, 0f64)?;
                gemm(
                    m,
                    n,
                    k,
                    1.0,
                    Mat::rows(&centred, k),
                    Mat::rows(wd, gh),
                    0.0,
                    &mut acc,
                    n,
                )?;
                for (i, row) in acc.chunks(n.max(1)).enumerate() {
                    for (col, &v) in row.iter().enumerate() {
                        // ONNX Runtime scales the int32 sum by the product of the two scales.
                        out[i * ldo + col] = T::of((v as f32 * (a_scale * scale[col])) as f64);
                    }
                }
                Ok(())
            }
        }
    }
}

fn run(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let w = ctx.tensor(1)?;
    let r = ctx.tensor(2)?;
    for (t, what) in [(x, "X"), (w, "W"), (r, "R")] {
        if t.rank() != 3 {
            return Err(format!("{what} must have rank 3, got shape {:?}", t.shape));
        }
        if t.dtype() != x.dtype() {
            return Err(format!(
                "{what} has type {}, X has {}",
                t.dtype(),
                x.dtype()
            ));
        }
    }
    let s = spec(ctx, r.shape[2])?;
    float_dispatch!(x.dtype(), run_float(ctx, &s, x, w, r))
}

fn run_float<T: Real>(
    ctx: &KernelCtx,
    s: &Spec,
    x: &Tensor,
    w: &Tensor,
    r: &Tensor,
) -> Result<Vec<Value>> {
    let (gh, d) = (s.kind.gates() * s.hidden, s.dirs);
    expect_shape(w, &[d, gh, x.shape[2]], "W")?;
    expect_shape(r, &[d, gh, s.hidden], "R")?;
    let weights = Weights::Float {
        w: T::load(w)?,
        r: T::load(r)?,
    };
    run_typed(ctx, s, x, &weights)
}

/// com.microsoft DynamicQuantizeLSTM: an LSTM whose `W` (`[dirs, input, 4h]`) and `R`
/// (`[dirs, h, 4h]`) are int8 or uint8 with per-direction (`[dirs]`) or per-column
/// (`[dirs, 4h]`) scales and zero points (inputs 8 to 11); float32 activations.
fn run_quantized(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let w = ctx.tensor(1)?;
    let r = ctx.tensor(2)?;
    if x.dtype() != kiln_ir::DataType::F32 {
        return Err(format!("X must be float32, got {}", x.dtype()));
    }
    for (t, what) in [(x, "X"), (w, "W"), (r, "R")] {
        if t.rank() != 3 {
            return Err(format!("{what} must have rank 3, got shape {:?}", t.shape));
        }
    }
    let s = spec(ctx, r.shape[1])?;
    let (h, d) = (s.hidden, s.dirs);
    let gh = 4 * h;
    let input = x.shape[2];
    expect_shape(w, &[d, input, gh], "W")?;
    expect_shape(r, &[d, h, gh], "R")?;
    // Per direction and gate column: a scale and zero point given per direction or per column.
    let per_column = |i: usize, what: &str, default: f64| -> Result<Vec<f64>> {
        let v = match ctx.opt_tensor(i)? {
            Some(t) => t.to_f64s()?,
            None => vec![default; d],
        };
        if v.len() == d {
            Ok(v.iter().flat_map(|&x| std::iter::repeat_n(x, gh)).collect())
        } else if v.len() == d * gh {
            Ok(v)
        } else {
            Err(format!(
                "{what} has {} values, expected {d} or {}",
                v.len(),
                d * gh
            ))
        }
    };
    let centre = |t: &Tensor, zp: &[f64]| -> Result<Vec<f64>> {
        if !matches!(t.dtype(), kiln_ir::DataType::I8 | kiln_ir::DataType::U8) {
            return Err(format!(
                "quantized weights must be int8 or uint8, got {}",
                t.dtype()
            ));
        }
        let q = t.to_f64s()?;
        let rows = q.len() / (d * gh).max(1);
        Ok(q.iter()
            .enumerate()
            .map(|(i, &v)| v - zp[(i / (rows * gh)) * gh + i % gh])
            .collect())
    };
    let w_zp = per_column(9, "W_zero_point", 0.0)?;
    let r_zp = per_column(11, "R_zero_point", 0.0)?;
    let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
    let weights: Weights<f32> = Weights::Quant {
        w: centre(w, &w_zp)?,
        r: centre(r, &r_zp)?,
        w_scale: f32s(per_column(8, "W_scale", 1.0)?),
        r_scale: f32s(per_column(10, "R_scale", 1.0)?),
    };
    run_typed(ctx, &s, x, &weights)
}

/// Per-batch sequence lengths (all `seq` when absent), each checked against `seq`.
fn seq_lens(t: Option<&Tensor>, batch: usize, seq: usize) -> Result<Vec<usize>> {
    let Some(t) = t else {
        return Ok(vec![seq; batch]);
    };
    let v = t.to_i64s()?;
    if v.len() != batch {
        return Err(format!(
            "sequence_lens has {} values for a batch of {batch}",
            v.len()
        ));
    }
    v.into_iter()
        .map(|l| {
            if l < 0 || l as usize > seq {
                Err(format!(
                    "sequence_lens value {l} is outside [0, {seq}] (the sequence length)"
                ))
            } else {
                Ok(l as usize)
            }
        })
        .collect()
}

/// An initial state input (`[dirs, batch, hidden]`, batch first in layout 1) as
/// `[dirs, batch, hidden]`, zeros when absent.
fn initial<T: Real>(t: Option<&Tensor>, s: &Spec, batch: usize, what: &str) -> Result<Vec<T>> {
    let (d, h) = (s.dirs, s.hidden);
    let Some(t) = t else {
        return filled(d * batch * h, T::zero());
    };
    let want = if s.layout == 0 {
        [d, batch, h]
    } else {
        [batch, d, h]
    };
    expect_shape(t, &want, what)?;
    let v = T::load(t)?;
    Ok(if s.layout == 0 {
        v.into_owned()
    } else {
        swap01(&v, batch, d, h)
    })
}

fn run_typed<T: Real>(
    ctx: &KernelCtx,
    s: &Spec,
    x: &Tensor,
    weights: &Weights<T>,
) -> Result<Vec<Value>> {
    let (seq, batch, input) = if s.layout == 0 {
        (x.shape[0], x.shape[1], x.shape[2])
    } else {
        (x.shape[1], x.shape[0], x.shape[2])
    };
    let (h, g, d) = (s.hidden, s.kind.gates(), s.dirs);
    let gh = g * h;
    let b = match ctx.opt_tensor(3)? {
        Some(t) => {
            expect_shape(t, &[d, 2 * gh], "B")?;
            Some(T::load(t)?)
        }
        None => None,
    };
    let lens = seq_lens(ctx.opt_tensor(4)?, batch, seq)?;
    let mut hs = initial::<T>(ctx.opt_tensor(5)?, s, batch, "initial_h")?;
    let lstm = s.kind == Kind::Lstm;
    let mut cs = if lstm {
        initial::<T>(ctx.opt_tensor(6)?, s, batch, "initial_c")?
    } else {
        Vec::new()
    };
    let p = match (lstm, ctx.opt_tensor(7)?) {
        (true, Some(t)) => {
            expect_shape(t, &[d, 3 * h], "P")?;
            Some(T::load(t)?)
        }
        _ => None,
    };
    product(&[seq, d, batch, h])?;
    product(&[seq, batch, gh])?;
    let xv = T::load(x)?;
    let xs: Vec<T> = if s.layout == 0 {
        xv.into_owned()
    } else {
        swap01(&xv, batch, seq, input)
    };
    let mut y = filled(seq * d * batch * h, T::zero())?;
    let mut xw = filled(seq * batch * gh, T::zero())?;
    let mut hr = filled(batch * gh, T::zero())?;
    let mut gate = filled(gh, T::zero())?;
    let mut rh = if s.kind == Kind::Gru {
        filled(batch * h, T::zero())?
    } else {
        Vec::new()
    };
    for dir in 0..d {
        let reverse = dir == 1 || s.reverse_only;
        let acts = &s.acts[dir * s.kind.acts()..(dir + 1) * s.kind.acts()];
        // GRU's separate product with the reset state reads the float R (GRU has no
        // quantized form).
        let rd: &[T] = match weights {
            Weights::Float { r, .. } => &r[dir * gh * h..(dir + 1) * gh * h],
            Weights::Quant { .. } => &[],
        };
        // All time steps' input projections at once: [seq*batch, input] x [input, g*h].
        weights.project(false, dir, seq * batch, gh, input, gh, &xs, &mut xw, gh)?;
        // Biases folded into the projection; GRU's Rbh stays apart when it is applied before
        // the reset gate multiplies.
        let mut rbh = vec![T::zero(); h];
        if let Some(bv) = &b {
            let wb = &bv[dir * 2 * gh..dir * 2 * gh + gh];
            let rb = &bv[dir * 2 * gh + gh..(dir + 1) * 2 * gh];
            let mut bias: Vec<T> = wb.iter().zip(rb).map(|(&a, &c)| a + c).collect();
            if s.kind == Kind::Gru {
                rbh.copy_from_slice(&rb[2 * h..]);
                bias[2 * h..].copy_from_slice(&wb[2 * h..]);
                if !s.linear_before_reset {
                    // (r ⊙ H)·Rhᵀ + Rbh: Rbh is outside the product, add it with the rest.
                    for (o, &v) in bias[2 * h..].iter_mut().zip(&rbh) {
                        *o = *o + v;
                    }
                    rbh.fill(T::zero());
                }
            }
            for row in xw.chunks_mut(gh) {
                for (o, &v) in row.iter_mut().zip(&bias) {
                    *o = *o + v;
                }
            }
        }
        let (pi, po, pf) = match &p {
            Some(pv) => {
                let pd = &pv[dir * 3 * h..(dir + 1) * 3 * h];
                (&pd[..h], &pd[h..2 * h], &pd[2 * h..])
            }
            None => (&[][..], &[][..], &[][..]),
        };
        let hd = &mut hs[dir * batch * h..(dir + 1) * batch * h];
        let cd: &mut [T] = if lstm {
            &mut cs[dir * batch * h..(dir + 1) * batch * h]
        } else {
            &mut []
        };
        // GRU without linear_before_reset multiplies R's h block by r ⊙ H, so only the z and r
        // blocks go into the shared product.
        let shared = if s.kind == Kind::Gru && !s.linear_before_reset {
            2 * h
        } else {
            gh
        };
        let clip = |v: T| match s.clip {
            Some(c) => v.max(T::of(-c)).min(T::of(c)),
            None => v,
        };
        for step in 0..seq {
            if lens.iter().all(|&l| step >= l) {
                break;
            }
            weights.project(true, dir, batch, shared, h, gh, hd, &mut hr, gh)?;
            for bi in 0..batch {
                if step >= lens[bi] {
                    continue;
                }
                let t = if reverse { lens[bi] - 1 - step } else { step };
                let xrow = &xw[(t * batch + bi) * gh..][..gh];
                let hrow = &hr[bi * gh..][..gh];
                for (o, (&a, &c)) in gate.iter_mut().zip(xrow.iter().zip(hrow)) {
                    *o = a + c;
                }
                let hb = &mut hd[bi * h..(bi + 1) * h];
                match s.kind {
                    Kind::Rnn => {
                        for (o, &v) in hb.iter_mut().zip(&gate) {
                            *o = acts[0].apply(clip(v));
                        }
                    }
                    Kind::Lstm => {
                        let cb = &mut cd[bi * h..(bi + 1) * h];
                        let (f, gg, hh) = (acts[0], acts[1], acts[2]);
                        for j in 0..h {
                            let peep =
                                |pv: &[T], c: T| if pv.is_empty() { T::zero() } else { pv[j] * c };
                            let c_prev = cb[j];
                            let i = f.apply(clip(gate[j] + peep(pi, c_prev)));
                            let fg = if s.input_forget {
                                T::one() - i
                            } else {
                                f.apply(clip(gate[2 * h + j] + peep(pf, c_prev)))
                            };
                            let cc = gg.apply(clip(gate[3 * h + j]));
                            let c = fg * c_prev + i * cc;
                            let o = f.apply(clip(gate[h + j] + peep(po, c)));
                            cb[j] = c;
                            hb[j] = o * hh.apply(c);
                        }
                    }
                    Kind::Gru => {
                        let (f, gg) = (acts[0], acts[1]);
                        let zr: Vec<(T, T)> = (0..h)
                            .map(|j| (f.apply(clip(gate[j])), f.apply(clip(gate[h + j]))))
                            .collect();
                        let hcand: Vec<T> = if s.linear_before_reset {
                            (0..h)
                                .map(|j| {
                                    let lin = hrow[2 * h + j] + rbh[j];
                                    gg.apply(clip(xrow[2 * h + j] + zr[j].1 * lin))
                                })
                                .collect()
                        } else {
                            let rhb = &mut rh[..h];
                            for j in 0..h {
                                rhb[j] = zr[j].1 * hb[j];
                            }
                            let mut lin = vec![T::zero(); h];
                            gemm(
                                1,
                                h,
                                h,
                                T::one(),
                                Mat::rows(rhb, h),
                                Mat::rows(&rd[2 * h * h..], h).t(),
                                T::zero(),
                                &mut lin,
                                h,
                            )?;
                            (0..h)
                                .map(|j| gg.apply(clip(xrow[2 * h + j] + lin[j])))
                                .collect()
                        };
                        for j in 0..h {
                            let z = zr[j].0;
                            hb[j] = (T::one() - z) * hcand[j] + z * hb[j];
                        }
                    }
                }
                let yo = ((t * d + dir) * batch + bi) * h;
                y[yo..yo + h].copy_from_slice(hb);
            }
        }
    }
    // A row of length zero has no last step: ONNX Runtime gives it zero states, not the
    // initial ones.
    for (bi, _) in lens.iter().enumerate().filter(|(_, &l)| l == 0) {
        for dir in 0..d {
            let o = (dir * batch + bi) * h;
            hs[o..o + h].fill(T::zero());
            if lstm {
                cs[o..o + h].fill(T::zero());
            }
        }
    }
    let dt = x.dtype();
    let (y_shape, y) = if s.layout == 0 {
        (vec![seq, d, batch, h], y)
    } else {
        // [seq, d, batch, h] -> [batch, seq, d, h]
        let mut out = Vec::with_capacity(y.len());
        for bi in 0..batch {
            for t in 0..seq {
                for dir in 0..d {
                    out.extend_from_slice(&y[((t * d + dir) * batch + bi) * h..][..h]);
                }
            }
        }
        (vec![batch, seq, d, h], out)
    };
    let state = |v: Vec<T>| -> Tensor {
        if s.layout == 0 {
            Tensor::new(vec![d, batch, h], T::store(v, dt))
        } else {
            Tensor::new(vec![batch, d, h], T::store(swap01(&v, d, batch, h), dt))
        }
    };
    let mut out = vec![Value::Tensor(Tensor::new(y_shape, T::store(y, dt)))];
    if ctx.num_outputs > 1 {
        out.push(Value::Tensor(state(hs)));
    }
    if ctx.num_outputs > 2 && lstm {
        out.push(Value::Tensor(state(cs)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use kiln_ir::{AttrValue, Attribute};

    use crate::ops::movement::testing::*;
    use crate::value::Tensor;

    fn rnn_inputs(lens: Option<Vec<i32>>) -> Vec<Option<Tensor>> {
        // seq 2, batch 2, input 1, hidden 1; W = 1, R = 0: H_t = tanh(x_t).
        vec![
            Some(f32s(&[2, 2, 1], &[0.5, 1.0, -0.5, 2.0])),
            Some(f32s(&[1, 1, 1], &[1.0])),
            Some(f32s(&[1, 1, 1], &[0.0])),
            None,
            lens.map(|l| Tensor::from_vec(vec![2], l)),
        ]
    }

    #[test]
    fn sequence_lens_stop_rows_and_zero_their_tail() {
        let out = run_opset("RNN", 14, &[], &rnn_inputs(Some(vec![2, 1])), 2).unwrap();
        let y = vals(&out[0]);
        let t = |x: f32| x.tanh();
        assert_eq!(out[0].shape, vec![2, 1, 2, 1]);
        assert_eq!(y, vec![t(0.5), t(1.0), t(-0.5), 0.0]);
        // Row 1 stopped after its one step: its last state is tanh(1.0).
        assert_eq!(vals(&out[1]), vec![t(-0.5), t(1.0)]);
    }

    #[test]
    fn reverse_starts_at_each_rows_last_step() {
        let a = [Attribute::string("direction", "reverse")];
        let out = run_opset("RNN", 14, &a, &rnn_inputs(Some(vec![2, 1])), 2).unwrap();
        let t = |x: f32| x.tanh();
        // R = 0, so each output is tanh of its own input; row 1 has only t = 0.
        assert_eq!(vals(&out[0]), vec![t(0.5), t(1.0), t(-0.5), 0.0]);
        // The reverse pass ends at t = 0 for both rows.
        assert_eq!(vals(&out[1]), vec![t(0.5), t(1.0)]);
    }

    #[test]
    fn bad_attributes_and_lengths_are_errors() {
        let a = [Attribute::string("direction", "sideways")];
        let e = run_opset("RNN", 14, &a, &rnn_inputs(None), 2).unwrap_err();
        assert!(e.contains("direction"), "{e}");
        let e = run_opset("RNN", 14, &[], &rnn_inputs(Some(vec![3, 1])), 2).unwrap_err();
        assert!(e.contains("sequence_lens value 3"), "{e}");
        let a = [Attribute::new(
            "activations",
            AttrValue::Strings(vec!["Gelu".into()]),
        )];
        let e = run_opset("RNN", 14, &a, &rnn_inputs(None), 2).unwrap_err();
        assert!(e.contains("unknown activation 'Gelu'"), "{e}");
        let a = [Attribute::int("hidden_size", 4)];
        let e = run_opset("RNN", 14, &a, &rnn_inputs(None), 2).unwrap_err();
        assert!(e.contains("hidden_size 4"), "{e}");
    }
}
