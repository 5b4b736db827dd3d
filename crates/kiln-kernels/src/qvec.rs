//! Element-wise 8-bit kernels for the quantized graph, written as plain loops the compiler
//! vectorizes (compiled per ISA by [`isa_dispatch!`](crate::isa_dispatch)) and split over
//! rayon's threads: QLinearAdd / QLinearMul as ONNX Runtime computes them (in f32 from the
//! integer differences, rounded half to even), and a 256-entry table lookup for the unary ops.
use rayon::prelude::*;

/// Elements below which a slice is done on the calling thread.
const PAR_MIN: usize = 1 << 16;

/// Runs `f(out_chunk, x_chunk)` over equal-length slices, on rayon's threads when they are
/// large (chunks of at least `PAR_MIN / 4`, four per thread).
fn split<A: Send, B: Sync>(out: &mut [A], x: &[B], f: impl Fn(&mut [A], &[B]) + Sync) {
    if out.len() < PAR_MIN || rayon::current_num_threads() == 1 {
        return f(out, x);
    }
    let chunk = out
        .len()
        .div_ceil(4 * rayon::current_num_threads())
        .max(PAR_MIN / 4);
    out.par_chunks_mut(chunk)
        .zip(x.par_chunks(chunk))
        .for_each(|(o, x)| f(o, x));
}

/// QLinearAdd / QLinearMul parameters: `c = round(ra·(a - za) + rb·(b - zb)) + zc` (add) or
/// `c = round(rm·(a - za)(b - zb)) + zc` (mul), saturated to u8 or s8.
#[derive(Clone, Copy, Debug)]
pub struct QBinary {
    pub mul: bool,
    pub signed: bool,
    pub za: i32,
    pub zb: i32,
    pub zc: i32,
    /// sa/sc and sb/sc (add), or sa·sb/sc in `ra` (mul).
    pub ra: f32,
    pub rb: f32,
}

#[inline(always)]
fn value(b: u8, signed: bool) -> f32 {
    if signed {
        b as i8 as f32
    } else {
        b as f32
    }
}

#[inline(always)]
fn one<const MUL: bool, const SIGNED: bool>(x: u8, y: u8, p: &QBinary) -> u8 {
    let (da, db) = (
        value(x, SIGNED) - p.za as f32,
        value(y, SIGNED) - p.zb as f32,
    );
    let v = if MUL {
        p.ra * (da * db)
    } else {
        p.ra * da + p.rb * db
    };
    let (lo, hi) = if SIGNED {
        (-128.0, 127.0)
    } else {
        (0.0, 255.0)
    };
    // Clamped in float first, so the conversion is exact (and needs no saturating form,
    // which does not vectorize).
    let q = (v.round_ties_even() + p.zc as f32).clamp(lo, hi);
    // SAFETY: q is an integer in [-128, 255].
    unsafe { q.to_int_unchecked::<i32>() as u8 }
}

#[inline(always)]
fn binary_loop<const MUL: bool, const SIGNED: bool>(
    a: &[u8],
    b: &[u8],
    out: &mut [u8],
    p: &QBinary,
) {
    if b.len() == 1 {
        let y = b[0];
        for (o, &x) in out.iter_mut().zip(a) {
            *o = one::<MUL, SIGNED>(x, y, p);
        }
    } else {
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = one::<MUL, SIGNED>(x, y, p);
        }
    }
}

crate::isa_dispatch! {
    fn binary_run(a: &[u8], b: &[u8], out: &mut [u8], p: &QBinary) {
        match (p.mul, p.signed) {
            (false, false) => binary_loop::<false, false>(a, b, out, p),
            (false, true) => binary_loop::<false, true>(a, b, out, p),
            (true, false) => binary_loop::<true, false>(a, b, out, p),
            (true, true) => binary_loop::<true, true>(a, b, out, p),
        }
    }
}

/// One element of [`qbinary`].
pub fn binary_one(x: u8, y: u8, p: &QBinary) -> u8 {
    match (p.mul, p.signed) {
        (false, false) => one::<false, false>(x, y, p),
        (false, true) => one::<false, true>(x, y, p),
        (true, false) => one::<true, false>(x, y, p),
        (true, true) => one::<true, true>(x, y, p),
    }
}

/// `out[i] = table[out[i]]` on a short run, this thread.
pub fn lookup_in_place(out: &mut [u8], table: &[u8; 256]) {
    #[cfg(target_arch = "x86_64")]
    if lookup_variant() == "avx512-vbmi" {
        let src: [u8; 64] = std::array::from_fn(|i| out.get(i).copied().unwrap_or(0));
        if out.len() <= 64 {
            // SAFETY: the features are present.
            return unsafe { lookup_vbmi(&src[..out.len()], table, out) };
        }
    }
    for o in out.iter_mut() {
        *o = table[*o as usize];
    }
}

/// `out[i] = op(a[i], b[i])` for equal lengths, or `op(a[i], b[0])` when `b` has one element.
pub fn qbinary(a: &[u8], b: &[u8], out: &mut [u8], p: &QBinary) {
    assert!(out.len() == a.len() && (b.len() == a.len() || b.len() == 1));
    if out.len() < PAR_MIN || rayon::current_num_threads() == 1 {
        return binary_run(a, b, out, p);
    }
    let chunk = out
        .len()
        .div_ceil(4 * rayon::current_num_threads())
        .max(PAR_MIN / 4);
    out.par_chunks_mut(chunk).enumerate().for_each(|(i, o)| {
        let r = i * chunk..i * chunk + o.len();
        let bb = if b.len() == 1 { b } else { &b[r.clone()] };
        binary_run(&a[r], bb, o, p)
    });
}

/// `out[i] = table[x[i]]`: 64 bytes per step by byte permutes where the CPU has AVX512-VBMI
/// (and `KILN_ISA` allows AVX-512), a byte at a time otherwise.
pub fn lookup(x: &[u8], table: &[u8; 256], out: &mut [u8]) {
    assert_eq!(x.len(), out.len());
    #[cfg(target_arch = "x86_64")]
    if lookup_variant() == "avx512-vbmi" {
        // SAFETY: the features are present.
        return split(out, x, |o, x| unsafe { lookup_vbmi(x, table, o) });
    }
    split(out, x, |o, x| lookup_scalar(x, table, o));
}

/// Which [`lookup`] runs here: `avx512-vbmi` or `scalar`.
pub fn lookup_variant() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    if crate::Isa::detect() == crate::Isa::Avx512 && std::is_x86_feature_detected!("avx512vbmi") {
        return "avx512-vbmi";
    }
    "scalar"
}

fn lookup_scalar(x: &[u8], table: &[u8; 256], out: &mut [u8]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = table[v as usize];
    }
}

/// Two two-register permutes look up the low seven bits in each half of the table; the top
/// bit picks between them.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi")]
unsafe fn lookup_vbmi(x: &[u8], table: &[u8; 256], out: &mut [u8]) {
    use std::arch::x86_64::*;
    let t: [__m512i; 4] =
        std::array::from_fn(|i| _mm512_loadu_si512(table.as_ptr().add(64 * i) as *const _));
    let step = |v: __m512i| {
        let lo = _mm512_permutex2var_epi8(t[0], v, t[1]);
        let hi = _mm512_permutex2var_epi8(t[2], v, t[3]);
        _mm512_mask_blend_epi8(_mm512_movepi8_mask(v), lo, hi)
    };
    let full = x.len() / 64;
    for i in 0..full {
        let v = _mm512_loadu_si512(x.as_ptr().add(64 * i) as *const _);
        _mm512_storeu_si512(out.as_mut_ptr().add(64 * i) as *mut _, step(v));
    }
    let rest = x.len() - 64 * full;
    if rest > 0 {
        let m: __mmask64 = (1u64 << rest) - 1;
        let v = _mm512_maskz_loadu_epi8(m, x.as_ptr().add(64 * full) as *const _);
        _mm512_mask_storeu_epi8(out.as_mut_ptr().add(64 * full) as *mut _, m, step(v));
    }
}

crate::isa_dispatch! {
    fn quantize_run(x: &[f32], out: &mut [u8], scale: f32, zero: f32, lo: f32, hi: f32) {
        for (o, &v) in out.iter_mut().zip(x) {
            // NaN saturates to the low end through the clamp's comparisons... as ORT: to 0.
            let q = ((v / scale).round_ties_even() + zero).clamp(lo, hi);
            // NaN: the clamp keeps it, and `as` gives 0 as ORT's conversion does.
            *o = if q.is_nan() { 0 } else {
                // SAFETY: q is an integer in [-128, 255].
                unsafe { q.to_int_unchecked::<i32>() as u8 }
            };
        }
    }
}

crate::isa_dispatch! {
    fn dequantize_run(q: &[u8], out: &mut [f32], signed: bool, scale: f32, zero: f32) {
        if signed {
            for (o, &b) in out.iter_mut().zip(q) {
                *o = (b as i8 as f32 - zero) * scale;
            }
        } else {
            for (o, &b) in out.iter_mut().zip(q) {
                *o = (b as f32 - zero) * scale;
            }
        }
    }
}

crate::isa_dispatch! {
    fn min_max_run(x: &[f32]) -> (f32, f32) {
        // Lane-wise partials the compiler keeps in registers.
        let mut lo = [0f32; 16];
        let mut hi = [0f32; 16];
        let chunks = x.chunks_exact(16);
        let rest = chunks.remainder();
        for c in chunks {
            // Compare-and-select is one instruction per lane (`min`/`max` add NaN fix-ups);
            // a NaN never wins either comparison, as with `f32::min`.
            for i in 0..16 {
                lo[i] = if c[i] < lo[i] { c[i] } else { lo[i] };
                hi[i] = if c[i] > hi[i] { c[i] } else { hi[i] };
            }
        }
        let mut l = lo.iter().copied().fold(0f32, f32::min);
        let mut h = hi.iter().copied().fold(0f32, f32::max);
        for &v in rest {
            l = l.min(v);
            h = h.max(v);
        }
        (l, h)
    }
}

/// `(min(x, 0), max(x, 0))`, as DynamicQuantizeLinear's range (NaN ignored, as `f32::min`).
pub fn min_max_with_zero(x: &[f32]) -> (f32, f32) {
    if x.len() < PAR_MIN || rayon::current_num_threads() == 1 {
        return min_max_run(x);
    }
    let chunk = x
        .len()
        .div_ceil(rayon::current_num_threads())
        .max(PAR_MIN / 4);
    x.par_chunks(chunk)
        .map(min_max_run)
        .reduce(|| (0.0, 0.0), |a, b| (a.0.min(b.0), a.1.max(b.1)))
}

/// QuantizeLinear per tensor to u8/s8: `sat(round_half_even(x / scale) + zero)`.
pub fn quantize(x: &[f32], scale: f32, zero: i32, signed: bool, out: &mut [u8]) {
    assert_eq!(x.len(), out.len());
    let (lo, hi) = if signed {
        (-128.0, 127.0)
    } else {
        (0.0, 255.0)
    };
    let z = zero as f32;
    split(out, x, |o, x| quantize_run(x, o, scale, z, lo, hi));
}

/// DequantizeLinear per tensor from u8/s8: `(q - zero) · scale`.
pub fn dequantize(q: &[u8], signed: bool, scale: f32, zero: i32, out: &mut [f32]) {
    assert_eq!(q.len(), out.len());
    let z = zero as f32;
    split(out, q, |o, q| dequantize_run(q, o, signed, scale, z));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_matches_the_table_at_every_length() {
        eprintln!("lookup variant {} ran", lookup_variant());
        let table: [u8; 256] = std::array::from_fn(|i| (i as u8).wrapping_mul(37).wrapping_add(11));
        for n in [0, 1, 63, 64, 65, 200, 70_000] {
            let x: Vec<u8> = (0..n).map(|i| (i * 89 % 256) as u8).collect();
            let mut out = vec![0u8; n];
            lookup(&x, &table, &mut out);
            for (o, &v) in out.iter().zip(&x) {
                assert_eq!(*o, table[v as usize], "length {n}");
            }
        }
    }

    /// Every byte pair, both signs, add and mul, against the scalar formula.
    #[test]
    fn binary_matches_the_formula_on_every_pair() {
        for signed in [false, true] {
            for mul in [false, true] {
                let p = QBinary {
                    mul,
                    signed,
                    za: if signed { -3 } else { 120 },
                    zb: if signed { 5 } else { 131 },
                    zc: if signed { 2 } else { 128 },
                    ra: if mul { 0.0123 } else { 0.71 },
                    rb: 1.37,
                };
                let a: Vec<u8> = (0..65536 * 2).map(|i| (i % 256) as u8).collect();
                let b: Vec<u8> = (0..65536 * 2).map(|i| ((i / 256) % 256) as u8).collect();
                let mut out = vec![0u8; a.len()];
                qbinary(&a, &b, &mut out, &p);
                for i in 0..a.len() {
                    let (x, y) = (value(a[i], signed), value(b[i], signed));
                    let v = if mul {
                        p.ra * ((x - p.za as f32) * (y - p.zb as f32))
                    } else {
                        p.ra * (x - p.za as f32) + p.rb * (y - p.zb as f32)
                    };
                    let (lo, hi) = if signed { (-128, 127) } else { (0, 255) };
                    let want = (v.round_ties_even() as i32 + p.zc).clamp(lo, hi);
                    let got = if signed {
                        out[i] as i8 as i32
                    } else {
                        out[i] as i32
                    };
                    assert_eq!(got, want, "signed {signed} mul {mul} a {x} b {y}");
                }
                let mut one_b = vec![0u8; a.len()];
                qbinary(&a, &b[..1], &mut one_b, &p);
                let mut full = vec![0u8; a.len()];
                qbinary(&a, &vec![b[0]; a.len()], &mut full, &p);
                assert_eq!(one_b, full);
            }
        }
    }
}

#[cfg(test)]
mod speed {
    #[test]
    #[ignore]
    fn qbinary_rate() {
        let n = 1 << 20;
        let a: Vec<u8> = (0..n).map(|i| i as u8).collect();
        let b: Vec<u8> = (0..n).map(|i| (i * 7) as u8).collect();
        let mut o = vec![0u8; n];
        let p = super::QBinary {
            mul: true,
            signed: false,
            za: 3,
            zb: 4,
            zc: 5,
            ra: 0.01,
            rb: 0.0,
        };
        let t = std::time::Instant::now();
        for _ in 0..100 {
            super::qbinary(&a, &b, &mut o, &p);
        }
        eprintln!(
            "qbinary {:.3} ns/elem",
            t.elapsed().as_secs_f64() * 1e9 / (100 * n) as f64
        );
        let t = std::time::Instant::now();
        let tab = [7u8; 256];
        for _ in 0..100 {
            super::lookup(&a, &tab, &mut o);
        }
        eprintln!(
            "lookup {:.3} ns/elem",
            t.elapsed().as_secs_f64() * 1e9 / (100 * n) as f64
        );
    }
}
