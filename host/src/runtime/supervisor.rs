//! Runs what the registry holds and applies changes to it while the host runs.
//!
//! For each installation the supervisor owns one live build (governor, client, compiled
//! plugin), its outbound worker and, when it syncs objects inbound, its inbound sync (a
//! backfill, then incremental passes); both cut their work into units that take turns on
//! the host's [`Scheduler`]. A change is applied in two steps so that nothing is
//! saved that would not run: [`Supervisor::prepare`] checks a document (offline checks,
//! plugin compiled, then the org's describe) without touching what runs; the caller saves
//! it in the registry and hands the result to [`Supervisor::run`], which stops the old
//! worker after its current round, carries the governor's spend over and starts the new
//! one. One installation's change never waits on another's: each has its own lock.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use tokio::sync::{Notify, mpsc, watch};
use tracing::Instrument;

use super::check::{self, ObjectReport};
use super::governor_state;
use super::inbound_worker::{self, PassLog};
use super::installation::{Installation, InstallationError};
use super::scheduler::Scheduler;
use super::status;
use crate::api::Directory;
use crate::artifacts::PluginCatalog;
use crate::config::InstallationConfig;
use crate::inbound::{InboundSync, Progress};
use crate::outbound::{Pipeline, worker};
use crate::plugin::{InstalledPlugins, PluginRuntime};
use crate::registry::{CredentialPhase, Pause, Registry, RegistryError, SpecRecord};
use crate::secrets::Keyring;
use crate::store::Store;
use crate::telemetry::Telemetry;
use crate::throttle::Governor;

mod statuses;
mod switch;

/// Why a document was not accepted. Every variant names the key or object at fault; none
/// carries a secret (secrets are only ever references in a document).
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The document fails an offline check, or its plugin does not compile or load.
    #[error(transparent)]
    Invalid(#[from] InstallationError),
    /// The document's `id` is not the installation it was sent for.
    #[error("id: {found:?} does not match the installation {expected:?}")]
    IdMismatch { expected: String, found: String },
    /// The org lacks objects or fields the document names.
    #[error("{}", .0.iter().filter_map(ObjectReport::first_problem).collect::<Vec<_>>().join("; "))]
    Org(Vec<ObjectReport>),
    /// The org refused the document's credential (one token request).
    #[error("salesforce: the org refused the credential: {0}")]
    Credential(String),
    #[error("compiling the plugin: {0}")]
    Join(String),
}

/// A checked document, built and ready to run once it is saved.
pub struct Prepared {
    installation: Installation,
}

impl Prepared {
    pub fn id(&self) -> &str {
        self.installation.id()
    }

    pub fn config(&self) -> &InstallationConfig {
        &self.installation.config
    }
}

/// What a supervisor is built from: the host's shared services.
pub struct SupervisorParts {
    pub registry: Registry,
    pub store: Arc<dyn Store>,
    pub telemetry: Arc<Telemetry>,
    pub plugins: Arc<InstalledPlugins>,
    pub runtime: PluginRuntime,
    /// Where a document posted to the API resolves its relative paths.
    pub base_dir: PathBuf,
    pub scheduler: Arc<Scheduler>,
    /// Opens (and seals) the secrets given through the API; `None`: the host has no key.
    pub keyring: Option<Arc<Keyring>>,
}

/// How the supervisor reaches everything an installation needs.
pub struct Supervisor {
    registry: Registry,
    store: Arc<dyn Store>,
    telemetry: Arc<Telemetry>,
    plugins: Arc<InstalledPlugins>,
    runtime: PluginRuntime,
    directory: Arc<Directory>,
    /// Where a document posted to the API resolves its relative paths.
    base_dir: PathBuf,
    /// The pool every installation's units take turns on.
    scheduler: Arc<Scheduler>,
    /// Opens (and seals) the secrets given through the API; `None`: the host has no key.
    keyring: Option<Arc<Keyring>>,
    /// The plugins uploaded to this host, which specs name as `plugin.artifact`.
    artifacts: PluginCatalog,
    slots: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<Option<Running>>>>>,
    /// What each governor last saved (a save writes only those that spent since).
    saved: Arc<governor_state::Saved>,
    /// Installations whose backfills are all complete, for the credential switcher.
    switches: mpsc::UnboundedSender<String>,
    switch_requests: Mutex<Option<mpsc::UnboundedReceiver<String>>>,
}

/// One running installation.
struct Running {
    version: u64,
    governor: Arc<Governor>,
    stop: watch::Sender<bool>,
    /// `None` while the whole installation is paused.
    outbound: Option<tokio::task::JoinHandle<()>>,
    /// `None` when the installation syncs no object inbound (or all are paused).
    inbound: Option<tokio::task::JoinHandle<()>>,
    /// The inbound sync's live counters (backfill progress per object).
    progress: Option<Arc<Progress>>,
    paused: Option<Pause>,
    /// Rung by "sync now": the inbound wait ends early.
    kick: Arc<Notify>,
    passes: Arc<PassLog>,
    /// Every inbound object the spec names, paused ones included.
    objects: Vec<String>,
    since: Timestamp,
    credential: CredentialPhase,
    /// Whether the spec has an ongoing credential to switch to.
    has_ongoing: bool,
    /// Why the last switch to the ongoing credential failed (the setup one stays).
    switch_error: Option<String>,
}

/// A running installation's own part of its status.
struct LiveStatus {
    version: u64,
    paused: Option<Pause>,
    objects: Vec<String>,
    passes: BTreeMap<String, inbound_worker::ObjectPasses>,
    progress: BTreeMap<String, crate::inbound::ObjectProgress>,
    since: Timestamp,
    credential: status::Credential,
}

/// What [`Supervisor::start_stored`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Started {
    pub running: usize,
    pub refused: usize,
}

impl Supervisor {
    pub fn new(parts: SupervisorParts) -> Supervisor {
        let SupervisorParts {
            registry,
            store,
            telemetry,
            plugins,
            runtime,
            base_dir,
            scheduler,
            keyring,
        } = parts;
        let (switches, switch_requests) = mpsc::unbounded_channel();
        Supervisor {
            registry,
            artifacts: PluginCatalog::new(store.clone()),
            store,
            telemetry,
            plugins,
            runtime,
            directory: Arc::new(Directory::new()),
            base_dir,
            scheduler,
            keyring,
            slots: Mutex::new(BTreeMap::new()),
            saved: governor_state::Saved::new(),
            switches,
            switch_requests: Mutex::new(Some(switch_requests)),
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The installations the API serves: the supervisor adds and removes them.
    pub fn directory(&self) -> Arc<Directory> {
        self.directory.clone()
    }

    pub fn artifacts(&self) -> &PluginCatalog {
        &self.artifacts
    }

    /// The host's plugin runtime: what validates an uploaded component.
    pub fn plugin_runtime(&self) -> &PluginRuntime {
        &self.runtime
    }

    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    pub fn keyring(&self) -> Option<&Keyring> {
        self.keyring.as_deref()
    }

    /// Starts every installation the registry holds. One that does not build is reported
    /// and skipped: one tenant's spec must not keep the others from starting.
    pub async fn start_stored(&self) -> Result<Started, RegistryError> {
        let records = {
            let registry = self.registry.clone();
            tokio::task::spawn_blocking(move || registry.list())
                .await
                .map_err(|join| RegistryError::Unreadable {
                    id: String::new(),
                    reason: join.to_string(),
                })??
        };
        let mut started = Started::default();
        for record in records {
            let built = match record {
                Ok(record) => self.build_record(record).await,
                Err(e) => Err(e.to_string()),
            };
            match built {
                Ok(()) => started.running += 1,
                Err(reason) => {
                    started.refused += 1;
                    tracing::error!(error = %reason, "installation not started");
                    eprintln!("weft: not starting {reason}");
                }
            }
        }
        Ok(started)
    }

    async fn build_record(&self, record: SpecRecord) -> Result<(), String> {
        let (version, paused) = (record.version, record.paused.clone());
        let runtime = self.runtime.clone();
        let telemetry = self.telemetry.clone();
        let keyring = self.keyring.clone();
        let artifacts = self.artifacts.clone();
        let installation = tokio::task::spawn_blocking(move || {
            Installation::from_record(
                &record,
                &runtime,
                Some(&artifacts),
                &telemetry,
                keyring.as_deref(),
            )
        })
        .await
        .map_err(|join| join.to_string())?
        .map_err(|e| e.to_string())?;
        self.run(Prepared { installation }, version, paused).await;
        Ok(())
    }

    /// Checks `document` as the spec of installation `id` — offline, then against the org
    /// — without changing anything that runs. Relative paths resolve against `base`.
    pub async fn prepare(
        &self,
        id: &str,
        document: &serde_json::Value,
        base: &Path,
    ) -> Result<Prepared, Refused> {
        let label = PathBuf::from(format!("installation {id}"));
        let (runtime, telemetry, base) = (
            self.runtime.clone(),
            self.telemetry.clone(),
            base.to_owned(),
        );
        let document = document.clone();
        let keyring = self.keyring.clone();
        let artifacts = self.artifacts.clone();
        // Compiling the component is CPU work: off the async threads.
        let installation = tokio::task::spawn_blocking(move || {
            let config =
                InstallationConfig::from_document(&label, &base, &document, keyring.as_deref())
                    .map_err(InstallationError::from)?;
            Installation::from_config(config, &runtime, Some(&artifacts), &telemetry)
        })
        .await
        .map_err(|join| Refused::Join(join.to_string()))??;
        if installation.id() != id {
            return Err(Refused::IdMismatch {
                expected: id.to_owned(),
                found: installation.id().to_owned(),
            });
        }
        // The describe calls count against the org's allocation: start the new governor
        // from what the running one (or the last run) spent.
        self.carry_spend_into(id, &installation.governor).await;
        // One token request first, so a credential the org refuses is named as such
        // rather than as every object failing to describe.
        installation
            .client
            .login()
            .await
            .map_err(|e| Refused::Credential(e.to_string()))?;
        let reports = check::against_org(&installation.config, &installation.client).await;
        if reports.iter().any(|r| r.problems() > 0) {
            return Err(Refused::Org(
                reports.into_iter().filter(|r| r.problems() > 0).collect(),
            ));
        }
        Ok(Prepared { installation })
    }

    /// Runs `prepared` as `version` of its installation, replacing the build that runs now
    /// (its worker finishes the round it is in first).
    /// A whole-installation `paused` keeps it served (intake accepts events) with nothing
    /// running; paused objects are left out of inbound.
    pub async fn run(&self, prepared: Prepared, version: u64, paused: Option<Pause>) {
        let Installation {
            config,
            credential,
            governor,
            client,
            plugin,
        } = prepared.installation;
        let id = config.id.clone();
        let slot = self.slot(&id);
        let mut slot = slot.lock().await;
        if slot
            .as_ref()
            .is_some_and(|running| running.version > version)
        {
            // A later change won the race to this slot; this one is already superseded.
            return;
        }
        if let Some(old) = slot.take() {
            governor.restore(&old.governor.snapshot()).ok();
            stop(old).await;
        } else {
            let store = self.store.clone();
            let (id, governor) = (id.clone(), governor.clone());
            let _ = tokio::task::spawn_blocking(move || {
                governor_state::restore(&*store, &id, &governor)
            })
            .await;
        }
        let plugin_config = crate::plugin::PluginConfig {
            values: config.plugin.config.clone(),
            limits: config.plugin.limits.clone(),
        };
        self.plugins.install(&id, plugin, plugin_config);
        if config.intake_token.is_none() {
            tracing::warn!(installation = %id, "no intake token: only the operator token can post this installation's events");
        }
        let tenant = self.directory.serve(&id, config.intake_token);
        let (stop_tx, stop_rx) = watch::channel(false);
        let kick = Arc::new(Notify::new());
        let passes = Arc::new(PassLog::default());
        let mut running = Running {
            version,
            governor,
            stop: stop_tx,
            outbound: None,
            inbound: None,
            progress: None,
            paused: paused.clone(),
            kick: kick.clone(),
            passes: passes.clone(),
            objects: config
                .inbound
                .objects
                .iter()
                .map(|o| o.name.clone())
                .collect(),
            since: Timestamp::now(),
            credential,
            has_ongoing: config.salesforce.ongoing.is_some(),
            switch_error: None,
        };
        // Once every object's backfill is complete, ask for the ongoing credential.
        let caught_up: Option<inbound_worker::CaughtUp> =
            (credential.is_setup() && running.has_ongoing).then(|| {
                let (switches, id) = (self.switches.clone(), id.clone());
                Box::new(move || {
                    let _ = switches.send(id.clone());
                }) as inbound_worker::CaughtUp
            });
        if paused.as_ref().is_some_and(Pause::whole) {
            // Intake still accepts the installation's events; they wait for the resume.
            tracing::info!(installation = %id, version, "installation paused");
            *slot = Some(running);
            return;
        }
        let mut inbound = config.inbound;
        if let Some(pause) = &paused {
            inbound.objects.retain(|o| !pause.objects.contains(&o.name));
        }
        if !inbound.objects.is_empty() {
            match InboundSync::new(
                &id,
                inbound,
                client.clone(),
                self.plugins.clone(),
                self.store.clone(),
            ) {
                Ok(sync) => {
                    let sync = sync.scheduled(self.scheduler.clone(), stop_rx.clone());
                    running.progress = Some(sync.progress());
                    let span = tracing::info_span!("inbound", installation = %id);
                    running.inbound = Some(tokio::spawn(
                        inbound_worker::run(sync, passes, kick, caught_up, stop_rx.clone())
                            .instrument(span),
                    ));
                }
                Err(e) => {
                    tracing::error!(installation = %id, error = %e, "inbound not started: the sink cannot be opened");
                }
            }
        }
        let pipeline = Pipeline::new(
            id.clone(),
            config.outbound,
            client,
            self.plugins.clone(),
            self.store.clone(),
        );
        let span = tracing::info_span!("outbound", installation = %id);
        running.outbound = Some(tokio::spawn(
            worker::run(
                pipeline,
                Some(tenant.bell()),
                Some(self.scheduler.clone()),
                stop_rx,
            )
            .instrument(span),
        ));
        tracing::info!(installation = %id, version, inbound = running.inbound.is_some(), "installation running");
        *slot = Some(running);
    }

    /// Runs a change just saved as `record`: the checked build when the installation runs
    /// with its setup credential; built again from the record (with the ongoing
    /// credential) when it had already switched.
    pub async fn run_saved(&self, prepared: Prepared, record: &SpecRecord) {
        if record.credential.is_setup() || prepared.config().salesforce.ongoing.is_none() {
            self.run(prepared, record.version, record.paused.clone())
                .await;
        } else if let Err(reason) = self.build_record(record.clone()).await {
            tracing::error!(installation = %record.id, error = %reason, "saved change not started");
        }
    }

    /// Builds installation `id` again from its stored record (after a pause or resume)
    /// and runs it; no online check, the spec is unchanged.
    pub async fn reload(&self, id: &str) -> Result<(), String> {
        let registry = self.registry.clone();
        let lookup = id.to_owned();
        let record = tokio::task::spawn_blocking(move || registry.get(&lookup))
            .await
            .map_err(|join| join.to_string())?
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("installation {id:?} does not exist"))?;
        self.build_record(record).await
    }

    /// The pool's own figures.
    pub fn scheduler(&self) -> &Arc<Scheduler> {
        &self.scheduler
    }

    /// Starts an inbound pass now instead of at the end of the wait, and an outbound round.
    /// `false` when the installation does not run (paused, or unknown).
    pub async fn sync_now(&self, id: &str) -> bool {
        let slot = self.slot(id);
        let slot = slot.lock().await;
        let Some(running) = slot.as_ref().filter(|r| r.outbound.is_some()) else {
            return false;
        };
        running.kick.notify_one();
        if let Some(tenant) = self.directory.get(id) {
            tenant.wake();
        }
        true
    }

    /// Serves `id` under a new token from `version` on (nothing else changed, so the build
    /// that runs stays).
    pub async fn set_token(&self, id: &str, version: u64, token: crate::token::TokenHash) {
        let slot = self.slot(id);
        let mut slot = slot.lock().await;
        if let Some(running) = slot.as_mut() {
            running.version = running.version.max(version);
            self.directory.serve(id, Some(token));
        }
    }

    /// Stops installation `id` (after its current round) and stops serving it. Its
    /// governor's spend is saved, so a re-created installation does not spend the day
    /// twice.
    pub async fn remove(&self, id: &str) {
        let slot = self.slot(id);
        let mut slot = slot.lock().await;
        self.directory.remove(id);
        if let Some(old) = slot.take() {
            let governor = old.governor.clone();
            stop(old).await;
            governor_state::save_all(&self.store, &[(id.to_owned(), governor)], &self.saved).await;
            self.saved.forget(id);
        }
        // The empty slot stays: a concurrent change may already hold it.
        self.plugins.remove(id);
        self.telemetry.forget(id);
    }

    /// The version each running installation runs, by id.
    pub async fn running(&self) -> BTreeMap<String, u64> {
        let slots = self.all_slots();
        let mut out = BTreeMap::new();
        for (id, slot) in slots {
            if let Some(running) = slot.lock().await.as_ref() {
                out.insert(id, running.version);
            }
        }
        out
    }

    /// Every running installation's governor (to save their spend).
    pub async fn governors(&self) -> Vec<(String, Arc<Governor>)> {
        let mut out = Vec::new();
        for (id, slot) in self.all_slots() {
            if let Some(running) = slot.lock().await.as_ref() {
                out.push((id, running.governor.clone()));
            }
        }
        out
    }

    /// Stops every installation and saves every governor. All are told at once and then
    /// awaited together, so the host's stop takes as long as the slowest installation's,
    /// not the sum of a thousand.
    pub async fn stop_all(&self) {
        let mut stopping = Vec::new();
        for (id, slot) in self.all_slots() {
            if let Some(old) = slot.lock().await.take() {
                signal_stop(&old);
                stopping.push((id, old));
            }
        }
        let governors = stopping
            .iter()
            .map(|(id, old)| (id.clone(), old.governor.clone()))
            .collect::<Vec<_>>();
        futures_util::future::join_all(stopping.into_iter().map(|(_, old)| stop(old))).await;
        governor_state::save_all(&self.store, &governors, &self.saved).await;
    }

    /// Saves every running governor each `every`, until the task is aborted.
    pub fn spawn_saver(
        self: &Arc<Self>,
        every: std::time::Duration,
    ) -> tokio::task::JoinHandle<()> {
        let supervisor = Arc::downgrade(self);
        tokio::spawn(async move {
            let every = every.max(std::time::Duration::from_secs(1));
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(supervisor) = supervisor.upgrade() else {
                    return;
                };
                let governors = supervisor.governors().await;
                governor_state::save_all(&supervisor.store, &governors, &supervisor.saved).await;
            }
        })
    }

    async fn carry_spend_into(&self, id: &str, governor: &Arc<Governor>) {
        let slot = self.slot(id);
        let running = slot.lock().await.as_ref().map(|r| r.governor.clone());
        match running {
            Some(running) => {
                governor.restore(&running.snapshot()).ok();
            }
            None => {
                let (store, id, governor) = (self.store.clone(), id.to_owned(), governor.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    governor_state::restore(&*store, &id, &governor)
                })
                .await;
            }
        }
    }

    fn slot(&self, id: &str) -> Arc<tokio::sync::Mutex<Option<Running>>> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(id.to_owned()).or_default().clone()
    }

    fn all_slots(&self) -> Vec<(String, Arc<tokio::sync::Mutex<Option<Running>>>)> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .iter()
            .map(|(id, s)| (id.clone(), s.clone()))
            .collect()
    }
}

/// Tells both directions and the installation's governor to stop. Neither waits out a
/// backoff or a quota wait, and no request goes that was not sent yet ([`Governor::stop`]):
/// outbound commits what its round wrote and leaves the rest queued, inbound stops at its
/// next page or request and resumes from its checkpoint.
fn signal_stop(running: &Running) {
    running.governor.stop();
    let _ = running.stop.send(true);
}

/// Stops an installation ([`signal_stop`]) and waits for its workers to end.
async fn stop(running: Running) {
    signal_stop(&running);
    if let Some(outbound) = running.outbound
        && let Err(join) = outbound.await
    {
        tracing::error!(error = %join, "outbound worker ended abnormally");
    }
    if let Some(inbound) = running.inbound
        && let Err(join) = inbound.await
    {
        tracing::error!(error = %join, "inbound sync ended abnormally");
    }
}
