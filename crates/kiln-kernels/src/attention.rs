//! Scaled dot-product attention in f32 over strided views: for every batch row and head,
//! `Y = softmax(scale · Q·Kᵀ + bias) · V`, with Q, K, V and Y read and written where they
//! lie (the heads of a `[B, S, N·H]` projection, a transposed key, a permuted output), so the
//! transposes around an exported attention block and the `[B, N, S, T]` score tensor never
//! exist. Work is split into (batch, head, block of query rows) tasks over rayon's threads;
//! a task's scores (rows × keys) live in one reused buffer. Both products run on the packed
//! GEMM, the scale folded into the packing of Q.
use rayon::prelude::*;

use crate::gemm::{self, Epilogue, PackedA, SendPtr, View};
use crate::Isa;

/// A 4-D f32 array through strides; an axis of size 1 broadcasts (its stride is ignored).
#[derive(Clone, Copy, Debug)]
pub struct Strided4<'a> {
    pub data: &'a [f32],
    pub dims: [usize; 4],
    pub strides: [usize; 4],
}

impl<'a> Strided4<'a> {
    /// Checks that every element lies inside `data`.
    pub fn new(
        data: &'a [f32],
        dims: [usize; 4],
        strides: [usize; 4],
    ) -> Result<Strided4<'a>, String> {
        let s = Strided4 {
            data,
            dims,
            strides,
        };
        if dims.iter().all(|&d| d > 0) && s.last() >= data.len() {
            return Err(format!(
                "a {dims:?} view with strides {strides:?} does not fit in {} floats",
                data.len()
            ));
        }
        Ok(s)
    }

    /// A dense row-major array.
    pub fn dense(data: &'a [f32], dims: [usize; 4]) -> Result<Strided4<'a>, String> {
        let strides = [dims[1] * dims[2] * dims[3], dims[2] * dims[3], dims[3], 1];
        Strided4::new(data, dims, strides)
    }

    /// The strides actually walked: 0 along an axis of size 1.
    fn walk(&self) -> [usize; 4] {
        std::array::from_fn(|i| {
            if self.dims[i] == 1 {
                0
            } else {
                self.strides[i]
            }
        })
    }

    fn last(&self) -> usize {
        let w = self.walk();
        (0..4).map(|i| (self.dims[i] - 1) * w[i]).sum()
    }

    /// The offset of `[b, n, r, 0]`, indices of size-1 axes taken as 0.
    fn at(&self, b: usize, n: usize, r: usize) -> usize {
        let w = self.walk();
        b * w[0] + n * w[1] + r * w[2]
    }
}

/// One attention: Q `[B, N, S, H]`, K `[B, Nkv, T, H]`, V `[B, Nkv, T, Hv]`, an additive
/// bias broadcast to `[B, N, S, T]`; `Nkv` divides `N` (grouped queries share a key head).
/// A batch axis of size 1 broadcasts against the others.
pub struct Sdpa<'a> {
    pub isa: Isa,
    pub q: Strided4<'a>,
    pub k: Strided4<'a>,
    pub v: Strided4<'a>,
    pub bias: Option<Strided4<'a>>,
    pub scale: f32,
    /// Causal attention without a bias tensor: each query row sees only the keys up to its
    /// position, optionally only the last `window` of them.
    pub causal: Option<Causal>,
}

/// Query row `r` (of the S rows) sits at key position `offset + r`: it sees keys
/// `end - window .. end`, `end = min(offset + r + 1, T)` (all of `..end` without a window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Causal {
    pub offset: usize,
    pub window: Option<usize>,
}

impl Causal {
    /// The keys row `r` sees, of `t`.
    pub fn keys(&self, r: usize, t: usize) -> std::ops::Range<usize> {
        let end = (self.offset + r + 1).min(t);
        let start = self.window.map_or(0, |w| end.saturating_sub(w));
        start..end
    }
}

/// What two sizes of one axis broadcast to, or why they do not.
fn join(a: usize, b: usize, what: &str) -> Result<usize, String> {
    match (a, b) {
        _ if a == b => Ok(a),
        (1, _) => Ok(b),
        (_, 1) => Ok(a),
        _ => Err(format!("{what}: {a} and {b} do not broadcast")),
    }
}

impl Sdpa<'_> {
    /// The output's dims `[B, N, S, Hv]`, once the inputs are checked against each other.
    pub fn out_dims(&self) -> Result<[usize; 4], String> {
        let (q, k, v) = (&self.q.dims, &self.k.dims, &self.v.dims);
        if q[3] != k[3] {
            return Err(format!("Q's head size {} differs from K's {}", q[3], k[3]));
        }
        if k[2] != v[2] {
            return Err(format!("K has {} keys, V {}", k[2], v[2]));
        }
        if k[1] != v[1] {
            return Err(format!("K has {} heads, V {}", k[1], v[1]));
        }
        let mut b = join(q[0], k[0], "batch of Q and K")?;
        b = join(b, v[0], "batch of Q and V")?;
        let mut n = match (q[1], k[1]) {
            (x, y) if x == y || y == 1 => x,
            (1, y) => y,
            (x, y) if y > 0 && x % y == 0 => x,
            (x, y) => return Err(format!("{x} query heads cannot share {y} key heads")),
        };
        if let Some(bias) = &self.bias {
            let d = &bias.dims;
            b = join(b, d[0], "batch of the scores and the bias")?;
            n = join(n, d[1], "heads of the scores and the bias")?;
            if join(q[2], d[2], "queries")? != q[2] || join(k[2], d[3], "keys")? != k[2] {
                return Err(format!(
                    "the bias {d:?} does not broadcast into the scores [{b}, {n}, {}, {}]",
                    q[2], k[2]
                ));
            }
        }
        if k[1] == 0 || n % k[1] != 0 {
            return Err(format!("{n} heads cannot share {} key heads", k[1]));
        }
        Ok([b, n, q[2], v[3]])
    }

    /// Writes Y into `out` at `strides` (a permutation of a dense layout of
    /// [`Sdpa::out_dims`], so tasks never overlap).
    pub fn run(&self, out: &mut [f32], strides: [usize; 4]) -> Result<(), String> {
        let dims = self.out_dims()?;
        check_layout(dims, strides, out.len())?;
        let [b, n, s, hv] = dims;
        if dims.contains(&0) {
            return Ok(());
        }
        let t = self.k.dims[2];
        let op = SendPtr(out.as_mut_ptr());
        if t == 0 {
            // No keys: the scores are empty and every output sums nothing.
            for_each_row(dims, |bi, ni, r| {
                let o = bi * strides[0] + ni * strides[1] + r * strides[2];
                for j in 0..hv {
                    // SAFETY: check_layout put every element of the layout inside `out`.
                    unsafe { *op.at(o + j * strides[3]) = 0.0 };
                }
            });
            return Ok(());
        }
        let threads = rayon::current_num_threads();
        // Enough tasks to keep every thread busy, but blocks of at least 16 rows, and scores
        // that stay within L2 (a task's rows × keys).
        let per_head = (2 * threads).div_ceil(b * n).min(s.div_ceil(16)).max(1);
        let max_rows = ((1 << 16) / t).max(8);
        let rows = s.div_ceil(per_head).min(max_rows);
        let blocks = s.div_ceil(rows);
        let task = |id: usize| {
            let (bn, blk) = (id / blocks, id % blocks);
            let (bi, ni) = (bn / n, bn % n);
            let r0 = blk * rows;
            let m = rows.min(s - r0);
            // The buffer is taken out of the thread's slot while the block runs: the block's
            // products are parallel, and a worker waiting on them may start another task of
            // this loop on the same thread, which then finds the slot empty and allocates,
            // where a borrow held across the block panicked ("already borrowed").
            let mut buf = SCORES.with(|slot| std::mem::take(&mut *slot.borrow_mut()));
            if buf.len() < m * t {
                buf.resize(m * t, 0.0);
            }
            // SAFETY: tasks cover disjoint (batch, head, rows) parts of the layout.
            unsafe { self.block(bi, ni, r0, m, &mut buf[..m * t], op, strides) };
            SCORES.with(|slot| {
                let mut slot = slot.borrow_mut();
                if slot.len() < buf.len() {
                    *slot = buf;
                }
            });
        };
        let tasks = b * n * blocks;
        if tasks == 1 || threads == 1 {
            (0..tasks).for_each(task);
        } else {
            (0..tasks).into_par_iter().for_each(task);
        }
        Ok(())
    }

    /// Rows `r0..r0 + m` of head `ni` of batch row `bi`.
    ///
    /// # Safety
    /// `out` must hold the layout [`Sdpa::run`] checked; no other task writes these rows.
    #[allow(clippy::too_many_arguments)]
    unsafe fn block(
        &self,
        bi: usize,
        ni: usize,
        r0: usize,
        m: usize,
        scores: &mut [f32],
        out: SendPtr,
        os: [usize; 4],
    ) {
        let (t, h, hv) = (self.k.dims[2], self.q.dims[3], self.v.dims[3]);
        let n = self.q.dims[1].max(self.k.dims[1]);
        let nkv = self.k.dims[1];
        let kv = if nkv == n { ni } else { ni / (n / nkv) };
        let (q, k, v) = (&self.q, &self.k, &self.v);
        let qw = q.walk();
        let (kw, vw) = (k.walk(), v.walk());
        gemm::serial(|| {
            let qv = View::new(&q.data[q.at(bi, ni, r0)..], m, h, qw[2], qw[3]);
            let pa = PackedA::strided(self.isa, qv, self.scale);
            // Kᵀ: H rows (a key's elements) of T columns (the keys).
            let kt = View::new(&k.data[k.at(bi, kv, 0)..], h, t, kw[3], kw[2]);
            gemm::gemm_packed(&pa, &kt, scores, t, &Epilogue::NONE);
            for (i, row) in scores.chunks_exact_mut(t).enumerate() {
                if let Some(bias) = &self.bias {
                    let bw = bias.walk();
                    let at = bias.at(bi, ni, r0 + i);
                    if bw[3] == 1 {
                        for (x, &b) in row.iter_mut().zip(&bias.data[at..at + t]) {
                            *x += b;
                        }
                    } else {
                        let b = bias.data[at];
                        row.iter_mut().for_each(|x| *x += b);
                    }
                }
                if let Some(c) = &self.causal {
                    let keys = c.keys(r0 + i, t);
                    row[..keys.start].fill(f32::NEG_INFINITY);
                    row[keys.end..].fill(f32::NEG_INFINITY);
                }
                crate::vecmath::softmax_block(row, 1);
            }
            let pp = PackedA::strided(self.isa, View::new(scores, m, t, t, 1), 1.0);
            let vv = View::new(&v.data[v.at(bi, kv, 0)..], t, hv, vw[2], vw[3]);
            let o = bi * os[0] + ni * os[1] + r0 * os[2];
            let nr = self.isa.tile().1;
            if os[3] == 1 && hv * 4 > nr {
                gemm::gemm_packed_raw(&pp, &vv, out.at(o), os[2], &Epilogue::NONE);
            } else {
                let mut y = vec![0f32; m * hv];
                gemm::gemm_packed(&pp, &vv, &mut y, hv, &Epilogue::NONE);
                for (i, row) in y.chunks_exact(hv).enumerate() {
                    for (j, &x) in row.iter().enumerate() {
                        *out.at(o + i * os[2] + j * os[3]) = x;
                    }
                }
            }
        })
    }
}

crate::isa_dispatch! {
    /// Attention of a few query rows over one key head read where it lies (a decode step of
    /// grouped-query attention over its cache, where packing for the GEMM would cost more than
    /// the products): row `i` of `q` (`rows × h`) attends the keys `ranges[i]` of `k` and `v`
    /// (rows of `h` at stride `h`) and writes its result to row `i` of `out`. `scores` is
    /// scratch.
    pub fn few_rows<const FMA: bool>(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        h: usize,
        scale: f32,
        ranges: &[std::ops::Range<usize>],
        scores: &mut Vec<f32>,
        out: &mut [f32],
    ) {
        for (i, keys) in ranges.iter().enumerate() {
            let qr = &q[i * h..(i + 1) * h];
            let o = &mut out[i * h..(i + 1) * h];
            o.fill(0.0);
            if keys.is_empty() {
                continue;
            }
            // Plain loops: a closure here would be compiled without the variant's features
            // (FMA as a library call).
            scores.clear();
            scores.resize(keys.len(), 0.0);
            for (x, j) in scores.iter_mut().zip(keys.clone()) {
                *x = dot::<FMA>(qr, &k[j * h..(j + 1) * h]) * scale;
            }
            crate::vecmath::softmax_block(scores, 1);
            for (&p, j) in scores.iter().zip(keys.clone()) {
                axpy::<FMA>(p, &v[j * h..(j + 1) * h], o);
            }
        }
    }
}

/// `Σ a·b` over 16 lanes (one AVX-512 register, two AVX2 ones).
#[inline(always)]
fn dot<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ac, bc) = (a.chunks_exact(16), b.chunks_exact(16));
    let (at, bt) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for l in 0..16 {
            acc[l] = if FMA {
                x[l].mul_add(y[l], acc[l])
            } else {
                acc[l] + x[l] * y[l]
            };
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for (x, y) in at.iter().zip(bt) {
        sum += x * y;
    }
    sum
}

/// `o += p·x`.
#[inline(always)]
fn axpy<const FMA: bool>(p: f32, x: &[f32], o: &mut [f32]) {
    for (a, &b) in o.iter_mut().zip(x) {
        *a = if FMA { p.mul_add(b, *a) } else { *a + p * b };
    }
}

thread_local! {
    static SCORES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn for_each_row(dims: [usize; 4], mut f: impl FnMut(usize, usize, usize)) {
    for b in 0..dims[0] {
        for n in 0..dims[1] {
            for r in 0..dims[2] {
                f(b, n, r)
            }
        }
    }
}

/// `strides` must lay `dims` out densely in some axis order inside `len` floats: then no two
/// indices share an element and parallel tasks cannot collide.
fn check_layout(dims: [usize; 4], strides: [usize; 4], len: usize) -> Result<(), String> {
    if dims.contains(&0) {
        return Ok(());
    }
    let mut axes: Vec<usize> = (0..4).filter(|&i| dims[i] > 1).collect();
    axes.sort_by_key(|&i| strides[i]);
    let mut next = 1;
    for &i in &axes {
        if strides[i] < next {
            return Err(format!(
                "output strides {strides:?} overlap for dims {dims:?}"
            ));
        }
        next = strides[i] * dims[i];
    }
    let last: usize = (0..4).map(|i| (dims[i] - 1) * strides[i]).sum();
    if last >= len {
        return Err(format!(
            "output {dims:?} at strides {strides:?} does not fit in {len} floats"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::tests::data;

    fn isas() -> Vec<Isa> {
        [Isa::Portable, Isa::Avx2, Isa::Avx512]
            .into_iter()
            .filter(|&i| i <= Isa::hardware())
            .collect()
    }

    /// f64 reference over the same views.
    fn reference(a: &Sdpa, dims: [usize; 4]) -> Vec<f64> {
        let [b, n, s, hv] = dims;
        let (t, h) = (a.k.dims[2], a.q.dims[3]);
        let get = |x: &Strided4, i: [usize; 4]| -> f64 {
            let w = x.walk();
            x.data[(0..4)
                .map(|d| i[d].min(x.dims[d] - 1) * w[d])
                .sum::<usize>()] as f64
        };
        let nkv = a.k.dims[1];
        let mut y = vec![0f64; b * n * s * hv];
        for bi in 0..b {
            for ni in 0..n {
                let kv = if nkv == n { ni } else { ni / (n / nkv) };
                for i in 0..s {
                    let mut sc: Vec<f64> = (0..t)
                        .map(|j| {
                            let dot: f64 = (0..h)
                                .map(|d| get(&a.q, [bi, ni, i, d]) * get(&a.k, [bi, kv, j, d]))
                                .sum();
                            let bias = a.bias.as_ref().map_or(0.0, |x| get(x, [bi, ni, i, j]));
                            if a.causal.is_some_and(|c| !c.keys(i, t).contains(&j)) {
                                return f64::NEG_INFINITY;
                            }
                            dot * a.scale as f64 + bias
                        })
                        .collect();
                    let mx = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    sc.iter_mut().for_each(|x| *x = (*x - mx).exp());
                    let sum: f64 = sc.iter().sum();
                    for d in 0..hv {
                        let acc: f64 = (0..t)
                            .map(|j| sc[j] / sum * get(&a.v, [bi, kv, j, d]))
                            .sum();
                        y[((bi * n + ni) * s + i) * hv + d] = acc;
                    }
                }
            }
        }
        y
    }

    #[test]
    fn matches_reference_on_strided_broadcast_and_grouped_heads() {
        // (B, N, Nkv, S, T, H, Hv, bias dims)
        type Case = (
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
            usize,
            Option<[usize; 4]>,
        );
        let cases: &[Case] = &[
            (1, 12, 12, 128, 128, 32, 32, Some([1, 1, 1, 128])),
            (2, 3, 3, 17, 9, 5, 7, Some([2, 1, 17, 9])),
            (1, 4, 2, 33, 40, 16, 16, None),
            (2, 2, 1, 5, 70, 64, 3, Some([1, 2, 5, 1])),
            (1, 1, 1, 1, 1, 1, 1, None),
        ];
        let masks = |s: usize, t: usize| {
            [
                None,
                Some(Causal {
                    offset: t.saturating_sub(s),
                    window: None,
                }),
                Some(Causal {
                    offset: 2,
                    window: Some(3),
                }),
            ]
        };
        for isa in isas() {
            for (&(b, n, nkv, s, t, h, hv, bd), causal) in
                cases.iter().flat_map(|c| masks(c.3, c.4).map(|m| (c, m)))
            {
                // Q as the heads of a [B, S, N·H] projection; K as [B, Nkv, H, T] (a key
                // transposed for the product); V dense; Y into [B, S, N·Hv].
                let qd = data(b * s * n * h, 1);
                let q = Strided4::new(&qd, [b, n, s, h], [s * n * h, h, n * h, 1]).unwrap();
                let kd = data(b * nkv * h * t, 2);
                let k = Strided4::new(&kd, [b, nkv, t, h], [nkv * h * t, h * t, 1, t]).unwrap();
                let vd = data(b * nkv * t * hv, 3);
                let v = Strided4::dense(&vd, [b, nkv, t, hv]).unwrap();
                let bdata: Vec<f32> = bd
                    .map(|d| {
                        data(d.iter().product(), 4)
                            .iter()
                            .map(|x| x * 3.0)
                            .collect()
                    })
                    .unwrap_or_default();
                let bias = bd.map(|d| Strided4::dense(&bdata, d).unwrap());
                let a = Sdpa {
                    isa,
                    q,
                    k,
                    v,
                    bias,
                    scale: 1.0 / (h as f32).sqrt(),
                    causal,
                };
                let dims = a.out_dims().unwrap();
                assert_eq!(dims, [b, n, s, hv]);
                let mut y = vec![f32::NAN; b * s * n * hv];
                a.run(&mut y, [s * n * hv, hv, n * hv, 1]).unwrap();
                let want = reference(&a, dims);
                for bi in 0..b {
                    for ni in 0..n {
                        for i in 0..s {
                            for d in 0..hv {
                                let got = y[bi * s * n * hv + i * n * hv + ni * hv + d] as f64;
                                let w = want[((bi * n + ni) * s + i) * hv + d];
                                assert!(
                                    (got - w).abs() <= 1e-5 + 1e-4 * w.abs(),
                                    "{isa:?} case {:?} {causal:?}: [{bi},{ni},{i},{d}] {got} vs {w}",
                                    (b, n, nkv, s, t, h, hv)
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn few_rows_match_the_blocked_kernel() {
        // A decode step: 4 query heads over one key head of 37 keys, and a 3-row chunk with a
        // window, against Sdpa with the same causal limits.
        for (rows, t, h, causal) in [
            (
                4,
                37,
                64,
                Causal {
                    offset: 36,
                    window: None,
                },
            ),
            (
                3,
                20,
                24,
                Causal {
                    offset: 17,
                    window: Some(5),
                },
            ),
        ] {
            let (qd, kd, vd) = (data(rows * h, 1), data(t * h, 2), data(t * h, 3));
            let a = Sdpa {
                isa: Isa::detect(),
                q: Strided4::dense(&qd, [1, 1, rows, h]).unwrap(),
                k: Strided4::dense(&kd, [1, 1, t, h]).unwrap(),
                v: Strided4::dense(&vd, [1, 1, t, h]).unwrap(),
                bias: None,
                scale: 0.125,
                causal: Some(causal),
            };
            let mut want = vec![0f32; rows * h];
            a.run(&mut want, [0, 0, h, 1]).unwrap();
            let ranges: Vec<_> = (0..rows).map(|r| causal.keys(r, t)).collect();
            let mut got = vec![f32::NAN; rows * h];
            few_rows(&qd, &kd, &vd, h, 0.125, &ranges, &mut Vec::new(), &mut got);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-5 + 1e-4 * w.abs(), "{g} vs {w}");
            }
        }
    }

    #[test]
    fn strided_output_and_bad_shapes() {
        let qd = data(2 * 3 * 4, 5);
        let q = Strided4::dense(&qd, [1, 2, 3, 4]).unwrap();
        let k = Strided4::dense(&qd, [1, 2, 3, 4]).unwrap();
        let a = Sdpa {
            isa: Isa::detect(),
            q,
            k,
            v: k,
            bias: None,
            scale: 0.5,
            causal: None,
        };
        // Head size 4 < a quarter panel: the output goes through the scatter path, into a
        // layout with the head axis innermost-but-one.
        let mut y = vec![0f32; 24];
        a.run(&mut y, [24, 1, 8, 2]).unwrap();
        let mut dense = vec![0f32; 24];
        a.run(&mut dense, [24, 12, 4, 1]).unwrap();
        for ni in 0..2 {
            for i in 0..3 {
                for d in 0..4 {
                    assert_eq!(y[ni + i * 8 + d * 2], dense[ni * 12 + i * 4 + d]);
                }
            }
        }
        assert!(a.run(&mut y, [0, 0, 0, 0]).unwrap_err().contains("overlap"));
        assert!(a
            .run(&mut y[..10], [24, 12, 4, 1])
            .unwrap_err()
            .contains("fit"));
        let kd = data(2 * 3 * 5, 6);
        let bad = Sdpa {
            k: Strided4::dense(&kd, [1, 2, 3, 5]).unwrap(),
            ..a
        };
        assert!(bad.out_dims().unwrap_err().contains("head size"));
        assert!(Strided4::dense(&qd[..5], [1, 2, 3, 4]).is_err());
    }
}
