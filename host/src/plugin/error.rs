//! Typed plugin errors: what went wrong loading a component, and what went wrong in a call.

use std::path::PathBuf;
use std::time::Duration;

/// A component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read plugin {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    #[error(
        "the plugin imports `{import}`, which the sandbox does not provide (plugins get no \
         network, filesystem, environment, clock or randomness)"
    )]
    ForbiddenImport { import: String },
    #[error(
        "the plugin targets weft:plugin@{found}; this host accepts {supported}. Rebuild it \
         against a supported weft-guest release"
    )]
    UnsupportedWitVersion { found: String, supported: String },
    #[error("the plugin does not export `{0}`; build it with weft_guest::export_plugin!")]
    MissingExport(String),
    #[error("compile cache at {path}: {source}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot prepare the plugin for instantiation: {0}")]
    Link(String),
}

/// A batch call failed as a whole. Per-record failures are not errors: they come back in
/// the call's result.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("plugin exceeded its {budget:?} execution budget")]
    Timeout { budget: Duration },
    #[error("plugin exceeded its memory cap of {cap} bytes")]
    MemoryExceeded { cap: usize },
    #[error("plugin overflowed its stack")]
    StackOverflow,
    #[error("plugin panicked: {message}")]
    Panic { message: String },
    #[error("plugin trapped: {message}")]
    Trap { message: String },
    #[error("plugin returned malformed output: {reason}")]
    MalformedOutput { reason: String },
    #[error("plugin output of {count} {measure} exceeds the cap of {cap} {measure}")]
    OutputTooLarge {
        measure: OutputMeasure,
        count: usize,
        cap: usize,
    },
    #[error(
        "input record {record} became {rows} output records; this installation allows \
         {cap} (plugin.max_fanout)"
    )]
    FanoutExceeded {
        record: u32,
        rows: usize,
        cap: usize,
    },
    #[error(
        "plugin {hash} is quarantined after {strikes} consecutive failed batches (last: \
         {last}); install a fixed version to resume"
    )]
    Quarantined {
        hash: String,
        strikes: u32,
        last: String,
    },
    #[error("no plugin is installed for installation {0}")]
    NotInstalled(String),
    #[error("cannot instantiate plugin: {0}")]
    Instantiate(String),
}

/// What an output cap counts; see [`super::CallLimits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMeasure {
    /// Bytes as the host holds the output decoded.
    Bytes,
    /// Output records.
    Rows,
    /// Values (rows × fields) and dedup keys.
    Values,
}

impl std::fmt::Display for OutputMeasure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OutputMeasure::Bytes => "bytes",
            OutputMeasure::Rows => "rows",
            OutputMeasure::Values => "values",
        })
    }
}

impl PluginError {
    /// Whether the plugin itself misbehaved (and the failure counts towards quarantine),
    /// as opposed to the host refusing to run it.
    pub fn is_plugin_fault(&self) -> bool {
        !matches!(
            self,
            PluginError::Quarantined { .. } | PluginError::NotInstalled(_)
        )
    }

    /// A short, stable name of the failure kind, for metrics and DLQ filters.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::Timeout { .. } => "timeout",
            PluginError::MemoryExceeded { .. } => "memory",
            PluginError::StackOverflow => "stack-overflow",
            PluginError::Panic { .. } => "panic",
            PluginError::Trap { .. } => "trap",
            PluginError::MalformedOutput { .. } => "malformed-output",
            PluginError::OutputTooLarge { .. } => "output-too-large",
            PluginError::FanoutExceeded { .. } => "fanout-exceeded",
            PluginError::Quarantined { .. } => "quarantined",
            PluginError::NotInstalled(_) => "not-installed",
            PluginError::Instantiate(_) => "instantiate",
        }
    }

    /// The DLQ code of a batch that failed this way, the same in every direction and
    /// stage: `PLUGIN_` and the kind in upper snake case (`PLUGIN_OUTPUT_TOO_LARGE`).
    pub fn dlq_code(&self) -> String {
        format!(
            "PLUGIN_{}",
            self.kind().replace('-', "_").to_ascii_uppercase()
        )
    }
}
