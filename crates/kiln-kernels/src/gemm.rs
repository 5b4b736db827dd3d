//! Packed single-precision GEMM, `C = act(A·B + bias + residual)`.
//!
//! A (M×K, the weights in a convolution) is packed once into panels of MR rows, K-major inside
//! a panel; B (K×N) is packed per call into panels of NR columns. Work is split into tiles of
//! up to [`MC`] rows × a run of column panels, spread over rayon's threads; inside a tile the
//! K dimension is walked in blocks of about [`KC`] (deeper on AVX-512, see [`kc_target`]) so
//! that the A panels stream from L2. The epilogue runs on each MR×NR tile right after its last
//! K block, while the tile is still in cache.
use rayon::prelude::*;

use crate::act::{Activation, Tile};
use crate::hugepages::Buffer;
use crate::ukernel::{self, Fuse, Rows, Strided, Table, Ukernel};
use crate::Isa;

/// Rows of A per tile: an A block of MC × KC floats (512 KiB) stays in L2, and a larger MC
/// means fewer tasks that pack the same B block again.
const MC: usize = 512;
/// Target depth of one K block.
const KC: usize = 256;

/// The K block for `isa`: every block but the last stores the C tile and loads it back, so
/// deeper is better while the A block stays in L2. AVX-512 machines here have 1–2 MiB of L2
/// and gained 2–7% from 1024 over 256 (Zen 4, interleaved runs; 4096 lost 10% on 512³),
/// then 2–5% from 2048 over 1024 where K lies between them (Zen 5: BERT's 1536-deep
/// MatMul, a 3×3/2 convolution over 128 channels); the AVX2 path keeps 256 for the 512 KiB
/// of a Zen 3.
fn kc_target(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 => 8 * KC,
        _ => KC,
    }
}

/// A packed for the micro-kernel of one [`Isa`].
#[derive(Clone, Debug)]
pub struct PackedA {
    isa: Isa,
    /// Rows per panel: the ISA's MR, or fewer for a micro-kernel of another height.
    mr: usize,
    m: usize,
    k: usize,
    data: Buffer<f32>,
}

impl PackedA {
    /// Packs row-major `a` (M×K, row stride `lda`) for the current CPU.
    pub fn new(a: &[f32], m: usize, k: usize, lda: usize) -> PackedA {
        PackedA::with_isa(Isa::detect(), a, m, k, lda)
    }

    pub fn with_isa(isa: Isa, a: &[f32], m: usize, k: usize, lda: usize) -> PackedA {
        PackedA::strided(isa, View::new(a, m, k, lda, 1), 1.0)
    }

    /// Packs `alpha · a` for any strides (a transposed matrix has `rs == 1`).
    pub fn strided(isa: Isa, a: View, alpha: f32) -> PackedA {
        PackedA::strided_in(isa, a, alpha, |n| Buffer::from(vec![0f32; n]))
    }

    /// As [`PackedA::strided`] for weights that stay packed for the session: on huge pages
    /// where the system grants them (see [`crate::hugepages`]).
    pub fn weights(isa: Isa, a: View) -> PackedA {
        PackedA::strided_in(isa, a, 1.0, Buffer::zeroed)
    }

    fn strided_in(isa: Isa, a: View, alpha: f32, alloc: fn(usize) -> Buffer<f32>) -> PackedA {
        let (m, k) = (a.rows, a.cols);
        // Fewer rows than a tile get a tile of their height where there is a kernel for it.
        let mr = match isa.tile().0 {
            t if m < t && crate::ukernel::heights(isa).contains(&m) => m,
            t => t,
        };
        let panels = m.div_ceil(mr);
        let mut data = alloc(panels * mr * k);
        let pack = |(p, panel): (usize, &mut [f32])| {
            let rows = mr.min(m - p * mr);
            if a.cs == 1 && rows == mr {
                pack_rows(&a.data[p * mr * a.rs..], a.rs, k, alpha, panel);
            } else if a.cs == 1 {
                for r in 0..rows {
                    let row = &a.data[(p * mr + r) * a.rs..][..k];
                    for (kk, &v) in row.iter().enumerate() {
                        panel[kk * mr + r] = alpha * v;
                    }
                }
            } else {
                // Column-major (or general): each k step's MR values, gathered.
                for (kk, dst) in panel.chunks_exact_mut(mr).enumerate() {
                    for (r, d) in dst.iter_mut().enumerate().take(rows) {
                        *d = alpha * a.data[(p * mr + r) * a.rs + kk * a.cs];
                    }
                }
            }
        };
        let len = (mr * k).max(1);
        // Activations packed on every run (a transformer's 128 × 1536) are worth splitting.
        if m * k >= 1 << 15 && !is_serial() {
            data.par_chunks_exact_mut(len).enumerate().for_each(pack);
        } else {
            data.chunks_exact_mut(len).enumerate().for_each(pack);
        }
        PackedA {
            isa,
            mr,
            m,
            k,
            data,
        }
    }

    /// A matrix already in panels of `mr` rows (k-major inside a panel, zero past row `m`),
    /// for a height [`crate::ukernel::heights`] lists for `isa`.
    pub(crate) fn from_panels(isa: Isa, mr: usize, m: usize, k: usize, data: Vec<f32>) -> PackedA {
        assert!(
            ukernel::heights(isa).contains(&mr),
            "no {mr}-row micro-kernel for {isa:?}"
        );
        assert_eq!(
            data.len(),
            m.div_ceil(mr) * mr * k,
            "panel data of the wrong size"
        );
        PackedA {
            isa,
            mr,
            m,
            k,
            data: Buffer::from(data),
        }
    }

    /// The panel storage, for reuse.
    pub(crate) fn into_data(self) -> Vec<f32> {
        self.data.into_vec()
    }

    /// Entry `(row, col)`.
    fn at(&self, r: usize, c: usize) -> f32 {
        self.data[(r / self.mr) * self.mr * self.k + c * self.mr + r % self.mr]
    }

    /// The packed values and the rows per panel (`[panel][k][mr]`).
    pub(crate) fn panels(&self) -> (&[f32], usize) {
        (&self.data, self.mr)
    }

    pub fn m(&self) -> usize {
        self.m
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() * 4
    }
}

/// One full panel of `panel.len() / k` rows (`rs` apart) interleaved k-major: each k step's
/// values stored together, so the panel is written front to back once instead of once per
/// row at a stride (packing the activations of a MatMul was 4% of a BERT run).
fn pack_rows(a: &[f32], rs: usize, k: usize, alpha: f32, panel: &mut [f32]) {
    #[inline(always)]
    fn body<const MR: usize>(a: &[f32], rs: usize, k: usize, alpha: f32, panel: &mut [f32]) {
        let rows: [&[f32]; MR] = std::array::from_fn(|r| &a[r * rs..r * rs + k]);
        for (kk, dst) in panel.chunks_exact_mut(MR).take(k).enumerate() {
            for r in 0..MR {
                dst[r] = alpha * rows[r][kk];
            }
        }
    }
    match panel.len() / k.max(1) {
        4 => body::<4>(a, rs, k, alpha, panel),
        6 => body::<6>(a, rs, k, alpha, panel),
        8 => body::<8>(a, rs, k, alpha, panel),
        mr => {
            for r in 0..mr {
                for kk in 0..k {
                    panel[kk * mr + r] = alpha * a[r * rs + kk];
                }
            }
        }
    }
}

/// What is applied to C after the product: `act(A·B + bias[row] + residual)`.
#[derive(Clone, Copy, Debug)]
pub struct Epilogue<'a> {
    /// One value per row of C.
    pub bias: Option<&'a [f32]>,
    /// Laid out like C (same row stride).
    pub residual: Option<&'a [f32]>,
    pub act: Activation,
}

impl Epilogue<'_> {
    pub const NONE: Epilogue<'static> = Epilogue {
        bias: None,
        residual: None,
        act: Activation::Identity,
    };

    pub(crate) fn is_none(&self) -> bool {
        self.bias.is_none() && self.residual.is_none() && self.act == Activation::Identity
    }
}

/// The B operand, packed block by block as the GEMM reaches it: each task packs the K-block
/// of a column panel into a small buffer right before the micro-kernel reads it from L1, so B
/// is never materialized as a whole (for a convolution, im2col happens inside the packing).
pub trait BSource: Sync {
    /// Columns of B.
    fn cols(&self) -> usize;
    /// Fills `out` (`kc` rows × `nr`) with rows `k0..k0 + kc` of columns
    /// `panel·nr .. panel·nr + nr`, zero past the last column.
    fn pack(&self, k0: usize, kc: usize, panel: usize, nr: usize, out: &mut [f32]);

    /// Where the block can be read in place instead: a pointer to row `k0`, column
    /// `panel·nr`, and the row stride. Only for full panels.
    fn in_place(&self, _k0: usize, _panel: usize, _nr: usize) -> Option<(*const f32, usize)> {
        None
    }

    /// Where every row is read in place instead, through a table: row `k` of column panel
    /// `p` starts at `base + offsets[k] + p·nr`. A source that gives one promises that `nr`
    /// floats can be read there for every row and panel, the last panel included (its
    /// buffer has the slack); columns past `cols()` are read but their results discarded.
    fn table(&self) -> Option<(*const f32, &[isize])> {
        None
    }

    /// The weights in bfloat16, when the source holds them so: the product then runs the
    /// bfloat16 kernel.
    fn bf16(&self) -> Option<&crate::bf16::PackedB16> {
        None
    }
}

/// A row-major K×N matrix with row stride `ld`.
pub struct RowMajor<'a> {
    pub b: &'a [f32],
    pub n: usize,
    pub ld: usize,
}

impl BSource for RowMajor<'_> {
    fn cols(&self) -> usize {
        self.n
    }

    fn pack(&self, k0: usize, kc: usize, panel: usize, nr: usize, out: &mut [f32]) {
        let c0 = panel * nr;
        let w = nr.min(self.n - c0);
        for (kk, dst) in out[..kc * nr].chunks_exact_mut(nr).enumerate() {
            dst[..w].copy_from_slice(&self.b[(k0 + kk) * self.ld + c0..][..w]);
            dst[w..].fill(0.0);
        }
    }

    fn in_place(&self, k0: usize, panel: usize, nr: usize) -> Option<(*const f32, usize)> {
        // Full panels are read where they lie, `ld` apart: the copy would cost as much as
        // the micro-kernel saves by reading contiguous panels.
        (panel * nr + nr <= self.n).then(|| (self.b[k0 * self.ld + panel * nr..].as_ptr(), self.ld))
    }
}

/// A strided f32 matrix: element `(i, j)` is `data[i·rs + j·cs]`.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> View<'a> {
    /// # Panics
    /// When the last element lies outside `data`.
    pub fn new(data: &'a [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> View<'a> {
        if rows > 0 && cols > 0 {
            assert!(
                (rows - 1) * rs + (cols - 1) * cs < data.len(),
                "a {rows}x{cols} view does not fit in {} floats",
                data.len()
            );
        }
        View {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }
}

impl BSource for View<'_> {
    fn cols(&self) -> usize {
        self.cols
    }

    fn pack(&self, k0: usize, kc: usize, panel: usize, nr: usize, out: &mut [f32]) {
        let c0 = panel * nr;
        let w = nr.min(self.cols - c0);
        if self.cs == 1 {
            return RowMajor {
                b: self.data,
                n: self.cols,
                ld: self.rs,
            }
            .pack(k0, kc, panel, nr, out);
        }
        // Transposed: column j of B is a contiguous run; walk it and scatter into the panel.
        for j in 0..w {
            let col = &self.data[(c0 + j) * self.cs + k0 * self.rs..];
            for kk in 0..kc {
                out[kk * nr + j] = col[kk * self.rs];
            }
        }
        if w < nr {
            for dst in out[..kc * nr].chunks_exact_mut(nr) {
                dst[w..].fill(0.0);
            }
        }
    }

    // Never read in place: with a row stride near a multiple of 4 KiB (a weight matrix 1536
    // or 1024 wide) a panel's rows fall into a few L1 sets and evict each other on every
    // pass, so the block is packed once per task instead.
}

/// A constant B (the weights of a MatMul) packed once into the column panels of one [`Isa`],
/// zero-padded, so every block is read in place.
#[derive(Clone, Debug)]
pub struct PackedB {
    nr: usize,
    k: usize,
    n: usize,
    /// Weights: read on every run, so mapped on huge pages (see [`crate::hugepages`]). Empty
    /// when the weights are held in bfloat16 instead.
    data: Buffer<f32>,
    /// The weights rounded to bfloat16 (a session at [`Precision::Bf16`]): products with
    /// them run [`crate::bf16`]'s kernel.
    bf16: Option<crate::bf16::PackedB16>,
}

/// The arithmetic of a session's matrix products.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// f32 throughout (the default).
    #[default]
    F32,
    /// Weights and activations rounded to bfloat16 at the products, sums in f32 (opt-in).
    Bf16,
}

impl PackedB {
    pub fn new(isa: Isa, b: View) -> PackedB {
        let (_, nr) = isa.tile();
        let (k, n) = (b.rows, b.cols);
        let panels = n.div_ceil(nr);
        let mut data = Buffer::zeroed(panels * k * nr);
        for (p, dst) in data
            .chunks_exact_mut((k * nr).max(1))
            .enumerate()
            .take(panels)
        {
            b.pack(0, k, p, nr, dst);
        }
        PackedB {
            nr,
            k,
            n,
            data,
            bf16: None,
        }
    }

    /// As [`PackedB::new`] at `precision`: in bfloat16 for [`Precision::Bf16`] where the CPU
    /// has a bfloat16 product ([`crate::bf16::available`]), else f32.
    pub fn with_precision(isa: Isa, b: View, precision: Precision) -> PackedB {
        if precision != Precision::Bf16 || !crate::bf16::available() {
            return PackedB::new(isa, b);
        }
        let at = |kk: usize, j: usize| b.data[kk * b.rs + j * b.cs];
        PackedB {
            nr: isa.tile().1,
            k: b.rows,
            n: b.cols,
            data: Buffer::from(Vec::new()),
            bf16: Some(crate::bf16::PackedB16::new(b.rows, b.cols, at)),
        }
    }

    /// `aᵀ` (K×M) in the column panels of `a`'s ISA: a convolution's weights as the B of a
    /// product over output pixels.
    pub fn transposed(a: &PackedA) -> PackedB {
        let (_, nr) = a.isa.tile();
        let (k, n) = (a.k, a.m);
        let panels = n.div_ceil(nr);
        let mut data = Buffer::zeroed(panels * k * nr);
        for (p, dst) in data
            .chunks_exact_mut((k * nr).max(1))
            .enumerate()
            .take(panels)
        {
            let cols = nr.min(n - p * nr);
            for (kk, row) in dst.chunks_exact_mut(nr).enumerate() {
                for (j, d) in row.iter_mut().enumerate().take(cols) {
                    *d = a.at(p * nr + j, kk);
                }
            }
        }
        PackedB {
            nr,
            k,
            n,
            data,
            bf16: None,
        }
    }

    /// As [`PackedB::transposed`], reusing `a`'s storage when its panels tile B's (M a
    /// multiple of NR, MR dividing NR): each NR-row band of A holds the floats of one column
    /// panel of B, so the bands are rewritten in place through one band-sized buffer and the
    /// weights never exist twice.
    pub(crate) fn transposed_owned(a: PackedA) -> PackedB {
        let (_, nr) = a.isa.tile();
        let (k, n, mr) = (a.k, a.m, a.mr);
        if !n.is_multiple_of(nr) || !nr.is_multiple_of(mr) || k == 0 {
            return PackedB::transposed(&a);
        }
        let mut data = a.data;
        let mut tmp = vec![0f32; nr * k];
        for band in data.chunks_exact_mut(nr * k) {
            tmp.copy_from_slice(band);
            for (kk, row) in band.chunks_exact_mut(nr).enumerate() {
                for (j, d) in row.iter_mut().enumerate() {
                    *d = tmp[(j / mr) * mr * k + kk * mr + j % mr];
                }
            }
        }
        PackedB {
            nr,
            k,
            n,
            data,
            bf16: None,
        }
    }

    pub fn k(&self) -> usize {
        self.k
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() * 4 + self.bf16.as_ref().map_or(0, |b| b.bytes())
    }
}

impl PackedB {
    /// The M×K matrix whose transpose this holds, packed as A for `isa` (the inverse of
    /// [`PackedB::transposed`]).
    pub(crate) fn untransposed(&self, isa: Isa) -> PackedA {
        let (k, m, nr) = (self.k, self.n, self.nr);
        let mut plain = vec![0f32; m * k];
        for (r, row) in plain.chunks_exact_mut(k.max(1)).enumerate().take(m) {
            let panel = &self.data[(r / nr) * k * nr..];
            for (kk, v) in row.iter_mut().enumerate() {
                *v = panel[kk * nr + r % nr];
            }
        }
        PackedA::weights(isa, View::new(&plain, m, k, k, 1))
    }

    /// As [`PackedB::untransposed`], in place when the panels tile (see
    /// [`PackedB::transposed_owned`]).
    pub(crate) fn untransposed_owned(self, isa: Isa) -> PackedA {
        let (mr, nr) = isa.tile();
        let (k, m) = (self.k, self.n);
        if nr != self.nr || !m.is_multiple_of(nr) || !nr.is_multiple_of(mr) || k == 0 {
            return self.untransposed(isa);
        }
        let mut data = self.data;
        let mut tmp = vec![0f32; nr * k];
        for band in data.chunks_exact_mut(nr * k) {
            tmp.copy_from_slice(band);
            for (kk, row) in tmp.chunks_exact(nr).enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    band[(j / mr) * mr * k + kk * mr + j % mr] = v;
                }
            }
        }
        PackedA {
            isa,
            mr,
            m,
            k,
            data,
        }
    }
}

impl BSource for PackedB {
    fn cols(&self) -> usize {
        self.n
    }

    fn pack(&self, k0: usize, kc: usize, panel: usize, nr: usize, out: &mut [f32]) {
        if let Some(h) = &self.bf16 {
            return h.unpack(k0, kc, panel, nr, out);
        }
        for (kk, dst) in out[..kc * nr].chunks_exact_mut(nr).enumerate() {
            for (j, d) in dst.iter_mut().enumerate() {
                let col = panel * nr + j;
                *d = if col < self.n {
                    self.data
                        [(col / self.nr) * self.k * self.nr + (k0 + kk) * self.nr + col % self.nr]
                } else {
                    0.0
                };
            }
        }
    }

    fn in_place(&self, k0: usize, panel: usize, nr: usize) -> Option<(*const f32, usize)> {
        (nr == self.nr && self.bf16.is_none())
            .then(|| self.data[(panel * self.k + k0) * nr..].as_ptr())
            .map(|p| (p, nr))
    }

    fn bf16(&self) -> Option<&crate::bf16::PackedB16> {
        self.bf16.as_ref()
    }
}

thread_local! {
    static SERIAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with every GEMM it calls on this thread kept on this thread: for callers that
/// already spread many small products (the heads of an attention) over the threads, where
/// splitting each product again costs more than it gains.
pub fn serial<R>(f: impl FnOnce() -> R) -> R {
    let before = SERIAL.with(|s| s.replace(true));
    let r = f();
    SERIAL.with(|s| s.set(before));
    r
}

fn is_serial() -> bool {
    SERIAL.with(|s| s.get())
}

/// A pointer into an output that parallel tasks write disjoint parts of.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub *mut f32);
// SAFETY: tasks write disjoint parts (tiles of C, rows of a convolution) through it.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    // A method, so closures capture the whole (Sync) wrapper rather than its raw field.
    pub(crate) fn at(self, off: usize) -> *mut f32 {
        self.0.wrapping_add(off)
    }
}

/// `C = epilogue(A·B)` with A packed by [`PackedA`]; C is row-major M×N (N = `b.cols()`)
/// with row stride `ldc`.
pub fn gemm_packed(a: &PackedA, b: &impl BSource, c: &mut [f32], ldc: usize, epi: &Epilogue) {
    run(a, b, c, ldc, epi, false)
}

/// `C = epilogue(C + A·B)`: as [`gemm_packed`], adding to what C holds.
pub fn gemm_packed_acc(a: &PackedA, b: &impl BSource, c: &mut [f32], ldc: usize, epi: &Epilogue) {
    run(a, b, c, ldc, epi, true)
}

fn run(a: &PackedA, b: &impl BSource, c: &mut [f32], ldc: usize, epi: &Epilogue, acc: bool) {
    let (m, k, isa, n) = (a.m, a.k, a.isa, b.cols());
    if m == 0 || n == 0 {
        return;
    }
    assert!(ldc >= n && c.len() >= (m - 1) * ldc + n, "C is too small");
    if let Some(b) = epi.bias {
        assert!(b.len() >= m, "bias is too short");
    }
    if let Some(z) = epi.residual {
        assert!(z.len() >= (m - 1) * ldc + n, "residual is too short");
    }
    let nr = isa.tile().1;
    if k == 0 {
        for r in 0..m {
            let row = &mut c[r * ldc..r * ldc + n];
            if !acc {
                row.fill(0.0);
            }
            finish_row(epi, row, r, r * ldc);
        }
        return;
    }
    if let Some(h) = b.bf16() {
        let aw = crate::bf16::rows_of_packed(a);
        return crate::bf16::run(&aw, m, h, c, ldc, epi, acc);
    }
    if n * 4 <= nr {
        return gemv(a, b, c, ldc, epi, acc);
    }
    // SAFETY: C was checked to hold the M×N block.
    unsafe { run_tiles(a, b, SendPtr(c.as_mut_ptr()), ldc, epi, acc, None) }
}

/// What a task of the tiled product reports when its block of C is final: rows `.0` and
/// columns `.1` (in elements), which the caller may then read, on the same worker while the
/// block is still in its caches.
pub(crate) type Done<'a> = &'a (dyn Fn(std::ops::Range<usize>, std::ops::Range<usize>) + Sync);

/// `C = A·B` as [`gemm_packed`] with no epilogue, calling `done` for each finished block of
/// C from the task that computed it (a convolution copying its valid columns out).
pub(crate) fn gemm_packed_then(
    a: &PackedA,
    b: &impl BSource,
    c: &mut [f32],
    ldc: usize,
    done: Done,
) {
    let (m, n, nr) = (a.m, b.cols(), a.isa.tile().1);
    if m == 0 || n == 0 {
        return;
    }
    if a.k == 0 || n * 4 <= nr {
        run(a, b, c, ldc, &Epilogue::NONE, false);
        return done(0..m, 0..n);
    }
    assert!(ldc >= n && c.len() >= (m - 1) * ldc + n, "C is too small");
    // SAFETY: C was checked to hold the M×N block.
    unsafe {
        run_tiles(
            a,
            b,
            SendPtr(c.as_mut_ptr()),
            ldc,
            &Epilogue::NONE,
            false,
            Some(done),
        )
    }
}

/// `C = epilogue(A·B)` into a C given by pointer: for callers that run products over
/// interleaved, disjoint parts of one matrix at once (a convolution's output rows), which
/// slices cannot express without overlapping.
///
/// # Safety
/// `c` must be valid for writes of rows `0..M` of `N = b.cols()` floats, `ldc` apart, that
/// nothing else reads or writes meanwhile. K must not be 0 and N not below a quarter panel.
pub(crate) unsafe fn gemm_packed_raw(
    a: &PackedA,
    b: &impl BSource,
    c: *mut f32,
    ldc: usize,
    epi: &Epilogue,
) {
    let (m, n, nr) = (a.m, b.cols(), a.isa.tile().1);
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        a.k > 0 && n * 4 > nr && ldc >= n,
        "not a raw-pointer product"
    );
    if let Some(b) = epi.bias {
        assert!(b.len() >= m, "bias is too short");
    }
    if let Some(z) = epi.residual {
        assert!(z.len() >= (m - 1) * ldc + n, "residual is too short");
    }
    run_tiles(a, b, SendPtr(c), ldc, epi, false, None)
}

/// The tiled product behind [`gemm_packed`], once shapes are checked.
///
/// # Safety
/// `cp` must address an M×N block with row stride `ldc` that only this call touches.
unsafe fn run_tiles(
    a: &PackedA,
    b: &impl BSource,
    cp: SendPtr,
    ldc: usize,
    epi: &Epilogue,
    acc: bool,
    done: Option<Done>,
) {
    let (m, k, isa, n) = (a.m, a.k, a.isa, b.cols());
    let (mr, nr) = (a.mr, isa.tile().1);
    let kern = ukernel::for_shape::<Strided>(isa, mr);
    let kern_table = ukernel::for_shape::<Table>(isa, mr);
    if let Some((_, offsets)) = b.table() {
        assert!(offsets.len() >= k, "the row table is too short");
    }
    let (m_panels, n_panels) = (m.div_ceil(mr), n.div_ceil(nr));
    let threads = rayon::current_num_threads();
    let flops = 2 * m * n * k;
    let want = if flops < 1 << 19 || is_serial() {
        1
    } else {
        4 * threads
    };
    // Rows into blocks of at most MC (an A block stays in L2), then the split into at least
    // `want` tasks that finishes first: the busiest thread's tiles (equal tasks dealt out in
    // rounds: 5 tasks on 2 threads idle one a sixth of the time) plus the data the blocks
    // stream, each column block all of its rows' A and each row block all of its columns'
    // B. A convolution over a 7×7 map (large A, small B) splits by rows, one over 56×56 by
    // columns.
    let min_m = m_panels.div_ceil((MC / mr).max(1));
    let need = want.min(m_panels * n_panels);
    let (a_len, b_len) = ((m * k) as f64, (k * n) as f64);
    // Nanoseconds, roughly: a tile's FMAs at ~100 GFLOP/s a core, a float streamed from L2.
    let tile_ns = (2 * mr * nr * k) as f64 / 100.0;
    // More than a few times the tasks wanted only adds traffic: that bounds the search.
    let cap = 4 * need;
    let mut best = (f64::INFINITY, 0, 0, 0, 0);
    for mb in min_m..=m_panels.min(cap.max(min_m)) {
        let mcp = m_panels.div_ceil(mb);
        let mb = m_panels.div_ceil(mcp);
        for nb in 1..=n_panels.min(cap) {
            let npp = n_panels.div_ceil(nb);
            let nb = n_panels.div_ceil(npp);
            if mb * nb < need {
                continue;
            }
            let span = (mb * nb).div_ceil(threads) * mcp * npp;
            let cost = span as f64 * tile_ns + (nb as f64 * a_len + mb as f64 * b_len) * 0.05;
            if cost < best.0 {
                best = (cost, mb, nb, mcp, npp);
            }
        }
    }
    if best.0.is_infinite() {
        let mcp = m_panels.div_ceil(min_m);
        best = (0.0, m_panels.div_ceil(mcp), 1, mcp, n_panels);
    }
    let (_, m_blocks, n_blocks, mc_panels, np_per) = best;
    let k_blocks = k.div_ceil(kc_target(isa));
    let kc_len = k.div_ceil(k_blocks);
    let fusable = !epi.is_none() && crate::act::fused_in_registers(epi.act);
    let task = |t: usize| {
        let (mb, nb) = (t / n_blocks, t % n_blocks);
        let mps = mb * mc_panels..((mb + 1) * mc_panels).min(m_panels);
        let nps = nb * np_per..((nb + 1) * np_per).min(n_panels);
        let mut scratch = [0f32; 8 * 32];
        // Only sources that pack need it (zeroing it per task showed in profiles).
        let mut bbuf = Vec::new();
        // Asked per task: the raw pointer inside is not shared between threads.
        let table = b.table();
        let mut k0 = 0;
        while k0 < k {
            let kc = kc_len.min(k - k0);
            let last = k0 + kc == k;
            for np in nps.clone() {
                let rows = match table {
                    // SAFETY: the source vouches for reads at these offsets (see `table`).
                    Some((base, offsets)) => {
                        Err(Table(unsafe { base.add(np * nr) }, offsets[k0..].as_ptr()))
                    }
                    None => Ok(match b.in_place(k0, np, nr) {
                        Some((p, ld)) => Strided(p, ld),
                        None => {
                            if bbuf.is_empty() {
                                bbuf = vec![0f32; kc_len * nr];
                            }
                            b.pack(k0, kc, np, nr, &mut bbuf);
                            Strided(bbuf.as_ptr(), nr)
                        }
                    }),
                };
                for mp in mps.clone() {
                    let aptr = a.data[mp * mr * k + k0 * mr..].as_ptr();
                    let at = (mp * mr, np * nr);
                    let size = (mr.min(m - mp * mr), nr.min(n - np * nr));
                    // A full tile's epilogue runs in the micro-kernel's registers.
                    let fused = (last && size == (mr, nr) && fusable).then(|| Fuse {
                        bias: epi.bias.map_or(std::ptr::null(), |b| b[at.0..].as_ptr()),
                        z: epi
                            .residual
                            .map_or(std::ptr::null(), |z| z[at.0 * ldc + at.1..].as_ptr()),
                        act: epi.act,
                    });
                    // SAFETY: the tile lies inside C (checked above) and no other task
                    // touches it; the panels hold kc steps from their offsets.
                    unsafe {
                        match rows {
                            Ok(b) => tile(
                                kern,
                                kc,
                                aptr,
                                b,
                                cp,
                                ldc,
                                at,
                                size,
                                (mr, nr),
                                acc || k0 > 0,
                                fused.as_ref(),
                                &mut scratch,
                            ),
                            Err(b) => tile(
                                kern_table,
                                kc,
                                aptr,
                                b,
                                cp,
                                ldc,
                                at,
                                size,
                                (mr, nr),
                                acc || k0 > 0,
                                fused.as_ref(),
                                &mut scratch,
                            ),
                        }
                    }
                    if last && !epi.is_none() && fused.is_none() {
                        let (r0, rows) = (mp * mr, mr.min(m - mp * mr));
                        let (off, cols) = (r0 * ldc + np * nr, nr.min(n - np * nr));
                        let span = (rows - 1) * ldc + cols;
                        // SAFETY: as above; the span covers this tile's rows (and the gaps
                        // between them, which this task does not write meanwhile).
                        let c = unsafe { std::slice::from_raw_parts_mut(cp.at(off), span) };
                        epi.act.tile(Tile {
                            c,
                            ld: ldc,
                            rows,
                            cols,
                            bias: epi.bias,
                            r0,
                            residual: epi.residual.map(|z| &z[off..off + span]),
                        });
                    }
                }
            }
            k0 += kc;
        }
        if let Some(done) = done {
            let rows = mps.start * mr..(mps.end * mr).min(m);
            done(rows, nps.start * nr..(nps.end * nr).min(n));
        }
    };
    let tasks = m_blocks * n_blocks;
    if tasks == 1 {
        task(0);
    } else {
        (0..tasks).into_par_iter().for_each(task);
    }
}

/// Few columns (a fully connected layer on one sample): the micro-kernel would waste most of
/// its lanes, so each row panel of A is streamed once against the packed columns instead,
/// vectorized across the MR rows of the panel.
fn gemv(a: &PackedA, b: &impl BSource, c: &mut [f32], ldc: usize, epi: &Epilogue, acc: bool) {
    let (m, k, n) = (a.m, a.k, b.cols());
    let (mr, nr) = (a.mr, a.isa.tile().1);
    let mut bp = vec![0f32; k * nr];
    b.pack(0, k, 0, nr, &mut bp);
    let m_panels = m.div_ceil(mr);
    let cp = SendPtr(c.as_mut_ptr());
    let panel = |p: usize| {
        let ap = &a.data[p * mr * k..(p + 1) * mr * k];
        let rows = mr.min(m - p * mr);
        for j in 0..n {
            let dots = dot_panel(a.isa, ap, &bp, j, nr, mr);
            for (r, &v) in dots.iter().enumerate().take(rows) {
                // SAFETY: row p·mr + r < m, column j < n; panels write disjoint rows.
                unsafe {
                    let dst = cp.at((p * mr + r) * ldc + j);
                    *dst = if acc { *dst + v } else { v };
                }
            }
        }
        if !epi.is_none() {
            let off = p * mr * ldc;
            let span = (rows - 1) * ldc + n;
            // SAFETY: this panel's rows, written only by this task.
            let c = unsafe { std::slice::from_raw_parts_mut(cp.at(off), span) };
            epi.act.tile(Tile {
                c,
                ld: ldc,
                rows,
                cols: n,
                bias: epi.bias,
                r0: p * mr,
                residual: epi.residual.map(|z| &z[off..off + span]),
            });
        }
    };
    if m * k >= 1 << 16 && !is_serial() {
        (0..m_panels).into_par_iter().for_each(panel);
    } else {
        (0..m_panels).for_each(panel);
    }
}

/// The MR dot products of a packed A panel with column `j` of a packed B panel.
fn dot_panel(isa: Isa, ap: &[f32], bp: &[f32], j: usize, nr: usize, mr: usize) -> [f32; 8] {
    #[inline(always)]
    fn body<const MR: usize>(ap: &[f32], bp: &[f32], j: usize, nr: usize) -> [f32; 8] {
        let mut acc = [0f32; MR];
        for (arow, brow) in ap.chunks_exact(MR).zip(bp.chunks_exact(nr)) {
            let x = brow[j];
            for (o, &w) in acc.iter_mut().zip(arow) {
                *o += w * x;
            }
        }
        let mut out = [0f32; 8];
        out[..MR].copy_from_slice(&acc);
        out
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn body8_avx512(ap: &[f32], bp: &[f32], j: usize, nr: usize) -> [f32; 8] {
        body::<8>(ap, bp, j, nr)
    }
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn body6_avx2(ap: &[f32], bp: &[f32], j: usize, nr: usize) -> [f32; 8] {
        body::<6>(ap, bp, j, nr)
    }
    match (isa, mr) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: packed for this ISA, which detect() found on the CPU.
        (Isa::Avx512, 8) => unsafe { body8_avx512(ap, bp, j, nr) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        (Isa::Avx2, 6) => unsafe { body6_avx2(ap, bp, j, nr) },
        (_, 1) => body::<1>(ap, bp, j, nr),
        (_, 2) => body::<2>(ap, bp, j, nr),
        (_, 3) => body::<3>(ap, bp, j, nr),
        (_, 4) => body::<4>(ap, bp, j, nr),
        (_, 5) => body::<5>(ap, bp, j, nr),
        (_, 6) => body::<6>(ap, bp, j, nr),
        (_, 7) => body::<7>(ap, bp, j, nr),
        _ => body::<8>(ap, bp, j, nr),
    }
}

fn finish_row(epi: &Epilogue, row: &mut [f32], r: usize, off: usize) {
    let bias = epi.bias.map_or(0.0, |b| b[r]);
    let z = epi.residual.map(|z| &z[off..off + row.len()]);
    epi.act.bias_residual_slice(row, bias, z);
}

/// One MR×NR tile (or a ragged part of one through `scratch`).
#[allow(clippy::too_many_arguments)]
#[inline]
unsafe fn tile<R: Rows>(
    kern: Ukernel<R>,
    kc: usize,
    a: *const f32,
    b: R,
    c: SendPtr,
    ldc: usize,
    (r0, c0): (usize, usize),
    (rows, cols): (usize, usize),
    (mr, nr): (usize, usize),
    acc: bool,
    fuse: Option<&Fuse>,
    scratch: &mut [f32; 8 * 32],
) {
    let dst = c.0.add(r0 * ldc + c0);
    if rows == mr && cols == nr {
        kern(kc, a, b, dst, ldc, acc, fuse);
        return;
    }
    debug_assert!(fuse.is_none(), "a ragged tile's epilogue runs afterwards");
    if acc {
        for r in 0..rows {
            std::ptr::copy_nonoverlapping(dst.add(r * ldc), scratch.as_mut_ptr().add(r * nr), cols);
        }
    }
    kern(kc, a, b, scratch.as_mut_ptr(), nr, acc, None);
    for r in 0..rows {
        std::ptr::copy_nonoverlapping(scratch.as_ptr().add(r * nr), dst.add(r * ldc), cols);
    }
}

/// `C = epilogue(A·B)` for plain row-major A (M×K, stride `lda`) and B (K×N, stride `ldb`),
/// packing both.
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
    epi: &Epilogue,
) {
    let pa = PackedA::new(a, m, k, lda);
    gemm_packed(&pa, &RowMajor { b, n, ld: ldb }, c, ldc, epi);
}

/// `C = alpha·A·B + beta·C` for a strided A (M×K) and a B source with K rows (the caller
/// matches K); C is row-major with row stride `ldc`. With `beta == 0` C's previous contents
/// are ignored, NaN included.
pub fn sgemm_view(alpha: f32, a: View, b: &impl BSource, beta: f32, c: &mut [f32], ldc: usize) {
    let (m, n) = (a.rows, b.cols());
    if m == 0 || n == 0 {
        return;
    }
    if beta != 0.0 && beta != 1.0 {
        for r in 0..m {
            c[r * ldc..r * ldc + n].iter_mut().for_each(|v| *v *= beta);
        }
    }
    if let Some(h) = b.bf16() {
        // Straight from A's rows into bfloat16, without the f32 panels first.
        assert!(c.len() >= (m - 1) * ldc + n, "C is too small");
        let aw = crate::bf16::rows_of_view(a, alpha);
        return crate::bf16::run(&aw, m, h, c, ldc, &Epilogue::NONE, beta != 0.0);
    }
    let pa = PackedA::strided(Isa::detect(), a, alpha);
    run(&pa, b, c, ldc, &Epilogue::NONE, beta != 0.0)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f64;
                for p in 0..k {
                    s += a[i * k + p] as f64 * b[p * n + j] as f64;
                }
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    /// Deterministic values in [-1, 1] for tests.
    pub(crate) fn data(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    fn isas() -> Vec<Isa> {
        [Isa::Portable, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|&i| i <= Isa::hardware())
            .collect()
    }

    #[test]
    fn matches_naive_on_ragged_shapes_for_every_isa() {
        for isa in isas() {
            for &(m, n, k) in &[
                (1, 1, 1),
                (7, 33, 5),
                (8, 32, 256),
                (13, 70, 300),
                (13, 70, 1100),
                (9, 40, 2300),
                (64, 49, 576),
                (200, 5, 1),
                (3, 100, 0),
                (1000, 1, 300),
                (37, 3, 70),
                // Fewer rows than a tile (AVX-512's 1- to 6-row kernels, AVX2's 1 to 5), K
                // not a multiple of their unrolling.
                (1, 70, 515),
                (2, 64, 7),
                (3, 40, 33),
                (4, 48, 21),
                (5, 96, 130),
                (6, 33, 9),
            ] {
                let (a, b) = (data(m * k, 1), data(k * n, 2));
                let pa = PackedA::with_isa(isa, &a, m, k, k);
                let mut c = vec![f32::NAN; m * n];
                gemm_packed(
                    &pa,
                    &RowMajor { b: &b, n, ld: n },
                    &mut c,
                    n,
                    &Epilogue::NONE,
                );
                let want = naive(m, n, k, &a, &b);
                for (i, (x, y)) in c.iter().zip(&want).enumerate() {
                    assert!(
                        (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                        "{isa:?} {m}x{n}x{k} [{i}]: {x} vs {y}"
                    );
                }
            }
        }
    }

    #[test]
    fn epilogue_with_bias_residual_and_strided_c() {
        // Full tiles take the epilogue in the micro-kernel's registers on their last K block
        // (k = 1100 has two or more on every ISA), ragged ones afterwards: both must agree
        // with the definition.
        let acts = [
            Activation::Identity,
            Activation::Relu,
            Activation::LeakyRelu(0.1),
            Activation::Clip(-0.5, 0.5),
            Activation::HardSigmoid(0.2, 0.5),
            Activation::Sigmoid,
            Activation::Tanh,
            Activation::Silu(1.0),
        ];
        for isa in isas() {
            for (m, n, k, ldc) in [(10, 40, 17, 45), (16, 64, 1100, 64)] {
                let (a, b) = (data(m * k, 3), data(k * n, 4));
                let bias = data(m, 5);
                let z = data(m * ldc, 6);
                let pa = PackedA::with_isa(isa, &a, m, k, k);
                let p = naive(m, n, k, &a, &b);
                for act in acts {
                    let mut c = vec![7.0f32; m * ldc];
                    let epi = Epilogue {
                        bias: Some(&bias),
                        residual: Some(&z),
                        act,
                    };
                    gemm_packed(&pa, &RowMajor { b: &b, n, ld: n }, &mut c, ldc, &epi);
                    for i in 0..m {
                        for j in 0..ldc {
                            let got = c[i * ldc + j];
                            if j >= n {
                                assert_eq!(got, 7.0, "padding column touched");
                                continue;
                            }
                            let want = act.apply(p[i * n + j] + bias[i] + z[i * ldc + j]);
                            assert!(
                                (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                                "{isa:?} {act:?} k={k} [{i},{j}] {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// Transposed operands, alpha and beta, and weights packed once (also for another ISA's
    /// panel width, which falls back to copying) against the naive product.
    #[test]
    fn strided_views_and_packed_weights() {
        for isa in isas() {
            for &(m, n, k) in &[(9, 37, 20), (64, 48, 300), (5, 3, 7), (130, 100, 64)] {
                let (a, b) = (data(m * k, 11), data(k * n, 12));
                let want = naive(m, n, k, &a, &b);
                // Column-major copies: element (i, j) at j·rows + i.
                let t = |v: &[f32], r: usize, c: usize| {
                    let mut o = vec![0f32; v.len()];
                    for i in 0..r {
                        for j in 0..c {
                            o[j * r + i] = v[i * c + j];
                        }
                    }
                    o
                };
                let (at, bt) = (t(&a, m, k), t(&b, k, n));
                let c0 = data(m * n, 13);
                for (alpha, beta) in [(1.0, 0.0), (0.5, 1.0), (2.0, 0.25)] {
                    let views = [
                        (View::new(&a, m, k, k, 1), View::new(&b, k, n, n, 1)),
                        (View::new(&at, m, k, 1, m), View::new(&bt, k, n, 1, k)),
                    ];
                    for (av, bv) in views {
                        let packed = PackedB::new(isa, bv);
                        let other = PackedB::new(
                            if isa == Isa::Portable {
                                Isa::Avx2
                            } else {
                                Isa::Portable
                            },
                            bv,
                        );
                        for src in 0..3 {
                            let mut c = c0.clone();
                            if beta != 1.0 && beta != 0.0 {
                                c.iter_mut().for_each(|x| *x *= beta);
                            }
                            let pa = PackedA::strided(isa, av, alpha);
                            let epi = &Epilogue::NONE;
                            match src {
                                0 => run(&pa, &bv, &mut c, n, epi, beta != 0.0),
                                1 => run(&pa, &packed, &mut c, n, epi, beta != 0.0),
                                _ => run(&pa, &other, &mut c, n, epi, beta != 0.0),
                            }
                            for i in 0..m * n {
                                let w = alpha * want[i] + beta * c0[i];
                                assert!(
                                    (c[i] - w).abs() <= 1e-4 * (1.0 + w.abs()),
                                    "{isa:?} {m}x{n}x{k} a={alpha} b={beta} src {src} [{i}]"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn threads_give_identical_results() {
        let (m, n, k) = (96, 300, 700);
        let (a, b) = (data(m * k, 7), data(k * n, 8));
        let run = |t: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap();
            let mut c = vec![0f32; m * n];
            pool.install(|| sgemm(m, n, k, &a, k, &b, n, &mut c, n, &Epilogue::NONE));
            c
        };
        assert_eq!(run(1), run(3));
    }
}
