//! Depthwise 8-bit convolution (one input channel per output channel, as MobileNet's and
//! EfficientNet's 3×3 and 5×5 layers), channels-last: every output pixel is `Σ_tap x·w'` over
//! the channels at once, `w' = w - zw` kept as i32 per tap and channel, the input's zero point
//! taken out afterwards through the taps' weight sums, then bias and ONNX Runtime's
//! requantization. The input is a channels-last image inside a border of its zero point (so no
//! window leaves it), unsigned (s8 moved up by 128 with its zero point). The sums run in f32
//! FMAs (one product and add per tap and channel, where i32 needs a slow multiply) and are
//! exact: every product `|x·w'| <= 255·255` and every partial sum of up to [`MAX_TAPS`] taps
//! is an integer below 2^24, which f32 holds exactly; the sum goes back to i32 before the
//! zero-point correction and the bias, so the requantization sees ORT's integer.
//!
//! Written once as plain loops over the channels (the compiler's vectors) and compiled per ISA
//! by [`isa_dispatch!`](crate::isa_dispatch); output rows go to rayon's threads.
use rayon::prelude::*;

/// Taps whose sums stay exact in f32: `258 · 255 · 255 < 2^24`.
pub const MAX_TAPS: usize = 258;

/// The weights of a depthwise layer, ready for [`qdepthwise`].
pub struct DwWeights {
    c: usize,
    taps: usize,
    /// `[tap][c]` values `w - zw`.
    w: Vec<f32>,
    /// `[c]` `Σ_tap (w - zw)`.
    sum: Vec<i32>,
}

impl DwWeights {
    /// `w(c, tap)` and `zero(c)` as integers.
    pub fn pack(
        c: usize,
        taps: usize,
        w: impl Fn(usize, usize) -> i32,
        zero: impl Fn(usize) -> i32,
    ) -> DwWeights {
        let mut wv = vec![0f32; taps * c];
        let mut sum = vec![0i32; c];
        for ch in 0..c {
            let z = zero(ch);
            for t in 0..taps {
                let v = w(ch, t) - z;
                wv[t * c + ch] = v as f32;
                sum[ch] += v;
            }
        }
        DwWeights {
            c,
            taps,
            w: wv,
            sum,
        }
    }

    pub fn channels(&self) -> usize {
        self.c
    }

    pub fn taps(&self) -> usize {
        self.taps
    }
}

/// Where the windows lie in the padded image.
pub struct DwGeom<'a> {
    /// Output height and width, strides.
    pub oh: usize,
    pub ow: usize,
    pub sh: usize,
    pub sw: usize,
    /// The padded image's width in pixels.
    pub wp: usize,
    /// Each tap's byte offset from a window's origin.
    pub taps: &'a [usize],
}

/// Requantization of the sums: `sat(round(f32(acc + bias) · scale[c]) + zero)`.
pub struct DwOut<'a> {
    pub scale: &'a [f32],
    pub bias: Option<&'a [i32]>,
    pub zero: i32,
    pub signed: bool,
}

/// Channels per register block: two AVX-512 vectors, two independent FMA chains.
const LANES: usize = 32;

/// The requantization of one pixel: per channel the zero-point correction, bias, scale.
struct Requant<'a> {
    corr: &'a [i32],
    bias: &'a [i32],
    scale: &'a [f32],
    zero: i32,
    lo: f32,
    hi: f32,
}

/// `N` channels from `c0` of one output pixel: the sums over the taps stay in registers, then
/// [`requantize`]'s arithmetic in vectors.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn block<const N: usize, const FMA: bool>(
    x: &[u8],
    origin: usize,
    taps: &[usize],
    w: &[f32],
    c: usize,
    c0: usize,
    q: &Requant,
    out: &mut [u8],
) {
    let mut v = [0f32; N];
    for (t, &off) in taps.iter().enumerate() {
        let xs: &[u8; N] = x[origin + off + c0..][..N].try_into().expect("N bytes");
        let ws: &[f32; N] = w[t * c + c0..][..N].try_into().expect("N weights");
        for i in 0..N {
            // Exact either way (integers below 2^24); FMA is one instruction where it exists.
            v[i] = if FMA {
                (xs[i] as f32).mul_add(ws[i], v[i])
            } else {
                xs[i] as f32 * ws[i] + v[i]
            };
        }
    }
    let (corr, bias, scale): (&[i32; N], &[i32; N], &[f32; N]) = (
        q.corr[c0..c0 + N].try_into().expect("N"),
        q.bias[c0..c0 + N].try_into().expect("N"),
        q.scale[c0..c0 + N].try_into().expect("N"),
    );
    let o: &mut [u8; N] = (&mut out[c0..c0 + N]).try_into().expect("N");
    for i in 0..N {
        // SAFETY: v[i] is an integer below 2^24 in magnitude.
        let a = unsafe { v[i].to_int_unchecked::<i32>() } - corr[i] + bias[i];
        let r = (a as f32 * scale[i]).clamp(q.lo, q.hi).round_ties_even();
        // SAFETY: r is finite and within lo..=hi, inside i32.
        o[i] = (unsafe { r.to_int_unchecked::<i32>() } + q.zero) as u8;
    }
}

crate::isa_dispatch! {
    /// One output row: each pixel's window summed and requantized, `LANES` channels at a time.
    #[allow(clippy::too_many_arguments)]
    fn row<const FMA: bool>(x: &[u8], origins: &[usize], taps: &[usize], w: &[f32], c: usize, q: &Requant, out: &mut [u8]) {
        for (&origin, o) in origins.iter().zip(out.chunks_exact_mut(c)) {
            let mut c0 = 0;
            while c0 + LANES <= c {
                block::<LANES, FMA>(x, origin, taps, w, c, c0, q, o);
                c0 += LANES;
            }
            if c0 + 16 <= c {
                block::<16, FMA>(x, origin, taps, w, c, c0, q, o);
                c0 += 16;
            }
            if c0 + 8 <= c {
                block::<8, FMA>(x, origin, taps, w, c, c0, q, o);
                c0 += 8;
            }
            while c0 < c {
                block::<1, FMA>(x, origin, taps, w, c, c0, q, o);
                c0 += 1;
            }
        }
    }
}

/// The layer over one image: `x` the padded channels-last input (`C` bytes a pixel) with zero
/// point `zx`, `out` `[oh·ow, C]`.
pub fn qdepthwise(x: &[u8], zx: i32, w: &DwWeights, g: &DwGeom, q: &DwOut, out: &mut [u8]) {
    let c = w.c;
    assert_eq!(g.taps.len(), w.taps);
    assert!(
        w.taps <= MAX_TAPS,
        "{} taps: the f32 sums would not be exact",
        w.taps
    );
    assert!(q.scale.len() >= c && q.bias.is_none_or(|b| b.len() >= c));
    assert!(out.len() >= g.oh * g.ow * c);
    let corr: Vec<i32> = w.sum.iter().map(|&s| s * zx).collect();
    let zeros = vec![0i32; c];
    let (lo, hi) = if q.signed { (-128, 127) } else { (0, 255) };
    let rq = Requant {
        corr: &corr,
        bias: q.bias.map_or(&zeros[..], |b| &b[..c]),
        scale: &q.scale[..c],
        zero: q.zero,
        lo: (lo - q.zero) as f32,
        hi: (hi - q.zero) as f32,
    };
    out[..g.oh * g.ow * c]
        .par_chunks_mut(g.ow * c)
        .enumerate()
        .for_each(|(oy, out_row)| {
            let origins: Vec<usize> = (0..g.ow)
                .map(|ox| ((oy * g.sh) * g.wp + ox * g.sw) * c)
                .collect();
            row(x, &origins, g.taps, &w.w, c, &rq, out_row);
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qgemm::requantize;

    /// Against the direct formula on a padded image: strides, 3×3 and 5×5, u8 and s8 outputs,
    /// extreme bytes.
    #[test]
    fn matches_direct_sums() {
        let mut seed = 3u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as i32
        };
        for &(c, hp, wp, k, s, signed) in &[
            (17usize, 9usize, 11usize, 3usize, 1usize, false),
            (64, 12, 12, 3, 2, true),
            (5, 8, 9, 5, 1, false),
            // Every block width: 32 + 16 + 8 + 1.
            (57, 7, 8, 3, 1, true),
        ] {
            let x: Vec<u8> = (0..hp * wp * c)
                .map(|i| {
                    if i % 7 == 0 {
                        255
                    } else {
                        (next() & 255) as u8
                    }
                })
                .collect();
            let zx = next() & 255;
            let wt: Vec<i32> = (0..c * k * k)
                .map(|i| {
                    if i % 5 == 0 {
                        -128
                    } else {
                        (next() & 255) - 128
                    }
                })
                .collect();
            let zw: Vec<i32> = (0..c).map(|_| (next() % 20) - 10).collect();
            let w = DwWeights::pack(c, k * k, |ch, t| wt[ch * k * k + t], |ch| zw[ch]);
            let (oh, ow) = ((hp - k) / s + 1, (wp - k) / s + 1);
            let taps: Vec<usize> = (0..k * k).map(|t| ((t / k) * wp + t % k) * c).collect();
            let scale: Vec<f32> = (0..c).map(|i| 0.001 + i as f32 * 1e-4).collect();
            let bias: Vec<i32> = (0..c).map(|_| next() % 1000).collect();
            let q = DwOut {
                scale: &scale,
                bias: Some(&bias),
                zero: 3,
                signed,
            };
            let g = DwGeom {
                oh,
                ow,
                sh: s,
                sw: s,
                wp,
                taps: &taps,
            };
            let mut out = vec![0u8; oh * ow * c];
            qdepthwise(&x, zx, &w, &g, &q, &mut out);
            let (lo, hi) = if signed { (-128, 127) } else { (0, 255) };
            for oy in 0..oh {
                for ox in 0..ow {
                    for ch in 0..c {
                        let mut acc = bias[ch] as i64;
                        for t in 0..k * k {
                            let (ky, kx) = (t / k, t % k);
                            let xv = x[((oy * s + ky) * wp + ox * s + kx) * c + ch] as i64;
                            acc += (xv - zx as i64) * (wt[ch * k * k + t] - zw[ch]) as i64;
                        }
                        let want = requantize(acc as i32, scale[ch], 3, lo, hi) as u8;
                        assert_eq!(
                            out[(oy * ow + ox) * c + ch],
                            want,
                            "c{c} k{k} s{s} ({oy},{ox},{ch})"
                        );
                    }
                }
            }
        }
    }
}
