//! One register of a channel block: the few operations the blocked-layout kernels need, for
//! each vector width, so that every kernel is written once as a generic over [`Lanes`] and
//! compiled per ISA by a `#[target_feature]` entry point.
use crate::act::Activation;

/// A vector of `N` f32 lanes (one channel block).
pub(crate) trait Lanes: Copy {
    const N: usize;
    unsafe fn zero() -> Self;
    unsafe fn load(p: *const f32) -> Self;
    /// One value broadcast to every lane.
    unsafe fn splat(p: *const f32) -> Self;
    unsafe fn store(self, p: *mut f32);
    /// `self · b + c`.
    unsafe fn fma(self, b: Self, c: Self) -> Self;
    unsafe fn add(self, b: Self) -> Self;
    unsafe fn sub(self, b: Self) -> Self;
    unsafe fn mul(self, b: Self) -> Self;
    /// The larger of each pair; NaN in `self` wins, as a max-pool over NaN should give NaN.
    unsafe fn max(self, b: Self) -> Self;
    unsafe fn act(self, act: Activation) -> Self;
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Lanes;
    use crate::act::{act256, act512, fused_in_registers, Activation};
    use std::arch::x86_64::*;

    /// The activations the in-register forms lack (Tanh), lane by lane.
    #[inline(always)]
    unsafe fn act_lanes<const N: usize>(act: Activation, p: *mut f32) {
        for i in 0..N {
            *p.add(i) = act.apply(*p.add(i));
        }
    }

    impl Lanes for __m512 {
        const N: usize = 16;
        #[inline(always)]
        unsafe fn zero() -> Self {
            _mm512_setzero_ps()
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            _mm512_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn splat(p: *const f32) -> Self {
            _mm512_set1_ps(*p)
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm512_storeu_ps(p, self)
        }
        #[inline(always)]
        unsafe fn fma(self, b: Self, c: Self) -> Self {
            _mm512_fmadd_ps(self, b, c)
        }
        #[inline(always)]
        unsafe fn add(self, b: Self) -> Self {
            _mm512_add_ps(self, b)
        }
        #[inline(always)]
        unsafe fn sub(self, b: Self) -> Self {
            _mm512_sub_ps(self, b)
        }
        #[inline(always)]
        unsafe fn mul(self, b: Self) -> Self {
            _mm512_mul_ps(self, b)
        }
        #[inline(always)]
        unsafe fn max(self, b: Self) -> Self {
            // maxps returns its second operand when either is NaN.
            _mm512_max_ps(b, self)
        }
        #[inline(always)]
        unsafe fn act(self, act: Activation) -> Self {
            if fused_in_registers(act) {
                return act512(act, self);
            }
            let mut t = [0f32; 16];
            self.store(t.as_mut_ptr());
            act_lanes::<16>(act, t.as_mut_ptr());
            Self::load(t.as_ptr())
        }
    }

    impl Lanes for __m256 {
        const N: usize = 8;
        #[inline(always)]
        unsafe fn zero() -> Self {
            _mm256_setzero_ps()
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            _mm256_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn splat(p: *const f32) -> Self {
            _mm256_broadcast_ss(&*p)
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            _mm256_storeu_ps(p, self)
        }
        #[inline(always)]
        unsafe fn fma(self, b: Self, c: Self) -> Self {
            _mm256_fmadd_ps(self, b, c)
        }
        #[inline(always)]
        unsafe fn add(self, b: Self) -> Self {
            _mm256_add_ps(self, b)
        }
        #[inline(always)]
        unsafe fn sub(self, b: Self) -> Self {
            _mm256_sub_ps(self, b)
        }
        #[inline(always)]
        unsafe fn mul(self, b: Self) -> Self {
            _mm256_mul_ps(self, b)
        }
        #[inline(always)]
        unsafe fn max(self, b: Self) -> Self {
            _mm256_max_ps(b, self)
        }
        #[inline(always)]
        unsafe fn act(self, act: Activation) -> Self {
            if fused_in_registers(act) {
                return act256(act, self);
            }
            let mut t = [0f32; 8];
            self.store(t.as_mut_ptr());
            act_lanes::<8>(act, t.as_mut_ptr());
            Self::load(t.as_ptr())
        }
    }
}

/// Eight lanes in plain Rust, for machines without AVX2 (and `KILN_ISA=portable`).
#[derive(Clone, Copy)]
pub(crate) struct Portable8([f32; 8]);

impl Portable8 {
    #[inline(always)]
    fn zip(self, b: Self, f: impl Fn(f32, f32) -> f32) -> Self {
        let mut r = self.0;
        for (r, b) in r.iter_mut().zip(b.0) {
            *r = f(*r, b);
        }
        Portable8(r)
    }
}

impl Lanes for Portable8 {
    const N: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> Self {
        Portable8([0.0; 8])
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        Portable8(std::ptr::read_unaligned(p as *const [f32; 8]))
    }
    #[inline(always)]
    unsafe fn splat(p: *const f32) -> Self {
        Portable8([*p; 8])
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        std::ptr::write_unaligned(p as *mut [f32; 8], self.0)
    }
    #[inline(always)]
    unsafe fn fma(self, b: Self, c: Self) -> Self {
        let mut r = c.0;
        for ((r, a), b) in r.iter_mut().zip(self.0).zip(b.0) {
            *r += a * b;
        }
        Portable8(r)
    }
    #[inline(always)]
    unsafe fn add(self, b: Self) -> Self {
        self.zip(b, |a, b| a + b)
    }
    #[inline(always)]
    unsafe fn sub(self, b: Self) -> Self {
        self.zip(b, |a, b| a - b)
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        self.zip(b, |a, b| a * b)
    }
    #[inline(always)]
    unsafe fn max(self, b: Self) -> Self {
        self.zip(b, |a, b| if a.is_nan() || a > b { a } else { b })
    }
    #[inline(always)]
    unsafe fn act(self, act: Activation) -> Self {
        Portable8(self.0.map(|v| act.apply(v)))
    }
}
