//! The broker's global allocator: the system allocator, except that very
//! large requests (1 GiB and up) are mapped with MAP_NORESERVE.
//!
//! Why: the generated request decoders reserve `Vec` capacity from array
//! lengths read off the wire before the elements are read. A malformed frame
//! can claim billions of elements; with the system allocator the kernel
//! refuses the reservation and Rust aborts the whole process. Mapped with
//! MAP_NORESERVE, the reservation is only address space: the decoder then
//! runs out of frame bytes, fails with a decode error, and the mapping is
//! returned untouched. The broker itself never allocates this much.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

const HUGE: usize = 1 << 30;
const PAGE: usize = 4096;

pub struct BrokerAllocator;

fn is_huge(size: usize, align: usize) -> bool {
    size >= HUGE && align <= PAGE
}

// SAFETY: every method forwards to `System` for ordinary sizes; huge blocks
// are whole anonymous mappings (page aligned, which satisfies any alignment
// up to PAGE, and zero-filled) released with munmap of the same length.
unsafe impl GlobalAlloc for BrokerAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(layout.size(), layout.align()) {
            // SAFETY: anonymous private mapping; no fd, no fixed address.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    layout.size(),
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return std::ptr::null_mut();
            }
            return p.cast();
        }
        // SAFETY: forwarded with the caller's contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(layout.size(), layout.align()) {
            // SAFETY: fresh anonymous mappings are zero-filled.
            return unsafe { self.alloc(layout) };
        }
        // SAFETY: forwarded with the caller's contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(layout.size(), layout.align()) {
            // SAFETY: `ptr` came from our mmap of exactly this size.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
            return;
        }
        // SAFETY: forwarded with the caller's contract.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old_huge = is_huge(layout.size(), layout.align());
        let new_huge = is_huge(new_size, layout.align());
        if !old_huge && !new_huge {
            // SAFETY: forwarded with the caller's contract.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: the caller guarantees `new_size` forms a valid layout with
        // the old alignment; we copy the overlap and free the old block.
        unsafe {
            let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_reservation_is_address_space_only() {
        let a = BrokerAllocator;
        let layout = Layout::from_size_align(64 << 30, 8).unwrap();
        // SAFETY: matched alloc/dealloc of the same layout.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            *p = 7;
            assert_eq!(*p, 7);
            a.dealloc(p, layout);
        }
    }
}
