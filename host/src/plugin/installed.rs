//! Which plugin each installation runs, swapped without a restart, and quarantine for a
//! plugin version that keeps failing.
//!
//! Swapping is an atomic pointer replacement: calls already running finish on the version
//! they started with, the next call gets the new one. Quarantine belongs to a version:
//! installing a different build clears it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::bindings::chain::ChainResult;
use super::engine::{CallSpec, LoadedPlugin};
use super::error::PluginError;
use super::limits::CallLimits;
use super::types::{Batch, BatchResult, DedupResult, Direction, ObjectSchema, Resolution};

/// An installation's plugin configuration and limits.
#[derive(Debug, Clone, Default)]
pub struct PluginConfig {
    pub values: BTreeMap<String, String>,
    pub limits: CallLimits,
}

/// When a failing plugin version stops being run.
#[derive(Debug, Clone, Copy)]
pub struct QuarantinePolicy {
    /// Consecutive failed batches (traps, timeouts, memory, malformed output) before the
    /// version is quarantined and its batches go straight to the DLQ. Default 3: one bad
    /// batch can be bad data, three in a row is a broken plugin burning CPU for nothing.
    pub strikes: u32,
}

impl Default for QuarantinePolicy {
    fn default() -> Self {
        Self { strikes: 3 }
    }
}

struct Slot {
    plugin: LoadedPlugin,
    installation: Arc<str>,
    config: Arc<BTreeMap<String, String>>,
    limits: CallLimits,
    strikes: AtomicU32,
    last_failure: Mutex<String>,
}

/// What `weft status` shows about an installation's plugin.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginStatus {
    pub hash: String,
    pub strikes: u32,
    pub quarantined: bool,
    pub last_failure: Option<String>,
}

/// The plugins of every installation on this host.
pub struct InstalledPlugins {
    policy: QuarantinePolicy,
    slots: RwLock<HashMap<String, Arc<Slot>>>,
}

/// Runs plugin work — batch building, the calls, reading their output — on the blocking
/// pool, never on an async worker. Every direction calls plugins through this, so a call
/// whose thread fails is the same failure everywhere: the plugin's panic (one DLQ code).
pub async fn off_the_runtime<R: Send + 'static>(
    work: impl FnOnce() -> R + Send + 'static,
) -> Result<R, PluginError> {
    start_off_the_runtime(work).await
}

/// [`off_the_runtime`], started at once rather than when first awaited: the work runs while
/// the caller goes on (a pipeline makes the previous page durable meanwhile).
pub fn start_off_the_runtime<R: Send + 'static>(
    work: impl FnOnce() -> R + Send + 'static,
) -> impl std::future::Future<Output = Result<R, PluginError>> + Send + 'static {
    let running = tokio::task::spawn_blocking(work);
    async move {
        running.await.map_err(|join| PluginError::Panic {
            message: format!("the plugin call's thread failed: {join}"),
        })
    }
}

impl InstalledPlugins {
    pub fn new(policy: QuarantinePolicy) -> Self {
        Self {
            policy,
            slots: RwLock::new(HashMap::new()),
        }
    }

    /// Installs or replaces an installation's plugin; returns the replaced version's hash.
    pub fn install(
        &self,
        installation: &str,
        plugin: LoadedPlugin,
        config: PluginConfig,
    ) -> Option<String> {
        let slot = Arc::new(Slot {
            plugin,
            installation: installation.into(),
            config: Arc::new(config.values),
            limits: config.limits,
            strikes: AtomicU32::new(0),
            last_failure: Mutex::new(String::new()),
        });
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
        slots
            .insert(installation.to_owned(), slot)
            .map(|old| old.plugin.hash().to_owned())
    }

    pub fn remove(&self, installation: &str) -> bool {
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
        slots.remove(installation).is_some()
    }

    fn slot(&self, installation: &str) -> Result<Arc<Slot>, PluginError> {
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        slots
            .get(installation)
            .cloned()
            .ok_or_else(|| PluginError::NotInstalled(installation.to_owned()))
    }

    pub fn status(&self, installation: &str) -> Option<PluginStatus> {
        let slot = self.slot(installation).ok()?;
        let strikes = slot.strikes.load(Ordering::Relaxed);
        let last = slot
            .last_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Some(PluginStatus {
            hash: slot.plugin.hash().to_owned(),
            strikes,
            quarantined: strikes >= self.policy.strikes,
            last_failure: (!last.is_empty()).then_some(last),
        })
    }

    fn call<R>(
        &self,
        installation: &str,
        run: impl FnOnce(&LoadedPlugin, &CallSpec) -> Result<R, PluginError>,
    ) -> Result<R, PluginError> {
        let slot = self.slot(installation)?;
        let strikes = slot.strikes.load(Ordering::Relaxed);
        if strikes >= self.policy.strikes {
            return Err(PluginError::Quarantined {
                hash: slot.plugin.hash().to_owned(),
                strikes,
                last: slot
                    .last_failure
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone(),
            });
        }
        let spec = CallSpec {
            installation: slot.installation.clone(),
            config: slot.config.clone(),
            limits: slot.limits.clone(),
            now_ms: jiff::Timestamp::now().as_millisecond(),
        };
        let result = run(&slot.plugin, &spec);
        match &result {
            Ok(_) => slot.strikes.store(0, Ordering::Relaxed),
            Err(error) if error.is_plugin_fault() => {
                let strikes = slot.strikes.fetch_add(1, Ordering::Relaxed) + 1;
                *slot.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = error.to_string();
                tracing::warn!(
                    installation,
                    plugin = slot.plugin.hash(),
                    strikes,
                    kind = error.kind(),
                    "plugin batch failed: {error}"
                );
                if strikes == self.policy.strikes {
                    tracing::error!(
                        installation,
                        plugin = slot.plugin.hash(),
                        "plugin quarantined after {strikes} consecutive failed batches"
                    );
                }
            }
            Err(_) => {}
        }
        result
    }

    pub fn map_inbound(
        &self,
        installation: &str,
        input: &Batch,
    ) -> Result<BatchResult, PluginError> {
        self.call(installation, |p, spec| p.map_inbound(spec, input))
    }

    pub fn map_outbound(
        &self,
        installation: &str,
        input: &Batch,
    ) -> Result<BatchResult, PluginError> {
        self.call(installation, |p, spec| p.map_outbound(spec, input))
    }

    pub fn coerce(
        &self,
        installation: &str,
        direction: Direction,
        schema: &ObjectSchema,
        input: &Batch,
    ) -> Result<BatchResult, PluginError> {
        self.call(installation, |p, spec| {
            p.coerce(spec, direction, schema, input)
        })
    }

    pub fn resolve(
        &self,
        installation: &str,
        incoming: &Batch,
        incoming_at: &[i64],
        current: &Batch,
        current_modified_at: &[Option<i64>],
    ) -> Result<Resolution, PluginError> {
        self.call(installation, |p, spec| {
            p.resolve(spec, incoming, incoming_at, current, current_modified_at)
        })
    }

    pub fn dedup_keys(
        &self,
        installation: &str,
        direction: Direction,
        input: &Batch,
    ) -> Result<DedupResult, PluginError> {
        self.call(installation, |p, spec| p.dedup_keys(spec, direction, input))
    }

    /// Map → coerce → dedup keys in one call; see [`LoadedPlugin::chain`].
    pub fn chain(
        &self,
        installation: &str,
        direction: Direction,
        input: &Batch,
        schemas: &[ObjectSchema],
        dedup: bool,
    ) -> Result<ChainResult, PluginError> {
        self.call(installation, |p, spec| {
            p.chain(spec, direction, input, schemas, dedup)
        })
    }
}
