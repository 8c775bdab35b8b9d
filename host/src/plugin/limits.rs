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
    /// Wall-clock execution budget of one call, enforced by epoch interruption for time in
    /// wasm; the plugin's sleeps never block and are charged to it (see `clock`), so no
    /// call holds a worker past it whatever the plugin does. Default 500 ms: a 1,000-record
    /// batch takes a few ms, so only a looping or pathological plugin gets near it, and a
    /// stuck one holds a worker for at most half a second.
    pub time_budget: Duration,
    /// Largest output a call may return, counted as the host holds it once decoded: the
    /// wire form (text buffer, tags, values, names) plus every text value's own copy,
    /// since values may share or overlap one span of the buffer and each is copied out
    /// on its own. Default 16 MiB, about 30× what a 1,000-record × 30-field batch
    /// produces; bigger output is a plugin bug or an attack on the host's memory.
    pub max_output_bytes: usize,
    /// Most output records (rows, over all of a call's batches) a call may return.
    /// Default 100,000: 10× the largest outbound batch (10,000 events) and 50× a full
    /// inbound page. A row is 13 bytes on the wire but a few hundred once the host holds
    /// it as a record (a field map, its object and source), which no byte cap sees; this
    /// bounds that to some tens of MiB per call.
    pub max_output_rows: usize,
    /// Most output values a call may return: rows × fields of each batch, plus dedup keys.
    /// Default 2,097,152: twice [`super::MAX_BATCH_CELLS`], the widest batch the host
    /// builds, so a mapping may widen its input but not amplify it. Each value costs the
    /// host about 100 bytes decoded (a map entry with its field name), so this bounds a
    /// call's decoded output to about 200 MiB at worst; the byte cap usually binds first.
    pub max_output_values: usize,
    /// Output records one input record may become, per call. Default 100: an order with
    /// its line items, or a company mapped to an account and its contacts, stays far
    /// below it, while a mapping loop or a hostile plugin is stopped at the record that
    /// fans out rather than at the host's memory. Set per installation with
    /// `plugin.max_fanout`; exceeding it fails the batch as `PLUGIN_FANOUT_EXCEEDED`.
    pub max_fanout: usize,
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
            max_output_rows: 100_000,
            max_output_values: 2 * super::MAX_BATCH_CELLS,
            max_fanout: 100,
            max_stdio_bytes: 64 << 10,
            max_log_lines: 100,
        }
    }
}
