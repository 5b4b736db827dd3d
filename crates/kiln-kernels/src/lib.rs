//! kiln's fast CPU kernels for f32, free of graph and tensor types so that they can be tested
//! and benchmarked on bare slices:
//! - [`gemm`]: a packed GEMM (BLIS-style: weights packed once into row panels, the other
//!   operand packed per call into column panels, a register-blocked micro-kernel) with a fused
//!   epilogue (bias per row, residual, activation), threaded with rayon;
//! - [`conv`]: 2-D convolution on NCHW built on it: weights pre-packed per session, 1×1
//!   convolutions read the input directly, others read their windows in place from a
//!   zero-padded, stride-phase-split copy of the input (`shifted`), and depthwise / narrow
//!   grouped convolutions use a direct kernel;
//! - [`act`]: the activations the epilogue applies, with a vectorizable `exp`;
//! - [`qgemm`]: 8-bit integer products with i32 accumulation (VNNI, AVX512BW, AVX2, portable),
//!   weights packed once with their column sums, epilogues to i32, f32 or requantized 8-bit;
//! - [`qvec`]: element-wise 8-bit kernels (QLinearAdd/Mul, table lookups);
//! - [`transpose8`]: byte matrix transposes (8-bit images between channel-first and -last);
//! - [`vecmath`]: erf, the GELU family and layer normalization over f32 slices, and the
//!   [`isa_dispatch!`] macro that compiles a loop once per ISA.
//!
//! The micro-kernel is picked at run time from the CPU's features ([`Isa`]); `KILN_ISA`
//! (`avx512`, `avx2` or `portable`) caps the choice, which is how tests cover every path on one
//! machine.
pub mod act;
pub mod attention;
#[doc(hidden)]
pub mod bench;
pub mod bf16;
pub mod conv;
pub mod gemm;
pub mod hugepages;
pub mod nchwc;
mod pixel_major;
pub mod qdepthwise;
pub mod qgemm;
pub mod qvec;
mod shifted;
pub mod transpose8;
mod ukernel;
pub mod vecmath;

pub use act::Activation;
pub use conv::{Conv2d, ConvError, PackedConv};
pub use gemm::sgemm;
pub use gemm::{sgemm_view, Epilogue, PackedA, PackedB, Precision, View};

use std::sync::OnceLock;

/// The instruction sets the micro-kernels are written for, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    Portable,
    Avx2,
    Avx512,
}

impl Isa {
    /// The best the CPU supports, capped by `KILN_ISA` when set.
    pub fn detect() -> Isa {
        static ISA: OnceLock<Isa> = OnceLock::new();
        *ISA.get_or_init(|| {
            let best = Isa::hardware();
            match std::env::var("KILN_ISA").as_deref() {
                Ok("portable") => Isa::Portable,
                Ok("avx2") => best.min(Isa::Avx2),
                _ => best,
            }
        })
    }

    fn hardware() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                return Isa::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }

    /// Micro-kernel tile: rows of the packed (weight) operand × columns of the other.
    pub fn tile(self) -> (usize, usize) {
        match self {
            Isa::Avx512 => (8, 32),
            Isa::Avx2 => (6, 16),
            Isa::Portable => (4, 8),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2+fma",
            Isa::Portable => "portable",
        }
    }
}
