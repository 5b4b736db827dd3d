//! Signal ops: DFT (forward, inverse, one-sided and its inverse), STFT, the Hann, Hamming and
//! Blackman windows, and MelWeightMatrix. Transforms are direct O(n^2) sums in f64 with exact
//! twiddles (indices reduced mod n).
use std::f64::consts::PI;

use kiln_ir::DataType;

use crate::kernel::{one, KernelCtx, KernelFn, Result};
use crate::ops::misc::data_from_f64;
use crate::ops::movement::{check_len, numel};
use crate::value::{Tensor, Value};

/// The kernels of this module's ops.
pub fn kernel(domain: &str, op_type: &str) -> Option<KernelFn> {
    if !domain.is_empty() {
        return None;
    }
    Some(match op_type {
        "DFT" => dft,
        "STFT" => stft,
        "HannWindow" | "HammingWindow" | "BlackmanWindow" => window,
        "MelWeightMatrix" => mel,
        _ => return None,
    })
}

/// Transforms of one length: cos/sin of 2*pi*k/n.
struct Twiddles {
    n: usize,
    cos: Vec<f64>,
    sin: Vec<f64>,
}

impl Twiddles {
    fn new(n: usize) -> Twiddles {
        let (cos, sin) = (0..n)
            .map(|k| {
                let a = 2.0 * PI * k as f64 / n as f64;
                (a.cos(), a.sin())
            })
            .unzip();
        Twiddles { n, cos, sin }
    }

    /// `out[k] = sum_t x[t] e^{-+2 pi i k t / n}` for k < out.len() (x shorter than n is zero
    /// padded; longer is cut).
    fn dft(&self, x: &[(f64, f64)], inverse: bool, out: &mut [(f64, f64)]) {
        let n = self.n;
        let sign = if inverse { 1.0 } else { -1.0 };
        for (k, o) in out.iter_mut().enumerate() {
            let (mut re, mut im) = (0.0, 0.0);
            for (t, &(xr, xi)) in x.iter().take(n).enumerate() {
                let j = (k * t) % n;
                let (c, s) = (self.cos[j], sign * self.sin[j]);
                re += xr * c - xi * s;
                im += xr * s + xi * c;
            }
            *o = (re, im);
        }
    }
}

fn scalar_i64(t: &Tensor, what: &str) -> Result<i64> {
    match t.to_i64s()?.as_slice() {
        [v] => Ok(*v),
        _ => Err(format!(
            "{what} must have one element, got shape {:?}",
            t.shape
        )),
    }
}

fn dft(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    check_len(x, "input")?;
    let r = x.rank();
    if r < 2 || !matches!(x.shape[r - 1], 1 | 2) || !x.dtype().is_float() {
        return Err(format!(
            "DFT takes floats shaped [..., 1 or 2], got {} {:?}",
            x.dtype(),
            x.shape
        ));
    }
    let axis = if ctx.opset < 20 {
        ctx.int_attr("axis", 1)
    } else {
        match ctx.opt_tensor(2)? {
            Some(t) => scalar_i64(t, "axis")?,
            None => -2,
        }
    };
    // The last dim holds the real and imaginary parts; the axis is one of the others.
    let ax = crate::kernel::norm_axis(axis, r)?;
    if ax == r - 1 {
        return Err("the DFT axis cannot be the last (complex) dim".into());
    }
    let inverse = ctx.int_attr("inverse", 0) != 0;
    let onesided = ctx.int_attr("onesided", 0) != 0;
    let len = x.shape[ax];
    let n = match ctx.opt_tensor(1)? {
        Some(t) => {
            let n = scalar_i64(t, "dft_length")?;
            if n < 1 {
                return Err(format!("dft_length must be positive, got {n}"));
            }
            n as usize
        }
        None if inverse && onesided => 2 * len.saturating_sub(1),
        None => len,
    };
    if n == 0 {
        return Err("the DFT length is zero".into());
    }
    let c = x.shape[r - 1];
    let outer: usize = x.shape[..ax].iter().product();
    let inner: usize = x.shape[ax + 1..r - 1].iter().product();
    let v = x.to_f64s()?;
    let (out_len, out_c) = match (inverse, onesided) {
        (false, true) => (n / 2 + 1, 2),
        (true, true) => (n, 1),
        _ => (n, 2),
    };
    let mut shape = x.shape.clone();
    shape[ax] = out_len;
    shape[r - 1] = out_c;
    let mut out = vec![0.0; numel(&shape)?];
    let tw = Twiddles::new(n);
    let mut lane = Vec::with_capacity(n);
    let mut res = vec![(0.0, 0.0); out_len];
    for o in 0..outer {
        for i in 0..inner {
            lane.clear();
            let at = |j: usize| ((o * len + j) * inner + i) * c;
            if inverse && onesided {
                // Hermitian completion of the first n/2 + 1 bins (as numpy's irfft).
                let half = n / 2 + 1;
                let bin = |k: usize| -> (f64, f64) {
                    if k < len {
                        (v[at(k)], if c == 2 { v[at(k) + 1] } else { 0.0 })
                    } else {
                        (0.0, 0.0)
                    }
                };
                for k in 0..n {
                    let (re, im) = if k < half {
                        bin(k)
                    } else {
                        let (a, b) = bin(n - k);
                        (a, -b)
                    };
                    // The imaginary parts of the DC and Nyquist bins do not count.
                    let im = if k == 0 || (n % 2 == 0 && k == n / 2) {
                        0.0
                    } else {
                        im
                    };
                    lane.push((re, im));
                }
            } else {
                for j in 0..len.min(n) {
                    lane.push((v[at(j)], if c == 2 { v[at(j) + 1] } else { 0.0 }));
                }
            }
            tw.dft(&lane, inverse, &mut res);
            for (k, &(re, im)) in res.iter().enumerate() {
                let p = ((o * out_len + k) * inner + i) * out_c;
                let s = if inverse { 1.0 / n as f64 } else { 1.0 };
                out[p] = re * s;
                if out_c == 2 {
                    out[p + 1] = im * s;
                }
            }
        }
    }
    one(Tensor::new(shape, data_from_f64(x.dtype(), &out)?))
}

fn stft(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let x = ctx.tensor(0)?;
    check_len(x, "signal")?;
    if x.rank() != 3 || !matches!(x.shape[2], 1 | 2) || !x.dtype().is_float() {
        return Err(format!(
            "STFT takes a float signal [batch, length, 1 or 2], got {} {:?}",
            x.dtype(),
            x.shape
        ));
    }
    let step = scalar_i64(ctx.tensor(1)?, "frame_step")?;
    if step < 1 {
        return Err(format!("frame_step must be positive, got {step}"));
    }
    let window = match ctx.opt_tensor(2)? {
        Some(w) if w.rank() == 1 => Some(w.to_f64s()?),
        Some(w) => return Err(format!("window must be 1-D, got {:?}", w.shape)),
        None => None,
    };
    let flen = match (ctx.opt_tensor(3)?, &window) {
        (Some(t), _) => scalar_i64(t, "frame_length")?,
        (None, Some(w)) => w.len() as i64,
        (None, None) => x.shape[1] as i64,
    };
    if flen < 1 || flen as usize > x.shape[1] {
        return Err(format!(
            "frame_length {flen} does not fit a signal of {}",
            x.shape[1]
        ));
    }
    let flen = flen as usize;
    if window.as_ref().is_some_and(|w| w.len() != flen) {
        return Err("the window length differs from frame_length".into());
    }
    let onesided = ctx.int_attr("onesided", 1) != 0;
    let (b, l, c) = (x.shape[0], x.shape[1], x.shape[2]);
    let frames = (l - flen) / step as usize + 1;
    let bins = if onesided { flen / 2 + 1 } else { flen };
    let shape = vec![b, frames, bins, 2];
    let mut out = vec![0.0; numel(&shape)?];
    let v = x.to_f64s()?;
    let tw = Twiddles::new(flen);
    let mut lane = Vec::with_capacity(flen);
    let mut res = vec![(0.0, 0.0); bins];
    for bi in 0..b {
        for f in 0..frames {
            lane.clear();
            for t in 0..flen {
                let p = (bi * l + f * step as usize + t) * c;
                let w = window.as_ref().map_or(1.0, |w| w[t]);
                lane.push((v[p] * w, if c == 2 { v[p + 1] * w } else { 0.0 }));
            }
            tw.dft(&lane, false, &mut res);
            for (k, &(re, im)) in res.iter().enumerate() {
                let p = ((bi * frames + f) * bins + k) * 2;
                out[p] = re;
                out[p + 1] = im;
            }
        }
    }
    one(Tensor::new(shape, data_from_f64(x.dtype(), &out)?))
}

fn output_type(ctx: &KernelCtx) -> Result<DataType> {
    let o = ctx.int_attr("output_datatype", 1);
    DataType::from_onnx(o as i32).ok_or_else(|| format!("unknown output_datatype {o}"))
}

fn window(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let size = scalar_i64(ctx.tensor(0)?, "size")?;
    if size < 0 {
        return Err(format!("window size {size} is negative"));
    }
    let size = size as usize;
    numel(&[size])?;
    let periodic = ctx.int_attr("periodic", 1) != 0;
    let n1 = if periodic {
        size as f64
    } else {
        size as f64 - 1.0
    };
    let v: Vec<f64> = (0..size)
        .map(|i| {
            let x = i as f64;
            match ctx.op_type {
                "HannWindow" => (x * PI / n1).sin().powi(2),
                "HammingWindow" => {
                    let a = 25.0 / 46.0;
                    a - (x * PI * 2.0 / n1).cos() * (1.0 - a)
                }
                _ => 0.42 - 0.5 * (x * PI * 2.0 / n1).cos() + 0.08 * (x * PI * 4.0 / n1).cos(),
            }
        })
        .collect();
    one(Tensor::new(
        vec![size],
        data_from_f64(output_type(ctx)?, &v)?,
    ))
}

/// numpy's floor division of floats.
fn floor_div(a: f64, b: f64) -> f64 {
    let m = a % b;
    let mut d = (a - m) / b;
    if m != 0.0 && ((b < 0.0) != (m < 0.0)) {
        d -= 1.0;
    }
    let f = d.floor();
    if d - f > 0.5 {
        f + 1.0
    } else {
        f
    }
}

fn mel(ctx: &KernelCtx) -> Result<Vec<Value>> {
    let bins = scalar_i64(ctx.tensor(0)?, "num_mel_bins")?;
    let dft_len = scalar_i64(ctx.tensor(1)?, "dft_length")?;
    let rate = scalar_i64(ctx.tensor(2)?, "sample_rate")?;
    let one_of = |i: usize, what: &str| -> Result<f64> {
        match ctx.tensor(i)?.to_f64s()?.as_slice() {
            [v] => Ok(*v),
            _ => Err(format!("{what} must have one element")),
        }
    };
    let (lo, hi) = (
        one_of(3, "lower_edge_hertz")?,
        one_of(4, "upper_edge_hertz")?,
    );
    if bins < 1 || dft_len < 1 || rate < 1 {
        return Err("num_mel_bins, dft_length and sample_rate must be positive".into());
    }
    let (bins, spec) = (bins as usize, dft_len as usize / 2 + 1);
    numel(&[spec, bins])?;
    // Mel edges as the reference computes them (the log in float32, the rest in float64).
    let to_mel = |hz: f64| (2595.0f32 * ((hz as f32) / 700.0).ln_1p()) as f64 / 10f64.ln();
    let (lm, hm) = (to_mel(lo), to_mel(hi));
    let step = (hm - lm) / (bins + 2) as f64;
    let points: Vec<i64> = (0..bins + 2)
        .map(|i| {
            let m = i as f64 * step + lm;
            let hz = 700.0 * (m / 2595.0 * 10f64.ln()).exp_m1();
            floor_div((dft_len + 1) as f64 * hz, rate as f64) as i64
        })
        .collect();
    let mut out = vec![0.0f64; spec * bins];
    let mut set = |j: i64, i: usize, v: f64| -> Result<()> {
        if j < 0 || j as usize >= spec {
            return Err(format!(
                "mel bin edge {j} is outside the {spec} spectrogram bins"
            ));
        }
        out[j as usize * bins + i] = v;
        Ok(())
    };
    for i in 0..bins {
        let (l, c, h) = (points[i], points[i + 1], points[i + 2]);
        if c == l {
            set(c, i, 1.0)?;
        } else {
            for j in l..=c {
                set(j, i, (j - l) as f64 / (c - l) as f64)?;
            }
        }
        if h > c {
            for j in c..h {
                set(j, i, (h - j) as f64 / (h - c) as f64)?;
            }
        }
    }
    one(Tensor::new(
        vec![spec, bins],
        data_from_f64(output_type(ctx)?, &out)?,
    ))
}

#[cfg(test)]
mod tests {
    use crate::ops::movement::testing::{f32s, i64s, run, run_opset, vals};
    use kiln_ir::Attribute;

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
    }

    #[test]
    fn dft_round_trip() {
        // [1, 4, 1]: a real signal along axis 1.
        let x = f32s(&[1, 4, 1], &[1.0, 2.0, 3.0, 4.0]);
        let f = run_opset("DFT", 17, &[], &[Some(x.clone())], 1)
            .unwrap()
            .remove(0);
        assert!(close(
            &vals(&f),
            &[10.0, 0.0, -2.0, 2.0, -2.0, 0.0, -2.0, -2.0]
        ));
        let inv = [Attribute::int("inverse", 1)];
        let b = run_opset("DFT", 17, &inv, &[Some(f)], 1).unwrap().remove(0);
        assert!(close(&vals(&b), &[1.0, 0.0, 2.0, 0.0, 3.0, 0.0, 4.0, 0.0]));
        let one = [Attribute::int("onesided", 1)];
        let h = run_opset("DFT", 17, &one, &[Some(x)], 1).unwrap().remove(0);
        assert_eq!(h.shape, vec![1, 3, 2]);
        let both = [Attribute::int("onesided", 1), Attribute::int("inverse", 1)];
        let back = run_opset("DFT", 17, &both, &[Some(h)], 1)
            .unwrap()
            .remove(0);
        assert_eq!(back.shape, vec![1, 4, 1]);
        assert!(close(&vals(&back), &[1.0, 2.0, 3.0, 4.0]));
    }

    #[test]
    fn windows_and_stft() {
        let w = run(
            "HannWindow",
            &[Attribute::int("periodic", 0)],
            &[i64s(&[], &[3])],
        )
        .unwrap();
        assert!(close(&vals(&w), &[0.0, 1.0, 0.0]));
        let w = run("BlackmanWindow", &[], &[i64s(&[], &[2])]).unwrap();
        assert!(close(&vals(&w), &[0.0, 1.0]));
        let x = f32s(&[1, 4, 1], &[1.0, 1.0, 1.0, 1.0]);
        let s = run("STFT", &[], &[x, i64s(&[], &[2]), f32s(&[2], &[1.0, 1.0])]).unwrap();
        assert_eq!(s.shape, vec![1, 2, 2, 2]);
        assert!(close(&vals(&s), &[2.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0]));
    }
}
