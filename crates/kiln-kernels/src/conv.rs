//! 2-D convolution of NCHW f32 tensors with weights prepared once ([`PackedConv::new`]) and
//! a fused epilogue (bias, residual `Z`, activation).
//!
//! Paths, chosen when the weights are packed:
//! - GEMM, per group: weights (`M_g × C_g·KH·KW`) pre-packed as [`PackedA`]. A 1×1, stride-1,
//!   unpadded convolution reads its input planes directly as B; any other reads the rows of
//!   its im2col matrix in place from a padded, stride-phase-split copy of the input
//!   ([`crate::shifted`]) and copies the valid columns out through the epilogue.
//! - Direct, for groups so narrow that a GEMM would be all overhead (depthwise): each output
//!   plane accumulates shifted rows of a zero-padded input plane, contiguous when the stride
//!   is 1.
use rayon::prelude::*;

use crate::act::Activation;
use std::sync::{Arc, Mutex};

use crate::gemm::{
    gemm_packed, gemm_packed_raw, gemm_packed_then, BSource, Epilogue, PackedA, PackedB, RowMajor,
    SendPtr,
};
use crate::pixel_major;
use crate::shifted::{with_scratch, Layout, Shifted};
use crate::Isa;

/// Values of an FMA each output value costs on the channel-major path beyond its product:
/// written to the product buffer, read back by the epilogue, written again.
const ROUND_TRIP: f64 = 20.0;

/// Stride-1 products of at least this many values copy their valid columns out from the
/// GEMM's own tasks (see `run_shifted`; a 3×3 64→64 convolution over 56×56: -4%).
const FUSED_COPY_OUT: usize = 1 << 16;

/// Whether a shifted convolution of depth `k` runs one product per output row (each row's
/// panels partly empty, but the output written once with the epilogue fused) rather than
/// one over all rows (`wq` columns a row, the product going through a buffer): for a shallow
/// product (a first layer, K = 27) the buffer's round trip costs more than the product.
fn by_rows(k: usize, ow: usize, wq: usize, nr: usize) -> bool {
    let (k, row_full, all_full) = (
        k as f64,
        ow as f64 / (ow.div_ceil(nr) * nr) as f64,
        ow as f64 / wq as f64,
    );
    ow * 4 > nr && k / row_full < k / all_full + ROUND_TRIP
}

/// Shape and attributes of a 2-D convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2d {
    pub c_in: usize,
    pub c_out: usize,
    pub groups: usize,
    pub kernel: [usize; 2],
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    /// Top, left, bottom, right.
    pub pads: [usize; 4],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvError(pub String);

impl std::fmt::Display for ConvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConvError {}

fn err<T>(msg: String) -> Result<T, ConvError> {
    Err(ConvError(msg))
}

impl Conv2d {
    /// Output height and width for an input of `h × w`, or an error when the window does not
    /// fit.
    pub fn output_hw(&self, h: usize, w: usize) -> Result<(usize, usize), ConvError> {
        let out = |size: usize, pad0: usize, pad1: usize, k: usize, s: usize, d: usize| {
            let span = (k - 1) * d + 1;
            let padded = size + pad0 + pad1;
            if padded < span {
                return None;
            }
            Some((padded - span) / s + 1)
        };
        let [kh, kw] = self.kernel;
        let oh = out(
            h,
            self.pads[0],
            self.pads[2],
            kh,
            self.strides[0],
            self.dilations[0],
        );
        let ow = out(
            w,
            self.pads[1],
            self.pads[3],
            kw,
            self.strides[1],
            self.dilations[1],
        );
        match (oh, ow) {
            (Some(oh), Some(ow)) => Ok((oh, ow)),
            _ => err(format!(
                "a {kh}x{kw} window does not fit a padded {h}x{w} input"
            )),
        }
    }

    fn c_in_g(&self) -> usize {
        self.c_in / self.groups
    }

    fn m_g(&self) -> usize {
        self.c_out / self.groups
    }

    /// GEMM depth: input channels per group × kernel taps.
    fn k(&self) -> usize {
        self.c_in_g() * self.kernel[0] * self.kernel[1]
    }

    fn pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.strides == [1, 1] && self.pads == [0; 4]
    }

    /// Checks a run's geometry (`self`) against the one the weights were packed for, and the
    /// buffers' lengths against the ones the kernel expects; the output size when all hold.
    /// Both convolution kernels, plain and blocked, start a run with it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn check_run(
        &self,
        packed: &Conv2d,
        [h, w]: [usize; 2],
        x_len: usize,
        out_len: usize,
        z_len: Option<usize>,
        want: impl FnOnce(usize, usize) -> (usize, usize),
    ) -> Result<(usize, usize), ConvError> {
        let p = packed;
        if (self.c_in, self.c_out, self.groups, self.kernel)
            != (p.c_in, p.c_out, p.groups, p.kernel)
        {
            return err(format!(
                "{self:?} does not match the packed weights of {p:?}"
            ));
        }
        self.validate()?;
        let (oh, ow) = self.output_hw(h, w)?;
        let (want_in, want_out) = want(oh, ow);
        if x_len != want_in || out_len != want_out {
            return err(format!(
                "buffers hold {x_len} and {out_len} values, expected {want_in} and {want_out}"
            ));
        }
        if z_len.is_some_and(|z| z != want_out) {
            return err(format!("the residual must hold {want_out} values"));
        }
        Ok((oh, ow))
    }

    fn validate(&self) -> Result<(), ConvError> {
        let ok = self.groups > 0
            && self.c_in.is_multiple_of(self.groups)
            && self.c_out.is_multiple_of(self.groups)
            && self.kernel.iter().all(|&k| k > 0)
            && self.strides.iter().all(|&s| s > 0)
            && self.dilations.iter().all(|&d| d > 0);
        if ok {
            Ok(())
        } else {
            err(format!("invalid convolution {self:?}"))
        }
    }
}

#[derive(Debug)]
enum Weights {
    /// Per group, for more than one group.
    Gemm(Vec<PackedA>),
    /// One group: channel-major panels, or transposed for [`crate::pixel_major`], whichever
    /// the convolution last met a map for.
    Single(Mutex<Forms>),
    /// `[c_out][c_in_g][kh][kw]` as given.
    Direct(Vec<f32>),
}

/// The packed forms of one group's weights. A convolution keeps one: the other is made from
/// it when a map needs it, and the old one dropped (both held, ResNet50's peak grew by a
/// quarter). Shapes that keep switching keep both after [`KEEP_BOTH`] switches.
#[derive(Debug, Default)]
struct Forms {
    channel: Option<Arc<PackedA>>,
    pixel: Option<Arc<PackedB>>,
    switches: u32,
}

const KEEP_BOTH: u32 = 2;

impl Forms {
    fn channel(&mut self, isa: Isa) -> Arc<PackedA> {
        if self.channel.is_none() {
            self.switches += 1;
            let pb = self.pixel.take().expect("one form is always held");
            let pa = if self.switches > KEEP_BOTH {
                let pa = pb.untransposed(isa);
                self.pixel = Some(pb);
                pa
            } else {
                // A run still using the old form keeps its copy; else its storage is reused.
                Arc::try_unwrap(pb)
                    .map_or_else(|b| b.untransposed(isa), |b| b.untransposed_owned(isa))
            };
            self.channel = Some(Arc::new(pa));
        }
        self.channel.clone().expect("just made")
    }

    fn pixel(&mut self) -> Arc<PackedB> {
        if self.pixel.is_none() {
            self.switches += 1;
            let pa = self.channel.take().expect("one form is always held");
            let pb = if self.switches > KEEP_BOTH {
                let pb = PackedB::transposed(&pa);
                self.channel = Some(pa);
                pb
            } else {
                Arc::try_unwrap(pa)
                    .map_or_else(|a| PackedB::transposed(&a), PackedB::transposed_owned)
            };
            self.pixel = Some(Arc::new(pb));
        }
        self.pixel.clone().expect("just made")
    }

    fn bytes(&self) -> usize {
        self.channel.as_ref().map_or(0, |p| p.bytes())
            + self.pixel.as_ref().map_or(0, |p| p.bytes())
    }
}

/// A convolution with its weights prepared for the current CPU.
#[derive(Debug)]
pub struct PackedConv {
    geom: Conv2d,
    weights: Weights,
    bias: Option<Vec<f32>>,
    isa: Isa,
}

impl PackedConv {
    /// Prepares `weights` (`[c_out][c_in/groups][kh][kw]`) and the optional bias.
    pub fn new(geom: Conv2d, weights: &[f32], bias: Option<&[f32]>) -> Result<Self, ConvError> {
        geom.validate()?;
        let k = geom.k();
        if weights.len() != geom.c_out * k {
            return err(format!(
                "weights hold {} values, expected {} for {geom:?}",
                weights.len(),
                geom.c_out * k
            ));
        }
        if let Some(b) = bias {
            if b.len() != geom.c_out {
                return err(format!(
                    "bias has {} values, expected {}",
                    b.len(),
                    geom.c_out
                ));
            }
        }
        // Direct when a group's GEMM would be a handful of rows or a tiny depth.
        let direct = geom.groups > 1 && (geom.c_in_g() <= 2 || geom.m_g() < 4);
        let weights = if direct {
            Weights::Direct(weights.to_vec())
        } else {
            let mg = geom.m_g();
            let mut packed: Vec<PackedA> = (0..geom.groups)
                .map(|g| {
                    PackedA::weights(
                        Isa::detect(),
                        crate::View::new(&weights[g * mg * k..(g + 1) * mg * k], mg, k, k, 1),
                    )
                })
                .collect();
            if geom.groups == 1 {
                Weights::Single(Mutex::new(Forms {
                    channel: packed.pop().map(Arc::new),
                    ..Forms::default()
                }))
            } else {
                Weights::Gemm(packed)
            }
        };
        Ok(PackedConv {
            geom,
            weights,
            bias: bias.map(|b| b.to_vec()),
            isa: Isa::detect(),
        })
    }

    pub fn geometry(&self) -> &Conv2d {
        &self.geom
    }

    /// Bytes of prepared weights.
    pub fn bytes(&self) -> usize {
        match &self.weights {
            Weights::Gemm(p) => p.iter().map(|p| p.bytes()).sum(),
            Weights::Single(f) => f.lock().unwrap_or_else(|e| e.into_inner()).bytes(),
            Weights::Direct(w) => w.len() * 4,
        }
    }

    /// Convolves `x` (`[n][c_in][h][w]`) into `out` (`[n][c_out][oh][ow]`), computing
    /// `act(conv + bias + residual)`.
    pub fn run(
        &self,
        x: &[f32],
        nhw: [usize; 3],
        residual: Option<&[f32]>,
        act: Activation,
        out: &mut [f32],
    ) -> Result<(), ConvError> {
        self.run_as(&self.geom, x, nhw, residual, act, out)
    }

    /// As [`run`](Self::run) with other strides, dilations or pads than those packed with
    /// (they do not shape the packed weights; `auto_pad` resolves them per input size).
    pub fn run_as(
        &self,
        g: &Conv2d,
        x: &[f32],
        [n, h, w]: [usize; 3],
        residual: Option<&[f32]>,
        act: Activation,
        out: &mut [f32],
    ) -> Result<(), ConvError> {
        let (oh, ow) = g.check_run(
            &self.geom,
            [h, w],
            x.len(),
            out.len(),
            residual.map(<[f32]>::len),
            |oh, ow| (n * g.c_in * h * w, n * g.c_out * oh * ow),
        )?;
        match &self.weights {
            Weights::Gemm(packed) => {
                self.run_gemm(g, packed, x, [n, h, w], [oh, ow], residual, act, out)
            }
            Weights::Single(forms) => {
                // The lock only hands out a form (and makes it, once per switch).
                let mut f = forms.lock().unwrap_or_else(|e| e.into_inner());
                if pixel_major::applies(self.isa, g.c_out, [oh, ow]) {
                    let wt = f.pixel();
                    drop(f);
                    self.run_pixel_major(g, &wt, x, [n, h, w], [oh, ow], residual, act, out);
                } else {
                    let pa = f.channel(self.isa);
                    drop(f);
                    let packed = std::slice::from_ref(&*pa);
                    self.run_gemm(g, packed, x, [n, h, w], [oh, ow], residual, act, out);
                }
            }
            Weights::Direct(wt) => {
                self.run_direct(g, wt, x, [n, h, w], [oh, ow], residual, act, out)
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn run_gemm(
        &self,
        g: &Conv2d,
        packed: &[PackedA],
        x: &[f32],
        [n, h, w]: [usize; 3],
        [oh, ow]: [usize; 2],
        residual: Option<&[f32]>,
        act: Activation,
        out: &mut [f32],
    ) {
        if !g.pointwise() {
            return self.run_shifted(g, packed, x, [n, h, w], [oh, ow], residual, act, out);
        }
        let cg = g.c_in_g();
        let (in_sp, out_sp) = (h * w, oh * ow);
        for img in 0..n {
            for (gi, pa) in packed.iter().enumerate() {
                let b = RowMajor {
                    b: &x[(img * g.c_in + gi * cg) * in_sp..][..cg * in_sp],
                    n: out_sp,
                    ld: in_sp,
                };
                self.gemm_into(g, pa, &b, [img, gi], out_sp, residual, act, out);
            }
        }
    }

    /// Group `gi`'s GEMM for image `img`, written straight into `out` (`out_sp` columns per
    /// output channel) with the epilogue fused.
    #[allow(clippy::too_many_arguments)]
    fn gemm_into(
        &self,
        g: &Conv2d,
        pa: &PackedA,
        b: &impl BSource,
        [img, gi]: [usize; 2],
        out_sp: usize,
        residual: Option<&[f32]>,
        act: Activation,
        out: &mut [f32],
    ) {
        let mg = g.m_g();
        let o = (img * g.c_out + gi * mg) * out_sp;
        let epi = Epilogue {
            bias: self.bias.as_ref().map(|b| &b[gi * mg..]),
            residual: residual.map(|z| &z[o..o + mg * out_sp]),
            act,
        };
        gemm_packed(pa, b, &mut out[o..o + mg * out_sp], out_sp, &epi);
    }

    /// A single-group convolution over a small map, as a product over its output pixels
    /// (see [`crate::pixel_major`]).
    #[allow(clippy::too_many_arguments)]
    fn run_pixel_major(
        &self,
        g: &Conv2d,
        wt: &PackedB,
        x: &[f32],
        [n, h, w]: [usize; 3],
        [oh, ow]: [usize; 2],
        residual: Option<&[f32]>,
        act: Activation,
        out: &mut [f32],
    ) {
        let (isa, out_sp, len) = (self.isa, oh * ow, g.c_out * oh * ow);
        let lay = (!g.pointwise()).then(|| Layout::new(g, [oh, ow]));
        let offsets = lay.as_ref().map_or_else(Vec::new, |l| l.offsets(g, 0));
        let bias = self.bias.as_deref();
        with_scratch(lay.as_ref().map_or(0, |l| l.len), len, |buf, cbuf| {
            for img in 0..n {
                let xi = &x[img * g.c_in * h * w..][..g.c_in * h * w];
                let o = img * len;
                let z = residual.map(|z| &z[o..o + len]);
                let y = &mut out[o..o + len];
                match &lay {
                    Some(l) => {
                        l.fill(g, xi, [h, w], buf);
                        let src = pixel_major::ShiftedRows {
                            buf,
                            offsets: &offsets,
                            wq: l.wq,
                            ow,
                        };
                        pixel_major::run(isa, wt, &src, [oh, ow], bias, z, act, cbuf, y);
                    }
                    None => {
                        let src = pixel_major::Planes {
                            x: xi,
                            ow,
                            sp: out_sp,
                        };
                        pixel_major::run(isa, wt, &src, [oh, ow], bias, z, act, cbuf, y);
                    }
                }
            }
        });
    }

    /// The GEMM reading the input windows in place from a phase-split copy (see
    /// [`crate::shifted`]), then the valid columns copied out through the epilogue.
    #[allow(clippy::too_many_arguments)]
    fn run_shifted(
        &self,
        g: &Conv2d,
        packed: &[PackedA],
        x: &[f32],
        [n, h, w]: [usize; 3],
        [oh, ow]: [usize; 2],
        residual: Option<&[f32]>,
        act: Activation,
        out: &mut [f32],
    ) {
        let lay = Layout::new(g, [oh, ow]);
        let (mg, cols, wq) = (g.m_g(), lay.cols, lay.wq);
        let out_sp = oh * ow;
        let offsets: Vec<Vec<isize>> = (0..g.groups).map(|gi| lay.offsets(g, gi)).collect();
        // With one kernel column the GEMM's columns are the output's (wq = ow): it writes
        // the output directly, epilogue fused, with nothing to copy out.
        let direct = wq == ow;
        let isa = packed[0].isa();
        let rowwise = !direct && g.groups == 1 && by_rows(g.k(), ow, wq, isa.tile().1);
        let c_len = if direct || rowwise { 0 } else { g.c_out * cols };
        with_scratch(lay.len, c_len, |buf, cbuf| {
            for img in 0..n {
                lay.fill(g, &x[img * g.c_in * h * w..][..g.c_in * h * w], [h, w], buf);
                if rowwise {
                    let o = img * g.c_out * out_sp;
                    let z = residual.map(|z| &z[o..o + g.c_out * out_sp]);
                    let y = &mut out[o..o + g.c_out * out_sp];
                    self.by_rows(&packed[0], buf, &offsets[0], [oh, ow], wq, z, act, y);
                    continue;
                }
                let fused =
                    g.groups == 1 && g.strides == [1, 1] && g.c_out * cols >= FUSED_COPY_OUT;
                if fused && !direct {
                    // Each task copies its own block out while it is still in its caches
                    // (smaller products run as few tasks and copy out faster in parallel;
                    // strided ones measured 1% slower).
                    let o = img * g.c_out * out_sp;
                    let b = Shifted {
                        buf,
                        offsets: &offsets[0],
                        cols,
                    };
                    let y = SendPtr(out[o..o + g.c_out * out_sp].as_mut_ptr());
                    let c = SendPtr(cbuf.as_mut_ptr());
                    let z = residual.map(|z| &z[o..o + g.c_out * out_sp]);
                    let bias = self.bias.as_deref();
                    let copy_out = |rows: std::ops::Range<usize>, span: std::ops::Range<usize>| {
                        for m in rows {
                            let bv = bias.map_or(0.0, |b| b[m]);
                            let mut p = span.start;
                            while p < span.end {
                                let (oy, ox) = (p / wq, p % wq);
                                let end = span.end.min((oy + 1) * wq);
                                if ox < ow {
                                    let len = (end - p).min(ow - ox);
                                    let at = m * out_sp + oy * ow + ox;
                                    // SAFETY: row m's columns `span` of the product, which
                                    // this task just wrote, and the output pixels they
                                    // hold, which no other task writes.
                                    let (src, dst) = unsafe {
                                        (
                                            std::slice::from_raw_parts(c.at(m * cols + p), len),
                                            std::slice::from_raw_parts_mut(y.at(at), len),
                                        )
                                    };
                                    let zr = z.map(|z| &z[at..at + len]);
                                    act.bias_residual_from(src, dst, bv, zr);
                                }
                                p = end;
                            }
                        }
                    };
                    gemm_packed_then(&packed[0], &b, &mut cbuf[..mg * cols], cols, &copy_out);
                    continue;
                }
                for (gi, pa) in packed.iter().enumerate() {
                    let b = Shifted {
                        buf,
                        offsets: &offsets[gi],
                        cols,
                    };
                    if direct {
                        self.gemm_into(g, pa, &b, [img, gi], out_sp, residual, act, out);
                    } else {
                        let c = &mut cbuf[gi * mg * cols..][..mg * cols];
                        gemm_packed(pa, &b, c, cols, &Epilogue::NONE);
                    }
                }
                if direct {
                    continue;
                }
                let o = img * g.c_out * out_sp;
                let cbuf = &*cbuf;
                let copy_out = |(m, y): (usize, &mut [f32])| {
                    let bias = self.bias.as_ref().map_or(0.0, |b| b[m]);
                    for (oy, row) in y.chunks_exact_mut(ow).enumerate() {
                        let z = residual.map(|z| &z[o + m * out_sp + oy * ow..][..ow]);
                        act.bias_residual_from(&cbuf[m * cols + oy * wq..][..ow], row, bias, z);
                    }
                };
                let y = &mut out[o..o + g.c_out * out_sp];
                if g.c_out * out_sp >= 1 << 14 {
                    y.par_chunks_mut(out_sp).enumerate().for_each(copy_out);
                } else {
                    y.chunks_mut(out_sp).enumerate().for_each(copy_out);
                }
            }
        });
    }

    /// One image of a single-group shifted convolution as one product per output row, each
    /// written straight into `out` with the epilogue fused (see [`by_rows`]).
    #[allow(clippy::too_many_arguments)]
    fn by_rows(
        &self,
        pa: &PackedA,
        buf: &[f32],
        offsets: &[isize],
        [oh, ow]: [usize; 2],
        wq: usize,
        residual: Option<&[f32]>,
        act: Activation,
        out: &mut [f32],
    ) {
        let out_sp = oh * ow;
        let rows = (oh / (4 * rayon::current_num_threads())).max(1);
        let y = SendPtr(out.as_mut_ptr());
        let bias = self.bias.as_deref();
        let task = |t: usize| {
            for oy in t * rows..((t + 1) * rows).min(oh) {
                // Row oy's windows start oy rows into every phase plane; Layout::len keeps the
                // slack that the row's last, partial panel reads past them.
                let b = Shifted {
                    buf: &buf[oy * wq..],
                    offsets,
                    cols: ow,
                };
                let epi = Epilogue {
                    bias,
                    residual: residual.map(|z| &z[oy * ow..]),
                    act,
                };
                // SAFETY: row oy of every output channel, which no other task writes; `out`
                // outlives the loop.
                crate::gemm::serial(|| unsafe {
                    gemm_packed_raw(pa, &b, y.at(oy * ow), out_sp, &epi)
                });
            }
        };
        (0..oh.div_ceil(rows)).into_par_iter().for_each(task);
    }

    #[allow(clippy::too_many_arguments)]
    fn run_direct(
        &self,
        g: &Conv2d,
        wt: &[f32],
        x: &[f32],
        [_, h, w]: [usize; 3],
        [oh, ow]: [usize; 2],
        residual: Option<&[f32]>,
        act: Activation,
        out: &mut [f32],
    ) {
        let (cg, mg) = (g.c_in_g(), g.m_g());
        let [kh, kw] = g.kernel;
        let [sh, sw] = g.strides;
        let [dh, dw] = g.dilations;
        let (in_sp, out_sp) = (h * w, oh * ow);
        // The padded plane covers exactly the rows and columns the windows read.
        let (hp, wp) = (
            (oh - 1) * sh + (kh - 1) * dh + 1,
            (ow - 1) * sw + (kw - 1) * dw + 1,
        );
        let task = |(plane, y): (usize, &mut [f32])| {
            let (img, m) = (plane / g.c_out, plane % g.c_out);
            let gi = m / mg;
            y.fill(0.0);
            let mut padded = vec![0f32; hp * wp];
            for c in 0..cg {
                let xc = &x[(img * g.c_in + gi * cg + c) * in_sp..][..in_sp];
                pad_plane(xc, [h, w], [g.pads[0], g.pads[1]], [hp, wp], &mut padded);
                let taps = &wt[(m * cg + c) * kh * kw..][..kh * kw];
                for (t, &wv) in taps.iter().enumerate() {
                    let (i, j) = (t / kw, t % kw);
                    for (oy, yrow) in y.chunks_exact_mut(ow).enumerate() {
                        let src = &padded[(oy * sh + i * dh) * wp + j * dw..];
                        axpy_strided(yrow, src, sw, wv);
                    }
                }
            }
            let bias = self.bias.as_ref().map_or(0.0, |b| b[m]);
            let z = residual.map(|z| &z[plane * out_sp..][..out_sp]);
            act.bias_residual_slice(y, bias, z);
        };
        if out_sp == 0 {
            return;
        }
        out.par_chunks_mut(out_sp).enumerate().for_each(task);
    }
}

/// `y[i] += a · x[i·stride]`.
fn axpy_strided(y: &mut [f32], x: &[f32], stride: usize, a: f32) {
    #[inline(always)]
    fn body(y: &mut [f32], x: &[f32], stride: usize, a: f32) {
        if stride == 1 {
            let n = y.len();
            for (o, &v) in y.iter_mut().zip(&x[..n]) {
                *o += a * v;
            }
        } else {
            for (i, o) in y.iter_mut().enumerate() {
                *o += a * x[i * stride];
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn body_avx2(y: &mut [f32], x: &[f32], stride: usize, a: f32) {
        body(y, x, stride, a)
    }
    #[cfg(target_arch = "x86_64")]
    if Isa::detect() >= Isa::Avx2 {
        // SAFETY: detect() only reports what the CPU has.
        return unsafe { body_avx2(y, x, stride, a) };
    }
    body(y, x, stride, a)
}

/// Copies an `h × w` plane into a zeroed `hp × wp` one at offset (top, left), cropping what
/// falls outside.
fn pad_plane(
    x: &[f32],
    [h, w]: [usize; 2],
    [top, left]: [usize; 2],
    [hp, wp]: [usize; 2],
    out: &mut [f32],
) {
    out.fill(0.0);
    for r in 0..h {
        let pr = r + top;
        if pr >= hp {
            break;
        }
        if left >= wp {
            break;
        }
        let len = w.min(wp - left);
        out[pr * wp + left..][..len].copy_from_slice(&x[r * w..][..len]);
    }
}

/// Reference convolution in f64 for tests.
#[doc(hidden)]
pub fn reference(
    g: &Conv2d,
    x: &[f32],
    [n, h, w]: [usize; 3],
    wt: &[f32],
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let (oh, ow) = g.output_hw(h, w).expect("valid geometry");
    let (cg, mg) = (g.c_in_g(), g.m_g());
    let [kh, kw] = g.kernel;
    let mut out = vec![0f32; n * g.c_out * oh * ow];
    for img in 0..n {
        for m in 0..g.c_out {
            let gi = m / mg;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = bias.map_or(0.0, |b| b[m] as f64);
                    for c in 0..cg {
                        for i in 0..kh {
                            for j in 0..kw {
                                let iy = (oy * g.strides[0] + i * g.dilations[0]) as isize
                                    - g.pads[0] as isize;
                                let ix = (ox * g.strides[1] + j * g.dilations[1]) as isize
                                    - g.pads[1] as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xv = x[((img * g.c_in + gi * cg + c) * h + iy as usize) * w
                                    + ix as usize];
                                let wv = wt[((m * cg + c) * kh + i) * kw + j];
                                s += xv as f64 * wv as f64;
                            }
                        }
                    }
                    out[((img * g.c_out + m) * oh + oy) * ow + ox] = s as f32;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::tests::data;

    fn check(g: Conv2d, [n, h, w]: [usize; 3], act: Activation, with_z: bool) {
        let (oh, ow) = g.output_hw(h, w).unwrap();
        let x = data(n * g.c_in * h * w, 1);
        let wt = data(g.c_out * g.k(), 2);
        let bias = data(g.c_out, 3);
        let z = data(n * g.c_out * oh * ow, 4);
        let pc = PackedConv::new(g, &wt, Some(&bias)).unwrap();
        let mut out = vec![f32::NAN; n * g.c_out * oh * ow];
        pc.run(&x, [n, h, w], with_z.then_some(&z[..]), act, &mut out)
            .unwrap();
        let mut want = reference(&g, &x, [n, h, w], &wt, Some(&bias));
        if with_z {
            want.iter_mut().zip(&z).for_each(|(a, b)| *a += b);
        }
        for (i, (a, b)) in out.iter().zip(&want).enumerate() {
            let b = act.apply(*b);
            assert!(
                (a - b).abs() <= 1e-4 * (1.0 + b.abs()),
                "{g:?} [{i}]: {a} vs {b}"
            );
        }
    }

    fn conv(c_in: usize, c_out: usize, groups: usize, k: usize, s: usize, p: usize) -> Conv2d {
        Conv2d {
            c_in,
            c_out,
            groups,
            kernel: [k, k],
            strides: [s, s],
            dilations: [1, 1],
            pads: [p; 4],
        }
    }

    #[test]
    fn gemm_paths_match_the_reference() {
        check(
            conv(16, 24, 1, 1, 1, 0),
            [1, 9, 11],
            Activation::Identity,
            false,
        );
        check(conv(16, 24, 1, 1, 2, 0), [2, 9, 11], Activation::Relu, true);
        check(conv(5, 13, 1, 3, 1, 1), [1, 17, 10], Activation::Relu, true);
        // Large enough for the GEMM's tasks to copy their own columns out (FUSED_COPY_OUT).
        check(
            conv(16, 40, 1, 3, 1, 1),
            [2, 40, 41],
            Activation::Relu,
            true,
        );
        // Stride-2 rows several 16-lane blocks wide, odd and even, split by the fill.
        check(conv(4, 16, 1, 3, 2, 1), [1, 9, 70], Activation::Relu, true);
        check(
            conv(4, 16, 1, 3, 2, 0),
            [1, 8, 69],
            Activation::Identity,
            false,
        );
        check(
            conv(8, 16, 1, 3, 2, 1),
            [1, 20, 21],
            Activation::Silu(1.0),
            false,
        );
        check(
            conv(3, 8, 1, 7, 2, 3),
            [1, 30, 30],
            Activation::Clip(0.0, 6.0),
            false,
        );
        check(
            conv(16, 32, 4, 3, 1, 1),
            [1, 8, 8],
            Activation::LeakyRelu(0.1),
            true,
        );
        let mut g = conv(4, 6, 1, 3, 1, 0);
        g.dilations = [2, 3];
        g.pads = [1, 0, 2, 4];
        check(g, [1, 12, 13], Activation::Sigmoid, false);
        // Stride phases: dilation a multiple of the stride (one phase), mixed strides, a
        // stride larger than the kernel, batches, and maps narrower than a column panel.
        let mut g = conv(6, 10, 1, 3, 2, 2);
        g.dilations = [2, 2];
        check(g, [2, 11, 9], Activation::Relu, true);
        let mut g = conv(5, 9, 1, 3, 1, 1);
        g.kernel = [5, 3];
        g.strides = [2, 1];
        g.pads = [2, 1, 1, 0];
        check(g, [3, 13, 6], Activation::Identity, true);
        check(conv(4, 8, 1, 2, 3, 0), [1, 17, 16], Activation::Relu, false);
        check(
            conv(7, 16, 1, 3, 1, 1),
            [2, 3, 2],
            Activation::Identity,
            true,
        );
        check(
            conv(32, 40, 2, 3, 2, 1),
            [1, 7, 7],
            Activation::Clip(-0.5, 0.5),
            true,
        );
        // Shallow products over wide rows: one product per output row, written in place.
        assert!(by_rows(27, 60, 61, 32) && by_rows(27, 60, 61, 16) && by_rows(27, 60, 61, 8));
        check(
            conv(3, 16, 1, 3, 2, 0),
            [2, 121, 121],
            Activation::Silu(1.0),
            true,
        );
        check(
            conv(3, 64, 1, 3, 2, 0),
            [1, 224, 224],
            Activation::Relu,
            false,
        );
        check(
            conv(4, 24, 1, 3, 1, 1),
            [1, 50, 64],
            Activation::Identity,
            true,
        );
        // One kernel column: the GEMM writes the output directly (inception's 7×1).
        let mut g = conv(12, 20, 1, 1, 1, 0);
        g.kernel = [7, 1];
        g.pads = [3, 0, 3, 0];
        check(g, [2, 9, 10], Activation::Relu, true);
        g.strides = [2, 2];
        check(g, [1, 11, 9], Activation::Identity, false);
    }

    #[test]
    fn pixel_major_paths_match_the_reference() {
        // Maps 7, 14 and 28 wide with output channels a multiple of 32: on AVX-512 these
        // run over output pixels, with the transposed weights made on the first run.
        let cases = [
            (conv(64, 64, 1, 1, 1, 0), [2, 7, 7], Activation::Relu, true),
            (
                conv(40, 64, 1, 3, 1, 1),
                [1, 14, 14],
                Activation::Silu(1.0),
                true,
            ),
            (
                conv(32, 96, 1, 3, 2, 1),
                [1, 28, 28],
                Activation::Identity,
                false,
            ),
            (
                conv(48, 64, 1, 1, 2, 0),
                [1, 14, 14],
                Activation::Clip(0.0, 6.0),
                true,
            ),
            (
                conv(24, 128, 1, 1, 1, 0),
                [1, 28, 28],
                Activation::LeakyRelu(0.1),
                false,
            ),
        ];
        for (g, nhw, act, z) in cases {
            check(g, nhw, act, z);
        }
        let mut g = conv(20, 64, 1, 1, 1, 0);
        g.kernel = [1, 7];
        g.pads = [0, 3, 0, 3];
        check(g, [1, 14, 14], Activation::Relu, true);
        // One convolution meeting a small map, a large one, then small ones again: each
        // switch makes the other form from the one held (and drops the old one) until the
        // third, after which it keeps both; every run matches the reference.
        let g = conv(64, 64, 1, 3, 1, 1);
        let (wt, bias) = (data(64 * 576, 1), data(64, 2));
        let pc = PackedConv::new(g, &wt, Some(&bias)).unwrap();
        let one = pc.bytes();
        let taken = pixel_major::applies(Isa::detect(), 64, [7, 7]);
        for (i, hw) in [7, 20, 7, 20, 14].into_iter().enumerate() {
            let x = data(64 * hw * hw, 3 + i as u32);
            let mut out = vec![f32::NAN; 64 * hw * hw];
            pc.run(&x, [1, hw, hw], None, Activation::Identity, &mut out)
                .unwrap();
            let want = reference(&g, &x, [1, hw, hw], &wt, Some(&bias));
            for (a, b) in out.iter().zip(&want) {
                assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{hw}: {a} vs {b}");
            }
            let both = taken && i >= 2;
            assert_eq!(
                pc.bytes() > one * 3 / 2,
                both,
                "run {i}, {:?}",
                Isa::detect()
            );
        }
    }

    #[test]
    fn direct_paths_match_the_reference() {
        check(
            conv(16, 16, 16, 3, 1, 1),
            [1, 14, 15],
            Activation::Relu,
            true,
        );
        check(
            conv(16, 16, 16, 3, 2, 1),
            [2, 15, 14],
            Activation::Identity,
            false,
        );
        check(
            conv(8, 16, 8, 5, 1, 2),
            [1, 9, 9],
            Activation::HardSigmoid(0.2, 0.5),
            false,
        );
        let mut g = conv(6, 6, 6, 3, 1, 0);
        g.dilations = [2, 2];
        g.pads = [0, 2, 1, 0];
        check(g, [1, 11, 12], Activation::Identity, true);
    }

    #[test]
    fn bad_shapes_are_errors() {
        let g = conv(4, 4, 1, 3, 1, 0);
        assert!(PackedConv::new(g, &[0.0; 10], None).is_err());
        let pc = PackedConv::new(g, &vec![0.0; 4 * 36], None).unwrap();
        let mut out = vec![0.0; 4];
        assert!(pc
            .run(&[0.0; 16], [1, 2, 2], None, Activation::Identity, &mut out)
            .is_err());
        assert!(conv(3, 4, 2, 1, 1, 0).validate().is_err());
    }
}
