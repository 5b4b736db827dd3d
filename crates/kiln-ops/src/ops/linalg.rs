//! Shared numeric helpers of the compute-heavy kernels: a cache-blocked GEMM over strided
//! matrix views (used by Conv through im2col, ConvTranspose, Gemm and MatMul), the float element
//! trait the float kernels are written against (f16/bf16 compute in f32), and the fused
//! activations of com.microsoft FusedConv / FusedGemm.
use std::borrow::Cow;

use half::{bf16, f16};
use kiln_ir::{AttrList, Attribute, DataType};
use rayon::prelude::*;

use crate::kernel::Result;
use crate::value::{Data, Tensor};

/// An element type the GEMM multiplies: floats, and integers with wrapping arithmetic (as ONNX
/// Runtime and numpy do; overflow never panics).
pub(crate) trait Scalar: Copy + Send + Sync + PartialEq + std::fmt::Debug + 'static {
    const ZERO: Self;
    const ONE: Self;
    /// Whether the blocked kernel uses 16-wide column panels (f32) or 8-wide ones.
    const WIDE: bool;
    /// `self + a * b`.
    fn madd(self, a: Self, b: Self) -> Self;
    /// `self + a * b`, fused where the caller runs with FMA enabled (floats only).
    #[inline(always)]
    fn fmadd(self, a: Self, b: Self) -> Self {
        self.madd(a, b)
    }
    fn mul(self, b: Self) -> Self;
    fn add(self, b: Self) -> Self;
}

macro_rules! scalar_float {
    ($t:ty, $wide:expr) => {
        impl Scalar for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const WIDE: bool = $wide;
            #[inline(always)]
            fn madd(self, a: Self, b: Self) -> Self {
                self + a * b
            }
            #[inline(always)]
            fn fmadd(self, a: Self, b: Self) -> Self {
                a.mul_add(b, self)
            }
            #[inline(always)]
            fn mul(self, b: Self) -> Self {
                self * b
            }
            #[inline(always)]
            fn add(self, b: Self) -> Self {
                self + b
            }
        }
    };
}
scalar_float!(f32, true);
scalar_float!(f64, false);

macro_rules! scalar_int {
    ($($t:ty),*) => {$(
        impl Scalar for $t {
            const ZERO: Self = 0;
            const ONE: Self = 1;
            const WIDE: bool = false;
            #[inline(always)]
            fn madd(self, a: Self, b: Self) -> Self {
                self.wrapping_add(a.wrapping_mul(b))
            }
            #[inline(always)]
            fn mul(self, b: Self) -> Self {
                self.wrapping_mul(b)
            }
            #[inline(always)]
            fn add(self, b: Self) -> Self {
                self.wrapping_add(b)
            }
        }
    )*};
}
scalar_int!(i32, i64, u32, u64);

/// A read-only strided matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mat<'a, T> {
    pub data: &'a [T],
    pub rs: usize,
    pub cs: usize,
}

impl<'a, T: Copy> Mat<'a, T> {
    /// A row-major matrix with `cols` columns.
    pub fn rows(data: &'a [T], cols: usize) -> Self {
        Mat {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// The transposed view.
    pub fn t(self) -> Self {
        Mat {
            data: self.data,
            rs: self.cs,
            cs: self.rs,
        }
    }

    /// Checks that a `rows x cols` matrix fits in the data.
    fn check(&self, rows: usize, cols: usize, what: &str) -> Result<()> {
        if rows == 0 || cols == 0 {
            return Ok(());
        }
        let last = (rows - 1).checked_mul(self.rs).and_then(|a| {
            (cols - 1)
                .checked_mul(self.cs)
                .and_then(|b| a.checked_add(b))
        });
        match last {
            Some(l) if l < self.data.len() => Ok(()),
            _ => Err(format!(
                "internal: {what} view of {rows}x{cols} does not fit in {} elements",
                self.data.len()
            )),
        }
    }

    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> T {
        self.data[i * self.rs + j * self.cs]
    }
}

const MR: usize = 4;
const KC: usize = 256;
const MC: usize = 128;
const NC: usize = 1024;
/// Problems below this many multiply-adds run on the calling thread.
const PAR_WORK: usize = 1 << 18;

/// `C = alpha * A * B + beta * C` with `A` m x k, `B` k x n, and `C` m x n row-major with row
/// stride `ldc`. With `beta == 0` the previous contents of `C` are ignored (NaN included).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm<T: Scalar>(
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: Mat<T>,
    b: Mat<T>,
    beta: T,
    c: &mut [T],
    ldc: usize,
) -> Result<()> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    a.check(m, k, "A")?;
    b.check(k, n, "B")?;
    if ldc < n {
        return Err("internal: GEMM output row stride is below its width".into());
    }
    let need = (m - 1)
        .checked_mul(ldc)
        .and_then(|x| x.checked_add(n))
        .ok_or("internal: GEMM output too large")?;
    if c.len() < need {
        return Err(format!(
            "internal: GEMM output of {m}x{n} does not fit in {} elements",
            c.len()
        ));
    }
    let skinny = n == 1 || (m <= 16 && b.rs == 1 && a.cs == 1 && b.cs != 1) || m < MR;
    if !skinny && k > 0 {
        if let (Some(a32), Some(b32), Some(c32)) = (as_f32(a.data), as_f32(b.data), as_f32_mut(c)) {
            // f32 goes to the packed kernels (micro-kernels per ISA); the generic code below
            // serves the other element types and the skinny shapes it has special loops for.
            let av = kiln_kernels::View::new(a32, m, k, a.rs, a.cs);
            let bv = kiln_kernels::View::new(b32, k, n, b.rs, b.cs);
            let f = |x: T| as_f32(std::slice::from_ref(&x)).map_or(1.0, |v| v[0]);
            kiln_kernels::sgemm_view(f(alpha), av, &bv, f(beta), c32, ldc);
            return Ok(());
        }
    }
    // Scale (or clear) C first; the kernels below accumulate.
    for i in 0..m {
        let row = &mut c[i * ldc..i * ldc + n];
        if beta == T::ZERO {
            row.fill(T::ZERO);
        } else if beta != T::ONE {
            for v in row {
                *v = v.mul(beta);
            }
        }
    }
    if k == 0 || alpha == T::ZERO {
        return Ok(());
    }
    let work = m.saturating_mul(n).saturating_mul(k);
    let par = work >= PAR_WORK && rayon::current_num_threads() > 1;
    if n == 1 {
        gemv_col(m, k, alpha, a, b, c, ldc, par);
    } else if m <= 16 && b.rs == 1 && a.cs == 1 && b.cs != 1 {
        small_m_dots(m, n, k, alpha, a, b, c, ldc, par);
    } else if m < MR {
        for i in 0..m {
            let row = &mut c[i * ldc..i * ldc + n];
            gemv_row(i, n, k, alpha, a, b, row, par);
        }
    } else {
        blocked(m, n, k, alpha, a, b, c, ldc, par);
    }
    Ok(())
}

/// The slice as f32, when `T` is f32.
pub(crate) fn as_f32<T: 'static>(v: &[T]) -> Option<&[f32]> {
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        // SAFETY: T is f32.
        .then(|| unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<f32>(), v.len()) })
}

pub(crate) fn as_f32_mut<T: 'static>(v: &mut [T]) -> Option<&mut [f32]> {
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        // SAFETY: T is f32.
        .then(|| unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<f32>(), v.len()) })
}

/// `C[:, 0] += alpha * A * B[:, 0]`.
#[allow(clippy::too_many_arguments)]
fn gemv_col<T: Scalar>(
    m: usize,
    k: usize,
    alpha: T,
    a: Mat<T>,
    b: Mat<T>,
    c: &mut [T],
    ldc: usize,
    par: bool,
) {
    let one = |i: usize, out: &mut T| {
        let d = dot(k, a.data, i * a.rs, a.cs, b.data, 0, b.rs);
        *out = out.add(alpha.mul(d));
    };
    if par {
        c.par_chunks_mut(ldc)
            .take(m)
            .enumerate()
            .for_each(|(i, r)| one(i, &mut r[0]));
    } else {
        c.chunks_mut(ldc)
            .take(m)
            .enumerate()
            .for_each(|(i, r)| one(i, &mut r[0]));
    }
}

/// Row `i` of C (`row`, n wide) `+= alpha * A[i, :] * B`.
#[allow(clippy::too_many_arguments)]
fn gemv_row<T: Scalar>(
    i: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: Mat<T>,
    b: Mat<T>,
    row: &mut [T],
    par: bool,
) {
    const CH: usize = 512;
    let chunk = |(ci, out): (usize, &mut [T])| {
        let j0 = ci * CH;
        if b.cs == 1 {
            // Rows of B are contiguous: accumulate scaled rows.
            for p in 0..k {
                let s = alpha.mul(a.at(i, p));
                let brow = &b.data[p * b.rs + j0..p * b.rs + j0 + out.len()];
                for (o, &x) in out.iter_mut().zip(brow) {
                    *o = o.madd(s, x);
                }
            }
        } else {
            for (jj, o) in out.iter_mut().enumerate() {
                let d = dot(k, a.data, i * a.rs, a.cs, b.data, (j0 + jj) * b.cs, b.rs);
                *o = o.add(alpha.mul(d));
            }
        }
    };
    if par && n > CH {
        row.par_chunks_mut(CH).enumerate().for_each(chunk);
    } else {
        row.chunks_mut(CH).enumerate().for_each(chunk);
    }
}

/// Dot product of `k` elements of `x` (from `xo`, step `xs`) and `y` (from `yo`, step `ys`).
fn dot<T: Scalar>(k: usize, x: &[T], xo: usize, xs: usize, y: &[T], yo: usize, ys: usize) -> T {
    if xs == 1 && ys == 1 {
        let (x, y) = (&x[xo..xo + k], &y[yo..yo + k]);
        if has_fma() {
            dot_fma(x, y)
        } else {
            dot_contig::<T, false>(x, y)
        }
    } else {
        let mut s = T::ZERO;
        for p in 0..k {
            s = s.madd(x[xo + p * xs], y[yo + p * ys]);
        }
        s
    }
}

#[cfg(target_arch = "x86_64")]
fn dot_fma<T: Scalar>(x: &[T], y: &[T]) -> T {
    #[target_feature(enable = "avx2,fma")]
    unsafe fn inner<T: Scalar>(x: &[T], y: &[T]) -> T {
        dot_contig::<T, true>(x, y)
    }
    // SAFETY: only called when `has_fma()` found AVX2 and FMA on this CPU.
    unsafe { inner(x, y) }
}

#[cfg(not(target_arch = "x86_64"))]
fn dot_fma<T: Scalar>(x: &[T], y: &[T]) -> T {
    dot_contig::<T, false>(x, y)
}

/// Dot product of two equally long slices, with 16 independent partial sums.
#[inline(always)]
fn dot_contig<T: Scalar, const FMA: bool>(x: &[T], y: &[T]) -> T {
    const L: usize = 16;
    let mut acc = [T::ZERO; L];
    let mut xc = x.chunks_exact(L);
    let mut yc = y.chunks_exact(L);
    for (a, b) in (&mut xc).zip(&mut yc) {
        for l in 0..L {
            acc[l] = if FMA {
                acc[l].fmadd(a[l], b[l])
            } else {
                acc[l].madd(a[l], b[l])
            };
        }
    }
    let mut s = T::ZERO;
    for (&a, &b) in xc.remainder().iter().zip(yc.remainder()) {
        s = s.madd(a, b);
    }
    let mut t = T::ZERO;
    for v in acc {
        t = t.add(v);
    }
    t.add(s)
}

/// Few rows of A against a B whose columns are contiguous (Gemm with transB, the usual
/// fully connected layer): every column of B is read once and dotted with each row of A.
#[allow(clippy::too_many_arguments)]
fn small_m_dots<T: Scalar>(
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: Mat<T>,
    b: Mat<T>,
    c: &mut [T],
    ldc: usize,
    par: bool,
) {
    const CH: usize = 64;
    let part = |t: usize| -> (usize, Vec<T>) {
        let j0 = t * CH;
        let w = CH.min(n - j0);
        let mut local = vec![T::ZERO; m * w];
        for jj in 0..w {
            let bo = (j0 + jj) * b.cs;
            for i in 0..m {
                local[i * w + jj] = alpha.mul(dot(k, a.data, i * a.rs, a.cs, b.data, bo, b.rs));
            }
        }
        (j0, local)
    };
    let tasks = n.div_ceil(CH);
    let parts: Vec<(usize, Vec<T>)> = if par {
        (0..tasks).into_par_iter().map(part).collect()
    } else {
        (0..tasks).map(part).collect()
    };
    for (j0, local) in parts {
        let w = local.len() / m;
        for (i, lrow) in local.chunks_exact(w).enumerate() {
            let crow = &mut c[i * ldc + j0..i * ldc + j0 + w];
            for (cv, &lv) in crow.iter_mut().zip(lrow) {
                *cv = cv.add(lv);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn blocked<T: Scalar>(
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: Mat<T>,
    b: Mat<T>,
    c: &mut [T],
    ldc: usize,
    par: bool,
) {
    if T::WIDE {
        blocked_nr::<T, 16>(m, n, k, alpha, a, b, c, ldc, par)
    } else {
        blocked_nr::<T, 8>(m, n, k, alpha, a, b, c, ldc, par)
    }
}

#[allow(clippy::too_many_arguments)]
fn blocked_nr<T: Scalar, const NR: usize>(
    m: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: Mat<T>,
    b: Mat<T>,
    c: &mut [T],
    ldc: usize,
    par: bool,
) {
    let fma = has_fma();
    let run = |i0: usize, rows: usize, nn: usize, bb: Mat<T>, cc: &mut [T], ldc: usize| {
        if fma {
            block_task_fma::<T, NR>(i0, rows, nn, k, alpha, a, bb, cc, ldc)
        } else {
            block_task::<T, NR, false>(i0, rows, nn, k, alpha, a, bb, cc, ldc)
        }
    };
    if !par {
        run(0, m, n, b, c, ldc);
        return;
    }
    let threads = rayon::current_num_threads();
    if n >= m {
        // Wide: split the columns, so that each part of B is packed once. Each task writes its
        // columns to a buffer of its own, added to C afterwards.
        let w = n.div_ceil(threads * 2).div_ceil(NR).max(1) * NR;
        let parts: Vec<(usize, usize, Vec<T>)> = (0..n.div_ceil(w))
            .into_par_iter()
            .map(|t| {
                let j0 = t * w;
                let nw = w.min(n - j0);
                let mut local = vec![T::ZERO; m * nw];
                let bb = Mat {
                    data: &b.data[j0 * b.cs..],
                    rs: b.rs,
                    cs: b.cs,
                };
                run(0, m, nw, bb, &mut local, nw);
                (j0, nw, local)
            })
            .collect();
        for (j0, nw, local) in parts {
            for (i, lrow) in local.chunks_exact(nw).enumerate() {
                let crow = &mut c[i * ldc + j0..i * ldc + j0 + nw];
                for (cv, &lv) in crow.iter_mut().zip(lrow) {
                    *cv = cv.add(lv);
                }
            }
        }
    } else {
        // Tall: split the rows; every task packs B for itself.
        let mc = m.div_ceil(threads * 2).div_ceil(MR).max(1) * MR;
        let blocks = m.div_ceil(mc);
        c.par_chunks_mut(mc * ldc)
            .take(blocks)
            .enumerate()
            .for_each(|(t, cc)| run(t * mc, mc.min(m - t * mc), n, b, cc, ldc));
    }
}

#[cfg(target_arch = "x86_64")]
fn has_fma() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

#[cfg(not(target_arch = "x86_64"))]
fn has_fma() -> bool {
    false
}

#[allow(clippy::too_many_arguments)]
#[cfg(target_arch = "x86_64")]
fn block_task_fma<T: Scalar, const NR: usize>(
    i0: usize,
    rows: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: Mat<T>,
    b: Mat<T>,
    c: &mut [T],
    ldc: usize,
) {
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn inner<T: Scalar, const NR: usize>(
        i0: usize,
        rows: usize,
        n: usize,
        k: usize,
        alpha: T,
        a: Mat<T>,
        b: Mat<T>,
        c: &mut [T],
        ldc: usize,
    ) {
        block_task::<T, NR, true>(i0, rows, n, k, alpha, a, b, c, ldc)
    }
    // SAFETY: only called when `has_fma()` found AVX2 and FMA on this CPU.
    unsafe { inner::<T, NR>(i0, rows, n, k, alpha, a, b, c, ldc) }
}

#[allow(clippy::too_many_arguments)]
#[cfg(not(target_arch = "x86_64"))]
fn block_task_fma<T: Scalar, const NR: usize>(
    i0: usize,
    rows: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: Mat<T>,
    b: Mat<T>,
    c: &mut [T],
    ldc: usize,
) {
    block_task::<T, NR, false>(i0, rows, n, k, alpha, a, b, c, ldc)
}

/// Rows `i0 .. i0 + rows` of C (`c` starts at row `i0`): packs panels of A and B and runs the
/// register-blocked micro kernel over them.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn block_task<T: Scalar, const NR: usize, const FMA: bool>(
    i0: usize,
    rows: usize,
    n: usize,
    k: usize,
    alpha: T,
    a: Mat<T>,
    b: Mat<T>,
    c: &mut [T],
    ldc: usize,
) {
    let mut apack = vec![T::ZERO; MC * KC.min(k)];
    let mut bpack = vec![T::ZERO; KC.min(k) * NC.min(n).div_ceil(NR) * NR];
    let mut p0 = 0;
    while p0 < k {
        let kc = KC.min(k - p0);
        let mut j0 = 0;
        while j0 < n {
            let nc = NC.min(n - j0);
            let panels = nc.div_ceil(NR);
            // Pack B[p0.., j0..] into NR-column panels.
            for (q, panel) in bpack.chunks_exact_mut(NR * kc).enumerate().take(panels) {
                let jb = j0 + q * NR;
                let w = NR.min(n - jb);
                for p in 0..kc {
                    let dst = &mut panel[p * NR..p * NR + NR];
                    if b.cs == 1 && w == NR {
                        let s = (p0 + p) * b.rs + jb;
                        dst.copy_from_slice(&b.data[s..s + NR]);
                    } else {
                        for (jj, d) in dst.iter_mut().enumerate() {
                            *d = if jj < w {
                                b.at(p0 + p, jb + jj)
                            } else {
                                T::ZERO
                            };
                        }
                    }
                }
            }
            let mut ib = 0;
            while ib < rows {
                let mr = MC.min(rows - ib);
                let rpanels = mr.div_ceil(MR);
                // Pack A[i0 + ib.., p0..] (scaled by alpha) into MR-row panels.
                for (r, panel) in apack.chunks_exact_mut(MR * kc).enumerate().take(rpanels) {
                    for ii in 0..MR {
                        let i = r * MR + ii;
                        if i < mr {
                            for p in 0..kc {
                                panel[p * MR + ii] = alpha.mul(a.at(i0 + ib + i, p0 + p));
                            }
                        } else {
                            for p in 0..kc {
                                panel[p * MR + ii] = T::ZERO;
                            }
                        }
                    }
                }
                for q in 0..panels {
                    let bp = &bpack[q * NR * kc..(q + 1) * NR * kc];
                    let jb = j0 + q * NR;
                    let w = NR.min(n - jb);
                    for r in 0..rpanels {
                        let ap = &apack[r * MR * kc..(r + 1) * MR * kc];
                        let mut acc = [[T::ZERO; NR]; MR];
                        micro::<T, NR, FMA>(ap, bp, &mut acc);
                        let h = MR.min(mr - r * MR);
                        for (ii, accrow) in acc.iter().enumerate().take(h) {
                            let o = (ib + r * MR + ii) * ldc + jb;
                            let crow = &mut c[o..o + w];
                            for (cv, &av) in crow.iter_mut().zip(accrow.iter()) {
                                *cv = cv.add(av);
                            }
                        }
                    }
                }
                ib += mr;
            }
            j0 += nc;
        }
        p0 += kc;
    }
}

#[inline(always)]
fn micro<T: Scalar, const NR: usize, const FMA: bool>(a: &[T], b: &[T], acc: &mut [[T; NR]; MR]) {
    for (av, bv) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        for i in 0..MR {
            let x = av[i];
            for j in 0..NR {
                acc[i][j] = if FMA {
                    acc[i][j].fmadd(x, bv[j])
                } else {
                    acc[i][j].madd(x, bv[j])
                };
            }
        }
    }
}

/// Float element types the float kernels compute in: f32 (which also serves f16 and bf16
/// tensors, converted on load and rounded on store) and f64.
pub(crate) trait Real:
    Scalar + num_traits::Float + num_traits::FromPrimitive + Default + std::iter::Sum
{
    /// The elements of a float tensor of this compute type (f32 also takes f16 and bf16).
    fn load(t: &Tensor) -> Result<Cow<'_, [Self]>>;
    /// Stores results as `dtype` (f16/bf16 round from f32).
    fn store(v: Vec<Self>, dtype: DataType) -> Data;
    fn of(x: f64) -> Self;
    fn f64(self) -> f64;
}

impl Real for f32 {
    fn load(t: &Tensor) -> Result<Cow<'_, [f32]>> {
        match &t.data {
            Data::F32(v) => Ok(Cow::Borrowed(v)),
            Data::F16(v) => Ok(Cow::Owned(v.iter().map(|x| x.to_f32()).collect())),
            Data::BF16(v) => Ok(Cow::Owned(v.iter().map(|x| x.to_f32()).collect())),
            other => Err(format!("expected a float tensor, got {}", other.dtype())),
        }
    }

    fn store(v: Vec<f32>, dtype: DataType) -> Data {
        match dtype {
            DataType::F16 => Data::F16(v.into_iter().map(f16::from_f32).collect()),
            DataType::BF16 => Data::BF16(v.into_iter().map(bf16::from_f32).collect()),
            _ => Data::F32(v),
        }
    }

    #[inline(always)]
    fn of(x: f64) -> f32 {
        x as f32
    }

    #[inline(always)]
    fn f64(self) -> f64 {
        self as f64
    }
}

impl Real for f64 {
    fn load(t: &Tensor) -> Result<Cow<'_, [f64]>> {
        match &t.data {
            Data::F64(v) => Ok(Cow::Borrowed(v)),
            other => Err(format!("expected a double tensor, got {}", other.dtype())),
        }
    }

    fn store(v: Vec<f64>, _dtype: DataType) -> Data {
        Data::F64(v)
    }

    #[inline(always)]
    fn of(x: f64) -> f64 {
        x
    }

    #[inline(always)]
    fn f64(self) -> f64 {
        self
    }
}

/// Any float tensor's elements converted to `T` (for small parameter tensors whose type may
/// differ from the data's: BatchNormalization's scale and statistics, ...).
pub(crate) fn load_any<T: Real>(t: &Tensor) -> Result<Vec<T>> {
    match &t.data {
        Data::F32(_) | Data::F64(_) | Data::F16(_) | Data::BF16(_) => {
            Ok(t.to_f64s()?.into_iter().map(T::of).collect())
        }
        other => Err(format!("expected a float tensor, got {}", other.dtype())),
    }
}

/// Largest buffer a kernel allocates, in elements; beyond it the node fails instead of the
/// process running out of memory.
const MAX_ELEMS: usize = 1 << 34;

/// `n` copies of `v`, or an error when `n` is absurd or the memory cannot be had.
pub(crate) fn filled<T: Clone>(n: usize, v: T) -> Result<Vec<T>> {
    let mut out = Vec::new();
    if n > MAX_ELEMS || out.try_reserve_exact(n).is_err() {
        return Err(format!("cannot allocate a buffer of {n} elements"));
    }
    out.resize(n, v);
    Ok(out)
}

/// The product of sizes, or an error when it overflows.
pub(crate) fn product(dims: &[usize]) -> Result<usize> {
    dims.iter()
        .try_fold(1usize, |a, &b| a.checked_mul(b))
        .ok_or_else(|| format!("sizes {dims:?} are too large"))
}

/// Stores f64 results as the float type `dtype`.
pub(crate) fn store_f64(v: Vec<f64>, dtype: DataType) -> Result<Data> {
    Ok(match dtype {
        DataType::F64 => Data::F64(v),
        DataType::F32 => Data::F32(v.into_iter().map(|x| x as f32).collect()),
        DataType::F16 => Data::F16(v.into_iter().map(f16::from_f64).collect()),
        DataType::BF16 => Data::BF16(v.into_iter().map(bf16::from_f64).collect()),
        other => return Err(format!("expected a float type, got {other}")),
    })
}

/// Checks that every given tensor has the element type of the first.
pub(crate) fn same_dtype(ts: &[(&str, &Tensor)]) -> Result<()> {
    if let Some((_, first)) = ts.first() {
        for (name, t) in &ts[1..] {
            if t.dtype() != first.dtype() {
                return Err(format!(
                    "{name} has type {}, expected {} like {}",
                    t.dtype(),
                    first.dtype(),
                    ts[0].0
                ));
            }
        }
    }
    Ok(())
}

/// Runs a generic float kernel `$f::<T>(args)` with the compute type of `$dtype`.
macro_rules! float_dispatch {
    ($dtype:expr, $f:ident ( $($arg:expr),* $(,)? )) => {
        match $dtype {
            kiln_ir::DataType::F64 => $f::<f64>($($arg),*),
            kiln_ir::DataType::F32 | kiln_ir::DataType::F16 | kiln_ir::DataType::BF16 => {
                $f::<f32>($($arg),*)
            }
            other => Err(format!("{other} tensors are not supported by this op")),
        }
    };
}
pub(crate) use float_dispatch;

/// An activation fused into a producer (com.microsoft FusedConv / FusedGemm).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    Identity,
    Relu,
    Sigmoid,
    Tanh,
    LeakyRelu(f32),
    Clip(f32, f32),
    HardSigmoid(f32, f32),
    Elu(f32),
    Selu(f32, f32),
    ThresholdedRelu(f32),
    Softplus,
    Softsign,
    /// `x · sigmoid(alpha·x)`: kiln's own fused SiLU (`ai.kiln:FusedConv`).
    Silu(f32),
}

impl Act {
    /// FusedConv's `activation` with its `activation_params` (ONNX Runtime's MLAS set).
    pub fn fused_conv(attrs: &[Attribute]) -> Result<Act> {
        let Some(name) = attrs.get_str("activation") else {
            return Ok(Act::Identity);
        };
        let params = attrs.get_floats("activation_params").unwrap_or(&[]);
        let want = |n: usize| -> Result<()> {
            if params.len() == n {
                Ok(())
            } else {
                Err(format!(
                    "activation {name} needs {n} activation_params, got {}",
                    params.len()
                ))
            }
        };
        Ok(match name {
            "Identity" => Act::Identity,
            "Relu" => Act::Relu,
            "Sigmoid" => Act::Sigmoid,
            "Tanh" => Act::Tanh,
            "LeakyRelu" => {
                want(1)?;
                Act::LeakyRelu(params[0])
            }
            "Clip" => {
                want(2)?;
                Act::Clip(params[0], params[1])
            }
            "HardSigmoid" => {
                want(2)?;
                Act::HardSigmoid(params[0], params[1])
            }
            other => return Err(format!("unsupported fused activation '{other}'")),
        })
    }

    /// FusedGemm's `activation` with `activation_alpha` / `activation_beta` /
    /// `activation_gamma` (the attributes of the fused activation node, defaults as in ONNX).
    pub fn fused_gemm(attrs: &[Attribute]) -> Result<Act> {
        let Some(name) = attrs.get_str("activation") else {
            return Ok(Act::Identity);
        };
        let alpha = |d: f32| attrs.get_float("activation_alpha").unwrap_or(d);
        let beta = |d: f32| attrs.get_float("activation_beta").unwrap_or(d);
        let gamma = |d: f32| attrs.get_float("activation_gamma").unwrap_or(d);
        Ok(match name {
            "" | "Identity" => Act::Identity,
            "Relu" => Act::Relu,
            "Sigmoid" => Act::Sigmoid,
            "Tanh" => Act::Tanh,
            "LeakyRelu" => Act::LeakyRelu(alpha(0.01)),
            "HardSigmoid" => Act::HardSigmoid(alpha(0.2), beta(0.5)),
            "Elu" => Act::Elu(alpha(1.0)),
            "Selu" => Act::Selu(alpha(1.673_263_2), gamma(1.050_701)),
            "ThresholdedRelu" => Act::ThresholdedRelu(alpha(1.0)),
            "Softplus" => Act::Softplus,
            "Softsign" => Act::Softsign,
            other => return Err(format!("unsupported fused activation '{other}'")),
        })
    }

    #[inline]
    pub(crate) fn apply<T: Real>(self, x: T) -> T {
        let z = T::zero();
        let one = T::one();
        match self {
            Act::Identity => x,
            Act::Relu => {
                // NaN passes through.
                if x > z || x.is_nan() {
                    x
                } else {
                    z
                }
            }
            Act::Sigmoid => sigmoid(x),
            Act::Tanh => x.tanh(),
            Act::LeakyRelu(a) => {
                if x >= z {
                    x
                } else {
                    x * T::of(a as f64)
                }
            }
            Act::Clip(lo, hi) => {
                let (lo, hi) = (T::of(lo as f64), T::of(hi as f64));
                if x < lo {
                    lo
                } else if x > hi {
                    hi
                } else {
                    x
                }
            }
            Act::HardSigmoid(a, b) => {
                let v = T::of(a as f64) * x + T::of(b as f64);
                v.max(z).min(one)
            }
            Act::Elu(a) => {
                if x >= z {
                    x
                } else {
                    T::of(a as f64) * (x.exp() - one)
                }
            }
            Act::Selu(a, g) => {
                let (a, g) = (T::of(a as f64), T::of(g as f64));
                if x > z {
                    g * x
                } else {
                    g * (a * x.exp() - a)
                }
            }
            Act::ThresholdedRelu(a) => {
                if x > T::of(a as f64) {
                    x
                } else {
                    z
                }
            }
            Act::Softplus => {
                // log(1 + e^x) without overflow.
                if x > z {
                    x + (-x).exp().ln_1p()
                } else {
                    x.exp().ln_1p()
                }
            }
            Act::Softsign => x / (one + x.abs()),
            Act::Silu(a) => x * sigmoid(T::of(a as f64) * x),
        }
    }

    /// The same activation for kiln's fast f32 kernels, where they have it.
    pub fn fast(self) -> Option<kiln_kernels::Activation> {
        use kiln_kernels::Activation as A;
        Some(match self {
            Act::Identity => A::Identity,
            Act::Relu => A::Relu,
            Act::Sigmoid => A::Sigmoid,
            Act::Tanh => A::Tanh,
            Act::LeakyRelu(a) => A::LeakyRelu(a),
            Act::Clip(lo, hi) => A::Clip(lo, hi),
            Act::HardSigmoid(a, b) => A::HardSigmoid(a, b),
            Act::Silu(a) => A::Silu(a),
            _ => return None,
        })
    }

    pub(crate) fn apply_all<T: Real>(self, v: &mut [T]) {
        if self != Act::Identity {
            for x in v {
                *x = self.apply(*x);
            }
        }
    }
}

/// The logistic function, accurate for large |x|.
#[inline]
pub(crate) fn sigmoid<T: Real>(x: T) -> T {
    let one = T::one();
    if x >= T::zero() {
        one / (one + (-x).exp())
    } else {
        let e = x.exp();
        e / (one + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: Mat<f64>, b: Mat<f64>) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for p in 0..k {
                    s += a.at(i, p) * b.at(p, j);
                }
                c[i * n + j] = s;
            }
        }
        c
    }

    #[test]
    fn gemm_matches_naive_over_shapes_and_layouts() {
        let mut seed = 7u64;
        let mut rnd = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 33) as f64 / (1u64 << 31) as f64) - 0.5
        };
        for &(m, n, k) in &[
            (1, 1, 1),
            (1, 7, 5),
            (3, 1, 9),
            (2, 33, 17),
            (4, 16, 3),
            (5, 17, 300),
            (37, 45, 29),
            (130, 70, 260),
            (9, 1100, 12),
            (64, 200, 600),
        ] {
            let av: Vec<f64> = (0..m * k).map(|_| rnd()).collect();
            let bv: Vec<f64> = (0..k * n).map(|_| rnd()).collect();
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let a = if ta {
                    Mat::rows(&av, m).t()
                } else {
                    Mat::rows(&av, k)
                };
                let b = if tb {
                    Mat::rows(&bv, k).t()
                } else {
                    Mat::rows(&bv, n)
                };
                let want = naive(m, n, k, a, b);
                // f64
                let ldc = n + 3;
                let mut c = vec![1.0; (m - 1) * ldc + n];
                gemm(m, n, k, 2.0, a, b, 0.5, &mut c, ldc).unwrap();
                for i in 0..m {
                    for j in 0..n {
                        let w = 2.0 * want[i * n + j] + 0.5;
                        assert!((c[i * ldc + j] - w).abs() < 1e-9, "{m}x{n}x{k} {ta} {tb}");
                    }
                }
                // f32, beta 0 over NaN garbage
                let a32: Vec<f32> = av.iter().map(|&x| x as f32).collect();
                let b32: Vec<f32> = bv.iter().map(|&x| x as f32).collect();
                let a = Mat {
                    data: &a32[..],
                    rs: a.rs,
                    cs: a.cs,
                };
                let b = Mat {
                    data: &b32[..],
                    rs: b.rs,
                    cs: b.cs,
                };
                let mut c = vec![f32::NAN; m * n];
                gemm(m, n, k, 1.0, a, b, 0.0, &mut c, n).unwrap();
                for i in 0..m * n {
                    assert!((c[i] as f64 - want[i]).abs() < 1e-4, "{m}x{n}x{k} f32");
                }
            }
        }
    }

    #[test]
    fn gemm_integers_wrap() {
        let a = [i32::MAX, 2, 3, 4];
        let b = [2, 1, 1, 1];
        let mut c = [0i32; 4];
        gemm(2, 2, 2, 1, Mat::rows(&a, 2), Mat::rows(&b, 2), 0, &mut c, 2).unwrap();
        assert_eq!(
            c,
            [
                i32::MAX.wrapping_mul(2).wrapping_add(2),
                i32::MAX.wrapping_add(2),
                10,
                7
            ]
        );
    }

    #[test]
    fn gemm_refuses_views_that_do_not_fit() {
        let a = [1.0f32; 3];
        let mut c = [0.0f32; 4];
        assert!(gemm(
            2,
            2,
            2,
            1.0,
            Mat::rows(&a, 2),
            Mat::rows(&a, 2),
            0.0,
            &mut c,
            2
        )
        .is_err());
    }

    #[test]
    fn activations() {
        assert_eq!(Act::Relu.apply(-1.0f32), 0.0);
        assert!((Act::LeakyRelu(0.1).apply(-2.0f64) + 0.2).abs() < 1e-7);
        assert_eq!(Act::Clip(-1.0, 1.0).apply(3.0f32), 1.0);
        assert!((Act::HardSigmoid(0.2, 0.5).apply(1.0f64) - 0.7).abs() < 1e-6);
        assert!((Act::Sigmoid.apply(0.0f32) - 0.5).abs() < 1e-7);
        assert!((sigmoid(-800.0f64)).abs() < 1e-300);
        let attrs = [Attribute::string("activation", "Clip")];
        assert!(Act::fused_conv(&attrs)
            .unwrap_err()
            .contains("activation_params"));
        let attrs = [Attribute::string("activation", "Gelu")];
        assert!(Act::fused_conv(&attrs).is_err());
    }
}
