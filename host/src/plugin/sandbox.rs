//! The state of one plugin call's store: a locked-down WASI context, the memory limiter,
//! and the host imports (`log`, `config-get`, `config-keys`).
//!
//! A sandbox lives for exactly one batch call and is then dropped: a trap can leave a
//! store's instance in any state, so nothing is ever reused after one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::host_imports::{self, LogLevel};
use super::clock::{CallClock, FrozenClock, SandboxClock};
use super::limits::CallLimits;
use super::types;

pub struct Sandbox {
    wasi: WasiCtx,
    table: ResourceTable,
    installation: Arc<str>,
    plugin: Arc<str>,
    config: Arc<BTreeMap<String, String>>,
    memory_cap: usize,
    /// Set when the plugin asked for more memory than its cap, so the resulting trap is
    /// reported as what it is.
    pub memory_exceeded: bool,
    max_log_lines: usize,
    log_lines: usize,
    /// The call's execution budget as the plugin's sleeps see it; see [`super::clock`].
    pub clock: CallClock,
    pub stdout: MemoryOutputPipe,
    pub stderr: MemoryOutputPipe,
}

impl Sandbox {
    pub fn new(
        installation: Arc<str>,
        plugin: Arc<str>,
        config: Arc<BTreeMap<String, String>>,
        limits: &CallLimits,
        now_ms: i64,
    ) -> Self {
        let stdout = MemoryOutputPipe::new(limits.max_stdio_bytes);
        let stderr = MemoryOutputPipe::new(limits.max_stdio_bytes);
        let since_epoch = Duration::from_millis(u64::try_from(now_ms).unwrap_or(0));
        // No preopens, env, args or network; stdin is empty; randomness is a fixed-seed
        // generator so std's hash maps work and runs are reproducible.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(FrozenClock { since_epoch })
            .monotonic_clock(FrozenClock { since_epoch })
            .secure_random(StdRng::seed_from_u64(0x5eed))
            .insecure_random(StdRng::seed_from_u64(0x5eed))
            .insecure_random_seed(0x5eed)
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            installation,
            plugin,
            config,
            memory_cap: limits.memory_bytes,
            memory_exceeded: false,
            max_log_lines: limits.max_log_lines,
            log_lines: 0,
            clock: CallClock::new(limits.time_budget),
            stdout,
            stderr,
        }
    }

    /// Starts a call: the log-line limit is per call, also when one sandbox serves several
    /// calls of a batch. (The execution budget is armed with the epoch deadline.)
    pub fn begin_call(&mut self) {
        self.log_lines = 0;
    }

    /// The `monotonic-clock` interface this sandbox's plugin imports.
    pub fn monotonic_clock(&mut self) -> SandboxClock<'_> {
        SandboxClock {
            table: &mut self.table,
            clock: &mut self.clock,
        }
    }

    /// Forwards what the plugin wrote to stdout/stderr to the log, tagged with the
    /// installation and plugin.
    pub fn flush_stdio(&self) {
        for (stream, pipe) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let bytes = pipe.contents();
            if bytes.is_empty() {
                continue;
            }
            let text = String::from_utf8_lossy(&bytes);
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let line = escape_controls(line);
                tracing::info!(
                    target: "weft::plugin::guest",
                    installation = %self.installation,
                    plugin = %self.plugin,
                    stream,
                    "{line}"
                );
            }
        }
    }

    /// The panic message a Rust guest printed before aborting, if any.
    pub fn panic_message(&self) -> Option<String> {
        let bytes = self.stderr.contents();
        let text = String::from_utf8_lossy(&bytes);
        let start = text.find("panicked at")?;
        let message: String = text[start..].lines().take(2).collect::<Vec<_>>().join(" ");
        // It reaches the DLQ and the host's log lines ("plugin batch failed: …").
        Some(escape_controls(&message).into_owned())
    }
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl ResourceLimiter for Sandbox {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.memory_exceeded = true;
            // An error (not `Ok(false)`) traps at once instead of handing the guest a
            // failed `memory.grow` it might loop on.
            return Err(wasmtime::Error::msg("plugin memory cap reached"));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Rust guests use one small function table; a million entries is an attack.
        Ok(desired <= 100_000)
    }
}

impl types::Host for Sandbox {}

/// Longest single log line forwarded; plugin logs are for humans, not for payloads.
const MAX_LOG_LINE: usize = 4096;

/// `text` with every control character (and the Unicode line and paragraph separators)
/// written as an escape, so nothing a plugin writes can end the host's log line and start
/// a forged one (`\n`), rewrite it on a terminal (`\r`, ANSI escapes) or cut it short for
/// a C reader (NUL). Borrowed unchanged in the usual case of nothing to escape.
fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() || c == '\u{2028}' || c == '\u{2029}';
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            c if unsafe_char(c) => out.extend(c.escape_unicode()),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

impl host_imports::Host for Sandbox {
    fn log(&mut self, level: LogLevel, message: String) {
        self.log_lines += 1;
        if self.log_lines > self.max_log_lines {
            if self.log_lines == self.max_log_lines + 1 {
                tracing::warn!(
                    installation = %self.installation,
                    plugin = %self.plugin,
                    "plugin log limit of {} lines per batch reached; dropping the rest",
                    self.max_log_lines
                );
            }
            return;
        }
        let mut message = message;
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let message = escape_controls(&message);
        let (installation, plugin) = (&*self.installation, &*self.plugin);
        match level {
            LogLevel::Trace => {
                tracing::trace!(target: "weft::plugin::guest", installation, plugin, "{message}")
            }
            LogLevel::Debug => {
                tracing::debug!(target: "weft::plugin::guest", installation, plugin, "{message}")
            }
            LogLevel::Info => {
                tracing::info!(target: "weft::plugin::guest", installation, plugin, "{message}")
            }
            LogLevel::Warn => {
                tracing::warn!(target: "weft::plugin::guest", installation, plugin, "{message}")
            }
            LogLevel::Error => {
                tracing::error!(target: "weft::plugin::guest", installation, plugin, "{message}")
            }
        }
    }

    fn config_get(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }

    fn config_keys(&mut self) -> Vec<String> {
        self.config.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::escape_controls;

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_borrowed() {
        let forged =
            "ok\n2026-01-01T00:00:00Z ERROR weft::api::admin: FORGED\r\0\x1b[2K\u{2028}end";
        let escaped = escape_controls(forged);
        assert_eq!(
            escaped,
            "ok\\n2026-01-01T00:00:00Z ERROR weft::api::admin: FORGED\\r\\0\\u{1b}[2K\\u{2028}end"
        );
        assert!(!escaped.chars().any(char::is_control));
        let plain = "Zoë's plain line with a \\n already escaped";
        assert!(matches!(
            escape_controls(plain),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
