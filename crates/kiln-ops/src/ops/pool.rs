//! Pooling: MaxPool/AveragePool/LpPool over a window, and the global pools.
use half::{bf16, f16};
use kiln_ir::{DataType, Dim};
use rayon::prelude::*;

use super::linalg::{filled, float_dispatch, product, Real};
use crate::ctx::{InferCtx, Inferred, Result, MAX_ATTR};
use crate::kernel::{one, strides, KernelCtx};
use crate::ops::conv::{window, window_output, Window};
use crate::value::{Data, Elem, Tensor, Value};

pub fn infer(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let Some(x) = ctx.shape(0) else {
        return Ok((0..ctx.num_outputs)
            .map(|i| {
                Inferred::tensor(
                    if i == 0 {
                        ctx.dtype(0)
                    } else {
                        Some(DataType::I64)
                    },
                    None,
                )
            })
            .collect());
    };
    if x.len() < 3 {
        return Err(format!("input X must have rank >= 3, got {}", x.len()));
    }
    let kernel = ctx
        .ints_attr("kernel_shape")
        .ok_or("kernel_shape attribute is required")?;
    let ceil = ctx.int_attr("ceil_mode", 0) != 0;
    let mut shape = vec![x[0].clone(), x[1].clone()];
    shape.extend(window_output(ctx, &x[2..], kernel, ceil)?);
    let mut out = vec![Inferred::tensor(ctx.dtype(0), Some(shape.clone()))];
    if ctx.num_outputs > 1 {
        out.push(Inferred::tensor(Some(DataType::I64), Some(shape)));
    }
    Ok(out)
}

pub fn infer_global(ctx: &InferCtx) -> Result<Vec<Inferred>> {
    let shape = match ctx.shape(0) {
        Some(x) if x.len() < 2 => {
            return Err(format!("input X must have rank >= 2, got {}", x.len()))
        }
        Some(x) => Some(
            x.iter()
                .enumerate()
                .map(|(i, d)| if i < 2 { d.clone() } else { Dim::Known(1) })
                .collect(),
        ),
        None => None,
    };
    Ok(vec![Inferred::tensor(ctx.dtype(0), shape)])
}

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<crate::kernel::KernelFn> {
    let f: crate::kernel::KernelFn = match (domain, op_type) {
        ("", "MaxPool") => run_max_pool,
        ("", "AveragePool") => run_average_pool,
        ("", "LpPool") => run_lp_pool,
        ("", "GlobalAveragePool") => run_global_average,
        ("", "GlobalMaxPool") => run_global_max,
        ("", "GlobalLpPool") => run_global_lp,
        _ => return None,
    };
    Some(f)
}

/// A pooling node's windows. The spatial dims split into the leading ones and the last: for
/// each leading output index, the offsets (in the plane) of the rows its taps read; for each
/// last-dim output index, the coordinates its taps read along the row. With how many taps lie
/// inside the padded input (AveragePool's divisor with `count_include_pad`).
pub(crate) struct Taps {
    pub win: Window,
    pub lead: Vec<Vec<usize>>,
    pub lead_incl: Vec<usize>,
    pub last: Vec<Vec<usize>>,
    pub last_incl: Vec<usize>,
}

impl Taps {
    /// Calls `f(output index, row offsets, coordinates along the row, taps inside the padded
    /// input)` for every output position, in row-major order.
    #[inline]
    fn each(&self, mut f: impl FnMut(usize, &[usize], &[usize], usize)) {
        let w = self.last.len();
        for (li, (rows, ri)) in self.lead.iter().zip(&self.lead_incl).enumerate() {
            for (ol, (cols, ci)) in self.last.iter().zip(&self.last_incl).enumerate() {
                f(li * w + ol, rows, cols, ri * ci);
            }
        }
    }
}

/// Resolves the windows of a pooling node over X.
#[allow(clippy::needless_range_loop)]
pub(crate) fn taps(ctx: &KernelCtx, x: &Tensor) -> Result<Taps> {
    if x.rank() < 3 {
        return Err(format!(
            "input X must have rank >= 3, got shape {:?}",
            x.shape
        ));
    }
    let nd = x.rank() - 2;
    let kernel = ctx
        .ints_attr("kernel_shape")
        .ok_or("kernel_shape attribute is required")?;
    if kernel.len() != nd || kernel.iter().any(|&k| !(1..=MAX_ATTR).contains(&k)) {
        return Err(format!(
            "kernel_shape {kernel:?} must have {nd} positive sizes"
        ));
    }
    let kernel: Vec<usize> = kernel.iter().map(|&k| k as usize).collect();
    let ceil = ctx.int_attr("ceil_mode", 0) != 0;
    let win = window(ctx, &x.shape[2..], &kernel, ceil)?;
    // The per-dim tables hold out * kernel entries per dim.
    let table: Option<usize> = (0..nd)
        .map(|d| win.output[d].checked_mul(kernel[d]))
        .try_fold(0usize, |a, b| b.and_then(|b| a.checked_add(b)));
    if table.is_none_or(|t| t > 1 << 28) {
        return Err("the pooling windows are too large".into());
    }
    let mut coords = Vec::with_capacity(nd);
    let mut incl = Vec::with_capacity(nd);
    for d in 0..nd {
        let (inp, pb, pe) = (
            win.input[d] as i128,
            win.pads[d] as i128,
            win.pads_end[d] as i128,
        );
        let (s, dil) = (win.strides[d] as i128, win.dilations[d] as i128);
        let mut l = Vec::with_capacity(win.output[d]);
        let mut inc = Vec::with_capacity(win.output[d]);
        for o in 0..win.output[d] as i128 {
            let start = o * s - pb;
            let mut valid = Vec::new();
            let mut count = 0;
            for k in 0..kernel[d] as i128 {
                let c = start + k * dil;
                if c >= -pb && c < inp + pe {
                    count += 1;
                }
                if c >= 0 && c < inp {
                    valid.push(c as usize);
                }
            }
            l.push(valid);
            inc.push(count);
        }
        coords.push(l);
        incl.push(inc);
    }
    let last = nd - 1;
    let lead_dims = &win.output[..last];
    let lead_taps = product(&kernel[..last])?;
    if product(lead_dims)
        .ok()
        .and_then(|n| n.checked_mul(lead_taps))
        .is_none_or(|t| t > 1 << 28)
    {
        return Err("the pooling windows are too large".into());
    }
    let in_strides = strides(&win.input);
    let mut lead = Vec::new();
    let mut lead_incl = Vec::new();
    if !win.output.contains(&0) {
        let mut idx = vec![0usize; last];
        loop {
            let mut offs = vec![0usize];
            let mut inc = 1;
            for d in 0..last {
                let mut next = Vec::with_capacity(offs.len() * coords[d][idx[d]].len());
                for &a in &offs {
                    for &c in &coords[d][idx[d]] {
                        next.push(a + c * in_strides[d]);
                    }
                }
                offs = next;
                inc *= incl[d][idx[d]];
            }
            lead.push(offs);
            lead_incl.push(inc);
            if !next_index(&mut idx, lead_dims) {
                break;
            }
        }
    }
    Ok(Taps {
        win,
        lead,
        lead_incl,
        last: coords.pop().unwrap_or_default(),
        last_incl: incl.pop().unwrap_or_default(),
    })
}

fn next_index(idx: &mut [usize], dims: &[usize]) -> bool {
    for d in (0..dims.len()).rev() {
        idx[d] += 1;
        if idx[d] < dims[d] {
            return true;
        }
        idx[d] = 0;
    }
    false
}

fn out_shape(x: &Tensor, spatial: &[usize]) -> Vec<usize> {
    let mut s = x.shape[..2].to_vec();
    s.extend(spatial);
    s
}

/// Element types MaxPool compares, with the value of an empty window.
trait MaxElem: Elem + PartialOrd {
    const LOWEST: Self;
}

macro_rules! max_elem {
    ($($t:ty),*) => {$(impl MaxElem for $t { const LOWEST: Self = <$t>::MIN; })*};
}
max_elem!(f32, f64, f16, bf16, i8, i16, i32, i64, u8, u16, u32, u64);

fn run_max_pool(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let t = taps(ctx, x)?;
    let order = ctx.int_attr("storage_order", 0);
    if order != 0 && order != 1 {
        return Err(format!("storage_order must be 0 or 1, got {order}"));
    }
    if ctx.num_outputs == 1 {
        if let Some(y) = super::pool2d::max(x, &t) {
            return one(Tensor::new(out_shape(x, &t.win.output), Data::F32(y)));
        }
    }
    let (y, idx) = match &x.data {
        Data::F32(v) => max_pool(v, x, &t, order == 1, ctx.num_outputs > 1)?,
        Data::F64(v) => max_pool(v, x, &t, order == 1, ctx.num_outputs > 1)?,
        Data::F16(v) => max_pool(v, x, &t, order == 1, ctx.num_outputs > 1)?,
        Data::BF16(v) => max_pool(v, x, &t, order == 1, ctx.num_outputs > 1)?,
        Data::I8(v) => max_pool(v, x, &t, order == 1, ctx.num_outputs > 1)?,
        Data::U8(v) => max_pool(v, x, &t, order == 1, ctx.num_outputs > 1)?,
        other => {
            return Err(format!(
                "MaxPool of {} tensors is not supported",
                other.dtype()
            ))
        }
    };
    let shape = out_shape(x, &t.win.output);
    let mut out = vec![Value::Tensor(Tensor::new(shape.clone(), y))];
    if ctx.num_outputs > 1 {
        out.push(Value::Tensor(Tensor::from_vec(shape, idx)));
    }
    Ok(out)
}

/// Max over each window, and the flat index of the maximum in X (row-major, or with the
/// spatial dims column-major for `storage_order = 1`); the first maximum wins.
#[allow(clippy::needless_range_loop)]
fn max_pool<T: MaxElem>(
    xv: &[T],
    x: &Tensor,
    t: &Taps,
    col_major: bool,
    with_index: bool,
) -> Result<(Data, Vec<i64>)> {
    let in_sp: usize = t.win.input.iter().product();
    let out_sp = product(&t.win.output)?;
    let planes = x.shape[0] * x.shape[1];
    let mut y = filled(product(&[planes, out_sp])?, T::LOWEST)?;
    // Without the Indices output, one unused slot per plane.
    let ix_chunk = if with_index { out_sp } else { 1 };
    let mut ix = filled(product(&[planes, ix_chunk])?, -1i64)?;
    if out_sp == 0 || in_sp == 0 {
        return Ok((T::wrap(y), ix));
    }
    // Row-major spatial offset -> column-major one.
    let to_col = |off: usize| -> usize {
        let nd = t.win.input.len();
        let mut rest = off;
        let mut coords = vec![0; nd];
        for d in (0..nd).rev() {
            coords[d] = rest % t.win.input[d];
            rest /= t.win.input[d];
        }
        let mut col = 0;
        let mut mult = 1;
        for d in 0..nd {
            col += coords[d] * mult;
            mult *= t.win.input[d];
        }
        col
    };
    y.par_chunks_mut(out_sp)
        .zip(ix.par_chunks_mut(ix_chunk))
        .enumerate()
        .for_each(|(p, (yp, ip))| {
            let xp = &xv[p * in_sp..(p + 1) * in_sp];
            t.each(|o, rows, cols, _| {
                // As ONNX Runtime: NaN never wins; the first maximum does.
                let mut best = T::LOWEST;
                for &r in rows {
                    for &c in cols {
                        let v = xp[r + c];
                        best = if v > best { v } else { best };
                    }
                }
                yp[o] = best;
                if !with_index {
                    return;
                }
                let at = rows
                    .iter()
                    .flat_map(|&r| cols.iter().map(move |&c| r + c))
                    .find(|&off| xp[off] == best);
                ip[o] = match at {
                    Some(at) => {
                        let s = if col_major { to_col(at) } else { at };
                        (p * in_sp + s) as i64
                    }
                    None => -1,
                };
            });
        });
    Ok((T::wrap(y), ix))
}

fn run_average_pool(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let t = taps(ctx, x)?;
    let include_pad = ctx.int_attr("count_include_pad", 0) != 0;
    if let Some(y) = super::pool2d::average(x, &t, include_pad) {
        return one(Tensor::new(out_shape(x, &t.win.output), Data::F32(y)));
    }
    let data = float_dispatch!(x.dtype(), average_pool(x, &t, include_pad))?;
    one(Tensor::new(out_shape(x, &t.win.output), data))
}

/// Applies `f(window values, taps inside the padded input)` to every window.
/// Computes every window with `f(plane, row offsets, coordinates along the row, taps inside
/// the padded input)`.
fn pool_with<T: Real>(
    x: &Tensor,
    t: &Taps,
    f: impl Fn(&[T], &[usize], &[usize], usize) -> T + Sync,
) -> Result<Data> {
    let xv = T::load(x)?;
    let in_sp: usize = t.win.input.iter().product();
    let out_sp = product(&t.win.output)?;
    let planes = x.shape[0] * x.shape[1];
    let mut y = filled(product(&[planes, out_sp])?, T::zero())?;
    if out_sp > 0 && in_sp > 0 {
        y.par_chunks_mut(out_sp).enumerate().for_each(|(p, yp)| {
            let xp = &xv[p * in_sp..(p + 1) * in_sp];
            t.each(|o, rows, cols, incl| yp[o] = f(xp, rows, cols, incl));
        });
    }
    Ok(T::store(y, x.dtype()))
}

fn average_pool<T: Real>(x: &Tensor, t: &Taps, include_pad: bool) -> Result<Data> {
    pool_with::<T>(x, t, |xp, rows, cols, incl| {
        let mut sum = T::zero();
        for &r in rows {
            for &c in cols {
                sum = sum + xp[r + c];
            }
        }
        let d = if include_pad {
            incl
        } else {
            rows.len() * cols.len()
        };
        if d == 0 {
            T::zero()
        } else {
            sum / T::of(d as f64)
        }
    })
}

/// LpPool's `p`: an int since opset 2 (a float before).
fn lp_p(ctx: &KernelCtx) -> Result<f64> {
    let p = match ctx.attr("p") {
        Some(kiln_ir::AttrValue::Float(f)) => *f as f64,
        _ => ctx.int_attr("p", 2) as f64,
    };
    if !(p > 0.0 && p.is_finite()) {
        return Err(format!("p must be positive, got {p}"));
    }
    Ok(p)
}

/// `(sum |x|^p)^(1/p)`, in f64.
fn lp<T: Real>(it: &mut dyn Iterator<Item = T>, p: f64) -> T {
    let s: f64 = if p == 2.0 {
        it.map(|v| v.f64() * v.f64()).sum()
    } else if p == 1.0 {
        it.map(|v| v.f64().abs()).sum()
    } else {
        it.map(|v| v.f64().abs().powf(p)).sum()
    };
    T::of(if p == 2.0 { s.sqrt() } else { s.powf(1.0 / p) })
}

fn run_lp_pool(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    let t = taps(ctx, x)?;
    let p = lp_p(ctx)?;
    let data = float_dispatch!(x.dtype(), lp_pool(x, &t, p))?;
    one(Tensor::new(out_shape(x, &t.win.output), data))
}

fn lp_pool<T: Real>(x: &Tensor, t: &Taps, p: f64) -> Result<Data> {
    pool_with::<T>(x, t, |xp, rows, cols, _| {
        lp(
            &mut rows
                .iter()
                .flat_map(|&r| cols.iter().map(move |&c| xp[r + c])),
            p,
        )
    })
}

/// Global pools: one value per (batch, channel) plane.
fn global<T: Real>(x: &Tensor, f: &(dyn Fn(&[T]) -> T + Sync)) -> Result<Data> {
    let xv = T::load(x)?;
    let planes = x.shape[0] * x.shape[1];
    let in_sp: usize = x.shape[2..].iter().product();
    let y: Vec<T> = if in_sp == 0 {
        vec![f(&[]); planes]
    } else {
        xv.par_chunks(in_sp).map(f).collect()
    };
    Ok(T::store(y, x.dtype()))
}

fn global_shape<'a>(ctx: &KernelCtx<'a>) -> Result<(&'a Tensor, Vec<usize>)> {
    let x = ctx.tensor(0)?;
    if x.rank() < 2 {
        return Err(format!(
            "input X must have rank >= 2, got shape {:?}",
            x.shape
        ));
    }
    let shape = x
        .shape
        .iter()
        .enumerate()
        .map(|(i, &d)| if i < 2 { d } else { 1 })
        .collect();
    Ok((x, shape))
}

fn mean<T: Real>(v: &[T]) -> T {
    let s: f64 = v.iter().map(|x| x.f64()).sum();
    T::of(if v.is_empty() {
        f64::NAN
    } else {
        s / v.len() as f64
    })
}

fn run_global_average(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (x, shape) = global_shape(ctx)?;
    let data = float_dispatch!(x.dtype(), global(x, &mean))?;
    one(Tensor::new(shape, data))
}

fn run_global_max(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (x, shape) = global_shape(ctx)?;
    fn max<T: Real>(v: &[T]) -> T {
        v.iter()
            .fold(T::min_value(), |a, &b| if b > a { b } else { a })
    }
    let data = float_dispatch!(x.dtype(), global(x, &max))?;
    one(Tensor::new(shape, data))
}

fn run_global_lp(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let (x, shape) = global_shape(ctx)?;
    let p = lp_p(ctx)?;
    fn go<T: Real>(x: &Tensor, p: f64) -> Result<Data> {
        global::<T>(x, &|v: &[T]| lp(&mut v.iter().copied(), p))
    }
    let data = float_dispatch!(x.dtype(), go(x, p))?;
    one(Tensor::new(shape, data))
}

#[cfg(test)]
mod kernel_tests {
    use super::*;
    use kiln_ir::Attribute;

    fn call(op: &str, x: Tensor, attrs: &[Attribute], outs: usize) -> Result<Vec<Tensor>> {
        let vals = [Value::Tensor(x)];
        let ctx = KernelCtx {
            op_type: op,
            domain: "",
            opset: 19,
            attrs,
            inputs: vals.iter().map(Some).collect(),
            num_outputs: outs,
            subgraphs: None,
            donated: Default::default(),
        };
        let f = kernel("", op).unwrap();
        Ok(f(&ctx)?
            .into_iter()
            .map(|v| v.into_tensor().unwrap())
            .collect())
    }

    /// Random shapes and attribute values (many invalid): every call returns, none panics.
    #[test]
    fn random_attributes_never_panic() {
        let mut g = Lcg(11);
        let ops = [
            "MaxPool",
            "AveragePool",
            "LpPool",
            "GlobalAveragePool",
            "GlobalMaxPool",
            "GlobalLpPool",
        ];
        let mut ok = 0;
        for _ in 0..20000 {
            let rank = g.r(4) as usize + 1;
            let shape: Vec<usize> = (0..rank).map(|_| g.r(5) as usize).collect();
            let n: usize = shape.iter().product();
            let x = Tensor::from_vec(shape, (0..n).map(|v| v as f32).collect());
            let nd = g.r(4) as usize;
            let mut attrs = vec![Attribute::ints("kernel_shape", &g.pick(nd, -1, 4))];
            if g.r(2) == 0 {
                attrs.push(Attribute::ints("strides", &g.pick(nd, -1, 3)));
            }
            if g.r(2) == 0 {
                let len = 2 * nd + g.r(2) as usize;
                attrs.push(Attribute::ints("pads", &g.pick(len, -1, 4)));
            }
            if g.r(2) == 0 {
                attrs.push(Attribute::ints("dilations", &g.pick(nd, 0, 3)));
            }
            if g.r(3) == 0 {
                attrs.push(Attribute::int("ceil_mode", 1));
            }
            if g.r(3) == 0 {
                attrs.push(Attribute::int("count_include_pad", 1));
            }
            if g.r(4) == 0 {
                let pad = ["SAME_UPPER", "SAME_LOWER", "VALID", "BOGUS"][g.r(4) as usize];
                attrs.push(Attribute::string("auto_pad", pad));
            }
            if g.r(4) == 0 {
                attrs.push(Attribute::int("storage_order", g.r(3) - 1));
            }
            let op = ops[g.r(ops.len() as i64) as usize];
            ok += call(op, x, &attrs, 1 + g.r(2) as usize).is_ok() as usize;
        }
        // Enough valid cases to run the kernels, not only the checks.
        assert!(ok > 500, "only {ok} valid cases");
    }
    struct Lcg(u64);

    impl Lcg {
        fn r(&mut self, n: i64) -> i64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 33) as i64).rem_euclid(n)
        }

        fn pick(&mut self, len: usize, lo: i64, hi: i64) -> Vec<i64> {
            (0..len).map(|_| lo + self.r(hi - lo + 1)).collect()
        }
    }

    /// The vectorized f32 path (`pool2d`) against the reference kernel, run on the same
    /// values in f64: odd and even widths (rows of several 16-lane blocks), windows up to 5
    /// and 6 wide, strides 1–3, dilations, pads, ceil_mode.
    #[test]
    fn fast_f32_pools_match_the_reference() {
        let mut g = Lcg(5);
        for case in 0..400 {
            let (h, w) = (1 + g.r(13) as usize, 1 + g.r(75) as usize);
            let k = [1 + g.r(5), 1 + g.r(6)];
            let s = [1 + g.r(3), 1 + g.r(3)];
            let d = [1 + g.r(2), 1 + g.r(2)];
            let p = [g.r(k[0]), g.r(k[1]), g.r(k[0]), g.r(k[1])];
            let vals: Vec<f32> = (0..2 * 3 * h * w)
                .map(|_| g.r(2001) as f32 / 100.0 - 10.0)
                .collect();
            let x32 = Tensor::from_vec(vec![2, 3, h, w], vals.clone());
            let x64 = Tensor::from_vec(
                vec![2, 3, h, w],
                vals.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            );
            let mut attrs = vec![
                Attribute::ints("kernel_shape", &k),
                Attribute::ints("strides", &s),
                Attribute::ints("dilations", &d),
                Attribute::ints("pads", &p),
                Attribute::int("ceil_mode", g.r(2)),
            ];
            for op in ["MaxPool", "AveragePool"] {
                if op == "AveragePool" {
                    attrs.retain(|a| a.name != "dilations");
                    attrs.push(Attribute::int("count_include_pad", g.r(2)));
                }
                let (Ok(a), Ok(b)) = (
                    call(op, x32.clone(), &attrs, 1),
                    call(op, x64.clone(), &attrs, 1),
                ) else {
                    continue;
                };
                assert_eq!(a[0].shape, b[0].shape, "case {case} {op}");
                let (a, b) = (
                    a[0].as_slice::<f32>().unwrap(),
                    b[0].as_slice::<f64>().unwrap(),
                );
                for (i, (&u, &v)) in a.iter().zip(b).enumerate() {
                    // A window of padding alone is the type's lowest value in both.
                    let lowest = u == f32::MIN && v == f64::MIN;
                    assert!(
                        lowest || (u as f64 - v).abs() <= 1e-5 * (1.0 + v.abs()),
                        "case {case} {op} {attrs:?} [{i}]: {u} vs {v}"
                    );
                }
            }
        }
    }

    fn x44() -> Tensor {
        Tensor::from_vec(vec![1, 1, 4, 4], (1..=16).map(|v| v as f32).collect())
    }

    #[test]
    fn max_pool_with_indices_and_storage_order() {
        let attrs = [
            Attribute::ints("kernel_shape", &[2, 2]),
            Attribute::ints("strides", &[2, 2]),
        ];
        let out = call("MaxPool", x44(), &attrs, 2).unwrap();
        assert_eq!(out[0].shape, vec![1, 1, 2, 2]);
        assert_eq!(out[0].as_slice::<f32>().unwrap(), &[6., 8., 14., 16.]);
        assert_eq!(out[1].as_slice::<i64>().unwrap(), &[5, 7, 13, 15]);
        let mut attrs = attrs.to_vec();
        attrs.push(Attribute::int("storage_order", 1));
        let out = call("MaxPool", x44(), &attrs, 2).unwrap();
        assert_eq!(out[1].as_slice::<i64>().unwrap(), &[5, 13, 7, 15]);
        // Padding never wins, dilation skips, ceil_mode adds a partial window.
        let attrs = [
            Attribute::ints("kernel_shape", &[2, 2]),
            Attribute::ints("dilations", &[2, 2]),
            Attribute::ints("pads", &[1, 1, 1, 1]),
        ];
        let out = call("MaxPool", x44(), &attrs, 1).unwrap();
        assert_eq!(out[0].shape, vec![1, 1, 4, 4]);
        assert_eq!(&out[0].as_slice::<f32>().unwrap()[..4], &[6., 7., 8., 7.]);
        let attrs = [
            Attribute::ints("kernel_shape", &[3, 3]),
            Attribute::ints("strides", &[2, 2]),
            Attribute::int("ceil_mode", 1),
        ];
        let out = call("MaxPool", x44(), &attrs, 1).unwrap();
        assert_eq!(out[0].as_slice::<f32>().unwrap(), &[11., 12., 15., 16.]);
        let u = Tensor::from_vec(vec![1, 1, 1, 3], vec![3u8, 9, 1]);
        let out = call("MaxPool", u, &[Attribute::ints("kernel_shape", &[1, 2])], 1).unwrap();
        assert_eq!(out[0].as_slice::<u8>().unwrap(), &[9, 9]);
    }

    #[test]
    fn average_and_lp_pools() {
        let attrs = [
            Attribute::ints("kernel_shape", &[3, 3]),
            Attribute::ints("pads", &[1, 1, 1, 1]),
            Attribute::ints("strides", &[3, 3]),
        ];
        let out = call("AveragePool", x44(), &attrs, 1).unwrap();
        // Window at (0,0): 1,2,5,6 -> 3.5; with the pads counted: 14 / 9.
        assert_eq!(out[0].as_slice::<f32>().unwrap()[0], 3.5);
        let mut with_pad = attrs.to_vec();
        with_pad.push(Attribute::int("count_include_pad", 1));
        let out = call("AveragePool", x44(), &with_pad, 1).unwrap();
        assert!((out[0].as_slice::<f32>().unwrap()[0] - 14.0 / 9.0).abs() < 1e-6);
        let attrs = [
            Attribute::ints("kernel_shape", &[1, 2]),
            Attribute::int("p", 2),
        ];
        let x = Tensor::from_vec(vec![1, 1, 1, 2], vec![3.0f64, -4.0]);
        let out = call("LpPool", x.clone(), &attrs, 1).unwrap();
        assert_eq!(out[0].as_slice::<f64>().unwrap(), &[5.0]);
        let out = call("GlobalLpPool", x.clone(), &[Attribute::int("p", 1)], 1).unwrap();
        assert_eq!(out[0].as_slice::<f64>().unwrap(), &[7.0]);
        let out = call("GlobalAveragePool", x44(), &[], 1).unwrap();
        assert_eq!(out[0].shape, vec![1, 1, 1, 1]);
        assert_eq!(out[0].as_slice::<f32>().unwrap(), &[8.5]);
        let out = call("GlobalMaxPool", x, &[], 1).unwrap();
        assert_eq!(out[0].as_slice::<f64>().unwrap(), &[3.0]);
        assert!(call("MaxPool", x44(), &[], 1).is_err());
        assert!(call(
            "AveragePool",
            x44(),
            &[Attribute::ints("kernel_shape", &[5, 5])],
            1
        )
        .is_err());
        // Absurd windows fail cleanly.
        let huge = [
            Attribute::ints("kernel_shape", &[2, 2]),
            Attribute::ints("pads", &[1 << 39, 1 << 39, 1 << 39, 1 << 39]),
        ];
        assert!(call("MaxPool", x44(), &huge, 1).is_err());
        let neg = [
            Attribute::ints("kernel_shape", &[2, 2]),
            Attribute::ints("strides", &[0, 1]),
        ];
        assert!(call("AveragePool", x44(), &neg, 1).is_err());
    }
}
