//! Byte matrix transposes, the channel-first / channel-last moves of 8-bit images at the edges
//! of the quantized channels-last regions: 16×16 blocks of four unpack rounds (SSE2), and byte
//! shuffles (SSSE3) when one side is a few channels (an RGB input, a detection head's boxes),
//! where blocks would be mostly empty. Edges and other CPUs take the scalar loop.
use rayon::prelude::*;

/// Bytes below which the transpose runs on the calling thread.
const PAR_MIN: usize = 1 << 16;

/// `dst [cols, rows] = src [rows, cols]ᵀ`.
pub fn transpose_bytes(src: &[u8], rows: usize, cols: usize, dst: &mut [u8]) {
    assert!(src.len() == rows * cols && dst.len() == rows * cols);
    if rows == 0 || cols == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if rows <= 8 && cols >= 16 && std::is_x86_feature_detected!("ssse3") {
            // SAFETY: SSSE3 is present.
            return unsafe { x86::interleave(src, rows, cols, dst) };
        }
        if cols <= 8 && rows >= 16 && std::is_x86_feature_detected!("ssse3") {
            // SAFETY: as above.
            return unsafe { x86::deinterleave(src, rows, cols, dst) };
        }
    }
    bands(src, rows, cols, dst, 0);
}

/// Output rows (input columns) from `c_start` on in bands of 16, each band in 16×16 blocks
/// where the CPU has them, the remainder element by element.
fn bands(src: &[u8], rows: usize, cols: usize, dst: &mut [u8], c_start: usize) {
    const T: usize = 16;
    let band = |b: usize, out: &mut [u8]| {
        let c0 = c_start + b * T;
        let cn = out.len() / rows;
        let mut r0 = 0;
        #[cfg(target_arch = "x86_64")]
        if cn == T {
            while r0 + T <= rows {
                // SAFETY: a full 16×16 block inside both matrices; SSE2 is baseline on x86_64.
                unsafe {
                    x86::block16(
                        src.as_ptr().add(r0 * cols + c0),
                        cols,
                        out.as_mut_ptr().add(r0),
                        rows,
                    )
                };
                r0 += T;
            }
        }
        for c in 0..cn {
            for r in r0..rows {
                out[c * rows + r] = src[r * cols + c0 + c];
            }
        }
    };
    let dst = &mut dst[c_start * rows..];
    let per_task = T * rows * (PAR_MIN / (T * rows)).max(1);
    if src.len() < PAR_MIN || rayon::current_num_threads() == 1 {
        dst.chunks_mut(T * rows)
            .enumerate()
            .for_each(|(b, o)| band(b, o));
    } else {
        dst.par_chunks_mut(per_task).enumerate().for_each(|(t, o)| {
            let first = t * (per_task / (T * rows));
            o.chunks_mut(T * rows)
                .enumerate()
                .for_each(|(b, o)| band(first + b, o));
        });
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::PAR_MIN;
    use rayon::prelude::*;
    use std::arch::x86_64::*;

    /// One 16×16 block: rows of `src` (stride `ss`) to columns of `dst` (stride `ds`). Each
    /// round interleaves row i with row i + 8; as an 8-bit (row, column) index that rotates
    /// left by one, so four rounds swap the two halves.
    #[inline(always)]
    pub(super) unsafe fn block16(src: *const u8, ss: usize, dst: *mut u8, ds: usize) {
        let mut a: [__m128i; 16] =
            std::array::from_fn(|i| _mm_loadu_si128(src.add(i * ss) as *const _));
        for _ in 0..4 {
            let b = a;
            for i in 0..8 {
                a[2 * i] = _mm_unpacklo_epi8(b[i], b[i + 8]);
                a[2 * i + 1] = _mm_unpackhi_epi8(b[i], b[i + 8]);
            }
        }
        for (i, v) in a.iter().enumerate() {
            _mm_storeu_si128(dst.add(i * ds) as *mut _, *v);
        }
    }

    /// Shuffle masks: `masks[o * n_in + i]` picks, for output vector `o`, the bytes that come
    /// from input vector `i` (`pick(o, lane)` gives the source (vector, lane)); 0x80 zeroes.
    fn masks(
        n_out: usize,
        n_in: usize,
        pick: impl Fn(usize, usize) -> (usize, usize),
    ) -> Vec<[u8; 16]> {
        let mut m = vec![[0x80u8; 16]; n_out * n_in];
        for o in 0..n_out {
            for l in 0..16 {
                let (i, lane) = pick(o, l);
                m[o * n_in + i][l] = lane as u8;
            }
        }
        m
    }

    #[inline(always)]
    unsafe fn gather(v: &[__m128i], masks: &[[u8; 16]]) -> __m128i {
        let mut o = _mm_setzero_si128();
        for (x, m) in v.iter().zip(masks) {
            o = _mm_or_si128(
                o,
                _mm_shuffle_epi8(*x, _mm_loadu_si128(m.as_ptr() as *const _)),
            );
        }
        o
    }

    /// `rows` ≤ 8 planes to pixels of `rows` bytes: 16 pixels (16·rows output bytes) from one
    /// vector of each plane.
    #[target_feature(enable = "ssse3")]
    pub(super) unsafe fn interleave(src: &[u8], rows: usize, cols: usize, dst: &mut [u8]) {
        let r = rows;
        // Output byte t = 16·o + l is plane t % r, pixel t / r.
        let m = masks(r, r, |o, l| ((16 * o + l) % r, (16 * o + l) / r));
        let full = cols / 16;
        let chunk = |k: usize, out: &mut [u8]| {
            let v: [__m128i; 8] = std::array::from_fn(|c| {
                if c < r {
                    _mm_loadu_si128(src.as_ptr().add(c * cols + 16 * k) as *const _)
                } else {
                    _mm_setzero_si128()
                }
            });
            for o in 0..r {
                let x = gather(&v[..r], &m[o * r..(o + 1) * r]);
                _mm_storeu_si128(out.as_mut_ptr().add(16 * o) as *mut _, x);
            }
        };
        let (head, tail) = dst.split_at_mut(full * 16 * r);
        if src.len() < PAR_MIN || rayon::current_num_threads() == 1 {
            head.chunks_exact_mut(16 * r)
                .enumerate()
                .for_each(|(k, o)| chunk(k, o));
        } else {
            head.par_chunks_exact_mut(16 * r)
                .enumerate()
                .for_each(|(k, o)| chunk(k, o));
        }
        for (p, px) in tail.chunks_exact_mut(r).enumerate() {
            for (c, e) in px.iter_mut().enumerate() {
                *e = src[c * cols + full * 16 + p];
            }
        }
    }

    /// Pixels of `cols` ≤ 8 bytes to planes: 16 pixels (one vector per plane) from `cols`
    /// vectors of input.
    #[target_feature(enable = "ssse3")]
    pub(super) unsafe fn deinterleave(src: &[u8], rows: usize, cols: usize, dst: &mut [u8]) {
        let c = cols;
        // Plane o's lane l is input byte l·c + o.
        let m = masks(c, c, |o, l| ((l * c + o) / 16, (l * c + o) % 16));
        let full = rows / 16;
        let out = super::SendPtr(dst.as_mut_ptr());
        let chunk = |k: usize| {
            let base = src.as_ptr().add(16 * k * c);
            let v: [__m128i; 8] = std::array::from_fn(|q| {
                if q < c {
                    _mm_loadu_si128(base.add(16 * q) as *const _)
                } else {
                    _mm_setzero_si128()
                }
            });
            let out = &out;
            for o in 0..c {
                let x = gather(&v[..c], &m[o * c..(o + 1) * c]);
                // SAFETY: plane o, pixels 16k..16k+16: each chunk writes its own.
                _mm_storeu_si128(out.0.add(o * rows + 16 * k) as *mut _, x);
            }
        };
        if src.len() < PAR_MIN || rayon::current_num_threads() == 1 {
            (0..full).for_each(chunk);
        } else {
            (0..full).into_par_iter().for_each(chunk);
        }
        for p in full * 16..rows {
            for o in 0..c {
                dst[o * rows + p] = src[p * c + o];
            }
        }
    }
}

/// A destination shared by tasks that write disjoint positions.
#[cfg(target_arch = "x86_64")]
struct SendPtr(*mut u8);
// SAFETY: see the users: every task writes its own positions.
#[cfg(target_arch = "x86_64")]
unsafe impl Sync for SendPtr {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_indexing_on_every_path() {
        let shapes = [
            (1, 1),
            (3, 200),
            (3, 16),
            (8, 47),
            (200, 3),
            (33, 8),
            (16, 16),
            (130, 70),
            (513, 300),
            (3, 50_000),
            (40_000, 5),
            (400, 400),
        ];
        for &(r, c) in &shapes {
            let src: Vec<u8> = (0..r * c).map(|i| (i * 31 % 251) as u8).collect();
            let mut dst = vec![0u8; r * c];
            transpose_bytes(&src, r, c, &mut dst);
            for i in 0..r {
                for j in 0..c {
                    assert_eq!(dst[j * r + i], src[i * c + j], "{r}x{c} at ({i}, {j})");
                }
            }
        }
    }
}
