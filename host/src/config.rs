//! Installation configuration: one declarative TOML file per installation, meant to live in
//! version control.
//!
//! Owns the file's shape and its validation, in two stages: [`InstallationConfig::load`]
//! parses the TOML (unknown keys and wrong types are refused with the key and line) and then
//! checks what a file alone can tell — names, ranges, that secrets come from the environment
//! or a file rather than the config, that the plugin component exists, every section
//! including `[outbound]`. ([`crate::runtime::Installation::load`] also compiles the
//! component, which is what `weft serve` and `weft config check` both run.) What only the org can
//! tell (does this object or field exist?) is checked against describe when a sync starts.
//! Every refusal names the file, the key and the reason. It never opens a connection.

mod inbound;
mod salesforce;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::artifacts::ArtifactRef;
use crate::outbound::OutboundConfig;
use crate::plugin::CallLimits;
use crate::secrets::Keyring;
use crate::throttle::{GovernorConfig, GovernorSettings};
use crate::token::TokenHash;

pub use inbound::{Api, InboundConfig, ObjectConfig, SinkConfig, SoqlSource};
pub use salesforce::SalesforceConfig;

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
#[error("{}: {key}: {reason}", file.display())]
pub struct ConfigError {
    pub file: PathBuf,
    /// Dotted path of the offending key (`inbound.objects.Account.fields`), or `-` when the
    /// file as a whole is the problem.
    pub key: String,
    pub reason: String,
}

/// A problem found while checking one section, before the file name is attached.
#[derive(Debug)]
pub(crate) struct Invalid {
    pub key: String,
    pub reason: String,
}

impl Invalid {
    pub(crate) fn new(key: impl Into<String>, reason: impl fmt::Display) -> Self {
        Invalid {
            key: key.into(),
            reason: reason.to_string(),
        }
    }
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstallation {
    id: String,
    salesforce: salesforce::RawSalesforce,
    #[serde(default)]
    throttle: GovernorConfig,
    plugin: RawPlugin,
    #[serde(default)]
    inbound: inbound::RawInbound,
    #[serde(default)]
    outbound: OutboundConfig,
    #[serde(default)]
    intake: RawIntake,
}

/// How the product's sender authenticates to this installation's intake.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntake {
    /// The SHA-256 (hex) of the installation's bearer token; `weft token new` makes a token
    /// and prints this line. Without it only the operator token reaches the installation.
    token_sha256: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    /// The component file, relative to the configuration file's directory.
    #[serde(default)]
    component: Option<PathBuf>,
    /// Or a component uploaded to the host (`PUT /v1/plugins/{name}/{version}`), as
    /// `name@version`.
    #[serde(default)]
    artifact: Option<String>,
    /// Key/value configuration the plugin reads through `config-get`.
    #[serde(default)]
    config: BTreeMap<String, String>,
    /// Execution budget per batch call, in milliseconds.
    #[serde(default)]
    time_budget_ms: Option<u64>,
    /// Memory cap per batch call, in MiB.
    #[serde(default)]
    memory_mib: Option<usize>,
    /// Output records one input record may become; see [`CallLimits::max_fanout`].
    #[serde(default)]
    max_fanout: Option<usize>,
}

/// The installation's plugin: which component, its configuration and limits.
#[derive(Debug, Clone)]
pub struct PluginSection {
    pub source: PluginSource,
    pub config: BTreeMap<String, String>,
    pub limits: CallLimits,
}

/// Where an installation's plugin component comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// `plugin.component`: a file (resolved against the spec's directory).
    File(PathBuf),
    /// `plugin.artifact`: a version uploaded to the host, found in its store.
    Artifact(ArtifactRef),
}

/// A validated installation configuration.
#[derive(Debug, Clone)]
pub struct InstallationConfig {
    /// The file it came from.
    pub path: PathBuf,
    pub id: String,
    pub salesforce: SalesforceConfig,
    pub throttle: GovernorConfig,
    /// `throttle`, validated.
    pub governor: GovernorSettings,
    pub plugin: PluginSection,
    pub inbound: InboundConfig,
    pub outbound: OutboundConfig,
    /// The hash of the installation's own API token, if it has one.
    pub intake_token: Option<TokenHash>,
}

impl InstallationConfig {
    /// Reads, parses and checks `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_owned(),
            key: "-".into(),
            reason: format!("cannot read the file: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// Parses and checks `text` as if read from `path` (relative paths resolve against its
    /// directory).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let raw: RawInstallation =
            toml::from_str(text).map_err(|e| at(path, toml_problem(&e, text)))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::check(path, base, raw, None)
    }

    /// The file at `path` as the document the registry stores: checked exactly as
    /// [`InstallationConfig::parse`] checks it, then turned from TOML into JSON.
    pub fn document(path: &Path, text: &str) -> Result<(Self, serde_json::Value), ConfigError> {
        let config = Self::parse(path, text)?;
        let document: serde_json::Value =
            toml::from_str(text).map_err(|e| at(path, Invalid::new("-", e.message().trim())))?;
        Ok((config, document))
    }

    /// Checks a stored or posted document (the JSON form of the TOML file). `label` names
    /// it in errors; relative paths resolve against `base`; `keyring` opens the secrets
    /// given through the API (`*_sealed`). A type error names the dotted key it is at, as
    /// a TOML file's does.
    pub fn from_document(
        label: &Path,
        base: &Path,
        document: &serde_json::Value,
        keyring: Option<&Keyring>,
    ) -> Result<Self, ConfigError> {
        let raw: RawInstallation = serde_path_to_error::deserialize(document).map_err(|e| {
            let key = match e.path().to_string() {
                root if root == "." => "-".to_owned(),
                key => key,
            };
            at(label, Invalid::new(key, e.inner().to_string()))
        })?;
        Self::check(label, base, raw, keyring)
    }

    /// Every check a file alone can answer, section by section.
    fn check(
        path: &Path,
        base: &Path,
        raw: RawInstallation,
        keyring: Option<&Keyring>,
    ) -> Result<Self, ConfigError> {
        let at = |invalid| at(path, invalid);
        check_id(&raw.id).map_err(at)?;
        let sealed = salesforce::Sealed {
            keyring,
            installation: &raw.id,
        };
        let salesforce = raw.salesforce.check(base, sealed).map_err(at)?;
        let governor = raw
            .throttle
            .validate()
            .map_err(|e| at(Invalid::new("throttle", e)))?;
        let plugin = raw.plugin.check(base).map_err(at)?;
        let inbound = raw.inbound.check(base).map_err(at)?;
        raw.outbound
            .validate()
            .map_err(|e| at(Invalid::new(e.key, e.reason)))?;
        let intake_token = raw
            .intake
            .token_sha256
            .as_deref()
            .map(TokenHash::from_hex)
            .transpose()
            .map_err(|e| at(Invalid::new("intake.token_sha256", e)))?;
        Ok(InstallationConfig {
            path: path.to_owned(),
            id: raw.id,
            salesforce,
            throttle: raw.throttle,
            governor,
            plugin,
            inbound,
            outbound: raw.outbound,
            intake_token,
        })
    }
}

fn at(file: &Path, Invalid { key, reason }: Invalid) -> ConfigError {
    ConfigError {
        file: file.to_owned(),
        key,
        reason,
    }
}

/// Turns a TOML error into the dotted key it is about and a one-line reason ending in the
/// line and column. `toml` reports unknown fields, type errors and missing fields with the
/// byte span of the key, the value or the table, but does not say whose; the key is found
/// by locating that span in the parsed document. A file that does not parse at all (a
/// syntax error) has no keys to name: it keeps `-`, with the position.
fn toml_problem(e: &toml::de::Error, text: &str) -> Invalid {
    let message = e.message().trim().to_owned();
    let Some(span) = e.span() else {
        return Invalid::new("-", message);
    };
    let (line, column) = line_column(text, span.start);
    let key = toml::de::DeTable::parse(text)
        .ok()
        .and_then(|document| {
            let mut path = Vec::new();
            key_at(document.get_ref(), span.start, &mut path).then(|| path.join("."))
        })
        .unwrap_or_else(|| "-".into());
    Invalid::new(key, format!("{message} (line {line}, column {column})"))
}

/// 1-based line and column (in characters) of byte `at` of `text`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Pushes onto `path` the keys leading to the innermost key or value of `table` whose span
/// holds byte `at`; whether one does. Children are searched before their parent's own span,
/// since a `[table]`'s span need not cover the keys written under its header.
fn key_at(table: &toml::de::DeTable<'_>, at: usize, path: &mut Vec<String>) -> bool {
    for (key, value) in table.iter() {
        path.push(key.get_ref().to_string());
        if key.span().contains(&at) || value_at(value, at, path) {
            return true;
        }
        path.pop();
    }
    false
}

fn value_at(
    value: &toml::Spanned<toml::de::DeValue<'_>>,
    at: usize,
    path: &mut Vec<String>,
) -> bool {
    match value.get_ref() {
        toml::de::DeValue::Table(table) if key_at(table, at, path) => return true,
        toml::de::DeValue::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                let Some(last) = path.last_mut() else { break };
                let bare = last.len();
                last.push_str(&format!("[{index}]"));
                if value_at(item, at, path) {
                    return true;
                }
                if let Some(last) = path.last_mut() {
                    last.truncate(bare);
                }
            }
        }
        _ => {}
    }
    value.span().contains(&at)
}

/// Installation ids appear in paths, metric labels and URLs: keep them plain.
fn check_id(id: &str) -> Result<(), Invalid> {
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if id.is_empty() || id.len() > 64 || !id.chars().all(plain) {
        return Err(Invalid::new(
            "id",
            format!("{id:?} must be 1–64 characters of letters, digits, '-' or '_'"),
        ));
    }
    Ok(())
}

impl RawPlugin {
    fn check(self, base: &Path) -> Result<PluginSection, Invalid> {
        let source = match (self.component, self.artifact) {
            (Some(component), None) => {
                let component = base.join(component);
                if !component.is_file() {
                    return Err(Invalid::new(
                        "plugin.component",
                        format!("{} is not a file", component.display()),
                    ));
                }
                PluginSource::File(component)
            }
            (None, Some(artifact)) => PluginSource::Artifact(
                artifact
                    .parse()
                    .map_err(|e| Invalid::new("plugin.artifact", e))?,
            ),
            (Some(_), Some(_)) => {
                return Err(Invalid::new(
                    "plugin",
                    "give either `component` (a file) or `artifact` (name@version), not both",
                ));
            }
            (None, None) => {
                return Err(Invalid::new(
                    "plugin",
                    "needs `component` (a file) or `artifact` (an uploaded name@version)",
                ));
            }
        };
        let mut limits = CallLimits::default();
        if let Some(ms) = self.time_budget_ms {
            // Above 10 s a stuck plugin holds a worker long enough to stall other tenants.
            if !(1..=10_000).contains(&ms) {
                return Err(Invalid::new(
                    "plugin.time_budget_ms",
                    format!("{ms} is outside 1–10000"),
                ));
            }
            limits.time_budget = std::time::Duration::from_millis(ms);
        }
        if let Some(mib) = self.memory_mib {
            if !(1..=64).contains(&mib) {
                return Err(Invalid::new(
                    "plugin.memory_mib",
                    format!("{mib} is outside 1–64 (the host's pooled slot size)"),
                ));
            }
            limits.memory_bytes = mib << 20;
        }
        if let Some(fanout) = self.max_fanout {
            // Past the per-call row cap a fan-out limit could never bind.
            if !(1..=limits.max_output_rows).contains(&fanout) {
                return Err(Invalid::new(
                    "plugin.max_fanout",
                    format!(
                        "{fanout} is outside 1–{} (the output rows one call may return)",
                        limits.max_output_rows
                    ),
                ));
            }
            limits.max_fanout = fanout;
        }
        Ok(PluginSection {
            source,
            config: self.config,
            limits,
        })
    }
}

#[cfg(test)]
mod tests;
