//! The C allocator's settings for a long-running host.
//!
//! glibc gives each thread that allocates its own arena (up to eight per core) and raises
//! its threshold for handing big blocks straight to the kernel every time one is freed.
//! The host's big buffers (a page's CSV text, its plugin batch, its sink lines: megabytes
//! each) are made and freed on whichever blocking-pool thread runs the work, so freed
//! blocks pile up in many arenas, cut up for the next, differently sized page. Measured
//! with `cargo bench -p weft --bench inbound_rss`: a 2,000,000-row backfill peaked at
//! 207 MiB with glibc's defaults and at 136 MiB with these (both with the store's cache
//! bounded).

/// Blocks from this size up are mapped on their own and unmapped when freed.
const MMAP_THRESHOLD_BYTES: i32 = 1 << 20;

/// Caps the arenas at one per core and fixes the mapping threshold. Call first thing in
/// `main`, before any thread starts. A no-op where the C library is not glibc.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let arenas = i32::try_from(cores).unwrap_or(i32::MAX);
        // SAFETY: `mallopt` only changes allocator parameters; called before other threads
        // exist, nothing allocates concurrently with it.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
        }
    }
}
