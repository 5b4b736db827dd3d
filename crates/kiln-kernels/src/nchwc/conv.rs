//! Direct 2-D convolution into the blocked channel layout: no im2col, no padded copy of the
//! input, no copy-out. A task computes one output row (or a run of it) for up to `OCT`
//! output-channel blocks at once, `P` pixels at a time, in registers: each step loads one
//! weight vector per block and broadcasts one input value per pixel. Border pixels, whose
//! window leaves the input, are done one by one over the taps that stay inside it, so the
//! hot loop never tests a bound and never reads padding.
//!
//! The input is either blocked like the output, or plain NCHW (a first layer over three
//! channels: its channels are then one block of `c_in` lanes, read `h·w` apart).
use std::mem::MaybeUninit;
use std::sync::OnceLock;

use rayon::prelude::*;

use super::lanes::{Lanes, Portable8};
use super::padded;
use super::winograd::{Run as WinogradRun, Winograd};
use crate::act::Activation;
use crate::conv::{Conv2d, ConvError};
use crate::gemm::SendPtr;
use crate::Isa;

/// How the convolution's input is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// `[n][c/B][h][w][B]`, channels padded to the block.
    Blocked,
    /// `[n][c][h][w]`.
    Plain,
}

/// A convolution with its weights laid out for the blocked kernels of this CPU.
#[derive(Debug)]
pub struct NchwcConv {
    geom: Conv2d,
    block: usize,
    input: Input,
    depthwise: bool,
    /// Dense: `[c_out/B][in blocks][kh][kw][lanes][B]`; depthwise: `[c/B][kh][kw][B]`.
    w: crate::hugepages::Buffer<f32>,
    /// Padded to whole blocks with zeros.
    bias: Vec<f32>,
    isa: Isa,
    /// Whether the geometry and channels suit Winograd (see [`Self::winograd_for`]).
    wino_fits: bool,
    /// The Winograd form, made from `w` when a run first takes it: a 3×3 layer over 7×7 maps
    /// never does, and its transformed weights would only take memory (ResNet50: 50 MB).
    wino: OnceLock<Winograd>,
}

fn err<T>(msg: String) -> Result<T, ConvError> {
    Err(ConvError(msg))
}

/// Where a task reads and writes, in floats: the strides every call of a run shares.
pub(super) struct Tap {
    /// Between input channel blocks, kernel rows, kernel columns, output pixels, lanes.
    pub(super) x_cb: isize,
    pub(super) x_kh: isize,
    pub(super) x_kw: isize,
    pub(super) x_px: isize,
    pub(super) x_lane: isize,
    pub(super) lanes: usize,
    /// The lanes of the last input block that hold real channels (a layer over 24 channels
    /// in blocks of 16 skips the 8 lanes of zeros: a third of its work).
    pub(super) lanes_last: usize,
    /// Between the weights of output blocks and of input blocks; kernel width.
    pub(super) w_ob: usize,
    pub(super) w_cb: usize,
    pub(super) kw: usize,
    /// Between output blocks.
    pub(super) y_ob: usize,
}

/// What the last pass over the input channels adds before storing.
#[derive(Clone, Copy)]
pub(super) struct Epi {
    /// The bias of the first output block.
    pub(super) bias: *const f32,
    /// The residual at the first output value, laid out as the output, or null.
    pub(super) z: *const f32,
    pub(super) act: Activation,
}

pub(super) type Range2 = (usize, usize);

/// Stores a tile, finishing it with the epilogue when given.
#[inline(always)]
unsafe fn store<V: Lanes, const NB: usize, const P: usize>(
    mut acc: [[V; NB]; P],
    y: *mut f32,
    y_ob: usize,
    epi: Option<&Epi>,
) {
    let b = V::N;
    if let Some(e) = epi {
        for j in 0..NB {
            let bias = V::load(e.bias.add(j * b));
            for (p, row) in acc.iter_mut().enumerate() {
                let mut v = row[j].add(bias);
                if !e.z.is_null() {
                    v = v.add(V::load(e.z.add(j * y_ob + p * b)));
                }
                row[j] = v.act(e.act);
            }
        }
    }
    for (p, row) in acc.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            v.store(y.add(j * y_ob + p * b));
        }
    }
}

/// One input lane of one tap: `NB` weight vectors against `P` broadcast pixels.
#[inline(always)]
unsafe fn lane_step<V: Lanes, const NB: usize, const P: usize>(
    t: &Tap,
    acc: &mut [[V; NB]; P],
    wp: *const f32,
    xp: *const f32,
    l: usize,
    x_lane: isize,
) {
    let b = V::N;
    let mut wv = [V::zero(); NB];
    for (j, v) in wv.iter_mut().enumerate() {
        *v = V::load(wp.add(j * t.w_ob + l * b));
    }
    let xl = xp.offset(l as isize * x_lane);
    for (p, row) in acc.iter_mut().enumerate() {
        let xv = V::splat(xl.offset(p as isize * t.x_px));
        for j in 0..NB {
            row[j] = xv.fma(wv[j], row[j]);
        }
    }
}

/// `NB` output blocks × `P` pixels over `icbs` input blocks and the taps `kh × kw`. `x` is
/// the input at the first pixel's window origin (it may point into the padding), `w` the
/// weights of the first block, `y` the first output.
///
/// `UNROLL`: a whole block of a blocked input runs its lanes as a loop of fixed count, which
/// the compiler unrolls with constant offsets. On AVX2's 16 registers the loop of variable
/// count spilled and shuffled accumulators every lane (Zen 3, one thread: 1×1 convolutions
/// +23-56%, direct 3×3 +12-18%); AVX-512's 32 registers have room, so it keeps the loop.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn dense_tile<V: Lanes, const NB: usize, const P: usize, const UNROLL: bool>(
    t: &Tap,
    x: *const f32,
    w: *const f32,
    y: *mut f32,
    icbs: usize,
    kh: Range2,
    kw: Range2,
    first: bool,
    epi: Option<&Epi>,
) {
    let b = V::N;
    let mut acc = [[V::zero(); NB]; P];
    if !first {
        for (p, row) in acc.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = V::load(y.add(j * t.y_ob + p * b));
            }
        }
    }
    for c in 0..icbs {
        // The pass with the epilogue holds the last input block.
        let lanes = if epi.is_some() && c + 1 == icbs {
            t.lanes_last
        } else {
            t.lanes
        };
        for r in kh.0..kh.1 {
            for s in kw.0..kw.1 {
                let xp = x.wrapping_offset(
                    c as isize * t.x_cb + r as isize * t.x_kh + s as isize * t.x_kw,
                );
                let wp = w.add(c * t.w_cb + (r * t.kw + s) * t.lanes * b);
                if UNROLL && t.x_lane == 1 && lanes == b {
                    for l in 0..V::N {
                        lane_step::<V, NB, P>(t, &mut acc, wp, xp, l, 1);
                    }
                } else {
                    for l in 0..lanes {
                        lane_step::<V, NB, P>(t, &mut acc, wp, xp, l, t.x_lane);
                    }
                }
            }
        }
    }
    store::<V, NB, P>(acc, y, t.y_ob, epi);
}

/// One channel block of a depthwise convolution, `P` pixels: each tap is a vector load of
/// the input, not a broadcast.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn dw_tile<V: Lanes, const P: usize>(
    t: &Tap,
    x: *const f32,
    w: *const f32,
    y: *mut f32,
    _icbs: usize,
    kh: Range2,
    kw: Range2,
    _first: bool,
    epi: Option<&Epi>,
) {
    let b = V::N;
    let mut acc = [[V::zero(); 1]; P];
    for r in kh.0..kh.1 {
        for s in kw.0..kw.1 {
            let xp = x.wrapping_offset(r as isize * t.x_kh + s as isize * t.x_kw);
            let wv = V::load(w.add((r * t.kw + s) * b));
            for (p, row) in acc.iter_mut().enumerate() {
                row[0] = V::load(xp.offset(p as isize * t.x_px)).fma(wv, row[0]);
            }
        }
    }
    store::<V, 1, P>(acc, y, t.y_ob, epi);
}

/// `n` tiles of `P` pixels one after another along a row, each through `one`: a call per
/// run of tiles instead of per tile keeps the indirect call and its set-up off the short
/// tiles of 1x1 convolutions over few channels (64->256 @56: +13%, depthwise: +15%).
#[inline(always)]
unsafe fn tiles<const P: usize>(
    t: &Tap,
    x: *const f32,
    y: *mut f32,
    epi: Option<&Epi>,
    n: usize,
    b: usize,
    one: impl Fn(*const f32, *mut f32, Option<&Epi>),
) {
    for i in 0..n {
        let e = epi.map(|e| Epi {
            z: if e.z.is_null() {
                e.z
            } else {
                e.z.add(i * P * b)
            },
            ..*e
        });
        one(
            x.wrapping_offset((i * P) as isize * t.x_px),
            y.add(i * P * b),
            e.as_ref(),
        );
    }
}

pub(super) type Kernel = unsafe fn(
    &Tap,
    *const f32,
    *const f32,
    *mut f32,
    usize,
    Range2,
    Range2,
    bool,
    Option<&Epi>,
    usize,
);

/// Compiles the generic kernels for one ISA (`$feat` empty: no target features; `$unroll`:
/// see [`dense_tile`]).
macro_rules! isa_kernels {
    ($dense:ident, $dw:ident, $V:ty, $unroll:expr $(, $feat:literal)?) => {
        $(#[target_feature(enable = $feat)])?
        #[allow(clippy::too_many_arguments)]
        unsafe fn $dense<const NB: usize, const P: usize>(
            t: &Tap, x: *const f32, w: *const f32, y: *mut f32, icbs: usize, kh: Range2,
            kw: Range2, first: bool, epi: Option<&Epi>, n: usize,
        ) {
            tiles::<P>(t, x, y, epi, n, <$V as Lanes>::N, |x, y, e| {
                dense_tile::<$V, NB, P, $unroll>(t, x, w, y, icbs, kh, kw, first, e)
            })
        }

        $(#[target_feature(enable = $feat)])?
        #[allow(clippy::too_many_arguments)]
        unsafe fn $dw<const P: usize>(
            t: &Tap, x: *const f32, w: *const f32, y: *mut f32, icbs: usize, kh: Range2,
            kw: Range2, first: bool, epi: Option<&Epi>, n: usize,
        ) {
            tiles::<P>(t, x, y, epi, n, <$V as Lanes>::N, |x, y, e| {
                dw_tile::<$V, P>(t, x, w, y, icbs, kh, kw, first, e)
            })
        }
    };
}

#[cfg(target_arch = "x86_64")]
isa_kernels!(
    dense_avx512,
    dw_avx512,
    std::arch::x86_64::__m512,
    false,
    "avx512f"
);
#[cfg(target_arch = "x86_64")]
isa_kernels!(
    dense_avx2,
    dw_avx2,
    std::arch::x86_64::__m256,
    true,
    "avx2,fma"
);
isa_kernels!(dense_portable, dw_portable, Portable8, false);

/// Pixels a tile of `nb` output blocks holds at most: the accumulators (`nb·P`) and the
/// weight vectors (`nb`) fill the register file (32 vectors on AVX-512, 16 on AVX2).
pub(super) fn max_pixels(isa: Isa, nb: usize) -> usize {
    match (isa, nb) {
        (Isa::Avx512, 4) => 6,
        (Isa::Avx512, 3) => 8,
        (Isa::Avx512, _) => 12,
        (Isa::Avx2, 2) => 6,
        (Isa::Avx2, _) => 12,
        _ => 4,
    }
}

/// Output blocks one tile covers.
pub(super) fn blocks_per_tile(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 => 4,
        _ => 2,
    }
}

/// Channels in and out below which a 3×3 convolution keeps the direct kernels, and the
/// least product of the two (Zen 4, interleaved A/B: 16->16 @80 lost 15% to the
/// transforms, 32->32 @40 and 16->64 @55 gained 35%).
const WINOGRAD_MIN_CHANNELS: usize = 16;
const WINOGRAD_MIN_CHANNEL_PRODUCT: usize = 1024;

/// Output pixels below which a 3×3 convolution keeps the direct kernels: a 7×7 map wastes
/// 30% of its 2×2 tiles and reads the transformed weights (16/9 of the direct ones) for few
/// of them (512->512 @7 lost 5%; @10 and up, 1.7-2.3x faster).
const WINOGRAD_MIN_PIXELS: usize = 10 * 10;

/// Pixels per depthwise tile.
const DW_PIXELS: usize = 8;

/// The most weight bytes one pass over a row's tiles reads (see `run`). Measured on Zen 4
/// (1 MiB L2): on AVX-512, 32 KiB to 128 KiB gave 5-9% on most shapes, 384 KiB 3-5% more on
/// 3x3 kernels, beyond it nothing; on the AVX2 kernels 192 KiB gave 1-5% over 32 KiB, and
/// stays within half the L2 of AVX2-only parts (Zen 3: 512 KiB).
pub(super) fn chunk_weight_bytes(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 => 384 * 1024,
        _ => 192 * 1024,
    }
}

/// Tasks per worker below which rows are split into segments.
const MIN_TASKS_PER_THREAD: usize = 4;

/// Tasks per worker a banded convolution aims for (fewer, longer bands reuse more).
const BAND_TASKS_PER_THREAD: usize = 4;

/// Whether a tile group whose weights take `bytes` runs over bands of rows: past about a
/// quarter of a core's L2, reading them again for every row costs more than the band's
/// outputs going through L2 between input chunks.
fn banded(bytes: usize) -> bool {
    bytes > 192 * 1024
}

macro_rules! table {
    ($f:ident, $nb:expr, $p:expr; $($NB:literal => [$($P:literal)*])*) => {
        match ($nb, $p) {
            $($(($NB, $P) => $f::<$NB, $P> as Kernel,)*)*
            _ => unreachable!("no kernel for {} blocks x {} pixels", $nb, $p),
        }
    };
}

macro_rules! dw_table {
    ($f:ident, $p:expr) => {
        match $p {
            1 => $f::<1> as Kernel,
            2 => $f::<2>,
            3 => $f::<3>,
            4 => $f::<4>,
            5 => $f::<5>,
            6 => $f::<6>,
            7 => $f::<7>,
            8 => $f::<8>,
            _ => unreachable!("no depthwise kernel for {} pixels", $p),
        }
    };
}

pub(super) fn dense_kernel(isa: Isa, nb: usize, p: usize) -> Kernel {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => table!(dense_avx512, nb, p;
            1 => [1 2 3 4 5 6 7 8 9 10 11 12]
            2 => [1 2 3 4 5 6 7 8 9 10 11 12]
            3 => [1 2 3 4 5 6 7 8]
            4 => [1 2 3 4 5 6]),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => table!(dense_avx2, nb, p;
            1 => [1 2 3 4 5 6 7 8 9 10 11 12]
            2 => [1 2 3 4 5 6]),
        _ => table!(dense_portable, nb, p; 1 => [1 2 3 4] 2 => [1 2 3 4]),
    }
}

fn dw_kernel(isa: Isa, p: usize) -> Kernel {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => dw_table!(dw_avx512, p),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => dw_table!(dw_avx2, p),
        _ => dw_table!(dw_portable, p),
    }
}

/// The taps `[k0, k1)` of a window starting at `start` (may be negative) that fall inside
/// `0..size`, dilation `d`.
fn taps(start: isize, k: usize, d: usize, size: usize) -> Range2 {
    let d = d as isize;
    let k0 = if start < 0 { ((-start) + d - 1) / d } else { 0 };
    let last = size as isize - 1 - start;
    let k1 = if last < 0 {
        0
    } else {
        (last / d + 1).min(k as isize)
    };
    let k0 = k0.min(k as isize);
    (k0 as usize, (k1.max(k0)) as usize)
}

impl NchwcConv {
    /// Lays out `weights` (`[c_out][c_in/groups][kh][kw]`) and the bias for the blocked
    /// kernels: `groups` must be 1, or `c_in == c_out == groups` (depthwise, blocked input).
    pub fn new(
        geom: Conv2d,
        weights: &[f32],
        bias: Option<&[f32]>,
        input: Input,
    ) -> Result<Self, ConvError> {
        let isa = Isa::detect();
        let b = super::block();
        let depthwise = geom.groups > 1;
        if depthwise && !(geom.groups == geom.c_in && geom.c_in == geom.c_out) {
            return err(format!(
                "blocked convolution needs group 1 or depthwise: {geom:?}"
            ));
        }
        if depthwise && input != Input::Blocked {
            return err("a depthwise blocked convolution reads a blocked input".into());
        }
        if geom.kernel.contains(&0) || geom.strides.contains(&0) || geom.dilations.contains(&0) {
            return err(format!("invalid convolution {geom:?}"));
        }
        let [kh, kw] = geom.kernel;
        let cg = geom.c_in / geom.groups;
        if weights.len() != geom.c_out * cg * kh * kw {
            return err(format!(
                "weights hold {} values, expected {} for {geom:?}",
                weights.len(),
                geom.c_out * cg * kh * kw
            ));
        }
        if bias.is_some_and(|v| v.len() != geom.c_out) {
            return err(format!("bias must hold {} values", geom.c_out));
        }
        let cop = padded(geom.c_out);
        let mut bpad = vec![0f32; cop];
        if let Some(v) = bias {
            bpad[..v.len()].copy_from_slice(v);
        }
        let taps = kh * kw;
        let w = if depthwise {
            let mut w = crate::hugepages::Buffer::zeroed(cop * taps);
            for o in 0..geom.c_out {
                for t in 0..taps {
                    w[((o / b) * taps + t) * b + o % b] = weights[o * taps + t];
                }
            }
            w
        } else {
            let (icb, lanes) = match input {
                Input::Blocked => (padded(geom.c_in) / b, b),
                Input::Plain => (1, geom.c_in),
            };
            let mut w = crate::hugepages::Buffer::zeroed(cop * icb * taps * lanes);
            for o in 0..geom.c_out {
                for i in 0..geom.c_in {
                    let (ib, l) = (i / lanes, i % lanes);
                    for t in 0..taps {
                        let at = ((((o / b) * icb + ib) * taps + t) * lanes + l) * b + o % b;
                        w[at] = weights[(o * geom.c_in + i) * taps + t];
                    }
                }
            }
            w
        };
        let wino_fits = !depthwise
            && input == Input::Blocked
            && geom.kernel == [3, 3]
            && geom.strides == [1, 1]
            && geom.dilations == [1, 1]
            && geom.c_in >= WINOGRAD_MIN_CHANNELS
            && geom.c_out >= WINOGRAD_MIN_CHANNELS
            && geom.c_in * geom.c_out >= WINOGRAD_MIN_CHANNEL_PRODUCT;
        Ok(NchwcConv {
            geom,
            block: b,
            input,
            depthwise,
            w,
            bias: bpad,
            isa,
            wino_fits,
            wino: OnceLock::new(),
        })
    }

    pub fn geometry(&self) -> &Conv2d {
        &self.geom
    }

    pub fn input(&self) -> Input {
        self.input
    }

    /// Bytes of laid-out weights and bias.
    pub fn bytes(&self) -> usize {
        (self.w.len() + self.bias.len()) * 4 + self.wino.get().map_or(0, Winograd::bytes)
    }

    /// The Winograd form, where `g` is a 3×3 stride-1 convolution whose output map is large
    /// enough: over a small map the transformed weights (16/9 of the direct ones) are read
    /// for few tiles, and a 7×7 map wastes 30% of its 2×2 tiles.
    fn winograd_for(&self, g: &Conv2d, oh: usize, ow: usize) -> Option<&Winograd> {
        let fits = self.wino_fits
            && g.strides == [1, 1]
            && g.dilations == [1, 1]
            && oh * ow >= WINOGRAD_MIN_PIXELS;
        fits.then(|| {
            self.wino.get_or_init(|| {
                // The taps back out of the blocked layout `[o/B][i/B][3][3][B lanes][B]`.
                let (b, icb) = (self.block, padded(self.geom.c_in) / self.block);
                Winograd::new(self.geom.c_in, self.geom.c_out, b, |o, i| {
                    std::array::from_fn(|t| {
                        self.w[((((o / b) * icb + i / b) * 9 + t) * b + i % b) * b + o % b]
                    })
                })
            })
        })
    }

    /// The weights as [`super::small_map::run`] reads them (a dense convolution over a
    /// blocked input).
    pub(super) fn small_map(&self) -> super::small_map::Packed<'_> {
        super::small_map::Packed {
            w: &self.w,
            bias: &self.bias,
            isa: self.isa,
            block: self.block,
        }
    }

    /// Convolves `x` (`[n][c_in/B][h][w][B]`, or `[n][c_in][h][w]` for a plain input) into
    /// `out` (`[n][c_out/B][oh][ow][B]`): `act(conv + bias + residual)`, the residual laid out
    /// as `out`. `g` may differ from the packed geometry in strides, dilations and pads.
    pub fn run(
        &self,
        g: &Conv2d,
        x: &[f32],
        nhw: [usize; 3],
        residual: Option<&[f32]>,
        act: Activation,
        out: &mut [f32],
    ) -> Result<(), ConvError> {
        // SAFETY: viewing initialized floats as possibly uninitialized ones; `run_uninit`
        // only writes floats through it.
        let out = unsafe { &mut *(out as *mut [f32] as *mut [MaybeUninit<f32>]) };
        self.run_uninit(g, x, nhw, residual, act, out)
    }

    /// [`run`](Self::run) into memory that need not be initialized: every value of `out` is
    /// written (a fresh output buffer needs no clearing pass, which cost ResNet50 8% of a
    /// run in memset).
    pub fn run_uninit(
        &self,
        g: &Conv2d,
        x: &[f32],
        [n, h, w]: [usize; 3],
        residual: Option<&[f32]>,
        act: Activation,
        out: &mut [MaybeUninit<f32>],
    ) -> Result<(), ConvError> {
        let b = self.block;
        let cin = match self.input {
            Input::Blocked => padded(g.c_in),
            Input::Plain => g.c_in,
        };
        let (oh, ow) = g.check_run(
            &self.geom,
            [h, w],
            x.len(),
            out.len(),
            residual.map(<[f32]>::len),
            |oh, ow| (n * cin * h * w, n * padded(g.c_out) * oh * ow),
        )?;
        if let Some(wg) = self.winograd_for(g, oh, ow) {
            let r = WinogradRun {
                x,
                nhw: [n, h, w],
                out_hw: [oh, ow],
                pads: [g.pads[0], g.pads[1]],
                bias: &self.bias,
                residual,
                act,
            };
            wg.run(self.isa, &r, out.as_mut_ptr() as *mut f32);
            return Ok(());
        }
        if self.input == Input::Blocked
            && !self.depthwise
            && g.c_in > 0
            && super::small_map::applies(self.isa, g, ow, residual.is_some())
        {
            super::small_map::run(&self.small_map(), g, x, [n, h, w], [oh, ow], act, out);
            return Ok(());
        }
        if g.kernel == [1, 1]
            && g.pads == [0; 4]
            && g.strides != [1, 1]
            && self.input == Input::Blocked
            && !self.depthwise
            && ow < 2 * max_pixels(self.isa, blocks_per_tile(self.isa))
        {
            // A strided pointwise convolution over short output rows (ResNet's 1x1/2 to 7x7)
            // spends its rows on short tiles: its pixels, one in `sh·sw`, gathered into a
            // compact map run as one long row like an unstrided one (1024->2048 @14: +11-14%;
            // over 28-pixel rows and wider it gained nothing, over 56 the copy cost 7%).
            let [sh, sw] = g.strides;
            let mut compact = vec![0f32; n * cin * oh * ow];
            compact
                .par_chunks_mut(ow * b)
                .enumerate()
                .for_each(|(i, row)| {
                    let (plane, y) = (i / oh, i % oh);
                    let src = &x[(plane * h + y * sh) * w * b..];
                    for (xo, px) in row.chunks_exact_mut(b).enumerate() {
                        px.copy_from_slice(&src[xo * sw * b..][..b]);
                    }
                });
            let g1 = Conv2d {
                strides: [1, 1],
                ..*g
            };
            return self.run_uninit(&g1, &compact, [n, oh, ow], residual, act, out);
        }
        // A pointwise convolution is one long row of pixels.
        let flat = g.kernel == [1, 1] && g.strides == [1, 1] && g.pads == [0; 4];
        let (h, w, oh, ow) = if flat {
            (1, h * w, 1, oh * ow)
        } else {
            (h, w, oh, ow)
        };
        let (xc, xr, xcb, xl, xn) = match self.input {
            Input::Blocked => (b, w * b, h * w * b, 1, cin * h * w),
            Input::Plain => (1, w, 0, h * w, cin * h * w),
        };
        let [kh, kw] = g.kernel;
        let lanes = match (self.input, self.depthwise) {
            (Input::Plain, _) => g.c_in,
            _ => b,
        };
        let icb = if self.depthwise || self.input == Input::Plain {
            1
        } else {
            cin / b
        };
        let ocb = padded(g.c_out) / b;
        if icb == 0 {
            // No input channels: every output is the epilogue over a zero sum.
            for (i, v) in out.iter_mut().enumerate() {
                let z = residual.map_or(0.0, |z| z[i]);
                let c = (i / (oh * ow * b)) % ocb * b + i % b;
                v.write(act.apply(self.bias[c] + z));
            }
            return Ok(());
        }
        let tap = Tap {
            x_cb: xcb as isize,
            x_kh: (g.dilations[0] * xr) as isize,
            x_kw: (g.dilations[1] * xc) as isize,
            x_px: (g.strides[1] * xc) as isize,
            x_lane: xl as isize,
            lanes,
            lanes_last: match self.input {
                Input::Blocked if !self.depthwise => g.c_in - (icb - 1) * b,
                _ => lanes,
            },
            w_ob: icb * kh * kw * lanes * b,
            w_cb: kh * kw * lanes * b,
            kw,
            y_ob: oh * ow * b,
        };
        let oct = if self.depthwise {
            1
        } else {
            blocks_per_tile(self.isa)
        };
        let groups = ocb.div_ceil(oct);
        // Rows split into segments: long ones (a pointwise product is one row) into about 96
        // pixels, and more where rows alone give the workers too few tasks (a pointwise
        // product over a small map with few output blocks is one task otherwise).
        let threads = rayon::current_num_threads();
        let tile = if self.depthwise {
            DW_PIXELS
        } else {
            max_pixels(self.isa, ocb.div_ceil(groups.max(1)))
        };
        let rows = n * groups * oh;
        let mut nseg = ow.div_ceil(96).max(1);
        if rows * nseg < MIN_TASKS_PER_THREAD * threads {
            nseg = (MIN_TASKS_PER_THREAD * threads)
                .div_ceil(rows)
                .min(ow.div_ceil(2 * tile))
                .max(nseg);
        }
        // Whole tiles per segment, so only the row's last tile is short.
        let seg = ow.div_ceil(nseg).next_multiple_of(tile).min(ow).max(1);
        let nseg = ow.div_ceil(seg).max(1);
        // Input blocks per pass over a row's tiles: between passes every output tile is stored
        // and loaded again, which costs more than the pass's weights leaving L1.
        let per_block = oct * kh * kw * lanes * b * 4;
        let chunk = (chunk_weight_bytes(self.isa) / per_block).clamp(1, icb);
        // The window columns of every output pixel that stays inside the input.
        let (pt, pl) = (g.pads[0] as isize, g.pads[1] as isize);
        let (sw, dw) = (g.strides[1], g.dilations[1]);
        let lo = (pl as usize).div_ceil(sw);
        let span = (kw - 1) * dw;
        // (An empty input, all padding, has no such pixel.)
        let hi = match (w + pl as usize).checked_sub(1 + span) {
            Some(room) if w > 0 => (room / sw + 1).min(ow),
            _ => 0,
        };
        let (xs, ys) = (x.as_ptr() as usize, SendPtr(out.as_mut_ptr() as *mut f32));
        let zs = residual.map(|z| z.as_ptr() as usize);
        // Rows per task: where one output-block group's weights outgrow the L2 share a row
        // pass can keep, a task takes a band of rows and runs each chunk of input blocks over
        // all of them, so a chunk's weights are read once per band instead of once per row.
        let band = if self.depthwise || !banded(oct * tap.w_ob * 4) {
            1
        } else {
            // Enough tasks to keep every worker busy, otherwise rows as many as possible.
            let want = (BAND_TASKS_PER_THREAD * rayon::current_num_threads())
                .div_ceil(n * groups * nseg)
                .clamp(1, oh);
            oh.div_ceil(want)
        };
        let bands = oh.div_ceil(band);
        let tasks = n * groups * bands * nseg;
        let isa = self.isa;
        (0..tasks).into_par_iter().for_each(|t| {
            let s = t % nseg;
            let bnd = (t / nseg) % bands;
            let grp = (t / (nseg * bands)) % groups;
            let img = t / (nseg * bands * groups);
            // Output blocks dealt evenly over the groups: 6 blocks as 3 + 3 (8-pixel tiles)
            // rather than 4 + 2 (inception's 3x3 64->96 @28: +9%).
            let (ob0, nb) = {
                let (base, extra) = (ocb / groups, ocb % groups);
                (grp * base + grp.min(extra), base + usize::from(grp < extra))
            };
            let (s0, s1) = (s * seg, ((s + 1) * seg).min(ow));
            let a = lo.clamp(s0, s1);
            let e = hi.clamp(a, s1);
            let rows = bnd * band..((bnd + 1) * band).min(oh);
            let mut c0 = 0;
            while c0 < icb {
                let icbs = chunk.min(icb - c0);
                let last = c0 + icbs == icb;
                let w_at = if self.depthwise {
                    ob0 * kh * kw * b
                } else {
                    ob0 * tap.w_ob + c0 * tap.w_cb
                };
                let wp = self.w.as_ptr().wrapping_add(w_at);
                for row in rows.clone() {
                    let ih0 = (row * g.strides[0]) as isize - pt;
                    let khr = taps(ih0, kh, g.dilations[0], h);
                    let y_at = ((img * ocb + ob0) * oh * ow + row * ow) * b;
                    // Pointers into the input may lie in the padding, so they are formed with
                    // wrapping arithmetic and read only at in-bounds taps.
                    // A depthwise block reads its own input block.
                    let in_block = if self.depthwise { ob0 } else { c0 };
                    let x_row = (xs as *const f32)
                        .wrapping_add(img * xn + in_block * xcb)
                        .wrapping_offset(ih0 * xr as isize);
                    let call = |px: usize, np: usize, n: usize, kwr: Range2| {
                        let k = if self.depthwise {
                            dw_kernel(isa, np)
                        } else {
                            dense_kernel(isa, nb, np)
                        };
                        let x0 = x_row
                            .wrapping_offset((px * sw) as isize * xc as isize - pl * xc as isize);
                        let yo = y_at + px * b;
                        let epi = last.then(|| Epi {
                            bias: self.bias.as_ptr().wrapping_add(ob0 * b),
                            z: zs.map_or(std::ptr::null(), |z| (z as *const f32).wrapping_add(yo)),
                            act,
                        });
                        // SAFETY: every tap read lies inside the input (the tap ranges are
                        // clipped to it), every write inside the output (`nb` blocks, `np`
                        // pixels of row `row`), and the weights cover `nb` blocks × `icbs`.
                        unsafe {
                            k(
                                &tap,
                                x0,
                                wp,
                                ys.at(yo),
                                icbs,
                                khr,
                                kwr,
                                c0 == 0,
                                epi.as_ref(),
                                n,
                            )
                        }
                    };
                    let edge = |px: usize| {
                        let kwr = taps((px * sw) as isize - pl, kw, dw, w);
                        call(px, 1, 1, kwr)
                    };
                    (s0..a).for_each(edge);
                    let pmax = if self.depthwise {
                        DW_PIXELS
                    } else {
                        max_pixels(isa, nb)
                    };
                    let full = (e - a) / pmax;
                    if full > 0 {
                        call(a, pmax, full, (0, kw));
                    }
                    let px = a + full * pmax;
                    if px < e {
                        call(px, e - px, 1, (0, kw));
                    }
                    (e..s1).for_each(edge);
                }
                c0 += icbs;
            }
        });
        Ok(())
    }
}

/// The plain reference this module is tested against: NCHW in, NCHW out.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::nchwc::{reorder_in, reorder_out};

    fn rand(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    fn check(
        g: Conv2d,
        n: usize,
        h: usize,
        w: usize,
        input: Input,
        bias: bool,
        z: bool,
        act: Activation,
    ) {
        let cg = g.c_in / g.groups;
        let x = rand(n * g.c_in * h * w, 1);
        let wt = rand(g.c_out * cg * g.kernel[0] * g.kernel[1], 2);
        let bv = rand(g.c_out, 3);
        let (oh, ow) = g.output_hw(h, w).unwrap();
        let zv = rand(n * g.c_out * oh * ow, 4);
        let mut want = crate::conv::reference(&g, &x, [n, h, w], &wt, bias.then_some(&bv[..]));
        for (i, v) in want.iter_mut().enumerate() {
            *v = act.apply(*v + if z { zv[i] } else { 0.0 });
        }
        let conv = NchwcConv::new(g, &wt, bias.then_some(&bv[..]), input).unwrap();
        let xb = match input {
            Input::Plain => x.clone(),
            Input::Blocked => {
                let mut xb = vec![0f32; n * padded(g.c_in) * h * w];
                reorder_in(&x, n, g.c_in, h * w, &mut xb);
                xb
            }
        };
        let zb = z.then(|| {
            let mut zb = vec![0f32; n * padded(g.c_out) * oh * ow];
            reorder_in(&zv, n, g.c_out, oh * ow, &mut zb);
            zb
        });
        let mut yb = vec![f32::NAN; n * padded(g.c_out) * oh * ow];
        conv.run(&g, &xb, [n, h, w], zb.as_deref(), act, &mut yb)
            .unwrap();
        let mut got = vec![0f32; want.len()];
        reorder_out(&yb, n, g.c_out, oh * ow, &mut got);
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 + 1e-4 * b.abs(),
                "{g:?} {input:?} n{n} {h}x{w}: out[{i}] = {a}, want {b}"
            );
        }
    }

    fn geom(
        c_in: usize,
        c_out: usize,
        groups: usize,
        k: [usize; 2],
        s: [usize; 2],
        d: [usize; 2],
        pads: [usize; 4],
    ) -> Conv2d {
        Conv2d {
            c_in,
            c_out,
            groups,
            kernel: k,
            strides: s,
            dilations: d,
            pads,
        }
    }

    #[test]
    fn dense_matches_reference() {
        let relu = Activation::Relu;
        for &(ci, co) in &[(16, 16), (32, 64), (24, 40), (8, 72), (64, 80), (5, 7)] {
            for &(k, s, d, p) in &[
                ([3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
                ([1, 1], [1, 1], [1, 1], [0, 0, 0, 0]),
                ([3, 3], [2, 2], [1, 1], [1, 1, 1, 1]),
                ([1, 1], [2, 2], [1, 1], [0, 0, 0, 0]),
                ([5, 3], [1, 2], [1, 1], [2, 0, 1, 3]),
                ([3, 3], [1, 1], [2, 2], [2, 2, 2, 2]),
                ([7, 7], [2, 2], [1, 1], [3, 3, 3, 3]),
            ] {
                let g = geom(ci, co, 1, k, s, d, p);
                check(g, 1, 9, 13, Input::Blocked, true, false, relu);
                check(
                    g,
                    2,
                    7,
                    30,
                    Input::Blocked,
                    false,
                    true,
                    Activation::Silu(1.0),
                );
            }
        }
    }

    #[test]
    fn plain_input_matches_reference() {
        for &ci in &[1, 3, 4, 17] {
            let g = geom(ci, 40, 1, [3, 3], [2, 2], [1, 1], [1, 1, 1, 1]);
            check(
                g,
                1,
                15,
                22,
                Input::Plain,
                true,
                false,
                Activation::Identity,
            );
            let g = geom(ci, 16, 1, [6, 6], [2, 2], [1, 1], [2, 2, 2, 2]);
            check(g, 2, 14, 31, Input::Plain, true, true, Activation::Tanh);
        }
    }

    #[test]
    fn depthwise_matches_reference() {
        for &c in &[16, 24, 48] {
            for &(k, s, p) in &[
                ([3, 3], [1, 1], [1, 1, 1, 1]),
                ([5, 5], [2, 2], [2, 2, 2, 2]),
                ([3, 3], [2, 2], [0, 1, 1, 0]),
            ] {
                let g = geom(c, c, c, k, s, [1, 1], p);
                check(g, 2, 11, 19, Input::Blocked, true, true, Activation::Relu);
            }
        }
    }

    #[test]
    fn winograd_matches_reference() {
        // 3x3 stride-1 convolutions over maps of at least 14x14 outputs take the Winograd
        // path: odd and even sizes (edge tiles cut), pads none, symmetric and uneven, channel
        // counts off the block, two images, residual and activation in the epilogue.
        for &(ci, co) in &[(16, 64), (40, 40), (70, 33)] {
            for &(h, w, pads) in &[
                (14, 14, [1, 1, 1, 1]),
                (17, 15, [1, 1, 1, 1]),
                (16, 19, [0, 0, 0, 0]),
                (15, 16, [2, 0, 1, 3]),
            ] {
                let g = geom(ci, co, 1, [3, 3], [1, 1], [1, 1], pads);
                let (oh, ow) = g.output_hw(h, w).unwrap();
                let conv = NchwcConv::new(g, &vec![0.0; co * ci * 9], None, Input::Blocked);
                assert!(conv.unwrap().winograd_for(&g, oh, ow).is_some());
                check(g, 2, h, w, Input::Blocked, true, true, Activation::Relu);
                check(
                    g,
                    1,
                    h,
                    w,
                    Input::Blocked,
                    false,
                    false,
                    Activation::Identity,
                );
            }
        }
    }

    #[test]
    fn bands_of_rows_over_several_input_chunks() {
        // Weights past the band threshold and the chunk budget: rows run in bands, each
        // over two chunks of input blocks, with padded top and bottom rows in the bands.
        for &(h, w) in &[(9, 13), (3, 5), (1, 1)] {
            check(
                geom(400, 80, 1, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
                1,
                h,
                w,
                Input::Blocked,
                true,
                true,
                Activation::Relu,
            );
        }
        check(
            geom(600, 70, 1, [1, 1], [2, 2], [1, 1], [0; 4]),
            2,
            7,
            9,
            Input::Blocked,
            false,
            false,
            Activation::Identity,
        );
    }

    #[test]
    fn long_rows_and_padding_only_windows() {
        // A pointwise product split into segments, and rows whose window lies in the padding.
        check(
            geom(32, 48, 1, [1, 1], [1, 1], [1, 1], [0; 4]),
            1,
            20,
            20,
            Input::Blocked,
            true,
            false,
            Activation::Identity,
        );
        check(
            geom(16, 16, 1, [3, 3], [1, 1], [1, 1], [4, 4, 4, 4]),
            1,
            3,
            3,
            Input::Blocked,
            true,
            true,
            Activation::Sigmoid,
        );
        // Strided pointwise products over short rows (gathered into a compact map first), two
        // images, a residual, strides unequal.
        for s in [[2, 2], [2, 1], [1, 3]] {
            check(
                geom(32, 48, 1, [1, 1], s, [1, 1], [0; 4]),
                2,
                9,
                11,
                Input::Blocked,
                true,
                true,
                Activation::Relu,
            );
        }
        // No input channels: every output is the bias and residual through the activation.
        check(
            geom(0, 20, 1, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
            2,
            4,
            5,
            Input::Blocked,
            true,
            true,
            Activation::Sigmoid,
        );
        // No input columns at all: every output is the bias through the activation.
        check(
            geom(16, 16, 1, [1, 1], [1, 1], [1, 1], [0, 1, 0, 1]),
            1,
            2,
            0,
            Input::Blocked,
            true,
            false,
            Activation::Relu,
        );
    }
}
