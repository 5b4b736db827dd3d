//! Winograd F(2×2, 3×3) for 3×3 stride-1 convolutions in the blocked layout: each 2×2 block
//! of outputs ("tile") comes from a 4×4 patch of the input through 16 element-wise
//! products per channel pair instead of 36 (2.25× fewer multiply-adds). The transforms
//! only add and subtract (the ½s of the weight transform are done once, when packing), so
//! results stay within rounding of the direct convolution.
//!
//! A task takes a strip of tiles of one image: it transforms their input patches into
//! `U[16 positions][c_in/B][tiles][B]`, runs the 16 products `M[pos] = U[pos] · V[pos]` on
//! the blocked 1×1 kernels (tiles as pixels), and transforms `M` back into the output with
//! bias, residual and activation. The strip is sized so `U` and `M` stay in L2.
use std::cell::Cell;

use rayon::prelude::*;

use super::conv::{blocks_per_tile, dense_kernel, max_pixels, Tap};
use super::lanes::{Lanes, Portable8};
use crate::act::Activation;
use crate::gemm::SendPtr;
use crate::Isa;

/// Transform positions of a 4×4 patch.
const POS: usize = 16;

/// Bytes of `U` and `M` one strip may take (within a 1 MiB L2 with the weights streaming).
const STRIP_BYTES: usize = 384 * 1024;

/// Tasks per worker a convolution aims for, where its map allows.
const TASKS_PER_THREAD: usize = 4;

thread_local! {
    /// A task's `U` and `M`, kept between tasks (taken out while in use).
    static SCRATCH: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// The transformed weights of a 3×3 convolution.
#[derive(Debug)]
pub(crate) struct Winograd {
    /// `[16 positions][c_out/B][c_in/B][B lanes][B]`, padded channels zero.
    w: Vec<f32>,
    icb: usize,
    ocb: usize,
    block: usize,
}

/// The tiles `t0..t0 + nt` of image `img`.
#[derive(Clone, Copy)]
struct Strip {
    img: usize,
    t0: usize,
    nt: usize,
}

/// The geometry of one run.
pub(crate) struct Run<'a> {
    pub x: &'a [f32],
    pub nhw: [usize; 3],
    pub out_hw: [usize; 2],
    /// Top and left padding.
    pub pads: [usize; 2],
    pub bias: &'a [f32],
    pub residual: Option<&'a [f32]>,
    pub act: Activation,
}

impl Winograd {
    /// `weight(o, i)`: the 3×3 taps of output channel `o` over input channel `i`, row-major.
    pub(crate) fn new(
        c_in: usize,
        c_out: usize,
        block: usize,
        weight: impl Fn(usize, usize) -> [f32; 9],
    ) -> Winograd {
        let (icb, ocb) = (c_in.div_ceil(block), c_out.div_ceil(block));
        let b = block;
        // G = [[1, 0, 0], [½, ½, ½], [½, -½, ½], [0, 0, 1]]; u = G·g·Gᵀ.
        let g_rows: [[f32; 3]; 4] = [
            [1.0, 0.0, 0.0],
            [0.5, 0.5, 0.5],
            [0.5, -0.5, 0.5],
            [0.0, 0.0, 1.0],
        ];
        let mut w = vec![0f32; POS * ocb * icb * b * b];
        for o in 0..c_out {
            for i in 0..c_in {
                let g = weight(o, i);
                let mut t = [[0f32; 3]; 4];
                for (a, row) in t.iter_mut().enumerate() {
                    for (j, v) in row.iter_mut().enumerate() {
                        *v = (0..3).map(|k| g_rows[a][k] * g[k * 3 + j]).sum();
                    }
                }
                for (a, ta) in t.iter().enumerate() {
                    for (c, gc) in g_rows.iter().enumerate() {
                        let u: f32 = (0..3).map(|j| ta[j] * gc[j]).sum();
                        let pos = a * 4 + c;
                        w[(((pos * ocb + o / b) * icb + i / b) * b + i % b) * b + o % b] = u;
                    }
                }
            }
        }
        Winograd { w, icb, ocb, block }
    }

    pub(crate) fn bytes(&self) -> usize {
        self.w.len() * 4
    }

    /// Convolves into `out` (`[n][c_out/B][oh][ow][B]`, every value written).
    pub(crate) fn run(&self, isa: Isa, r: &Run, out: *mut f32) {
        let [n, _, _] = r.nhw;
        let [oh, ow] = r.out_hw;
        let b = self.block;
        let tiles = oh.div_ceil(2) * ow.div_ceil(2);
        if tiles == 0 || n == 0 {
            return;
        }
        let per_tile = POS * (self.icb + self.ocb) * b * 4;
        let threads = rayon::current_num_threads();
        let p = max_pixels(isa, blocks_per_tile(isa));
        let want = (TASKS_PER_THREAD * threads).div_ceil(n).max(1);
        let strip = (STRIP_BYTES / per_tile)
            .min(tiles.div_ceil(want))
            .max(p)
            .next_multiple_of(p)
            .min(tiles);
        let strips = tiles.div_ceil(strip);
        let ys = SendPtr(out);
        (0..n * strips).into_par_iter().for_each(|task| {
            let (img, s) = (task / strips, task % strips);
            let t0 = s * strip;
            let nt = strip.min(tiles - t0);
            let st = Strip { img, t0, nt };
            let mut buf = SCRATCH.with(|c| c.take());
            let need = POS * (self.icb + self.ocb) * nt * b;
            if buf.len() < need {
                buf.resize(need, 0.0);
            }
            let (u, m) = buf.split_at_mut(POS * self.icb * nt * b);
            // SAFETY: the strip's tiles lie in image `img`; `u` and `m` hold the strip's
            // transforms; the output writes stay inside the image's outputs (edge tiles
            // store only their pixels inside the map).
            unsafe {
                match isa {
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512 => {
                        input_avx512(self, r, st, u.as_mut_ptr());
                        self.products(isa, nt, u.as_ptr(), m.as_mut_ptr());
                        output_avx512(self, r, st, m.as_ptr(), ys.at(0));
                    }
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2 => {
                        input_avx2(self, r, st, u.as_mut_ptr());
                        self.products(isa, nt, u.as_ptr(), m.as_mut_ptr());
                        output_avx2(self, r, st, m.as_ptr(), ys.at(0));
                    }
                    _ => {
                        input::<Portable8>(self, r, st, u.as_mut_ptr());
                        self.products(isa, nt, u.as_ptr(), m.as_mut_ptr());
                        output::<Portable8>(self, r, st, m.as_ptr(), ys.at(0));
                    }
                }
            }
            SCRATCH.with(|c| c.set(buf));
        });
    }

    /// `M[pos] = U[pos] · V[pos]` for the 16 positions, on the blocked 1×1 kernels.
    unsafe fn products(&self, isa: Isa, nt: usize, u: *const f32, m: *mut f32) {
        let b = self.block;
        let (icb, ocb) = (self.icb, self.ocb);
        let tap = Tap {
            x_cb: (nt * b) as isize,
            x_kh: 0,
            x_kw: 0,
            x_px: b as isize,
            x_lane: 1,
            lanes: b,
            lanes_last: b,
            w_ob: icb * b * b,
            w_cb: b * b,
            kw: 1,
            y_ob: nt * b,
        };
        let groups = ocb.div_ceil(blocks_per_tile(isa));
        let (base, extra) = (ocb / groups, ocb % groups);
        for pos in 0..POS {
            let up = u.add(pos * icb * nt * b);
            for grp in 0..groups {
                let (ob0, nb) = (grp * base + grp.min(extra), base + usize::from(grp < extra));
                let wp = self.w.as_ptr().add((pos * ocb + ob0) * icb * b * b);
                let mp = m.add((pos * ocb + ob0) * nt * b);
                let p = max_pixels(isa, nb);
                let full = nt / p;
                if full > 0 {
                    let k = dense_kernel(isa, nb, p);
                    k(&tap, up, wp, mp, icb, (0, 1), (0, 1), true, None, full);
                }
                let rest = nt - full * p;
                if rest > 0 {
                    let k = dense_kernel(isa, nb, rest);
                    let at = full * p;
                    k(
                        &tap,
                        up.add(at * b),
                        wp,
                        mp.add(at * b),
                        icb,
                        (0, 1),
                        (0, 1),
                        true,
                        None,
                        1,
                    );
                }
            }
        }
    }
}

/// `Bᵀ·d·B` of the 4×4 patch of every tile `t0..t0 + nt` of image `img`, for each input
/// block, into `u` (`[16][icb][nt][B]`). Patch values outside the input are zeros.
#[inline(always)]
unsafe fn input<V: Lanes>(wg: &Winograd, r: &Run, st: Strip, u: *mut f32) {
    let Strip { img, t0, nt } = st;
    let b = V::N;
    let [_, h, w] = r.nhw;
    let tw = r.out_hw[1].div_ceil(2);
    let [pt, pl] = r.pads;
    let icb = wg.icb;
    let x = r.x.as_ptr().add(img * icb * h * w * b);
    for t in 0..nt {
        let (ty, tx) = ((t0 + t) / tw, (t0 + t) % tw);
        let (iy, ix) = (
            (2 * ty) as isize - pt as isize,
            (2 * tx) as isize - pl as isize,
        );
        let inside = iy >= 0 && ix >= 0 && iy + 4 <= h as isize && ix + 4 <= w as isize;
        for cb in 0..icb {
            let plane = x.add(cb * h * w * b);
            let mut d = [[V::zero(); 4]; 4];
            for (i, row) in d.iter_mut().enumerate() {
                let y = iy + i as isize;
                if !inside && (y < 0 || y >= h as isize) {
                    continue;
                }
                for (j, v) in row.iter_mut().enumerate() {
                    let xx = ix + j as isize;
                    if inside || (xx >= 0 && xx < w as isize) {
                        *v = V::load(plane.add((y as usize * w + xx as usize) * b));
                    }
                }
            }
            // Bᵀ = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], on rows then
            // on columns.
            let mut s = [[V::zero(); 4]; 4];
            for j in 0..4 {
                s[0][j] = d[0][j].sub(d[2][j]);
                s[1][j] = d[1][j].add(d[2][j]);
                s[2][j] = d[2][j].sub(d[1][j]);
                s[3][j] = d[1][j].sub(d[3][j]);
            }
            for (a, row) in s.iter().enumerate() {
                let vals = [
                    row[0].sub(row[2]),
                    row[1].add(row[2]),
                    row[2].sub(row[1]),
                    row[1].sub(row[3]),
                ];
                for (c, v) in vals.into_iter().enumerate() {
                    v.store(u.add((((a * 4 + c) * icb + cb) * nt + t) * b));
                }
            }
        }
    }
}

/// `Aᵀ·m·A` of every tile and output block (Aᵀ = [[1, 1, 1, 0], [0, 1, -1, -1]]), plus bias
/// and residual, through the activation, into the output pixels inside the map.
#[inline(always)]
unsafe fn output<V: Lanes>(wg: &Winograd, r: &Run, st: Strip, m: *const f32, y: *mut f32) {
    let Strip { img, t0, nt } = st;
    let b = V::N;
    let [oh, ow] = r.out_hw;
    let tw = ow.div_ceil(2);
    let ocb = wg.ocb;
    for ob in 0..ocb {
        let bias = V::load(r.bias.as_ptr().add(ob * b));
        let plane = (img * ocb + ob) * oh * ow * b;
        for t in 0..nt {
            let mut v = [[V::zero(); 4]; 4];
            for (a, row) in v.iter_mut().enumerate() {
                for (c, e) in row.iter_mut().enumerate() {
                    *e = V::load(m.add((((a * 4 + c) * ocb + ob) * nt + t) * b));
                }
            }
            let mut s = [[V::zero(); 4]; 2];
            for j in 0..4 {
                s[0][j] = v[0][j].add(v[1][j]).add(v[2][j]);
                s[1][j] = v[1][j].sub(v[2][j]).sub(v[3][j]);
            }
            let (ty, tx) = ((t0 + t) / tw, (t0 + t) % tw);
            for (i, row) in s.iter().enumerate() {
                let oy = 2 * ty + i;
                if oy >= oh {
                    break;
                }
                let pair = [
                    row[0].add(row[1]).add(row[2]),
                    row[1].sub(row[2]).sub(row[3]),
                ];
                for (j, val) in pair.into_iter().enumerate() {
                    let ox = 2 * tx + j;
                    if ox >= ow {
                        break;
                    }
                    let at = plane + (oy * ow + ox) * b;
                    let mut val = val.add(bias);
                    if let Some(z) = r.residual {
                        val = val.add(V::load(z.as_ptr().add(at)));
                    }
                    val.act(r.act).store(y.add(at));
                }
            }
        }
    }
}

/// Per-ISA entry points of the transforms.
macro_rules! isa_transforms {
    ($input:ident, $output:ident, $V:ty, $feat:literal) => {
        #[target_feature(enable = $feat)]
        unsafe fn $input(wg: &Winograd, r: &Run, st: Strip, u: *mut f32) {
            input::<$V>(wg, r, st, u)
        }

        #[target_feature(enable = $feat)]
        unsafe fn $output(wg: &Winograd, r: &Run, st: Strip, m: *const f32, y: *mut f32) {
            output::<$V>(wg, r, st, m, y)
        }
    };
}

#[cfg(target_arch = "x86_64")]
isa_transforms!(
    input_avx512,
    output_avx512,
    std::arch::x86_64::__m512,
    "avx512f"
);
#[cfg(target_arch = "x86_64")]
isa_transforms!(
    input_avx2,
    output_avx2,
    std::arch::x86_64::__m256,
    "avx2,fma"
);
