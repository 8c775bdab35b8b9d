//! Per-call limits of the plugin sandbox, each with the trade-off it makes.

use std::time::Duration;

/// What one batch call may consume. Exceeding any of them fails the batch with a typed
/// error; the host and other installations are unaffected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallLimits {
    /// Linear memory a plugin may grow to. Default 64 MiB: a 1,000-record × 30-field batch
    /// with its output needs well under 8 MiB, so this leaves ample room for plugin
    /// tables while keeping a thousand concurrent sandboxes within a few GiB. A plugin's
    /// initial memory counts too: one linked with this repository's `.cargo/config.toml`
    /// starts at 4 MiB, so a cap below that fails its instantiation as `memory`.
    pub memory_bytes: usize,
    /// Wall-clock execution budget of one call, enforced by epoch interruption. Default
    /// 500 ms: a 1,000-record batch takes a few ms, so only a looping or pathological
    /// plugin gets near it, and a stuck one holds a worker for at most half a second.
    pub time_budget: Duration,
    /// Largest output a call may return (text buffer plus values). Default 16 MiB, about
    /// 50× what a 1,000-record batch produces; bigger output is a plugin bug or an attack
    /// on the host's memory.
    pub max_output_bytes: usize,
    /// Bytes of stdout/stderr kept per call before further writes fail. Default 64 KiB:
    /// enough for a panic message and some debugging, never a log flood.
    pub max_stdio_bytes: usize,
    /// `log` calls forwarded per call; the rest are counted and dropped with one warning.
    /// Default 100.
    pub max_log_lines: usize,
}

impl Default for CallLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            time_budget: Duration::from_millis(500),
            max_output_bytes: 16 << 20,
            max_stdio_bytes: 64 << 10,
            max_log_lines: 100,
        }
    }
}
