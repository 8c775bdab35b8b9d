//! What a plugin knows about the call it is serving: the installation, the direction, the
//! host's clock reading, and the installation's plugin configuration.
//!
//! Inside a component, configuration and logs go through the host's imports; under the
//! native test harness they come from and go to plain maps. Plugin code cannot tell.

use std::cell::{OnceCell, RefCell};
use std::collections::BTreeMap;

use crate::bindings::weft::plugin::host::{self, LogLevel};
use crate::bindings::weft::plugin::types::{CallContext, Direction};

#[derive(Debug)]
enum Source {
    /// The component's host imports, with values cached for the rest of the call: a
    /// per-record `cx.config(..)` then costs a map lookup, not a trip into the host.
    Host(RefCell<BTreeMap<String, Option<String>>>),
    /// A fixed map, for native tests and benchmarks.
    Map(BTreeMap<String, String>, RefCell<Vec<(LogLevel, String)>>),
}

/// The context of one batch call.
#[derive(Debug)]
pub struct Cx {
    installation: String,
    direction: Direction,
    now: i64,
    source: Source,
    /// The parsed `dedup.fields` setting, read on first use and kept for the batch.
    dedup_fields: OnceCell<Vec<String>>,
}

impl Cx {
    pub(crate) fn from_host(ctx: &CallContext) -> Self {
        Self {
            installation: ctx.installation.clone(),
            direction: ctx.direction,
            now: ctx.now,
            source: Source::Host(RefCell::default()),
            dedup_fields: OnceCell::new(),
        }
    }

    /// A context backed by `config`, for running plugin logic natively.
    pub fn native(
        installation: &str,
        direction: Direction,
        now: i64,
        config: BTreeMap<String, String>,
    ) -> Self {
        Self {
            installation: installation.to_owned(),
            direction,
            now,
            source: Source::Map(config, RefCell::default()),
            dedup_fields: OnceCell::new(),
        }
    }

    pub fn installation(&self) -> &str {
        &self.installation
    }

    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The host's clock when the batch started, in milliseconds since the Unix epoch.
    /// Plugins have no clock of their own.
    pub fn now(&self) -> i64 {
        self.now
    }

    /// A plugin configuration value.
    pub fn config(&self, key: &str) -> Option<String> {
        match &self.source {
            Source::Host(cache) => {
                if let Some(value) = cache.borrow().get(key) {
                    return value.clone();
                }
                let value = host::config_get(key);
                cache.borrow_mut().insert(key.to_owned(), value.clone());
                value
            }
            Source::Map(map, _) => map.get(key).cloned(),
        }
    }

    /// The fields the default dedup reads keys from: the comma-separated
    /// [`crate::plugin::DEDUP_FIELDS_KEY`] setting (default `Id`), parsed once per batch.
    pub(crate) fn dedup_fields(&self) -> &[String] {
        self.dedup_fields.get_or_init(|| {
            self.config(crate::plugin::DEDUP_FIELDS_KEY)
                .as_deref()
                .unwrap_or("Id")
                .split(',')
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .map(str::to_owned)
                .collect()
        })
    }

    /// Every configuration key, sorted.
    pub fn config_keys(&self) -> Vec<String> {
        match &self.source {
            Source::Host(_) => host::config_keys(),
            Source::Map(map, _) => map.keys().cloned().collect(),
        }
    }

    /// Every configuration entry whose key starts with `prefix`, with the prefix removed.
    /// Reads the configuration once; call it once per batch, not per record.
    pub fn config_section(&self, prefix: &str) -> BTreeMap<String, String> {
        self.config_keys()
            .into_iter()
            .filter_map(|key| {
                let rest = key.strip_prefix(prefix)?.to_owned();
                Some((rest, self.config(&key)?))
            })
            .collect()
    }

    /// A log line, tagged by the host with the installation and plugin.
    pub fn log(&self, level: LogLevel, message: &str) {
        match &self.source {
            Source::Host(_) => host::log(level, message),
            Source::Map(_, logs) => logs.borrow_mut().push((level, message.to_owned())),
        }
    }

    /// Log lines written under the native harness.
    pub fn native_logs(&self) -> Vec<(LogLevel, String)> {
        match &self.source {
            Source::Host(_) => Vec::new(),
            Source::Map(_, logs) => logs.borrow().clone(),
        }
    }
}
