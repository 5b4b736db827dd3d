//! Element-wise f32 math for the transformer ops (erf, the GELU family, layer normalization),
//! written as plain loops the compiler vectorizes, and [`isa_dispatch!`], which compiles such
//! a loop once per [`Isa`](crate::Isa) and picks the variant at run time. Large slices are
//! split over rayon's threads ([`par_chunks`]).
use rayon::prelude::*;

use crate::act::exp;

/// Defines a function whose body is compiled three times (AVX-512, AVX2+FMA, baseline) and
/// run in the variant [`Isa::detect`](crate::Isa::detect) picks. Arguments are plain
/// identifiers; the body must be safe code.
///
/// The form `fn name<const F: bool>(...)` also names a constant the body sees: true in the
/// AVX-512 and AVX2 variants, which have FMA (`x.mul_add(y, z)` is one instruction there, a
/// software routine in the baseline).
#[macro_export]
macro_rules! isa_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident<const $fma:ident: bool>($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body<const $fma: bool>($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,fma")]
            unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                body::<true>($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn narrow($($arg: $ty),*) $(-> $ret)? {
                body::<true>($($arg),*)
            }
            match $crate::Isa::detect() {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: detect() reports only what the CPU has.
                $crate::Isa::Avx512 => unsafe { wide($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above.
                $crate::Isa::Avx2 => unsafe { narrow($($arg),*) },
                _ => body::<false>($($arg),*),
            }
        }
    };
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f")]
            unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                body($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            unsafe fn narrow($($arg: $ty),*) $(-> $ret)? {
                body($($arg),*)
            }
            match $crate::Isa::detect() {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: detect() reports only what the CPU has.
                $crate::Isa::Avx512 => unsafe { wide($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above.
                $crate::Isa::Avx2 => unsafe { narrow($($arg),*) },
                _ => body($($arg),*),
            }
        }
    };
}

/// Elements below which a slice is done on the calling thread.
const PAR_MIN: usize = 1 << 15;

/// Runs `f(offset, chunk)` over `out` in chunks that are a multiple of `align` elements
/// long, on rayon's threads when the slice is large.
pub fn par_chunks(out: &mut [f32], align: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let align = align.max(1);
    let threads = rayon::current_num_threads();
    if out.len() < PAR_MIN || threads == 1 {
        return f(0, out);
    }
    let pieces = (4 * threads).min(out.len() / (PAR_MIN / 4)).max(1);
    let chunk = out.len().div_ceil(pieces).div_ceil(align) * align;
    out.par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, c)| f(i * chunk, c));
}

/// A buffer of `n` values for code that writes every one of them before reading any, not
/// cleared first (clearing a megabyte on one thread before a parallel kernel was 7% of a
/// quantized MobileNetV2 run on 2 threads). Debug builds (the unit tests) fill it with
/// `pattern` instead, so that a kernel that leaves a value unwritten fails its tests.
pub fn unfilled<T: Plain>(n: usize, pattern: T) -> Vec<T> {
    if cfg!(debug_assertions) {
        return vec![pattern; n];
    }
    let mut v = Vec::with_capacity(n);
    // SAFETY: the caller writes every element before reading it (the debug fill makes the
    // tests fail otherwise), and the integer and float types allowed have no invalid values.
    unsafe { v.set_len(n) };
    v
}

/// Types with no invalid bit patterns, the only ones [`unfilled`] hands out.
pub trait Plain: Copy {}
impl Plain for u8 {}
impl Plain for u32 {}
impl Plain for i32 {}
impl Plain for f32 {}

/// `n` zeros, written on rayon's threads when `n` is large: a kernel's output buffer comes
/// from memory the allocator recycles, which `vec![0.0; n]` clears on one thread (3% of a
/// ResNet50 run).
pub fn zeros(n: usize) -> Vec<f32> {
    use std::mem::MaybeUninit;
    if n < PAR_MIN || rayon::current_num_threads() == 1 {
        return vec![0f32; n];
    }
    let mut v: Vec<f32> = Vec::with_capacity(n);
    let chunk = n
        .div_ceil(4 * rayon::current_num_threads())
        .max(PAR_MIN / 4);
    v.spare_capacity_mut()[..n]
        .par_chunks_mut(chunk)
        .for_each(|c| c.fill(MaybeUninit::new(0.0)));
    // SAFETY: the loop above wrote all n elements.
    unsafe { v.set_len(n) };
    v
}

/// erf(x): below |x| = 1 the Maclaurin series (eleven odd terms); above it Abramowitz and
/// Stegun's 7.1.26, `1 - t·p(t)·e^(-x²)` with `t = 1/(1 + 0.3275911|x|)`. Within 2.5e-7 of the
/// exact value everywhere (tested). Both branches are computed and one selected, so loops
/// over it have no data-dependent jumps.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    // 2/√π · (-1)^n / (n! (2n+1)), highest power first.
    const C: [f32; 11] = [
        1.480_719_3e-8,
        -1.636_584_5e-7,
        1.646_211_4e-6,
        -1.492_565e-5,
        1.205_533_3e-4,
        -8.548_327e-4,
        5.223_977_6e-3,
        -2.686_617e-2,
        1.128_379_2e-1,
        -3.761_264e-1,
        std::f32::consts::FRAC_2_SQRT_PI,
    ];
    let a = x.abs();
    let z = a * a;
    let small = a * C.iter().fold(0.0, |p, &c| p * z + c);
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152 + t * 1.061_405_4))));
    let big = 1.0 - poly * exp(-z);
    let r = if a < 1.0 { small } else { big };
    // The sign of x, by its bit (copysign keeps the loop vectorized).
    f32::from_bits(r.to_bits() | (x.to_bits() & 0x8000_0000))
}

/// `0.5·x·(1 + erf(x/√2))`.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// The tanh form, `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`.
#[inline(always)]
pub fn gelu_tanh(x: f32) -> f32 {
    const C: f32 = 0.797_884_6;
    let u = C * (x + 0.044_715 * x * x * x);
    // tanh(u) = 1 - 2 / (1 + e^(2u)); exp clamps, so both tails saturate to ±1.
    let th = 1.0 - 2.0 / (1.0 + exp(2.0 * u));
    0.5 * x * (1.0 + th)
}

/// `x·σ(alpha·x)`.
#[inline(always)]
pub fn quick_gelu(x: f32, alpha: f32) -> f32 {
    x / (1.0 + exp(-alpha * x))
}

/// A function of [`map_bias`]: the GELU family, and Relu (NaN passes through).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Unary {
    Erf,
    Gelu,
    GeluTanh,
    QuickGelu(f32),
    Relu,
}

isa_dispatch! {
    fn map_chunk(f: Unary, x: &[f32], bias: &[f32], out: &mut [f32]) {
        // Index loops over equal-length slices, with the match outside them: each loop is one
        // straight body the compiler vectorizes in this ISA's variant (iterator adapters may
        // stay out-of-line, compiled for the baseline).
        macro_rules! each {
            ($g:expr) => {{
                let n = out.len();
                let x = &x[..n];
                if bias.is_empty() {
                    for i in 0..n {
                        out[i] = $g(x[i]);
                    }
                } else {
                    let w = bias.len();
                    for r in 0..n / w {
                        let (o, xr) = (&mut out[r * w..(r + 1) * w], &x[r * w..(r + 1) * w]);
                        for i in 0..w {
                            o[i] = $g(xr[i] + bias[i]);
                        }
                    }
                }
            }};
        }
        match f {
            Unary::Erf => each!(erf),
            Unary::Gelu => each!(gelu),
            Unary::GeluTanh => each!(gelu_tanh),
            Unary::QuickGelu(a) => each!(|v| quick_gelu(v, a)),
            Unary::Relu => each!(|v: f32| if v < 0.0 { 0.0 } else { v }),
        }
    }
}

/// `out[i] = f(x[i] + bias[i mod bias.len()])` (no bias when it is empty); `x` and `out` have
/// equal lengths, a multiple of the bias length.
pub fn map_bias(f: Unary, x: &[f32], bias: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), out.len(), "input and output lengths differ");
    assert!(
        bias.is_empty() || x.len().is_multiple_of(bias.len()),
        "the bias does not tile the input"
    );
    par_chunks(out, bias.len(), |off, o| {
        map_chunk(f, &x[off..off + o.len()], bias, o)
    });
}

isa_dispatch! {
    /// The moments of one row as `(shift, mean - shift, 1/√(var + eps))` (RMS: no centering,
    /// var = mean of squares). The row is centred on its first element before summing: for a
    /// row far from zero against its spread (mean 10⁴, deviations near 1), `x - shift` is
    /// exact and small, so neither the sum nor the mean (whose f32 rounding would shift every
    /// output by up to half an ulp of 10⁴) loses the digits that hold the deviations.
    fn moments(x: &[f32], eps: f32, rms: bool) -> (f32, f32, f32) {
        const L: usize = 16;
        let n = x.len();
        let full = n / L * L;
        let shift = if rms { 0.0 } else { x[0] };
        // Fixed-size chunks: no bounds checks inside, so the lanes become one vector add.
        let chunks = || x[..full].chunks_exact(L).map(|c| <&[f32; L]>::try_from(c).expect("L"));
        let mut acc = [0f32; L];
        if !rms {
            for c in chunks() {
                for l in 0..L {
                    acc[l] += c[l] - shift;
                }
            }
        }
        let tail: f32 = if rms { 0.0 } else { x[full..].iter().map(|&v| v - shift).sum() };
        let rel = (halve(acc, |a, b| a + b) + tail) / n as f32;
        let mut sq = [0f32; L];
        for c in chunks() {
            for l in 0..L {
                let d = (c[l] - shift) - rel;
                sq[l] += d * d;
            }
        }
        let tail: f32 = x[full..]
            .iter()
            .map(|&v| ((v - shift) - rel) * ((v - shift) - rel))
            .sum();
        let var = (halve(sq, |a, b| a + b) + tail) / n as f32;
        (shift, rel, 1.0 / (var + eps).sqrt())
    }
}

/// An arithmetic op of [`binary_rows`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
}

/// `out[i] = a[i] ∘ b[i mod b.len()]` (or `b[..] ∘ a[i]` when `swap`): an element-wise op
/// whose second operand repeats along the leading dims (a bias, a scalar, an equal shape), as
/// one vectorized pass on rayon's threads.
pub fn binary_rows(op: Binary, a: &[f32], b: &[f32], swap: bool, out: &mut [f32]) {
    assert_eq!(a.len(), out.len(), "input and output lengths differ");
    assert!(
        !b.is_empty() && a.len().is_multiple_of(b.len()),
        "the second operand does not tile the first"
    );
    // A short operand is repeated a few times so that the inner loop stays long.
    let w = b.len();
    let reps = if w >= 64 { 1 } else { 64usize.div_ceil(w) };
    let wide: Vec<f32>;
    let b = if reps > 1 {
        wide = b.iter().copied().cycle().take(w * reps).collect();
        &wide[..]
    } else {
        b
    };
    par_chunks(out, b.len(), |off, o| {
        binary_chunk(op, &a[off..off + o.len()], b, swap, o)
    });
}

isa_dispatch! {
    fn binary_chunk(op: Binary, a: &[f32], b: &[f32], swap: bool, out: &mut [f32]) {
        // Whole rows of `b`, then a partial one: the chunk starts at a row boundary and `b`
        // is a whole number of repeats of the operand, so a prefix of it lines up.
        macro_rules! each {
            ($g:expr) => {{
                let w = b.len();
                let rows = out.len() / w;
                for r in 0..rows {
                    let (o, x) = (&mut out[r * w..(r + 1) * w], &a[r * w..(r + 1) * w]);
                    for i in 0..w {
                        o[i] = $g(x[i], b[i]);
                    }
                }
                let (o, x) = (&mut out[rows * w..], &a[rows * w..]);
                for i in 0..o.len() {
                    o[i] = $g(x[i], b[i]);
                }
            }};
        }
        match (op, swap) {
            (Binary::Add, _) => each!(|x: f32, y: f32| x + y),
            (Binary::Mul, _) => each!(|x: f32, y: f32| x * y),
            (Binary::Sub, false) => each!(|x: f32, y: f32| x - y),
            (Binary::Sub, true) => each!(|x: f32, y: f32| y - x),
            (Binary::Div, false) => each!(|x: f32, y: f32| x / y),
            (Binary::Div, true) => each!(|x: f32, y: f32| y / x),
        }
    }
}

/// `out = x·scale[c] + shift[c]` over planes of `inner` values, plane `p` taking channel
/// `p mod scale.len()`: BatchNormalization in inference, on rayon's threads when large.
pub fn channel_affine(x: &[f32], inner: usize, scale: &[f32], shift: &[f32], out: &mut [f32]) {
    assert_eq!(x.len(), out.len(), "input and output lengths differ");
    assert_eq!(scale.len(), shift.len(), "one shift per scale");
    let c = scale.len();
    if inner == 0 || c == 0 {
        return;
    }
    assert!(
        x.len().is_multiple_of(inner * c),
        "the planes do not tile the input"
    );
    par_chunks(out, inner, |off, o| {
        for (i, plane) in o.chunks_mut(inner).enumerate() {
            let ch = (off / inner + i) % c;
            affine(
                &x[off + i * inner..][..plane.len()],
                scale[ch],
                shift[ch],
                plane,
            );
        }
    });
}

isa_dispatch! {
    fn affine(x: &[f32], s: f32, t: f32, out: &mut [f32]) {
        let n = out.len();
        let x = &x[..n];
        for i in 0..n {
            out[i] = x[i] * s + t;
        }
    }
}

isa_dispatch! {
    /// `((x - shift) - rel) * inv * gamma + beta`, the centring in the order `moments` took.
    fn normalize(x: &[f32], m: (f32, f32, f32), gamma: &[f32], beta: &[f32], out: &mut [f32]) {
        let (shift, rel, inv) = m;
        let n = out.len();
        let (x, gamma) = (&x[..n], &gamma[..n]);
        if beta.is_empty() {
            for i in 0..n {
                out[i] = ((x[i] - shift) - rel) * inv * gamma[i];
            }
        } else {
            let beta = &beta[..n];
            for i in 0..n {
                out[i] = ((x[i] - shift) - rel) * inv * gamma[i] + beta[i];
            }
        }
    }
}

isa_dispatch! {
    /// Softmax in place over one block of `len` rows × `inner` lanes (`inner == 1`: one
    /// contiguous lane, the common case). A lane that is all `-inf` becomes all NaN, as
    /// `exp(-inf - -inf)` does in the reference; callers that mask rows check first.
    pub fn softmax_block(x: &mut [f32], inner: usize) {
        if inner == 1 {
            return softmax_lane(x);
        }
        let mut m = vec![f32::NEG_INFINITY; inner];
        for row in x.chunks_exact(inner) {
            m.iter_mut()
                .zip(row)
                .for_each(|(m, &v)| *m = if v > *m { v } else { *m });
        }
        let mut sum = vec![0f32; inner];
        for row in x.chunks_exact_mut(inner) {
            for ((e, &m), s) in row.iter_mut().zip(&m).zip(sum.iter_mut()) {
                *e = exp_below(*e - m);
                *s += *e;
            }
        }
        sum.iter_mut().for_each(|s| *s = 1.0 / *s);
        for row in x.chunks_exact_mut(inner) {
            row.iter_mut().zip(&sum).for_each(|(e, &r)| *e *= r);
        }
    }
}

/// `e^d` for `d <= 0`, 0 below exp's range (exp() clamps its input).
#[inline(always)]
fn exp_below(d: f32) -> f32 {
    if d < -87.0 {
        0.0
    } else {
        exp(d)
    }
}

/// `lanes` reduced by `f` in halves (a tree of depth 4).
#[inline(always)]
fn halve(mut lanes: [f32; 16], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut n = 16;
    while n > 1 {
        n /= 2;
        for i in 0..n {
            lanes[i] = f(lanes[i], lanes[i + n]);
        }
    }
    lanes[0]
}

/// One contiguous lane: max, `exp` and sum each over 16 independent accumulators, so that the
/// loops vectorize.
#[inline(always)]
fn softmax_lane(x: &mut [f32]) {
    const W: usize = 16;
    let split = x.len() / W * W;
    let mut mx = [f32::NEG_INFINITY; W];
    for c in x[..split].chunks_exact(W) {
        for i in 0..W {
            mx[i] = if c[i] > mx[i] { c[i] } else { mx[i] };
        }
    }
    // Lanes folded pairwise: a left-to-right fold over 16 lanes is a chain of 16 dependent
    // operations per row, which cost as much as the row itself at BERT's 128 keys.
    let m = x[split..]
        .iter()
        .fold(halve(mx, |a, b| if b > a { b } else { a }), |a, &v| {
            if v > a {
                v
            } else {
                a
            }
        });
    let mut acc = [0f32; W];
    for c in x[..split].chunks_exact_mut(W) {
        for i in 0..W {
            c[i] = exp_below(c[i] - m);
            acc[i] += c[i];
        }
    }
    let mut sum = halve(acc, |a, b| a + b);
    for v in &mut x[split..] {
        *v = exp_below(*v - m);
        sum += *v;
    }
    let r = 1.0 / sum;
    x.iter_mut().for_each(|v| *v *= r);
}

/// Layer normalization of each row of `x` (rows of `gamma.len()`), scaled by `gamma` and
/// shifted by `beta` (none when empty); returns each row's mean and inverse deviation.
/// Moments are two-pass (mean, then squared deviations) about the row's first element, so
/// large offsets neither cancel nor round the centring.
pub fn layer_norm(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    rms: bool,
    out: &mut [f32],
) -> Vec<(f32, f32)> {
    let len = gamma.len();
    assert!(len > 0 && x.len().is_multiple_of(len) && out.len() == x.len());
    assert!(beta.is_empty() || beta.len() == len);
    let rows = x.len() / len;
    let mut stats = vec![(0f32, 0f32); rows];
    let row = |xr: &[f32], or: &mut [f32]| {
        let m = moments(xr, eps, rms);
        normalize(xr, m, gamma, beta, or);
        (m.0 + m.1, m.2)
    };
    if x.len() < PAR_MIN || rayon::current_num_threads() == 1 {
        for ((xr, or), s) in x.chunks(len).zip(out.chunks_mut(len)).zip(&mut stats) {
            *s = row(xr, or);
        }
    } else {
        x.par_chunks(len)
            .zip(out.par_chunks_mut(len))
            .zip(stats.par_iter_mut())
            .with_min_len((PAR_MIN / len).max(1))
            .for_each(|((xr, or), s)| *s = row(xr, or));
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    fn erf64(x: f64) -> f64 {
        // Abramowitz–Stegun would be too coarse for a reference; a long series is exact enough.
        let a = x.abs();
        let v = if a < 3.0 {
            let (mut sum, mut term, mut n) = (0.0, a, 0.0);
            while term > 1e-18 {
                sum += term;
                n += 1.0;
                term *= 2.0 * a * a / (2.0 * n + 1.0);
            }
            std::f64::consts::FRAC_2_SQRT_PI * (-a * a).exp() * sum
        } else {
            let mut t = a;
            for k in (1..=80).rev() {
                t = a + (k as f64 / 2.0) / t;
            }
            1.0 - (-a * a).exp() / std::f64::consts::PI.sqrt() / t
        };
        v.copysign(x)
    }

    #[test]
    fn erf_is_within_its_bound_and_handles_specials() {
        let mut worst = 0f64;
        for i in -60000..=60000 {
            let x = i as f32 * 1e-4;
            worst = worst.max((erf(x) as f64 - erf64(x as f64)).abs());
        }
        assert!(worst < 2.5e-7, "worst error {worst}");
        assert_eq!(erf(f32::INFINITY), 1.0);
        assert_eq!(erf(f32::NEG_INFINITY), -1.0);
        assert!(erf(f32::NAN).is_nan());
    }

    #[test]
    fn binary_rows_repeat_the_operand_at_every_width() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for w in [1, 3, 7, 64, 100] {
            for rows in [1, 5, 701] {
                let a: Vec<f32> = (0..w * rows).map(|i| (i % 97) as f32 - 40.0).collect();
                let b: Vec<f32> = (0..w).map(|i| i as f32 * 0.5 + 1.0).collect();
                for op in [Binary::Add, Binary::Sub, Binary::Mul, Binary::Div] {
                    for swap in [false, true] {
                        let mut out = vec![f32::NAN; a.len()];
                        pool.install(|| binary_rows(op, &a, &b, swap, &mut out));
                        for (i, &o) in out.iter().enumerate() {
                            let (x, y) = if swap {
                                (b[i % w], a[i])
                            } else {
                                (a[i], b[i % w])
                            };
                            let want = match op {
                                Binary::Add => x + y,
                                Binary::Sub => x - y,
                                Binary::Mul => x * y,
                                Binary::Div => x / y,
                            };
                            assert_eq!(o.to_bits(), want.to_bits(), "{op:?} {swap} w={w} [{i}]");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn channel_affine_matches_per_plane_factors_on_threads() {
        let (c, inner) = (5, 7000);
        let x: Vec<f32> = (0..2 * c * inner)
            .map(|i| (i % 101) as f32 - 50.0)
            .collect();
        let scale: Vec<f32> = (0..c).map(|i| 0.5 + i as f32).collect();
        let shift: Vec<f32> = (0..c).map(|i| i as f32 - 2.0).collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let mut out = vec![0f32; x.len()];
        pool.install(|| channel_affine(&x, inner, &scale, &shift, &mut out));
        for (i, (&o, &v)) in out.iter().zip(&x).enumerate() {
            let ch = (i / inner) % c;
            assert_eq!(o, v * scale[ch] + shift[ch], "[{i}]");
        }
        let mut nan = [f32::NAN; 3];
        map_bias(Unary::Relu, &[f32::NAN, -1.0, 2.0], &[], &mut nan);
        assert!(nan[0].is_nan() && nan[1] == 0.0 && nan[2] == 2.0);
    }

    #[test]
    fn gelu_family_matches_f64_definitions_with_bias_and_threads() {
        let n = 3 * 40_000;
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 37) % 2001) as f32 / 100.0 - 10.0)
            .collect();
        let bias: Vec<f32> = (0..40).map(|i| i as f32 / 40.0 - 0.5).collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for f in [
            Unary::Erf,
            Unary::Gelu,
            Unary::GeluTanh,
            Unary::QuickGelu(1.702),
            Unary::Relu,
        ] {
            let want = |v: f64| match f {
                Unary::Relu => v.max(0.0),
                Unary::Erf => erf64(v),
                Unary::Gelu => 0.5 * v * (1.0 + erf64(v / 2f64.sqrt())),
                Unary::GeluTanh => {
                    0.5 * v
                        * (1.0
                            + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v))
                                .tanh())
                }
                Unary::QuickGelu(a) => v / (1.0 + (-(a as f64) * v).exp()),
            };
            let mut out = vec![0f32; n];
            pool.install(|| map_bias(f, &x, &bias, &mut out));
            let mut plain = vec![0f32; n];
            map_bias(f, &x, &[], &mut plain);
            for i in 0..n {
                let v = (x[i] + bias[i % 40]) as f64;
                let w = want(v);
                assert!(
                    (out[i] as f64 - w).abs() <= 2e-6 * (1.0 + w.abs()),
                    "{f:?}({v}) = {} vs {w}",
                    out[i]
                );
                let w = want(x[i] as f64);
                assert!(
                    (plain[i] as f64 - w).abs() <= 2e-6 * (1.0 + w.abs()),
                    "{f:?}({})",
                    x[i]
                );
            }
        }
    }

    /// A row in f64 with its mean (0 for RMS) and 1/sqrt(var + 1e-5), computed in f64.
    fn exact_moments(x: &[f32], rms: bool) -> (Vec<f64>, f64, f64) {
        let row: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let n = row.len() as f64;
        let mean = if rms {
            0.0
        } else {
            row.iter().sum::<f64>() / n
        };
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        (row, mean, 1.0 / (var + 1e-5).sqrt())
    }

    #[test]
    fn layer_norm_keeps_the_digits_of_rows_far_from_zero() {
        // Rows offset by 10^4 with deviations near 1: an f32 mean rounds by up to 5e-4, which
        // every output inherits divided by the deviation; the shifted sums keep it near 1e-6.
        let len = 384;
        let mut seed = 17u64;
        let mut worst = 0f64;
        for r in 0..64 {
            let x: Vec<f32> = (0..len)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    1e4 * (1.0 + (r % 3) as f32)
                        + ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0
                })
                .collect();
            let g = vec![1f32; len];
            for rms in [false, true] {
                let mut out = vec![0f32; len];
                layer_norm(&x, &g, &[], 1e-5, rms, &mut out);
                let (row, mean, inv) = exact_moments(&x, rms);
                for j in 0..len {
                    let w = (row[j] - mean) * inv;
                    let e = (out[j] as f64 - w).abs() / (1.0 + w.abs());
                    if !rms {
                        worst = worst.max(e);
                    }
                    assert!(e < 1e-4, "rms={rms} row {r} [{j}]: {} vs {w}", out[j]);
                }
            }
        }
        assert!(worst < 2e-6, "worst relative error {worst}");
    }

    #[test]
    fn layer_norm_matches_f64_with_an_offset() {
        let (rows, len) = (300, 384);
        let x: Vec<f32> = (0..rows * len)
            .map(|i| 1000.0 + ((i * 7919) % 997) as f32 / 97.0)
            .collect();
        let g: Vec<f32> = (0..len).map(|i| 0.5 + i as f32 / len as f32).collect();
        let b: Vec<f32> = (0..len).map(|i| i as f32 / 100.0).collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        for rms in [false, true] {
            for beta in [&b[..], &[]] {
                let mut out = vec![0f32; x.len()];
                let stats = pool.install(|| layer_norm(&x, &g, beta, 1e-5, rms, &mut out));
                for r in 0..rows {
                    let (row, mean, inv) = exact_moments(&x[r * len..][..len], rms);
                    assert!(((stats[r].1 as f64) - inv).abs() <= 1e-4 * inv);
                    for j in 0..len {
                        let w = (row[j] - mean) * inv * g[j] as f64
                            + beta.get(j).map_or(0.0, |&v| v as f64);
                        let got = out[r * len + j] as f64;
                        assert!(
                            (got - w).abs() <= 1e-3 * (1.0 + w.abs()),
                            "rms={rms} [{r},{j}] {got} vs {w}"
                        );
                    }
                }
            }
        }
    }
}
