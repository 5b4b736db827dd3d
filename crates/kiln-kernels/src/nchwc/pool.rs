//! Pooling in the blocked layout: every tap of a window is one vector of `B` channels, so a
//! pool is a few loads and a max or an add per output pixel, with no shuffles. Windows come
//! as lists of the input rows and columns inside the input (the caller resolves pads,
//! strides, dilations and `ceil_mode`), which keeps the borders exact.
use rayon::prelude::*;

use super::lanes::{Lanes, Portable8};
use super::{block, padded};
use crate::gemm::SendPtr;
use crate::Isa;

/// What a window reduces to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reduce {
    Max,
    /// The sum times `1 / divisor`, the divisor per output taken from the windows.
    Mean,
}

/// The windows of a 2-D pool: for each output row the input rows it reads, for each output
/// column the input columns; for a mean, the divisor of each output row and column (their
/// product divides the sum).
pub struct Windows<'a> {
    pub rows: &'a [Vec<usize>],
    pub cols: &'a [Vec<usize>],
    pub row_div: &'a [usize],
    pub col_div: &'a [usize],
}

#[inline(always)]
unsafe fn plane<V: Lanes>(x: *const f32, w: usize, y: *mut f32, win: &Windows, r: Reduce) {
    let b = V::N;
    let ow = win.cols.len();
    for (oy, rows) in win.rows.iter().enumerate() {
        for (ox, cols) in win.cols.iter().enumerate() {
            let mut acc = if r == Reduce::Max {
                V::splat(&f32::MIN)
            } else {
                V::zero()
            };
            for &ry in rows {
                let row = x.add(ry * w * b);
                for &cx in cols {
                    let v = V::load(row.add(cx * b));
                    acc = match r {
                        Reduce::Max => v.max(acc),
                        Reduce::Mean => acc.add(v),
                    };
                }
            }
            if r == Reduce::Mean {
                let d = (win.row_div[oy] * win.col_div[ox]).max(1) as f32;
                acc = acc.mul(V::splat(&(1.0 / d)));
            }
            acc.store(y.add((oy * ow + ox) * b));
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn plane_avx512(x: *const f32, w: usize, y: *mut f32, win: &Windows, r: Reduce) {
    plane::<std::arch::x86_64::__m512>(x, w, y, win, r)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn plane_avx2(x: *const f32, w: usize, y: *mut f32, win: &Windows, r: Reduce) {
    plane::<std::arch::x86_64::__m256>(x, w, y, win, r)
}

/// Pools `x` (`[n][padded(c)/B][h][w][B]`) into `out` (`[n][padded(c)/B][oh][ow][B]`,
/// `oh × ow` the window lists' lengths).
pub fn pool2d(x: &[f32], [n, c, h, w]: [usize; 4], win: &Windows, r: Reduce, out: &mut [f32]) {
    let b = block();
    let (oh, ow) = (win.rows.len(), win.cols.len());
    let planes = n * padded(c) / b;
    assert_eq!(x.len(), planes * h * w * b, "pool input size");
    assert_eq!(out.len(), planes * oh * ow * b, "pool output size");
    assert!(
        win.rows.iter().flatten().all(|&i| i < h) && win.cols.iter().flatten().all(|&i| i < w),
        "pool windows outside the input"
    );
    if r == Reduce::Mean {
        assert!(
            win.row_div.len() == oh && win.col_div.len() == ow,
            "pool divisors"
        );
    }
    let isa = Isa::detect();
    let ys = SendPtr(out.as_mut_ptr());
    (0..planes).into_par_iter().for_each(|p| {
        let xp = x[p * h * w * b..].as_ptr();
        let yp = ys.at(p * oh * ow * b);
        // SAFETY: the windows lie inside the plane (checked above), the output plane holds
        // oh·ow vectors, and the ISA is one the CPU has.
        unsafe {
            match isa {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => plane_avx512(xp, w, yp, win, r),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => plane_avx2(xp, w, yp, win, r),
                _ => plane::<Portable8>(xp, w, yp, win, r),
            }
        }
    });
}

/// Global average or max over each channel of `x` (`[n][padded(c)/B][hw][B]`) into `out`
/// (`[n][c]`, NCHW with 1×1 pixels: the padding is dropped).
pub fn global2d(x: &[f32], [n, c, hw]: [usize; 3], r: Reduce, out: &mut [f32]) {
    let b = block();
    let cb = padded(c) / b;
    assert_eq!(x.len(), n * cb * hw * b, "global pool input size");
    assert_eq!(out.len(), n * c, "global pool output size");
    let mut blocks = vec![0f32; n * cb * b];
    blocks.par_chunks_mut(b).enumerate().for_each(|(p, acc)| {
        let src = &x[p * hw * b..(p + 1) * hw * b];
        match r {
            Reduce::Max => {
                acc.fill(f32::MIN);
                for px in src.chunks_exact(b) {
                    for (a, &v) in acc.iter_mut().zip(px) {
                        if v.is_nan() || v > *a {
                            *a = v;
                        }
                    }
                }
            }
            Reduce::Mean => {
                for px in src.chunks_exact(b) {
                    for (a, &v) in acc.iter_mut().zip(px) {
                        *a += v;
                    }
                }
                let inv = 1.0 / hw.max(1) as f32;
                acc.iter_mut().for_each(|a| *a *= inv);
            }
        }
    });
    for img in 0..n {
        out[img * c..(img + 1) * c].copy_from_slice(&blocks[img * cb * b..][..c]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nchwc::reorder_in;

    #[test]
    fn pools_match_plain_loops() {
        let b = block();
        let (n, c, h, w) = (2, 19, 6, 7);
        let x: Vec<f32> = (0..n * c * h * w)
            .map(|i| ((i * 37) % 101) as f32 - 50.0)
            .collect();
        let mut xb = vec![0f32; n * padded(c) * h * w];
        reorder_in(&x, n, c, h * w, &mut xb);
        // 3x3 stride 2 pad 1: windows clipped at the borders.
        let win1d = |size: usize, out: usize| -> Vec<Vec<usize>> {
            (0..out)
                .map(|o| {
                    (0..3)
                        .map(|k| (o * 2 + k) as isize - 1)
                        .filter(|&i| i >= 0 && (i as usize) < size)
                        .map(|i| i as usize)
                        .collect()
                })
                .collect()
        };
        let (rows, cols) = (win1d(h, 3), win1d(w, 4));
        let (rd, cd): (Vec<usize>, Vec<usize>) = (
            rows.iter().map(|r| r.len()).collect(),
            cols.iter().map(|r| r.len()).collect(),
        );
        let win = Windows {
            rows: &rows,
            cols: &cols,
            row_div: &rd,
            col_div: &cd,
        };
        for r in [Reduce::Max, Reduce::Mean] {
            let mut yb = vec![f32::NAN; n * padded(c) * 12];
            pool2d(&xb, [n, c, h, w], &win, r, &mut yb);
            for img in 0..n {
                for ch in 0..c {
                    for oy in 0..3 {
                        for ox in 0..4 {
                            let mut vals = Vec::new();
                            for &iy in &rows[oy] {
                                for &ix in &cols[ox] {
                                    vals.push(x[((img * c + ch) * h + iy) * w + ix]);
                                }
                            }
                            let want = match r {
                                Reduce::Max => vals.iter().cloned().fold(f32::MIN, f32::max),
                                Reduce::Mean => vals.iter().sum::<f32>() / vals.len() as f32,
                            };
                            let got = yb
                                [((img * padded(c) / b + ch / b) * 12 + oy * 4 + ox) * b + ch % b];
                            assert!(
                                (got - want).abs() < 1e-4,
                                "{r:?} n{img} c{ch} ({oy},{ox}): {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
        let mut g = vec![0f32; n * c];
        global2d(&xb, [n, c, h * w], Reduce::Mean, &mut g);
        for (i, v) in g.iter().enumerate() {
            let want: f32 = x[i * h * w..(i + 1) * h * w].iter().sum::<f32>() / (h * w) as f32;
            assert!((v - want).abs() < 1e-4, "global mean {i}: {v} vs {want}");
        }
    }
}
