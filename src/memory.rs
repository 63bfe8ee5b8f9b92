//! How the sidecar asks glibc's allocator to keep its resident memory near what it uses. A
//! pod's memory limit is paid for resident pages, and glibc keeps freed memory for reuse:
//! after a burst of short-lived allocations (a start-up batch of evaluations, a scrape of a
//! thousand sets) it would stay resident for good. Nothing here changes what the program
//! computes; on other C libraries each call does nothing.

/// Before any other thread exists (`certgate run`):
///
/// - **One arena.** glibc gives each thread that allocates its own arena, and memory freed in
///   one is not returned to the others: a sidecar with a couple of worker and blocking threads
///   then holds several times the memory it uses. With one, evaluations on blocking threads no
///   longer left their survivors spread over a second arena, mostly free but never returned
///   (at 1,000 sets RSS at ready was about 3 MiB lower, BENCHMARKS.md "Metrics at fleet
///   scale"); the threads here allocate little and seldom at once.
/// - **Large blocks mapped on their own**, at a fixed threshold of [`MMAP_THRESHOLD`]: glibc
///   otherwise raises the threshold each time such a block is freed, after which the next
///   ones (a scrape's compressor tables, a `/metrics` chunk) come from the heap and leave it
///   grown and holed. Mapped, they are returned whole when freed.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

/// Blocks of this many bytes and more are mapped on their own (glibc's starting value, kept
/// fixed).
pub const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Hands the allocator's free pages back to the kernel: after a large batch of evaluations
/// (start-up, a resync that found many changes: handshake buffers, decoded chains) and after
/// each `/metrics` (a few hundred KB of buffers at 1,000 sets). Free memory in whole pages
/// inside the heap, not only at its top, is given back (glibc does that on `malloc_trim`).
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's own heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}
