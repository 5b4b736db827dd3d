//! Weight storage backed by 2 MiB pages where the system grants them. Weights are streamed
//! from memory on every run (a decoder's decode step reads all of them once per token), and
//! through 4 KiB pages every 64 cache lines cost a TLB miss, under a hypervisor a two-level
//! page walk. On the 2-core Zen 4 guest here, two threads streaming 400 MB went from 41 to
//! 66 GB/s once the buffer was advised (`MADV_HUGEPAGE`: the system's policy is `madvise`,
//! so nothing gets huge pages unasked).
//!
//! [`Buffer`] maps its own memory instead of asking the allocator: weights are packed at
//! session creation, after the loader has freed large buffers that malloc hands out again,
//! already touched, and advice on touched pages comes too late.

use std::ops::{Deref, DerefMut};

/// Smallest buffer worth mapping: below one huge page nothing can be backed by one.
const HUGE: usize = 2 << 20;
const PAGE: usize = 4096;

/// A fixed-length, zero-initialized array of plain values (`T` must be valid as all zero
/// bits), mapped on huge-page boundaries when it is at least one huge page long.
pub struct Buffer<T: Copy> {
    repr: Repr<T>,
}

enum Repr<T> {
    Vec(Vec<T>),
    /// `len` values at `ptr`, inside a mapping of `map` bytes that starts there.
    #[cfg(target_os = "linux")]
    Map {
        ptr: std::ptr::NonNull<T>,
        len: usize,
        map: usize,
    },
}

// SAFETY: the mapping is owned by the buffer alone, like a Vec's allocation.
unsafe impl<T: Copy + Send> Send for Buffer<T> {}
// SAFETY: shared access only reads.
unsafe impl<T: Copy + Sync> Sync for Buffer<T> {}

impl<T: Copy + Default> Buffer<T> {
    /// `len` zeros.
    pub fn zeroed(len: usize) -> Buffer<T> {
        #[cfg(target_os = "linux")]
        if let Some(b) = Self::mapped(len) {
            return b;
        }
        Buffer {
            repr: Repr::Vec(vec![T::default(); len]),
        }
    }

    #[cfg(target_os = "linux")]
    fn mapped(len: usize) -> Option<Buffer<T>> {
        let bytes = len.checked_mul(std::mem::size_of::<T>())?;
        if bytes < HUGE || std::mem::align_of::<T>() > PAGE {
            return None;
        }
        // A tail short of a whole huge page stays in small pages unless rounding it up
        // wastes at most an eighth (a 16.8 MB matrix: all of it on huge pages for 1.2 MB).
        let whole = bytes.checked_next_multiple_of(HUGE)?;
        let map = if whole - bytes <= bytes / 8 {
            whole
        } else {
            bytes.checked_next_multiple_of(PAGE)?
        };
        let over = map.checked_add(HUGE)?;
        // SAFETY: a fresh private anonymous mapping; the parts outside the aligned window
        // are unmapped right away and the window is owned by the buffer until it drops.
        unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                over,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if base == libc::MAP_FAILED {
                return None;
            }
            let start = (base as usize).next_multiple_of(HUGE);
            let head = start - base as usize;
            if head > 0 {
                libc::munmap(base, head);
            }
            let tail = over - head - map;
            if tail > 0 {
                libc::munmap((start + map) as *mut libc::c_void, tail);
            }
            // A hint: declined (THP off, an old kernel), the pages are ordinary ones.
            libc::madvise(start as *mut libc::c_void, map, libc::MADV_HUGEPAGE);
            Some(Buffer {
                repr: Repr::Map {
                    ptr: std::ptr::NonNull::new(start as *mut T)?,
                    len,
                    map,
                },
            })
        }
    }
}

impl<T: Copy> Buffer<T> {
    /// The values as a Vec (a copy when mapped).
    pub fn into_vec(mut self) -> Vec<T> {
        if let Repr::Vec(v) = &mut self.repr {
            return std::mem::take(v);
        }
        self.to_vec()
    }
}

impl<T: Copy> From<Vec<T>> for Buffer<T> {
    fn from(v: Vec<T>) -> Buffer<T> {
        Buffer { repr: Repr::Vec(v) }
    }
}

impl<T: Copy> Deref for Buffer<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        match &self.repr {
            Repr::Vec(v) => v,
            // SAFETY: the mapping holds `len` initialized values (zeros or written since).
            #[cfg(target_os = "linux")]
            Repr::Map { ptr, len, .. } => unsafe { std::slice::from_raw_parts(ptr.as_ptr(), *len) },
        }
    }
}

impl<T: Copy> DerefMut for Buffer<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        match &mut self.repr {
            Repr::Vec(v) => v,
            // SAFETY: as for `deref`, and `&mut self` makes the access exclusive.
            #[cfg(target_os = "linux")]
            Repr::Map { ptr, len, .. } => unsafe {
                std::slice::from_raw_parts_mut(ptr.as_ptr(), *len)
            },
        }
    }
}

impl<T: Copy + Default> Clone for Buffer<T> {
    fn clone(&self) -> Buffer<T> {
        let mut b = Buffer::zeroed(self.len());
        b.copy_from_slice(self);
        b
    }
}

impl<T: Copy> std::fmt::Debug for Buffer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buffer({} values)", self.len())
    }
}

impl<T: Copy> Drop for Buffer<T> {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        if let Repr::Map { ptr, map, .. } = &self.repr {
            // SAFETY: the window was mapped by `mapped` and nothing borrows it any more.
            unsafe {
                libc::munmap(ptr.as_ptr().cast(), *map);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buffers_are_mapped_zeroed_and_aligned() {
        let mut b = Buffer::<f32>::zeroed(3 << 20);
        assert_eq!(b.len(), 3 << 20);
        assert!(b.iter().all(|&v| v == 0.0));
        #[cfg(target_os = "linux")]
        assert_eq!(b.as_ptr() as usize % HUGE, 0, "not on a huge-page boundary");
        b[12345] = 2.5;
        let c = b.clone();
        assert_eq!(c[12345], 2.5);
        let v = c.into_vec();
        assert_eq!((v.len(), v[12345]), (3 << 20, 2.5));
    }

    #[test]
    fn small_buffers_and_vecs_round_trip() {
        let b = Buffer::<u8>::zeroed(100);
        assert_eq!(&*b, &[0u8; 100][..]);
        let v = vec![1u8, 2, 3];
        let p = v.as_ptr();
        let back = Buffer::from(v).into_vec();
        assert_eq!(
            back.as_ptr(),
            p,
            "a Vec-backed buffer gives its Vec back without a copy"
        );
    }
}
