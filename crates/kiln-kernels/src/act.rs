//! Activations applied in place to f32 slices, written so the compiler vectorizes them: no
//! branches that depend on data beyond selects, and an `exp` built from a polynomial and
//! exponent bits instead of a libm call. Each slice function is compiled three times (AVX-512,
//! AVX2+FMA, baseline) and dispatched on [`Isa`](crate::Isa).
use crate::Isa;

/// An activation fused after a convolution or GEMM.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Identity,
    /// `max(x, 0)`; NaN passes through.
    Relu,
    LeakyRelu(f32),
    /// Clamp to `[lo, hi]`; NaN passes through.
    Clip(f32, f32),
    /// `clamp(alpha·x + beta, 0, 1)`.
    HardSigmoid(f32, f32),
    Sigmoid,
    Tanh,
    /// `x · sigmoid(alpha·x)` (SiLU / Swish).
    Silu(f32),
}

/// `e^x` for f32 with about 2 ulp of error over the range where the result is a normal number;
/// inputs are clamped to that range (so `exp(-100)` gives about 1e-38, not 0).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // 1.5 · 2^23: adding and subtracting it rounds to the nearest integer, in any vector width.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // t's bits are those of ROUND plus n, so 2^n comes from integer arithmetic alone (an
    // `as i32` cast would be scalarized: it saturates and maps NaN to 0).
    const ROUND_BITS: u32 = 0x4B40_0000;
    let scale = f32::from_bits(t.to_bits().wrapping_sub(ROUND_BITS).wrapping_add(127) << 23);
    p * scale
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

impl Activation {
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Identity => x,
            Activation::Relu => {
                if x < 0.0 {
                    0.0
                } else {
                    x
                }
            }
            Activation::LeakyRelu(a) => {
                if x < 0.0 {
                    x * a
                } else {
                    x
                }
            }
            Activation::Clip(lo, hi) => {
                if x < lo {
                    lo
                } else if x > hi {
                    hi
                } else {
                    x
                }
            }
            Activation::HardSigmoid(a, b) => (a * x + b).clamp(0.0, 1.0),
            Activation::Sigmoid => sigmoid(x),
            Activation::Tanh => x.tanh(),
            Activation::Silu(a) => x * sigmoid(a * x),
        }
    }

    /// Applies the activation to every element.
    pub fn apply_slice(self, xs: &mut [f32]) {
        if self == Activation::Identity {
            return;
        }
        match Isa::detect() {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: detect() only reports what the CPU has.
            Isa::Avx512 => unsafe { apply_avx512(self, xs) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Isa::Avx2 => unsafe { apply_avx2(self, xs) },
            _ => apply_generic(self, xs),
        }
    }

    /// `x[i] = act(x[i] + bias)` over a row, then adds `residual` first when given:
    /// `act(x + bias + residual)`.
    pub fn bias_residual_slice(self, xs: &mut [f32], bias: f32, residual: Option<&[f32]>) {
        let src = xs.as_ptr();
        self.epilogue(src, xs, bias, residual)
    }

    /// `out[i] = act(src[i] + bias + residual[i])`: as [`bias_residual_slice`] reading from
    /// `src`, in one pass. Copying a row and then applying the activation in place made
    /// every load wait on the copy's stores (store forwarding across unequal accesses).
    ///
    /// [`bias_residual_slice`]: Activation::bias_residual_slice
    pub fn bias_residual_from(
        self,
        src: &[f32],
        out: &mut [f32],
        bias: f32,
        residual: Option<&[f32]>,
    ) {
        assert_eq!(src.len(), out.len(), "source and output lengths differ");
        self.epilogue(src.as_ptr(), out, bias, residual)
    }

    fn epilogue(self, src: *const f32, xs: &mut [f32], bias: f32, residual: Option<&[f32]>) {
        match Isa::detect() {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: detect() only reports what the CPU has; `src` holds `xs.len()` values.
            Isa::Avx512 => unsafe { epilogue_avx512(self, src, xs, bias, residual) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Isa::Avx2 => unsafe { epilogue_avx2(self, src, xs, bias, residual) },
            _ => epilogue_generic(self, src, xs, bias, residual),
        }
    }
}

/// A tile of C: `rows` rows of `cols` values, `ld` apart, starting at row `r0` of C.
pub(crate) struct Tile<'a> {
    pub c: &'a mut [f32],
    pub ld: usize,
    pub rows: usize,
    pub cols: usize,
    /// Bias of each row of C (indexed from row 0 of C).
    pub bias: Option<&'a [f32]>,
    pub r0: usize,
    /// Laid out like `c`.
    pub residual: Option<&'a [f32]>,
}

impl Activation {
    /// `act(c + bias + residual)` over a tile, in one dispatch.
    pub(crate) fn tile(self, t: Tile) {
        match Isa::detect() {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: detect() only reports what the CPU has.
            Isa::Avx512 => tile_rows(self, t, |a, x, b, z| unsafe {
                epilogue_avx512(a, x.as_ptr(), x, b, z)
            }),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Isa::Avx2 => tile_rows(self, t, |a, x, b, z| unsafe {
                epilogue_avx2(a, x.as_ptr(), x, b, z)
            }),
            _ => tile_rows(self, t, |a, x, b, z| {
                epilogue_generic(a, x.as_ptr(), x, b, z)
            }),
        }
    }
}

/// Runs `row_fn` (one ISA's row epilogue) over each row of the tile.
#[inline(always)]
fn tile_rows(
    act: Activation,
    t: Tile,
    row_fn: impl Fn(Activation, &mut [f32], f32, Option<&[f32]>),
) {
    for r in 0..t.rows {
        let row = &mut t.c[r * t.ld..r * t.ld + t.cols];
        let bias = t.bias.map_or(0.0, |b| b[t.r0 + r]);
        let z = t.residual.map(|z| &z[r * t.ld..r * t.ld + t.cols]);
        row_fn(act, row, bias, z);
    }
}

#[inline(always)]
fn apply_generic(act: Activation, xs: &mut [f32]) {
    // One loop per variant so each is a tight, vectorizable loop.
    match act {
        Activation::Identity => {}
        Activation::Relu => xs.iter_mut().for_each(|x| *x = Activation::Relu.apply(*x)),
        Activation::Sigmoid => xs.iter_mut().for_each(|x| *x = sigmoid(*x)),
        Activation::Silu(a) => xs.iter_mut().for_each(|x| *x *= sigmoid(a * *x)),
        other => xs.iter_mut().for_each(|x| *x = other.apply(*x)),
    }
}

#[inline(always)]
fn epilogue_generic(
    act: Activation,
    src: *const f32,
    xs: &mut [f32],
    bias: f32,
    residual: Option<&[f32]>,
) {
    if src != xs.as_ptr() {
        // SAFETY: callers pass `xs.len()` readable values that `xs` does not overlap.
        xs.copy_from_slice(unsafe { std::slice::from_raw_parts(src, xs.len()) });
    }
    match residual {
        Some(z) => xs.iter_mut().zip(z).for_each(|(x, &z)| *x += bias + z),
        None if bias != 0.0 => xs.iter_mut().for_each(|x| *x += bias),
        None => {}
    }
    apply_generic(act, xs);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn apply_avx512(act: Activation, xs: &mut [f32]) {
    epilogue_avx512(act, xs.as_ptr(), xs, 0.0, None)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn apply_avx2(act: Activation, xs: &mut [f32]) {
    epilogue_avx2(act, xs.as_ptr(), xs, 0.0, None)
}

/// The activations the explicit SIMD epilogues (and the micro-kernels) apply in registers;
/// `Tanh` goes through the vectorized generic loop afterwards.
pub(crate) fn fused_in_registers(act: Activation) -> bool {
    act != Activation::Tanh
}

/// `act(v)` on 8 lanes, for an activation that [`fused_in_registers`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn act256(
    act: Activation,
    v: std::arch::x86_64::__m256,
) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let zero = _mm256_setzero_ps();
    match act {
        Activation::Relu => _mm256_max_ps(zero, v),
        Activation::LeakyRelu(a) => {
            let neg = _mm256_cmp_ps::<_CMP_LT_OQ>(v, zero);
            _mm256_blendv_ps(v, _mm256_mul_ps(v, _mm256_set1_ps(a)), neg)
        }
        Activation::Clip(lo, hi) => {
            _mm256_min_ps(_mm256_set1_ps(hi), _mm256_max_ps(_mm256_set1_ps(lo), v))
        }
        Activation::HardSigmoid(a, b) => _mm256_min_ps(
            _mm256_set1_ps(1.0),
            _mm256_max_ps(
                zero,
                _mm256_fmadd_ps(_mm256_set1_ps(a), v, _mm256_set1_ps(b)),
            ),
        ),
        Activation::Sigmoid => sigmoid256(v),
        Activation::Silu(a) => _mm256_mul_ps(v, sigmoid256(_mm256_mul_ps(_mm256_set1_ps(a), v))),
        Activation::Identity | Activation::Tanh => v,
    }
}

/// `act(v)` on 16 lanes, for an activation that [`fused_in_registers`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn act512(
    act: Activation,
    v: std::arch::x86_64::__m512,
) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let zero = _mm512_setzero_ps();
    match act {
        Activation::Relu => _mm512_max_ps(zero, v),
        Activation::LeakyRelu(a) => {
            let neg = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, zero);
            _mm512_mask_mul_ps(v, neg, v, _mm512_set1_ps(a))
        }
        Activation::Clip(lo, hi) => {
            _mm512_min_ps(_mm512_set1_ps(hi), _mm512_max_ps(_mm512_set1_ps(lo), v))
        }
        Activation::HardSigmoid(a, b) => _mm512_min_ps(
            _mm512_set1_ps(1.0),
            _mm512_max_ps(
                zero,
                _mm512_fmadd_ps(_mm512_set1_ps(a), v, _mm512_set1_ps(b)),
            ),
        ),
        Activation::Sigmoid => sigmoid512(v),
        Activation::Silu(a) => _mm512_mul_ps(v, sigmoid512(_mm512_mul_ps(_mm512_set1_ps(a), v))),
        Activation::Identity | Activation::Tanh => v,
    }
}

// The epilogues below are written with intrinsics because the compiler turns the select in
// `if x < 0 { 0 } else { x }` into a masked store, and reading that back before it retires
// stalls on store forwarding (it cost a quarter of a 1×1 convolution's time). NaN passes
// through every branch: `max(c, x)` and `min(c, x)` return `x` when it is NaN.

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn epilogue_avx512(
    act: Activation,
    src: *const f32,
    xs: &mut [f32],
    bias: f32,
    z: Option<&[f32]>,
) {
    use std::arch::x86_64::*;
    #[inline(always)]
    unsafe fn run(
        s: *const f32,
        xs: &mut [f32],
        bias: f32,
        z: Option<&[f32]>,
        f: impl Fn(__m512) -> __m512,
    ) {
        let (n, p) = (xs.len(), xs.as_mut_ptr());
        let bv = _mm512_set1_ps(bias);
        let mut i = 0;
        while i + 16 <= n {
            let mut v = _mm512_add_ps(_mm512_loadu_ps(s.add(i)), bv);
            if let Some(z) = z {
                v = _mm512_add_ps(v, _mm512_loadu_ps(z.as_ptr().add(i)));
            }
            _mm512_storeu_ps(p.add(i), f(v));
            i += 16;
        }
        if i < n {
            let m: __mmask16 = (1u16 << (n - i)) - 1;
            let mut v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, s.add(i)), bv);
            if let Some(z) = z {
                v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, z.as_ptr().add(i)));
            }
            _mm512_mask_storeu_ps(p.add(i), m, f(v));
        }
    }
    let zero = _mm512_setzero_ps();
    match act {
        Activation::Relu => run(src, xs, bias, z, |v| _mm512_max_ps(zero, v)),
        Activation::LeakyRelu(a) => {
            let av = _mm512_set1_ps(a);
            run(src, xs, bias, z, |v| {
                let neg = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(v, zero);
                _mm512_mask_mul_ps(v, neg, v, av)
            })
        }
        Activation::Clip(lo, hi) => {
            let (lo, hi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
            run(src, xs, bias, z, |v| {
                _mm512_min_ps(hi, _mm512_max_ps(lo, v))
            })
        }
        Activation::HardSigmoid(a, b) => {
            let (a, b, one) = (_mm512_set1_ps(a), _mm512_set1_ps(b), _mm512_set1_ps(1.0));
            run(src, xs, bias, z, |v| {
                _mm512_min_ps(one, _mm512_max_ps(zero, _mm512_fmadd_ps(a, v, b)))
            })
        }
        Activation::Sigmoid => run(src, xs, bias, z, |v| sigmoid512(v)),
        Activation::Silu(a) => {
            let av = _mm512_set1_ps(a);
            run(src, xs, bias, z, |v| {
                _mm512_mul_ps(v, sigmoid512(_mm512_mul_ps(av, v)))
            })
        }
        _ => {
            if bias != 0.0 || z.is_some() || src != xs.as_ptr() {
                run(src, xs, bias, z, |v| v);
            }
            apply_generic(act, xs);
        }
    }
}

/// `1 / (1 + e^-x)` on 16 lanes: [`exp`]'s reduction and polynomial with fused multiply-adds,
/// `scalef` for the power of two, and a refined reciprocal instead of a division (relative
/// error about 1e-7 before the Newton step's rounding).
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn sigmoid512(x: std::arch::x86_64::__m512) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let set = _mm512_set1_ps;
    let v = _mm512_min_ps(
        _mm512_max_ps(_mm512_sub_ps(_mm512_setzero_ps(), x), set(-87.0)),
        set(88.0),
    );
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(v, set(std::f32::consts::LOG2_E)),
    );
    let r = _mm512_fnmadd_ps(n, set(0.693_145_75), v);
    let r = _mm512_fnmadd_ps(n, set(1.428_606_8e-6), r);
    let mut p = set(1.0 / 5040.0);
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = _mm512_fmadd_ps(p, r, set(c));
    }
    let d = _mm512_add_ps(set(1.0), _mm512_scalef_ps(p, n));
    let y = _mm512_rcp14_ps(d);
    // One Newton step: y·(2 − d·y).
    let y = _mm512_mul_ps(y, _mm512_fnmadd_ps(d, y, set(2.0)));
    // NaN in, NaN out (the clamps above dropped it).
    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
    _mm512_mask_mov_ps(y, nan, x)
}

/// `1 / (1 + e^-x)` on 8 lanes: [`exp`]'s reduction and polynomial with fused multiply-adds,
/// the power of two built in the exponent bits, and a refined reciprocal.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn sigmoid256(x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    let set = _mm256_set1_ps;
    // max(c, x) returns x when x is NaN, so NaN survives the clamp and the arithmetic.
    let v = _mm256_min_ps(
        set(88.0),
        _mm256_max_ps(set(-87.0), _mm256_sub_ps(_mm256_setzero_ps(), x)),
    );
    const ROUND: f32 = 12_582_912.0;
    let t = _mm256_fmadd_ps(v, set(std::f32::consts::LOG2_E), set(ROUND));
    let n = _mm256_sub_ps(t, set(ROUND));
    let r = _mm256_fnmadd_ps(n, set(0.693_145_75), v);
    let r = _mm256_fnmadd_ps(n, set(1.428_606_8e-6), r);
    let mut p = set(1.0 / 5040.0);
    for c in [
        1.0 / 720.0,
        1.0 / 120.0,
        1.0 / 24.0,
        1.0 / 6.0,
        0.5,
        1.0,
        1.0,
    ] {
        p = _mm256_fmadd_ps(p, r, set(c));
    }
    // t's bits are ROUND's plus n: 2^n from integer arithmetic on them.
    let bits = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(0x4B40_0000 - 127));
    let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(bits));
    let d = _mm256_add_ps(set(1.0), _mm256_mul_ps(p, scale));
    // The 12-bit reciprocal estimate and one Newton step, y·(2 − d·y): about 1e-7 relative
    // error, at a fraction of a division's cost (which was half of a SiLU epilogue).
    let y = _mm256_rcp_ps(d);
    _mm256_mul_ps(y, _mm256_fnmadd_ps(d, y, set(2.0)))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn epilogue_avx2(
    act: Activation,
    src: *const f32,
    xs: &mut [f32],
    bias: f32,
    z: Option<&[f32]>,
) {
    use std::arch::x86_64::*;
    #[inline(always)]
    unsafe fn run(
        act: Activation,
        s: *const f32,
        xs: &mut [f32],
        bias: f32,
        z: Option<&[f32]>,
        f: impl Fn(__m256) -> __m256,
    ) {
        let (n, p) = (xs.len(), xs.as_mut_ptr());
        let bv = _mm256_set1_ps(bias);
        let mut i = 0;
        while i + 8 <= n {
            let mut v = _mm256_add_ps(_mm256_loadu_ps(s.add(i)), bv);
            if let Some(z) = z {
                v = _mm256_add_ps(v, _mm256_loadu_ps(z.as_ptr().add(i)));
            }
            _mm256_storeu_ps(p.add(i), f(v));
            i += 8;
        }
        for j in i..n {
            let v = *s.add(j) + bias + z.map_or(0.0, |z| z[j]);
            *p.add(j) = if fused_in_registers(act) {
                act.apply(v)
            } else {
                v
            };
        }
    }
    let zero = _mm256_setzero_ps();
    match act {
        Activation::Relu => run(act, src, xs, bias, z, |v| _mm256_max_ps(zero, v)),
        Activation::LeakyRelu(a) => {
            let av = _mm256_set1_ps(a);
            run(act, src, xs, bias, z, |v| {
                let neg = _mm256_cmp_ps::<_CMP_LT_OQ>(v, zero);
                _mm256_blendv_ps(v, _mm256_mul_ps(v, av), neg)
            })
        }
        Activation::Clip(lo, hi) => {
            let (lo, hi) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi));
            run(act, src, xs, bias, z, |v| {
                _mm256_min_ps(hi, _mm256_max_ps(lo, v))
            })
        }
        Activation::HardSigmoid(a, b) => {
            let (a, b, one) = (_mm256_set1_ps(a), _mm256_set1_ps(b), _mm256_set1_ps(1.0));
            run(act, src, xs, bias, z, |v| {
                _mm256_min_ps(one, _mm256_max_ps(zero, _mm256_fmadd_ps(a, v, b)))
            })
        }
        Activation::Sigmoid => run(act, src, xs, bias, z, |v| sigmoid256(v)),
        Activation::Silu(a) => {
            let av = _mm256_set1_ps(a);
            run(act, src, xs, bias, z, |v| {
                _mm256_mul_ps(v, sigmoid256(_mm256_mul_ps(av, v)))
            })
        }
        _ => {
            if bias != 0.0 || z.is_some() || src != xs.as_ptr() {
                run(act, src, xs, bias, z, |v| v);
            }
            apply_generic(act, xs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let rel = ((exp(x) as f64 - want) / want).abs();
            worst = worst.max(rel);
            x += 0.01;
        }
        assert!(worst < 4e-7, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-200.0) < 1e-37 && exp(-200.0) >= 0.0);
        assert!(exp(200.0).is_finite());
    }

    #[test]
    fn activations_match_their_definitions() {
        let xs: Vec<f32> = (-400..400).map(|i| i as f32 * 0.05).collect();
        let acts = [
            Activation::Relu,
            Activation::LeakyRelu(0.1),
            Activation::Clip(-1.0, 6.0),
            Activation::HardSigmoid(0.2, 0.5),
            Activation::Sigmoid,
            Activation::Tanh,
            Activation::Silu(1.0),
            Activation::Silu(1.702),
        ];
        for act in acts {
            let mut v = xs.clone();
            act.apply_slice(&mut v);
            for (&x, &y) in xs.iter().zip(&v) {
                let x64 = x as f64;
                let sig = |t: f64| 1.0 / (1.0 + (-t).exp());
                let want = match act {
                    Activation::Relu => x64.max(0.0),
                    Activation::LeakyRelu(a) => {
                        if x64 < 0.0 {
                            x64 * a as f64
                        } else {
                            x64
                        }
                    }
                    Activation::Clip(lo, hi) => x64.clamp(lo as f64, hi as f64),
                    Activation::HardSigmoid(a, b) => (a as f64 * x64 + b as f64).clamp(0.0, 1.0),
                    Activation::Sigmoid => sig(x64),
                    Activation::Tanh => x64.tanh(),
                    Activation::Silu(a) => x64 * sig(a as f64 * x64),
                    Activation::Identity => x64,
                };
                assert!(
                    (y as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()),
                    "{act:?}({x}) = {y}, want {want}"
                );
            }
        }
        let mut nan = [f32::NAN];
        Activation::Relu.apply_slice(&mut nan);
        assert!(nan[0].is_nan());
    }

    #[test]
    fn fused_epilogue_matches_the_scalar_one_at_every_length() {
        let acts = [
            Activation::Identity,
            Activation::Relu,
            Activation::LeakyRelu(0.1),
            Activation::Clip(-1.0, 0.5),
            Activation::HardSigmoid(0.2, 0.5),
            Activation::Sigmoid,
            Activation::Silu(1.0),
        ];
        for act in acts {
            for n in 0..40 {
                let xs: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
                let z: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
                for residual in [None, Some(&z[..])] {
                    let mut got = xs.clone();
                    act.bias_residual_slice(&mut got, -0.25, residual);
                    for (i, (&g, &x)) in got.iter().zip(&xs).enumerate() {
                        let want = act.apply(x - 0.25 + residual.map_or(0.0, |z| z[i]));
                        assert!(
                            (g - want).abs() <= 1e-6 * (1.0 + want.abs()),
                            "{act:?} n={n} [{i}]: {g} vs {want}"
                        );
                    }
                }
            }
            let mut nan = vec![f32::NAN; 19];
            act.bias_residual_slice(&mut nan, 1.0, None);
            assert!(nan.iter().all(|v| v.is_nan()), "{act:?} lost a NaN");
        }
    }

    #[test]
    fn epilogue_from_a_source_matches_in_place() {
        let acts = [
            Activation::Identity,
            Activation::Relu,
            Activation::Tanh,
            Activation::Sigmoid,
            Activation::Silu(1.0),
            Activation::Clip(-1.0, 1.0),
        ];
        for act in acts {
            for n in [0, 1, 7, 8, 9, 16, 17, 33] {
                let src: Vec<f32> = (0..n).map(|i| (i as f32 * 0.7).sin() * 4.0).collect();
                let z: Vec<f32> = (0..n).map(|i| i as f32 * 0.1).collect();
                for (bias, residual) in [(0.0, None), (0.5, None), (0.0, Some(&z[..]))] {
                    let mut want = src.clone();
                    act.bias_residual_slice(&mut want, bias, residual);
                    let mut got = vec![f32::NAN; n];
                    act.bias_residual_from(&src, &mut got, bias, residual);
                    assert_eq!(got, want, "{act:?} n={n} bias={bias}");
                }
            }
        }
    }

    #[test]
    fn bias_and_residual() {
        let mut x = vec![1.0, -2.0, 3.0];
        Activation::Relu.bias_residual_slice(&mut x, 0.5, Some(&[0.0, 1.0, -10.0]));
        assert_eq!(x, vec![1.5, 0.0, 0.0]);
    }
}
