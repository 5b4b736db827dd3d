//! The integer dot-product step of the quantized micro-kernel, per ISA: one vector of `W` i32
//! accumulators takes `G` consecutive products of K per lane. Everything above this trait (the
//! tile loop, packing, the epilogue) is written once and compiled per ISA.
//!
//! Two families: `vpdpbusd` (VNNI) multiplies u8 A bytes by s8 B bytes four at a time into i32
//! with no intermediate saturation; every other path widens both operands to i16 and uses
//! `vpmaddwd` (two products, exact in i32). The u8×s8 `vpmaddubsw` shortcut is never used: its
//! 16-bit pair sums saturate (255·127·2 > 32767) and give wrong answers.

/// How a path stores its operands: A element width in bytes and B's packed element width.
pub(crate) trait QDot {
    /// Products of K per accumulator lane per step.
    const G: usize;
    /// i32 lanes per vector.
    const W: usize;
    /// Bytes per A element (1: u8, 2: i16).
    const A_BYTES: usize;
    /// Bytes per packed B element (1: s8, 2: i16).
    const B_BYTES: usize;
    type V: Copy;
    unsafe fn zero() -> Self::V;
    /// `G` A elements at `p`, broadcast to every lane.
    unsafe fn bcast(p: *const u8) -> Self::V;
    unsafe fn load(p: *const u8) -> Self::V;
    /// `acc + Σ_g a[g]·b[lane, g]`.
    unsafe fn dot(acc: Self::V, a: Self::V, b: Self::V) -> Self::V;
    unsafe fn store(v: Self::V, p: *mut i32);

    // The epilogue's steps on one vector of i32 results (lanes = output columns); the stores
    // write the first `n` lanes (`n` ≤ `W`). Each rounds exactly as the scalar
    // [`requantize`](super::requantize) and `f32(C)·scale + bias` do (no fused multiply-add).
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    /// Wrapping lane-wise product.
    unsafe fn mullo(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn set1(x: i32) -> Self::V;
    unsafe fn store_i32(v: Self::V, dst: *mut i32, n: usize);
    unsafe fn store_f32(v: Self::V, scale: *const f32, bias: *const f32, dst: *mut f32, n: usize);
    /// `clamp(f32(v)·scale, lo, hi)` rounded half to even, plus `zero`, as bytes.
    unsafe fn store_quant(
        v: Self::V,
        scale: *const f32,
        lo: f32,
        hi: f32,
        zero: i32,
        dst: *mut u8,
        n: usize,
    );
    /// [`store_quant`](QDot::store_quant) of four whole vectors, `v[i]` to `dst[i]`, an 8-bit
    /// result signed or not as `signed` says. AVX-512 packs the four into one register: its
    /// narrowing store to memory is slow on Zen 4.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn store_quant4(
        v: [Self::V; 4],
        scale: [*const f32; 4],
        lo: f32,
        hi: f32,
        zero: i32,
        _signed: bool,
        dst: [*mut u8; 4],
    ) {
        for i in 0..4 {
            Self::store_quant(v[i], scale[i], lo, hi, zero, dst[i], Self::W);
        }
    }
    /// [`store_quant`](QDot::store_quant), then QLinearAdd with the bytes at `res` (this
    /// result is the Add's `a`), as [`crate::qvec::binary_one`] computes it.
    /// By default the bytes are stored, then added one by one; AVX-512 does it in registers.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn store_quant_add(
        v: Self::V,
        scale: *const f32,
        lo: f32,
        hi: f32,
        zero: i32,
        res: *const u8,
        p: &crate::qvec::QBinary,
        dst: *mut u8,
        n: usize,
    ) {
        Self::store_quant(v, scale, lo, hi, zero, dst, n);
        for l in 0..n.min(Self::W) {
            *dst.add(l) = crate::qvec::binary_one(*dst.add(l), *res.add(l), p);
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use super::QDot;
    use std::arch::x86_64::*;

    /// The epilogue steps shared by the two AVX-512 paths (masked stores take the ragged edge).
    macro_rules! epi512 {
        () => {
            #[inline(always)]
            unsafe fn add(a: __m512i, b: __m512i) -> __m512i {
                _mm512_add_epi32(a, b)
            }
            #[inline(always)]
            unsafe fn mullo(a: __m512i, b: __m512i) -> __m512i {
                _mm512_mullo_epi32(a, b)
            }
            #[inline(always)]
            unsafe fn set1(x: i32) -> __m512i {
                _mm512_set1_epi32(x)
            }
            #[inline(always)]
            unsafe fn store_i32(v: __m512i, dst: *mut i32, n: usize) {
                _mm512_mask_storeu_epi32(dst, mask16(n), v)
            }
            #[inline(always)]
            unsafe fn store_f32(
                v: __m512i,
                scale: *const f32,
                bias: *const f32,
                dst: *mut f32,
                n: usize,
            ) {
                let f = _mm512_mul_ps(_mm512_cvtepi32_ps(v), _mm512_loadu_ps(scale));
                _mm512_mask_storeu_ps(dst, mask16(n), _mm512_add_ps(f, _mm512_loadu_ps(bias)))
            }
            #[inline(always)]
            unsafe fn store_quant(
                v: __m512i,
                scale: *const f32,
                lo: f32,
                hi: f32,
                zero: i32,
                dst: *mut u8,
                n: usize,
            ) {
                let f = _mm512_mul_ps(_mm512_cvtepi32_ps(v), _mm512_loadu_ps(scale));
                let f = _mm512_min_ps(_mm512_max_ps(f, _mm512_set1_ps(lo)), _mm512_set1_ps(hi));
                // The default MXCSR mode rounds half to even; in range after the clamp.
                let q = _mm512_add_epi32(_mm512_cvtps_epi32(f), _mm512_set1_epi32(zero));
                store_bytes(q, dst, n)
            }
            #[inline(always)]
            unsafe fn store_quant4(
                v: [__m512i; 4],
                scale: [*const f32; 4],
                lo: f32,
                hi: f32,
                zero: i32,
                signed: bool,
                dst: [*mut u8; 4],
            ) {
                let (vlo, vhi, vz) = (
                    _mm512_set1_ps(lo),
                    _mm512_set1_ps(hi),
                    _mm512_set1_epi32(zero),
                );
                // A plain loop, not a closure: a closure would compile without AVX-512.
                let mut q = [_mm512_setzero_si512(); 4];
                for i in 0..4 {
                    let f = _mm512_mul_ps(_mm512_cvtepi32_ps(v[i]), _mm512_loadu_ps(scale[i]));
                    // Unsigned: below the range, the sum stays negative and the packs
                    // saturate it to 0; only the top needs the clamp (a huge product
                    // converts to i32::MIN).
                    let f = if signed {
                        _mm512_min_ps(_mm512_max_ps(f, vlo), vhi)
                    } else {
                        _mm512_min_ps(vhi, f)
                    };
                    q[i] = _mm512_add_epi32(_mm512_cvtps_epi32(f), vz);
                }
                // In range already: the saturating packs narrow exactly. Each 128-bit lane then
                // holds four bytes of each vector; one permutation puts each vector's 16 together.
                let ab = _mm512_packs_epi32(q[0], q[1]);
                let cd = _mm512_packs_epi32(q[2], q[3]);
                let bytes = if signed {
                    _mm512_packs_epi16(ab, cd)
                } else {
                    _mm512_packus_epi16(ab, cd)
                };
                let idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
                let x = _mm512_permutexvar_epi32(idx, bytes);
                _mm_storeu_si128(dst[0] as *mut _, _mm512_castsi512_si128(x));
                _mm_storeu_si128(dst[1] as *mut _, _mm512_extracti32x4_epi32::<1>(x));
                _mm_storeu_si128(dst[2] as *mut _, _mm512_extracti32x4_epi32::<2>(x));
                _mm_storeu_si128(dst[3] as *mut _, _mm512_extracti32x4_epi32::<3>(x));
            }
            #[inline(always)]
            unsafe fn store_quant_add(
                v: __m512i,
                scale: *const f32,
                lo: f32,
                hi: f32,
                zero: i32,
                res: *const u8,
                p: &crate::qvec::QBinary,
                dst: *mut u8,
                n: usize,
            ) {
                let f = _mm512_mul_ps(_mm512_cvtepi32_ps(v), _mm512_loadu_ps(scale));
                let f = _mm512_min_ps(_mm512_max_ps(f, _mm512_set1_ps(lo)), _mm512_set1_ps(hi));
                // This result less the Add's `za` (the same zero point), exact in f32.
                let q = _mm512_add_epi32(_mm512_cvtps_epi32(f), _mm512_set1_epi32(zero - p.za));
                let da = _mm512_cvtepi32_ps(q);
                let rb = _mm_maskz_loadu_epi8(mask16(n), res as *const _);
                let rv = if p.signed {
                    _mm512_cvtepi8_epi32(rb)
                } else {
                    _mm512_cvtepu8_epi32(rb)
                };
                let db = _mm512_cvtepi32_ps(_mm512_sub_epi32(rv, _mm512_set1_epi32(p.zb)));
                let s = _mm512_add_ps(
                    _mm512_mul_ps(_mm512_set1_ps(p.ra), da),
                    _mm512_mul_ps(_mm512_set1_ps(p.rb), db),
                );
                let (clo, chi) = if p.signed {
                    (-128.0, 127.0)
                } else {
                    (0.0, 255.0)
                };
                let r = _mm512_add_ps(
                    _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(s),
                    _mm512_set1_ps(p.zc as f32),
                );
                let r = _mm512_min_ps(_mm512_max_ps(r, _mm512_set1_ps(clo)), _mm512_set1_ps(chi));
                store_bytes(_mm512_cvttps_epi32(r), dst, n)
            }
        };
    }

    /// The low bytes of 16 lanes, the first `n` stored: a full vector through a register
    /// (the masked narrowing store to memory is several times slower on Zen 4).
    #[inline(always)]
    unsafe fn store_bytes(q: __m512i, dst: *mut u8, n: usize) {
        if n >= 16 {
            _mm_storeu_si128(dst as *mut _, _mm512_cvtepi32_epi8(q))
        } else {
            _mm512_mask_cvtepi32_storeu_epi8(dst as *mut _, mask16(n), q)
        }
    }

    #[inline(always)]
    fn mask16(n: usize) -> u16 {
        if n >= 16 {
            u16::MAX
        } else {
            (1u16 << n) - 1
        }
    }

    /// AVX512-VNNI: u8 × s8, four per lane.
    pub(crate) struct Vnni512;
    /// AVX512BW: i16 × i16 pairs.
    pub(crate) struct Bw512;
    /// AVX2: i16 × i16 pairs.
    pub(crate) struct Avx2;
    /// AVX-VNNI: u8 × s8, four per lane, 256-bit.
    pub(crate) struct AvxVnni;
    /// [`AvxVnni`]'s kernels through AVX512-VNNI's 256-bit form.
    pub(crate) struct Vnni256;

    impl QDot for Vnni512 {
        const G: usize = 4;
        const W: usize = 16;
        const A_BYTES: usize = 1;
        const B_BYTES: usize = 1;
        type V = __m512i;
        #[inline(always)]
        unsafe fn zero() -> __m512i {
            _mm512_setzero_si512()
        }
        #[inline(always)]
        unsafe fn bcast(p: *const u8) -> __m512i {
            _mm512_set1_epi32(std::ptr::read_unaligned(p as *const i32))
        }
        #[inline(always)]
        unsafe fn load(p: *const u8) -> __m512i {
            _mm512_loadu_si512(p as *const _)
        }
        #[inline(always)]
        unsafe fn dot(acc: __m512i, a: __m512i, b: __m512i) -> __m512i {
            _mm512_dpbusd_epi32(acc, a, b)
        }
        #[inline(always)]
        unsafe fn store(v: __m512i, p: *mut i32) {
            _mm512_storeu_si512(p as *mut _, v)
        }
        epi512!();
    }

    impl QDot for Bw512 {
        const G: usize = 2;
        const W: usize = 16;
        const A_BYTES: usize = 2;
        const B_BYTES: usize = 2;
        type V = __m512i;
        #[inline(always)]
        unsafe fn zero() -> __m512i {
            _mm512_setzero_si512()
        }
        #[inline(always)]
        unsafe fn bcast(p: *const u8) -> __m512i {
            _mm512_set1_epi32(std::ptr::read_unaligned(p as *const i32))
        }
        #[inline(always)]
        unsafe fn load(p: *const u8) -> __m512i {
            _mm512_loadu_si512(p as *const _)
        }
        #[inline(always)]
        unsafe fn dot(acc: __m512i, a: __m512i, b: __m512i) -> __m512i {
            _mm512_add_epi32(acc, _mm512_madd_epi16(a, b))
        }
        #[inline(always)]
        unsafe fn store(v: __m512i, p: *mut i32) {
            _mm512_storeu_si512(p as *mut _, v)
        }
        epi512!();
    }

    /// The 256-bit paths: one shape of epilogue, the dot product step as given.
    macro_rules! qdot256 {
        ($name:ident, $g:expr, $bytes:expr, |$acc:ident, $a:ident, $b:ident| $dot:expr) => {
            impl QDot for $name {
                const G: usize = $g;
                const W: usize = 8;
                const A_BYTES: usize = $bytes;
                const B_BYTES: usize = $bytes;
                type V = __m256i;
                #[inline(always)]
                unsafe fn zero() -> __m256i {
                    _mm256_setzero_si256()
                }
                #[inline(always)]
                unsafe fn bcast(p: *const u8) -> __m256i {
                    _mm256_set1_epi32(std::ptr::read_unaligned(p as *const i32))
                }
                #[inline(always)]
                unsafe fn load(p: *const u8) -> __m256i {
                    _mm256_loadu_si256(p as *const _)
                }
                #[inline(always)]
                unsafe fn dot($acc: __m256i, $a: __m256i, $b: __m256i) -> __m256i {
                    $dot
                }
                #[inline(always)]
                unsafe fn store(v: __m256i, p: *mut i32) {
                    _mm256_storeu_si256(p as *mut _, v)
                }
                #[inline(always)]
                unsafe fn add(a: __m256i, b: __m256i) -> __m256i {
                    _mm256_add_epi32(a, b)
                }
                #[inline(always)]
                unsafe fn mullo(a: __m256i, b: __m256i) -> __m256i {
                    _mm256_mullo_epi32(a, b)
                }
                #[inline(always)]
                unsafe fn set1(x: i32) -> __m256i {
                    _mm256_set1_epi32(x)
                }
                #[inline(always)]
                unsafe fn store_i32(v: __m256i, dst: *mut i32, n: usize) {
                    if n >= 8 {
                        _mm256_storeu_si256(dst as *mut _, v)
                    } else {
                        let mut t = [0i32; 8];
                        _mm256_storeu_si256(t.as_mut_ptr() as *mut _, v);
                        std::ptr::copy_nonoverlapping(t.as_ptr(), dst, n)
                    }
                }
                #[inline(always)]
                unsafe fn store_f32(
                    v: __m256i,
                    scale: *const f32,
                    bias: *const f32,
                    dst: *mut f32,
                    n: usize,
                ) {
                    let f = _mm256_mul_ps(_mm256_cvtepi32_ps(v), _mm256_loadu_ps(scale));
                    let f = _mm256_add_ps(f, _mm256_loadu_ps(bias));
                    if n >= 8 {
                        _mm256_storeu_ps(dst, f)
                    } else {
                        let mut t = [0f32; 8];
                        _mm256_storeu_ps(t.as_mut_ptr(), f);
                        std::ptr::copy_nonoverlapping(t.as_ptr(), dst, n)
                    }
                }
                #[inline(always)]
                unsafe fn store_quant(
                    v: __m256i,
                    scale: *const f32,
                    lo: f32,
                    hi: f32,
                    zero: i32,
                    dst: *mut u8,
                    n: usize,
                ) {
                    let f = _mm256_mul_ps(_mm256_cvtepi32_ps(v), _mm256_loadu_ps(scale));
                    let f = _mm256_min_ps(_mm256_max_ps(f, _mm256_set1_ps(lo)), _mm256_set1_ps(hi));
                    let q = _mm256_add_epi32(_mm256_cvtps_epi32(f), _mm256_set1_epi32(zero));
                    // In the byte range already: the packs only narrow (each 128-bit half holds four).
                    let w = _mm256_packs_epi32(q, q);
                    // The low bound is -128 for s8 outputs, 0 for u8 ones.
                    let b = if lo + zero as f32 >= 0.0 {
                        _mm256_packus_epi16(w, w)
                    } else {
                        _mm256_packs_epi16(w, w)
                    };
                    let bytes = (_mm256_extract_epi32::<0>(b) as u32 as u64)
                        | ((_mm256_extract_epi32::<4>(b) as u32 as u64) << 32);
                    if n >= 8 {
                        std::ptr::write_unaligned(dst as *mut u64, bytes)
                    } else {
                        std::ptr::copy_nonoverlapping(bytes.to_le_bytes().as_ptr(), dst, n)
                    }
                }
            }
        };
    }

    qdot256!(Avx2, 2, 2, |acc, a, b| _mm256_add_epi32(
        acc,
        _mm256_madd_epi16(a, b)
    ));
    // AVX-VNNI (VEX): u8 × s8, four per lane, on 256-bit vectors (Alder Lake and later client
    // cores, Sierra Forest, Zen 5).
    qdot256!(AvxVnni, 4, 1, |acc, a, b| _mm256_dpbusd_avx_epi32(
        acc, a, b
    ));
    // The same step in its AVX512-VNNI encoding (VL): the AVX-VNNI kernels' code, run where the
    // CPU has AVX-512 VNNI but not the VEX form (Zen 4), so that they are tested there.
    qdot256!(Vnni256, 4, 1, |acc, a, b| _mm256_dpbusd_epi32(acc, a, b));
}

/// Eight lanes of i16 pairs in plain Rust.
pub(crate) struct Portable;

impl QDot for Portable {
    const G: usize = 2;
    const W: usize = 8;
    const A_BYTES: usize = 2;
    const B_BYTES: usize = 2;
    type V = [i32; 8];
    #[inline(always)]
    unsafe fn zero() -> [i32; 8] {
        [0; 8]
    }
    #[inline(always)]
    unsafe fn bcast(p: *const u8) -> [i32; 8] {
        [std::ptr::read_unaligned(p as *const i32); 8]
    }
    #[inline(always)]
    unsafe fn load(p: *const u8) -> [i32; 8] {
        std::ptr::read_unaligned(p as *const [i32; 8])
    }
    #[inline(always)]
    unsafe fn dot(mut acc: [i32; 8], a: [i32; 8], b: [i32; 8]) -> [i32; 8] {
        for l in 0..8 {
            let (a0, a1) = (a[l] as i16 as i32, (a[l] >> 16) as i16 as i32);
            let (b0, b1) = (b[l] as i16 as i32, (b[l] >> 16) as i16 as i32);
            acc[l] = acc[l].wrapping_add(a0 * b0 + a1 * b1);
        }
        acc
    }
    #[inline(always)]
    unsafe fn store(v: [i32; 8], p: *mut i32) {
        std::ptr::write_unaligned(p as *mut [i32; 8], v)
    }
    #[inline(always)]
    unsafe fn add(a: [i32; 8], b: [i32; 8]) -> [i32; 8] {
        std::array::from_fn(|l| a[l].wrapping_add(b[l]))
    }
    #[inline(always)]
    unsafe fn mullo(a: [i32; 8], b: [i32; 8]) -> [i32; 8] {
        std::array::from_fn(|l| a[l].wrapping_mul(b[l]))
    }
    #[inline(always)]
    unsafe fn set1(x: i32) -> [i32; 8] {
        [x; 8]
    }
    #[inline(always)]
    unsafe fn store_i32(v: [i32; 8], dst: *mut i32, n: usize) {
        std::ptr::copy_nonoverlapping(v.as_ptr(), dst, n.min(8))
    }
    #[inline(always)]
    unsafe fn store_f32(v: [i32; 8], scale: *const f32, bias: *const f32, dst: *mut f32, n: usize) {
        for (l, &x) in v.iter().enumerate().take(n) {
            *dst.add(l) = x as f32 * *scale.add(l) + *bias.add(l);
        }
    }
    #[inline(always)]
    unsafe fn store_quant(
        v: [i32; 8],
        scale: *const f32,
        lo: f32,
        hi: f32,
        zero: i32,
        dst: *mut u8,
        n: usize,
    ) {
        for (l, &x) in v.iter().enumerate().take(n) {
            let f = (x as f32 * *scale.add(l)).clamp(lo, hi);
            *dst.add(l) = (f.round_ties_even() as i32 + zero) as u8;
        }
    }
}
