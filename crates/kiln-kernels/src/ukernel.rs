//! Register-blocked micro-kernels: `C[MR×NR] (+)= A·B` over `k` steps, where `a` holds `k`
//! groups of MR row values (a packed weight panel) and the `k` rows of NR column values of B
//! come from a [`Rows`]: a packed panel or rows read in place a fixed stride apart
//! ([`Strided`]), or rows found through a table of offsets ([`Table`], a convolution reading
//! its shifted input windows in place). C is row-major with row stride `ldc` and always a full
//! tile; the driver handles ragged edges through a scratch tile. On a tile's last K block
//! the kernel can apply the epilogue ([`Fuse`]: bias, residual, activation) in registers
//! before its only store, which for a shallow GEMM (a 1×1 convolution over 64 channels) is a
//! third of the time saved.
use crate::act::Activation;

/// Where row `kk` of the B block starts.
pub(crate) trait Rows: Copy {
    /// # Safety
    /// `kk` must be below the `k` the block was made for.
    unsafe fn row(self, kk: usize) -> *const f32;
}

/// Rows `ld` floats apart.
#[derive(Clone, Copy)]
pub(crate) struct Strided(pub *const f32, pub usize);

impl Rows for Strided {
    #[inline(always)]
    unsafe fn row(self, kk: usize) -> *const f32 {
        self.0.add(kk * self.1)
    }
}

/// Row `kk` at `base + offsets[kk]`.
#[derive(Clone, Copy)]
pub(crate) struct Table(pub *const f32, pub *const isize);

impl Rows for Table {
    #[inline(always)]
    unsafe fn row(self, kk: usize) -> *const f32 {
        self.0.offset(*self.1.add(kk))
    }
}

/// The epilogue a micro-kernel applies to a full tile: `act(acc + bias[i] + z[i·ldc + j])`.
#[derive(Clone, Copy)]
pub(crate) struct Fuse {
    /// The bias of the tile's first row, or null.
    pub bias: *const f32,
    /// The residual at the tile's origin, rows `ldc` apart, or null.
    pub z: *const f32,
    /// One that [`crate::act::fused_in_registers`].
    pub act: Activation,
}

/// The signature every micro-kernel shares.
pub(crate) type Ukernel<R> = unsafe fn(
    k: usize,
    a: *const f32,
    b: R,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    fuse: Option<&Fuse>,
);

/// The tile heights (MR) with a micro-kernel on `isa`; the first is [`crate::Isa::tile`]'s.
/// AVX-512 also has 7 rows (a 7-pixel panel is one row of a 7-, 14- or 28-wide map) and 1 to
/// 6, AVX2 1 to 5 (a matrix of fewer rows than a tile: a decode step's activations).
pub(crate) fn heights(isa: crate::Isa) -> &'static [usize] {
    match isa {
        crate::Isa::Avx512 => &[8, 7, 1, 2, 3, 4, 5, 6],
        crate::Isa::Avx2 => &[6, 1, 2, 3, 4, 5],
        crate::Isa::Portable => &[4],
    }
}

/// The micro-kernel of `isa` for tiles `mr` rows high (one of [`heights`]).
pub(crate) fn for_shape<R: Rows>(isa: crate::Isa, mr: usize) -> Ukernel<R> {
    match (isa, mr) {
        #[cfg(target_arch = "x86_64")]
        (crate::Isa::Avx512, 1) => avx512_x32::<1, 4, R>,
        #[cfg(target_arch = "x86_64")]
        (crate::Isa::Avx512, 2) => avx512_x32::<2, 4, R>,
        #[cfg(target_arch = "x86_64")]
        (crate::Isa::Avx512, 3) => avx512_x32::<3, 2, R>,
        #[cfg(target_arch = "x86_64")]
        (crate::Isa::Avx512, 4) => avx512_x32::<4, 2, R>,
        #[cfg(target_arch = "x86_64")]
        (crate::Isa::Avx512, 5) => avx512_x32::<5, 2, R>,
        #[cfg(target_arch = "x86_64")]
        (crate::Isa::Avx512, 6) => avx512_x32::<6, 2, R>,
        #[cfg(target_arch = "x86_64")]
        (crate::Isa::Avx512, 7) => avx512_x32::<7, 1, R>,
        #[cfg(target_arch = "x86_64")]
        (crate::Isa::Avx512, _) => avx512_x32::<8, 1, R>,
        #[cfg(target_arch = "x86_64")]
        (crate::Isa::Avx2, 1) => avx2_x16::<1, 4, R>,
        #[cfg(target_arch = "x86_64")]
        (crate::Isa::Avx2, 2) => avx2_x16::<2, 2, R>,
        #[cfg(target_arch = "x86_64")]
        (crate::Isa::Avx2, 3) => avx2_x16::<3, 2, R>,
        #[cfg(target_arch = "x86_64")]
        (crate::Isa::Avx2, 4) => avx2_x16::<4, 1, R>,
        #[cfg(target_arch = "x86_64")]
        (crate::Isa::Avx2, 5) => avx2_x16::<5, 1, R>,
        #[cfg(target_arch = "x86_64")]
        (crate::Isa::Avx2, _) => avx2_x16::<6, 1, R>,
        _ => portable_4x8::<R>,
    }
}

/// Asks for the residual's rows of the tile (read at the very end) while the K loop runs:
/// a residual written several nodes earlier has left the caches, and a shallow tile (a 1×1
/// convolution over 64 channels) waited on those misses longer than it computed.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn prefetch_residual<const MR: usize, const NR: usize>(fuse: Option<&Fuse>, ldc: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    if let Some(f) = fuse {
        if !f.z.is_null() {
            for i in 0..MR {
                let row = f.z.add(i * ldc) as *const i8;
                for off in (0..NR * 4).step_by(64) {
                    _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(off));
                }
                // An unaligned row reaches into one more cache line.
                _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(NR * 4 - 1));
            }
        }
    }
}

/// # Safety
/// The CPU must have AVX-512F; `a` must hold `MR·k` floats, `b` `k` rows of 32 and `c` an
/// MR×32 tile.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn avx512_x32<const MR: usize, const U: usize, R: Rows>(
    k: usize,
    a: *const f32,
    b: R,
    c: *mut f32,
    ldc: usize,
    acc: bool,
    fuse: Option<&Fuse>,
) {
    use std::arch::x86_64::*;
    prefetch_residual::<MR, 32>(fuse, ldc);
    // A short tile (one row: a decode step's activations) has too few independent sums to
    // hide the FMA latency: U sets of accumulators take U consecutive k steps.
    let mut r: [[[__m512; 2]; MR]; U] = [[[_mm512_setzero_ps(); 2]; MR]; U];
    let mut a = a;
    let mut kk = 0;
    while kk + U <= k {
        for (u, ru) in r.iter_mut().enumerate() {
            let bp = b.row(kk + u);
            let b0 = _mm512_loadu_ps(bp);
            let b1 = _mm512_loadu_ps(bp.add(16));
            for (i, row) in ru.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*a.add(u * MR + i));
                row[0] = _mm512_fmadd_ps(av, b0, row[0]);
                row[1] = _mm512_fmadd_ps(av, b1, row[1]);
            }
        }
        a = a.add(U * MR);
        kk += U;
    }
    while kk < k {
        let bp = b.row(kk);
        let b0 = _mm512_loadu_ps(bp);
        let b1 = _mm512_loadu_ps(bp.add(16));
        for (i, row) in r[0].iter_mut().enumerate() {
            let av = _mm512_set1_ps(*a.add(i));
            row[0] = _mm512_fmadd_ps(av, b0, row[0]);
            row[1] = _mm512_fmadd_ps(av, b1, row[1]);
        }
        a = a.add(MR);
        kk += 1;
    }
    for u in 1..U {
        for i in 0..MR {
            r[0][i][0] = _mm512_add_ps(r[0][i][0], r[u][i][0]);
            r[0][i][1] = _mm512_add_ps(r[0][i][1], r[u][i][1]);
        }
    }
    for (i, row) in r[0].iter().enumerate() {
        let p = c.add(i * ldc);
        let (mut v0, mut v1) = (row[0], row[1]);
        if acc {
            v0 = _mm512_add_ps(v0, _mm512_loadu_ps(p));
            v1 = _mm512_add_ps(v1, _mm512_loadu_ps(p.add(16)));
        }
        if let Some(f) = fuse {
            if !f.bias.is_null() {
                let bv = _mm512_set1_ps(*f.bias.add(i));
                v0 = _mm512_add_ps(v0, bv);
                v1 = _mm512_add_ps(v1, bv);
            }
            if !f.z.is_null() {
                let z = f.z.add(i * ldc);
                v0 = _mm512_add_ps(v0, _mm512_loadu_ps(z));
                v1 = _mm512_add_ps(v1, _mm512_loadu_ps(z.add(16)));
            }
            v0 = crate::act::act512(f.act, v0);
            v1 = crate::act::act512(f.act, v1);
        }
        _mm512_storeu_ps(p, v0);
        _mm512_storeu_ps(p.add(16), v1);
    }
}

/// # Safety
/// The CPU must have AVX2 and FMA; `a` must hold `MR·k` floats, `b` `k` rows of 16 and `c` an
/// MR×16 tile.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_x16<const MR: usize, const U: usize, R: Rows>(
    k: usize,
    a: *const f32,
    b: R,
    c: *mut f32,
    ldc: usize,
    acc: bool,
    fuse: Option<&Fuse>,
) {
    use std::arch::x86_64::*;
    prefetch_residual::<MR, 16>(fuse, ldc);
    // As in `avx512_x32`: a short tile takes U consecutive k steps into U sets of sums.
    let mut r: [[[__m256; 2]; MR]; U] = [[[_mm256_setzero_ps(); 2]; MR]; U];
    let mut a = a;
    let mut kk = 0;
    // Four k steps per turn on the same sums: the loop's own counters and pointer updates
    // were a quarter of the instructions of a 6-row step (Zen 3, one thread, interleaved
    // trials: median 55-60 -> 60-69 GFLOP/s; 128x384x384 MatMul 1.46 -> 1.24x ORT's time).
    if U == 1 {
        while kk + 4 <= k {
            for u in 0..4 {
                let bp = b.row(kk + u);
                let b0 = _mm256_loadu_ps(bp);
                let b1 = _mm256_loadu_ps(bp.add(8));
                for (i, row) in r[0].iter_mut().enumerate() {
                    let av = _mm256_broadcast_ss(&*a.add(u * MR + i));
                    row[0] = _mm256_fmadd_ps(av, b0, row[0]);
                    row[1] = _mm256_fmadd_ps(av, b1, row[1]);
                }
            }
            a = a.add(4 * MR);
            kk += 4;
        }
    }
    while kk + U <= k {
        for (u, ru) in r.iter_mut().enumerate() {
            let bp = b.row(kk + u);
            let b0 = _mm256_loadu_ps(bp);
            let b1 = _mm256_loadu_ps(bp.add(8));
            for (i, row) in ru.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*a.add(u * MR + i));
                row[0] = _mm256_fmadd_ps(av, b0, row[0]);
                row[1] = _mm256_fmadd_ps(av, b1, row[1]);
            }
        }
        a = a.add(U * MR);
        kk += U;
    }
    while kk < k {
        let bp = b.row(kk);
        let b0 = _mm256_loadu_ps(bp);
        let b1 = _mm256_loadu_ps(bp.add(8));
        for (i, row) in r[0].iter_mut().enumerate() {
            let av = _mm256_broadcast_ss(&*a.add(i));
            row[0] = _mm256_fmadd_ps(av, b0, row[0]);
            row[1] = _mm256_fmadd_ps(av, b1, row[1]);
        }
        a = a.add(MR);
        kk += 1;
    }
    for u in 1..U {
        for i in 0..MR {
            r[0][i][0] = _mm256_add_ps(r[0][i][0], r[u][i][0]);
            r[0][i][1] = _mm256_add_ps(r[0][i][1], r[u][i][1]);
        }
    }
    for (i, row) in r[0].iter().enumerate() {
        let p = c.add(i * ldc);
        let (mut v0, mut v1) = (row[0], row[1]);
        if acc {
            v0 = _mm256_add_ps(v0, _mm256_loadu_ps(p));
            v1 = _mm256_add_ps(v1, _mm256_loadu_ps(p.add(8)));
        }
        if let Some(f) = fuse {
            if !f.bias.is_null() {
                let bv = _mm256_broadcast_ss(&*f.bias.add(i));
                v0 = _mm256_add_ps(v0, bv);
                v1 = _mm256_add_ps(v1, bv);
            }
            if !f.z.is_null() {
                let z = f.z.add(i * ldc);
                v0 = _mm256_add_ps(v0, _mm256_loadu_ps(z));
                v1 = _mm256_add_ps(v1, _mm256_loadu_ps(z.add(8)));
            }
            v0 = crate::act::act256(f.act, v0);
            v1 = crate::act::act256(f.act, v1);
        }
        _mm256_storeu_ps(p, v0);
        _mm256_storeu_ps(p.add(8), v1);
    }
}

/// Plain Rust for any CPU; the compiler vectorizes the column loop with what the target has.
///
/// # Safety
/// `a` must hold `4k` floats, `b` `k` rows of 8 and `c` a 4×8 tile.
unsafe fn portable_4x8<R: Rows>(
    k: usize,
    a: *const f32,
    b: R,
    c: *mut f32,
    ldc: usize,
    acc: bool,
    fuse: Option<&Fuse>,
) {
    let a = std::slice::from_raw_parts(a, 4 * k);
    let mut r = [[0f32; 8]; 4];
    for (p, av) in a.chunks_exact(4).enumerate() {
        let bv = std::slice::from_raw_parts(b.row(p), 8);
        for (row, &x) in r.iter_mut().zip(av) {
            for (o, &y) in row.iter_mut().zip(bv) {
                *o += x * y;
            }
        }
    }
    for (i, row) in r.iter().enumerate() {
        let out = std::slice::from_raw_parts_mut(c.add(i * ldc), 8);
        for (j, (o, &v)) in out.iter_mut().zip(row).enumerate() {
            let mut v = if acc { *o + v } else { v };
            if let Some(f) = fuse {
                if !f.bias.is_null() {
                    v += *f.bias.add(i);
                }
                if !f.z.is_null() {
                    v += *f.z.add(i * ldc + j);
                }
                v = f.act.apply(v);
            }
            *o = v;
        }
    }
}
