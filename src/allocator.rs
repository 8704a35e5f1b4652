//! What an edge asks of glibc's malloc so that its RSS follows what it
//! holds, not what went through it.
//!
//! An edge allocates each segment's body whole on its way to the disk tier
//! and frees it once the file is written. By default glibc raises its mmap
//! threshold to the size of the first such block freed, after which bodies
//! come from arenas that keep their pages; and the small blocks of origin
//! responses leave free pages in the arenas that only a trim gives back.
//! Elsewhere (another libc) these are no-ops.

/// Blocks from this size up are mapped on their own and unmapped when freed.
pub const MMAP_THRESHOLD: i32 = 256 * 1024;

/// Fixes the mmap threshold at [`MMAP_THRESHOLD`]; call before the runtime's
/// threads start.
#[allow(unsafe_code)] // One allocator setting, see the SAFETY note.
pub fn return_large_blocks() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets an allocator parameter, and any value up
        // to 32 MiB is valid for M_MMAP_THRESHOLD.
        let set = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) };
        if set != 1 {
            tracing::warn!("mallopt(M_MMAP_THRESHOLD) refused");
        }
    }
}

/// Gives the free pages of every arena back to the kernel. It walks the
/// arenas under their locks: call it now and then (the edge's housekeeping,
/// once a second), not per request.
#[allow(unsafe_code)] // One allocator call, see the SAFETY note.
pub fn release_free_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only returns free memory to the kernel; it
        // takes each arena's lock itself and touches no block in use.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}
