//! How the process's allocator hands memory back to the system.
//!
//! glibc's malloc serves a block above its mmap threshold (128 KiB at first) with a mapping of
//! its own and unmaps it when freed — but the first time such a block is freed it raises the
//! threshold to that block's size, and from then on blocks that large come from its heaps and
//! stay resident after they are freed. The 19 MiB an Argon2 hash needs is such a block: once a
//! hashing worker had freed one, every later buffer stayed in the heap. A fixed threshold keeps
//! every large block a mapping of its own, returned the moment it is freed.
//!
//! The rest of a burst (connection buffers, request bodies: many small blocks) is freed into
//! glibc's per-thread arenas, which keep the pages; [`release_free_memory`] gives back every
//! whole free page, and the server calls it once a burst is over.

#![allow(unsafe_code)]

/// Blocks from this size up are mappings of their own (the default before glibc adjusts it is
/// 128 KiB; nothing the request path allocates is near 1 MiB).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD_BYTES: libc::c_int = 1024 * 1024;

/// Sets the allocator up; call once, first thing in `main`, before other threads start.
pub fn configure_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a parameter of glibc's allocator; it is called before any other
    // thread exists and the value is within the documented range (0 to 32 MiB on 64-bit).
    unsafe {
        if libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) != 1 {
            eprintln!("warning: cannot set the allocator's mmap threshold");
        }
    }
}

/// Returns every whole free page of the allocator's heaps to the system; a few milliseconds
/// for a large heap, so call it when a burst is over, not per request.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers; glibc locks each arena while it trims it.
    unsafe {
        libc::malloc_trim(0);
    }
}
