//! 8-bit integer matrix products with i32 accumulation: `C = (A - za) · (B - zb)` for u8 or s8
//! activations A `[M, K]` (rows read in place or from an im2col buffer) and u8 or s8 weights B
//! `[K, N]`, packed once per session ([`QWeights`]) together with their column sums, so that
//! zero points cost nothing in the inner loop:
//!
//! `C[i,j] = Σ a'b' - za'·colsum(b')[j] - zb'[j]·rowsum(a')[i] + K·za'·zb'[j]`
//!
//! where `a'`, `b'` are the operands as the micro-kernel stores them (VNNI wants u8 × s8, so s8
//! activations are shifted by +128 and u8 weights by -128, and their zero points with them; the
//! i16 paths take either sign as is). The result is exact whenever it fits in i32 (K up to
//! [`MAX_K`]). The epilogue ([`QOutput`]) writes the i32 sums, or scales them to f32 (plus bias),
//! or requantizes them to u8/s8 with ONNX Runtime's rounding: `f32(acc + bias) · scale`, rounded
//! half to even, plus the output zero point, saturated.
pub(crate) mod dot;
pub mod nbits;
pub mod nbits_f32;
mod tile;

use std::sync::OnceLock;

pub use tile::{conv_in_place, qgemm, qgemm_conv, qgemm_gather, ConvRows, Gather};

/// The largest K whose exact result always fits in i32 (255 · 255 · K < 2^31).
pub const MAX_K: usize = 33_000;

/// The integer micro-kernel families, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum QIsa {
    Portable,
    Avx2,
    /// AVX-VNNI's 256-bit u8 × s8 dot products (run through AVX512-VNNI's 256-bit form where
    /// the CPU has that and not the VEX one).
    AvxVnni,
    Avx512,
    Avx512Vnni,
}

impl QIsa {
    /// The best the CPU has, capped by `KILN_ISA` (`avx512vnni`, `avx512`: AVX512BW without
    /// VNNI, `avxvnni`: 256-bit VNNI, `avx2`, `portable`); a variant the CPU cannot run is
    /// never chosen.
    pub fn detect() -> QIsa {
        static ISA: OnceLock<QIsa> = OnceLock::new();
        *ISA.get_or_init(|| {
            let best = QIsa::hardware();
            let cap = match std::env::var("KILN_ISA").as_deref() {
                Ok("portable") => QIsa::Portable,
                Ok("avx2") => QIsa::Avx2,
                Ok("avxvnni") => QIsa::AvxVnni,
                Ok("avx512") => QIsa::Avx512,
                _ => best,
            };
            QIsa::available()
                .into_iter()
                .filter(|&i| i <= cap.min(best))
                .max()
                .unwrap_or(QIsa::Portable)
        })
    }

    /// What the CPU can run best, ignoring `KILN_ISA`.
    pub fn hardware() -> QIsa {
        QIsa::available()
            .into_iter()
            .max()
            .unwrap_or(QIsa::Portable)
    }

    /// Whether this CPU can run the variant.
    pub fn runs(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            let avx512 = is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl");
            let vnni512 = avx512 && is_x86_feature_detected!("avx512vnni");
            match self {
                QIsa::Portable => true,
                QIsa::Avx2 => is_x86_feature_detected!("avx2"),
                QIsa::AvxVnni => {
                    (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("avxvnni"))
                        || vnni512
                }
                QIsa::Avx512 => avx512,
                QIsa::Avx512Vnni => vnni512,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == QIsa::Portable
        }
    }

    /// Every variant this CPU can run, for tests.
    pub fn available() -> Vec<QIsa> {
        [
            QIsa::Portable,
            QIsa::Avx2,
            QIsa::AvxVnni,
            QIsa::Avx512,
            QIsa::Avx512Vnni,
        ]
        .into_iter()
        .filter(|i| i.runs())
        .collect()
    }

    pub fn name(self) -> &'static str {
        match self {
            QIsa::Avx512Vnni => "avx512-vnni",
            QIsa::Avx512 => "avx512bw",
            QIsa::AvxVnni => "avx-vnni",
            QIsa::Avx2 => "avx2",
            QIsa::Portable => "portable",
        }
    }

    /// How the variant runs here: its name, and for AVX-VNNI which encoding this CPU takes.
    pub fn describe(self) -> String {
        #[cfg(target_arch = "x86_64")]
        if self == QIsa::AvxVnni && !is_x86_feature_detected!("avxvnni") {
            return format!(
                "{} (through AVX512-VNNI's 256-bit form: this CPU lacks the VEX one)",
                self.name()
            );
        }
        self.name().to_string()
    }

    /// (K per step, bytes per A element, bytes per packed B element, columns per panel).
    pub(crate) fn shape(self) -> (usize, usize, usize, usize) {
        match self {
            QIsa::Avx512Vnni => (4, 1, 1, 32),
            QIsa::Avx512 => (2, 2, 2, 32),
            QIsa::AvxVnni => (4, 1, 1, 16),
            QIsa::Avx2 => (2, 2, 2, 16),
            QIsa::Portable => (2, 2, 2, 8),
        }
    }

    /// VNNI multiplies unsigned A by signed B, four per lane.
    pub fn u8_by_s8(self) -> bool {
        matches!(self, QIsa::Avx512Vnni | QIsa::AvxVnni)
    }
}

/// Why a product cannot run on these kernels (the caller keeps its reference path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QError(pub String);

impl std::fmt::Display for QError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for QError {}

/// Weights `B [K, N]` packed for one [`QIsa`]: panels of `NR` columns, each a run of K steps of
/// `G` values per column, zero-padded in K and N; plus per-column sums and zero points in the
/// packed representation.
pub struct QWeights {
    pub(crate) isa: QIsa,
    /// Columns per panel: the ISA's width, or 16 on AVX-512 for at most 16 columns (a narrow
    /// layer would leave half of each 32-column panel empty).
    pub(crate) nr: usize,
    pub(crate) k: usize,
    pub(crate) n: usize,
    /// K rounded up to the step.
    pub(crate) kp: usize,
    pub(crate) data: Aligned,
    pub(crate) col_sums: Vec<i32>,
    pub(crate) zb: Vec<i32>,
    pub(crate) any_zb: bool,
}

impl QWeights {
    /// Packs `b(k, j)` (the stored integer, u8 or s8 per `signed`) with zero point `zero(j)`.
    pub fn pack(
        k: usize,
        n: usize,
        signed: bool,
        b: impl Fn(usize, usize) -> i32,
        zero: impl Fn(usize) -> i32,
        isa: QIsa,
    ) -> Result<QWeights, QError> {
        if k == 0 || n == 0 || k > MAX_K {
            return Err(QError(format!(
                "K = {k}, N = {n} outside the integer kernels' range"
            )));
        }
        let (g, _, bb, wide) = isa.shape();
        let nr = if wide == 32 && n <= 16 { 16 } else { wide };
        let kp = k.div_ceil(g) * g;
        let panels = n.div_ceil(nr);
        // VNNI's B operand is signed: u8 weights move down by 128, with their zero point.
        let shift = if isa.u8_by_s8() && !signed { -128 } else { 0 };
        let mut store = Aligned::zeroed(panels * kp * nr * bb);
        let data = store.as_mut_slice();
        let mut col_sums = vec![0i32; n];
        for (j, sum) in col_sums.iter_mut().enumerate() {
            let (p, c) = (j / nr, j % nr);
            let base = p * kp * nr;
            for kk in 0..k {
                let v = b(kk, j) + shift;
                *sum += v;
                let idx = base + (kk / g) * nr * g + c * g + kk % g;
                if bb == 1 {
                    data[idx] = v as i8 as u8;
                } else {
                    data[2 * idx..2 * idx + 2].copy_from_slice(&(v as i16).to_le_bytes());
                }
            }
        }
        let zb: Vec<i32> = (0..n).map(|j| zero(j) + shift).collect();
        let any_zb = zb.iter().any(|&z| z != 0);
        Ok(QWeights {
            isa,
            nr,
            k,
            n,
            kp,
            data: store,
            col_sums,
            zb,
            any_zb,
        })
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn n(&self) -> usize {
        self.n
    }

    pub fn isa(&self) -> QIsa {
        self.isa
    }
}

/// Zeroed bytes starting on a 64-byte boundary: a packed panel's vector loads never straddle
/// two cache lines, whatever address the allocator gave (a misaligned panel made every load a
/// split one, and runs of one process 15% slower than the next).
pub(crate) struct Aligned {
    buf: crate::hugepages::Buffer<u8>,
    off: usize,
    len: usize,
}

impl Aligned {
    pub(crate) fn zeroed(len: usize) -> Aligned {
        let buf = crate::hugepages::Buffer::<u8>::zeroed(len + 63);
        let off = buf.as_ptr().align_offset(64);
        Aligned { buf, off, len }
    }

    pub(crate) fn as_ptr(&self) -> *const u8 {
        self.buf[self.off..].as_ptr()
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf[self.off..self.off + self.len]
    }
}

/// The activation operand: `m` rows of `k` 8-bit values, row `i` at `data[i * lda..]`.
#[derive(Clone, Copy)]
pub struct QInput<'a> {
    pub data: &'a [u8],
    pub m: usize,
    pub k: usize,
    pub lda: usize,
    pub signed: bool,
    pub zero: i32,
}

/// What the product becomes, written at `out[i * rs + j * cs]` (row-major `[M, N]`, or
/// `[N, M]` for a channel-first convolution output).
pub enum QOutput<'a> {
    I32 {
        out: &'a mut [i32],
    },
    /// `f32(C) · scale[j] + bias[j]` (`scale` of one value or N).
    F32 {
        out: &'a mut [f32],
        scale: &'a [f32],
        bias: Option<&'a [f32]>,
    },
    /// `sat(round_half_even(f32(C + bias[j]) · scale[j]) + zero)` to u8, or s8 when `signed`,
    /// then `post`'s steps.
    Quant {
        out: &'a mut [u8],
        scale: &'a [f32],
        zero: i32,
        signed: bool,
        bias: Option<&'a [i32]>,
        post: QPost<'a>,
    },
}

/// Steps on the requantized bytes before they are stored, each exactly the op it replaces: a
/// QLinearAdd with a second operand laid out as the output (this product is its `a`), then a
/// 256-entry table (QLinearSiLU, QLinearSigmoid, ...).
#[derive(Clone, Copy, Default)]
pub struct QPost<'a> {
    pub add: Option<(&'a [u8], crate::qvec::QBinary)>,
    pub table: Option<&'a [u8; 256]>,
}

/// A row-major f32 output `[M, n]` that parallel tasks fill in disjoint tiles.
pub(crate) struct TileOut {
    ptr: *mut f32,
    n: usize,
    len: usize,
}

// SAFETY: tasks write disjoint tiles (the callers' contract on `store`).
unsafe impl Sync for TileOut {}

impl TileOut {
    pub(crate) fn new(out: &mut [f32], n: usize) -> TileOut {
        TileOut {
            ptr: out.as_mut_ptr(),
            n,
            len: out.len(),
        }
    }

    /// Writes `tile[r][c] + bias[c0 + c]` at `(r0 + r, c0 + c)` for `r < rows`, `c < cols`.
    ///
    /// # Safety
    /// No other task writes these elements meanwhile.
    pub(crate) unsafe fn store<const W: usize>(
        &self,
        tile: &[[f32; W]],
        (r0, rows): (usize, usize),
        (c0, cols): (usize, usize),
        bias: Option<&[f32]>,
    ) {
        assert!(c0 + cols <= self.n && (r0 + rows) * self.n <= self.len && cols <= W);
        for (r, row) in tile.iter().enumerate().take(rows) {
            let dst = self.ptr.add((r0 + r) * self.n + c0);
            for (c, &v) in row[..cols].iter().enumerate() {
                *dst.add(c) = v + bias.map_or(0.0, |b| b[c0 + c]);
            }
        }
    }
}

/// Requantizes one i32 as ONNX Runtime's QLinear kernels do.
#[inline(always)]
pub fn requantize(acc: i32, scale: f32, zero: i32, lo: i32, hi: i32) -> i32 {
    let v = (acc as f32 * scale).clamp((lo - zero) as f32, (hi - zero) as f32);
    v.round_ties_even() as i32 + zero
}

#[cfg(test)]
mod tests;
