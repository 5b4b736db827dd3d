//! The input of a convolution laid out so that the GEMM reads its im2col rows in place.
//!
//! The input is copied once into zero-padded planes, split by stride phase: for strides
//! `sh × sw`, phase `(py, px)` holds the padded pixels at rows `py + sh·i` and columns
//! `px + sw·j`. In a phase plane `wq` wide, the output pixel `(oy, ox)` is column
//! `p = oy·wq + ox`, and tap `(i, j)` of channel `c` reads the phase plane of
//! `(i·dh mod sh, j·dw mod sw)` at `p + (i·dh / sh)·wq + j·dw / sw`: every row of the im2col
//! matrix is a contiguous run of a phase plane, starting at a fixed offset. The GEMM reads
//! those runs through an offset table ([`BSource::table`]) instead of packing patches.
//!
//! The price is `wq - ow` extra columns per output row (computed, then dropped when the
//! result is copied out) and one pass over the input; it buys a GEMM that never gathers.
use std::cell::RefCell;

use rayon::prelude::*;

use crate::conv::Conv2d;
use crate::gemm::BSource;

/// Room past the last plane for the reads of a last, partial column panel.
const SLACK: usize = 64;

/// Where each phase plane lies and how big it is.
#[derive(Debug)]
pub(crate) struct Layout {
    /// The phases that some tap reads, as `(row phase, column phase)`.
    phases: Vec<(usize, usize)>,
    /// Index into `phases` by `py * sw + px`.
    index: Vec<usize>,
    c: usize,
    hq: usize,
    pub wq: usize,
    /// Columns of the GEMM: `oh · wq`.
    pub cols: usize,
    pub len: usize,
}

impl Layout {
    pub fn new(g: &Conv2d, [oh, ow]: [usize; 2]) -> Layout {
        let [kh, kw] = g.kernel;
        let [sh, sw] = g.strides;
        let [dh, dw] = g.dilations;
        let used = |k: usize, d: usize, s: usize| {
            let mut u: Vec<usize> = (0..k).map(|i| (i * d) % s).collect();
            u.sort_unstable();
            u.dedup();
            u
        };
        let (ys, xs) = (used(kh, dh, sh), used(kw, dw, sw));
        let mut phases = Vec::new();
        let mut index = vec![usize::MAX; sh * sw];
        for &py in &ys {
            for &px in &xs {
                index[py * sw + px] = phases.len();
                phases.push((py, px));
            }
        }
        // One row more than the windows reach: garbage columns of the last row read into it.
        let hq = oh + (kh - 1) * dh / sh + 1;
        let wq = ow + (kw - 1) * dw / sw;
        let len = phases.len() * g.c_in * hq * wq + wq + SLACK;
        Layout {
            phases,
            index,
            c: g.c_in,
            hq,
            wq,
            cols: oh * wq,
            len,
        }
    }

    /// Copies one image (`[c_in][h][w]`) into `out` (`len` floats).
    pub fn fill(&self, g: &Conv2d, x: &[f32], [h, w]: [usize; 2], out: &mut [f32]) {
        let [sh, sw] = g.strides;
        let (pt, pl) = (g.pads[0] as isize, g.pads[1] as isize);
        let (hq, wq) = (self.hq, self.wq);
        let planes = self.phases.len() * self.c;
        let (body, tail) = out.split_at_mut(planes * hq * wq);
        #[cfg(target_arch = "x86_64")]
        let split2 = sw == 2 && crate::Isa::detect() == crate::Isa::Avx512;
        tail.fill(0.0);
        let fill_plane = |(pc, dst): (usize, &mut [f32])| {
            let (py, px) = self.phases[pc / self.c];
            let xc = &x[(pc % self.c) * h * w..][..h * w];
            for (i, drow) in dst.chunks_exact_mut(wq).enumerate() {
                let iy = (py + sh * i) as isize - pt;
                if iy < 0 || iy >= h as isize {
                    drow.fill(0.0);
                    continue;
                }
                let src = &xc[iy as usize * w..][..w];
                // Input column of drow[j] is base + j·sw; valid j in lo..hi.
                let base = px as isize - pl;
                #[cfg(target_arch = "x86_64")]
                if split2 {
                    // SAFETY: Isa::detect() found AVX-512F.
                    unsafe { even_columns_avx512(drow, src, base) };
                    continue;
                }
                let lo = if base >= 0 {
                    0
                } else {
                    ((-base) as usize).div_ceil(sw)
                }
                .min(wq);
                let hi = if base >= w as isize {
                    0
                } else {
                    ((w as isize - base) as usize).div_ceil(sw)
                }
                .clamp(lo, wq);
                drow[..lo].fill(0.0);
                drow[hi..].fill(0.0);
                if hi > lo {
                    let start = (base + (lo * sw) as isize) as usize;
                    let d = &mut drow[lo..hi];
                    if sw == 1 {
                        d.copy_from_slice(&src[start..start + (hi - lo)]);
                    } else {
                        gather(d, &src[start..], sw);
                    }
                }
            }
        };
        if planes * hq * wq >= 1 << 15 {
            body.par_chunks_mut(hq * wq)
                .enumerate()
                .for_each(fill_plane);
        } else {
            body.chunks_mut(hq * wq).enumerate().for_each(fill_plane);
        }
    }

    /// The offset table of group `gi`: entry `(c, i, j)` (the weights' K order) is where
    /// tap `(i, j)` of the group's channel `c` starts for output column 0.
    pub fn offsets(&self, g: &Conv2d, gi: usize) -> Vec<isize> {
        let [kh, kw] = g.kernel;
        let [sh, sw] = g.strides;
        let [dh, dw] = g.dilations;
        let cg = g.c_in / g.groups;
        let mut out = Vec::with_capacity(cg * kh * kw);
        for c in gi * cg..(gi + 1) * cg {
            for i in 0..kh {
                for j in 0..kw {
                    let pi = self.index[((i * dh) % sh) * sw + (j * dw) % sw];
                    let plane = pi * self.c + c;
                    let off = (plane * self.hq + i * dh / sh) * self.wq + j * dw / sw;
                    out.push(off as isize);
                }
            }
        }
        out
    }
}

/// `dst[j] = src[base + 2j]`, 0 where that lies outside `src`: 32 columns loaded (masked
/// at the row's ends) and their even lanes kept, per 16 outputs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn even_columns_avx512(dst: &mut [f32], src: &[f32], base: isize) {
    use std::arch::x86_64::*;
    let even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    let w = src.len() as isize;
    // Lanes of the 16 columns from `t` that lie inside the row.
    let inside = |t: isize| -> __mmask16 {
        let (lo, hi) = ((-t).clamp(0, 16), (w - t).clamp(0, 16));
        if hi <= lo {
            0
        } else {
            (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as __mmask16
        }
    };
    let zero = _mm512_setzero_ps();
    let p = src.as_ptr();
    for j0 in (0..dst.len()).step_by(16) {
        let t = base + 2 * j0 as isize;
        // Masked-off lanes are not read, so the addresses may lie outside the row.
        let lo = _mm512_mask_loadu_ps(zero, inside(t), p.wrapping_offset(t));
        let hi = _mm512_mask_loadu_ps(zero, inside(t + 16), p.wrapping_offset(t + 16));
        let v = _mm512_permutex2var_ps(lo, even, hi);
        let n = (dst.len() - j0).min(16);
        let out = dst.as_mut_ptr().add(j0);
        if n == 16 {
            _mm512_storeu_ps(out, v);
        } else {
            _mm512_mask_storeu_ps(out, ((1u32 << n) - 1) as __mmask16, v);
        }
    }
}

crate::isa_dispatch! {
    /// `dst[i] = src[i·stride]`; an index loop, which the compiler turns into loads and
    /// shuffles for a stride of 2 (the zip over `step_by` stayed one element at a time).
    fn gather(dst: &mut [f32], src: &[f32], stride: usize) {
        let n = dst.len();
        if n == 0 {
            return;
        }
        if stride == 2 {
            let src = &src[..2 * n - 1];
            for i in 0..n {
                dst[i] = src[2 * i];
            }
        } else {
            for i in 0..n {
                dst[i] = src[i * stride];
            }
        }
    }
}

/// One group's im2col matrix over a filled [`Layout`] buffer.
pub(crate) struct Shifted<'a> {
    pub buf: &'a [f32],
    pub offsets: &'a [isize],
    pub cols: usize,
}

impl BSource for Shifted<'_> {
    fn cols(&self) -> usize {
        self.cols
    }

    fn pack(&self, k0: usize, kc: usize, panel: usize, nr: usize, out: &mut [f32]) {
        let c0 = panel * nr;
        let w = nr.min(self.cols - c0);
        for (dst, &off) in out[..kc * nr]
            .chunks_exact_mut(nr)
            .zip(&self.offsets[k0..k0 + kc])
        {
            dst[..w].copy_from_slice(&self.buf[off as usize + c0..][..w]);
            dst[w..].fill(0.0);
        }
    }

    fn table(&self) -> Option<(*const f32, &[isize])> {
        // Layout::len leaves SLACK past the planes, enough for a whole last panel.
        Some((self.buf.as_ptr(), self.offsets))
    }
}

thread_local! {
    static SCRATCH: RefCell<[Vec<f32>; 2]> = const { RefCell::new([Vec::new(), Vec::new()]) };
}

/// Runs `f` with two scratch buffers of at least `a` and `b` floats, kept per thread between
/// calls so that large convolutions do not fault in fresh pages on every run.
pub(crate) fn with_scratch<T>(
    a: usize,
    b: usize,
    f: impl FnOnce(&mut [f32], &mut [f32]) -> T,
) -> T {
    let mut bufs = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    if bufs[0].len() < a {
        bufs[0].resize(a, 0.0);
    }
    if bufs[1].len() < b {
        bufs[1].resize(b, 0.0);
    }
    let [x, y] = &mut bufs;
    let out = f(&mut x[..a], &mut y[..b]);
    SCRATCH.with(|s| *s.borrow_mut() = bufs);
    out
}
