//! The `sluice` binary's global allocator: mimalloc, through its plain entry points whenever
//! the alignment asked for is one every block already has.
//!
//! The `mimalloc` crate's allocator passes every request to `mi_malloc_aligned`, whatever its
//! alignment. mimalloc 3's aligned entry point only takes its fast path for blocks of at
//! most 1 KiB whose free block happens to be aligned; anything larger goes to its generic
//! path, which over-allocates (size plus alignment) unless the block size is a power of two.
//! A request's 4 KiB exchange future went that way with an alignment of 8: 2.4 of the 6.1
//! allocations per keep-alive request, and 717 instructions per request spent allocating,
//! against 409 with this crate (docs/benchmarks.md, "The allocator's plain entry points").
//! [`Mimalloc`] asks for an
//! aligned block only when the alignment is larger than what every block of that size has
//! anyway, as the standard library's `System` allocator does with `malloc`.

#![no_std]

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment every mimalloc block of at least this many bytes has: block sizes are whole
/// multiples of two machine words (16 bytes on 64-bit targets; mimalloc's `MI_ALIGN2W`,
/// asserted in its `alloc.c` for every block of 16 bytes or more), and a block of one word
/// is word-aligned. The same bound as `malloc`'s guarantee (`max_align_t`), which the
/// standard library's `System` allocator relies on in the same way.
const MIN_ALIGN: usize = if core::mem::size_of::<usize>() >= 8 {
    16
} else {
    8
};

/// Whether `mi_malloc`'s block is aligned for `layout` without asking: the alignment is at
/// most [`MIN_ALIGN`] and at most the size (a block of `size` bytes has at least the
/// alignment of the largest power of two dividing its size class, and every size class
/// below `MIN_ALIGN` is word-sized).
#[inline]
fn plain(align: usize, size: usize) -> bool {
    align <= MIN_ALIGN && align <= size.max(core::mem::size_of::<usize>())
}

/// mimalloc as a [`GlobalAlloc`]; see the crate's documentation.
pub struct Mimalloc;

// SAFETY: every method returns what mimalloc returned for the same size, or null when it
// failed. A block comes from `mi_malloc`/`mi_zalloc`/`mi_realloc` only when `plain` holds,
// and then it is aligned for the layout (see `MIN_ALIGN`); otherwise from the `_aligned`
// entry point with the layout's alignment. Blocks of both kinds are freed by `mi_free`, and
// resized by the entry point of the same kind (`realloc` keeps the layout's alignment, so
// `plain` answers as it did when the block was made).
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: mimalloc's allocation functions accept any size and alignment that is a
        // power of two (a `Layout`'s is).
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` was returned by this allocator (the caller's contract), so by
        // mimalloc, whose `mi_free` takes blocks of either kind.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` is this allocator's block for `layout` (the caller's contract); the
        // new block must have the layout's alignment at `new_size`, which `plain` decides
        // as `alloc` would.
        unsafe {
            if plain(layout.align(), new_size) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

// The tests call the allocator directly, which takes `unsafe`.
#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    extern crate std;

    use super::*;
    use std::vec::Vec;

    /// Sizes around mimalloc's boundaries: tiny blocks, the 1 KiB small-block limit, powers
    /// of two and their neighbours, the 4 KiB natural-alignment limit, medium and large.
    fn sizes() -> Vec<usize> {
        let mut v: Vec<usize> = (1..=80).collect();
        for p in 5..=17 {
            let n = 1usize << p;
            v.extend([n - 8, n - 1, n, n + 1, n + 8, n + n / 2]);
        }
        v.extend([4400, 4432, 5000, 9000, 12_345]);
        v
    }

    #[test]
    fn every_block_has_its_layouts_alignment_and_keeps_its_bytes_when_resized() {
        let a = Mimalloc;
        for align in [1, 2, 4, 8, 16, 32, 64, 128, 4096] {
            for size in sizes() {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: a non-zero size; the block is only written and read within its
                // current size, resized with its current layout, and freed once.
                unsafe {
                    let mut p = a.alloc(layout);
                    assert!(!p.is_null(), "{size} {align}");
                    assert_eq!(p as usize % align, 0, "alloc {size} {align}");
                    for i in 0..size {
                        *p.add(i) = i as u8;
                    }
                    let mut cur = size;
                    for new in [size / 2 + 1, size + 1, size * 3, size] {
                        let q = a.realloc(p, Layout::from_size_align(cur, align).unwrap(), new);
                        assert!(!q.is_null());
                        assert_eq!(q as usize % align, 0, "realloc {cur} -> {new} {align}");
                        let kept = (size / 2 + 1).min(cur).min(new);
                        for i in 0..kept {
                            assert_eq!(*q.add(i), i as u8, "realloc {cur} -> {new} {align}");
                        }
                        for i in 0..new {
                            *q.add(i) = i as u8;
                        }
                        p = q;
                        cur = new;
                    }
                    a.dealloc(p, Layout::from_size_align(cur, align).unwrap());
                }
            }
        }
    }

    #[test]
    fn zeroed_blocks_are_zero_and_aligned() {
        let a = Mimalloc;
        for align in [1, 8, 16, 64] {
            for size in sizes() {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: as above.
                unsafe {
                    let p = a.alloc_zeroed(layout);
                    assert_eq!(p as usize % align, 0, "{size} {align}");
                    assert!((0..size).all(|i| *p.add(i) == 0), "{size} {align}");
                    a.dealloc(p, layout);
                }
            }
        }
    }
}
