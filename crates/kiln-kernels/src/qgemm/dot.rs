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
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use super::QDot;
    use std::arch::x86_64::*;

    /// AVX512-VNNI: u8 × s8, four per lane.
    pub(crate) struct Vnni512;
    /// AVX512BW: i16 × i16 pairs.
    pub(crate) struct Bw512;
    /// AVX2: i16 × i16 pairs.
    pub(crate) struct Avx2;

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
    }

    impl QDot for Avx2 {
        const G: usize = 2;
        const W: usize = 8;
        const A_BYTES: usize = 2;
        const B_BYTES: usize = 2;
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
        unsafe fn dot(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
            _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
        }
        #[inline(always)]
        unsafe fn store(v: __m256i, p: *mut i32) {
            _mm256_storeu_si256(p as *mut _, v)
        }
    }
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
}
