//! Inbound sync: pulls an installation's objects from Salesforce through its plugin into a
//! sink — a resumable backfill first, then incremental passes.
//!
//! Owns the order of work and the commit rule: a page is read, run through the plugin,
//! made durable in the sink, and only then is its checkpoint committed in the store (with
//! the page's DLQ entries, in one transaction). Killed at any point, a restart resumes from
//! the last checkpoint, re-reading at most the page that was in flight. It never decides
//! how fast to call Salesforce (the governor does) or what a record means (the plugin does).
//!
//! Each pass works from every object's describe, revalidated with the org once it is older
//! than `describe_ttl`, at once when a configured field is not in it, and after a failed
//! pass: so fields added to the org and to the installation's configuration are picked up
//! (and backfilled for existing rows) without a restart, and configured fields the org has
//! dropped are reported and no longer requested.

mod backfill;
mod deliver;
mod incremental;
mod page;
mod prefetch;
mod progress;
mod rows;
pub mod sink;
mod soql;
mod state;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::Instrument;

use crate::config::{InboundConfig, ObjectConfig};
use crate::plugin::{InstalledPlugins, ObjectSchema, schema_from_describe};
use crate::runtime::{Scheduler, Turn};
use crate::salesforce::{SObjectDescribe, SalesforceClient, SalesforceError};
use crate::store::{Store, StoreError, StoreExt, StoreTxn};
use crate::throttle::Project;

pub use deliver::Prepared;
pub use progress::{ObjectProgress, Progress};
pub use sink::{Deliveries, Delivery, DeliveryRef, Op, Output, Sink, SinkError};
pub use soql::Selection;
pub use state::{Backfill, Watermark};

/// Why a pass stopped. Salesforce and sink failures stop the pass without committing the
/// page in flight; the next pass (or run) resumes from the last checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    #[error("{object}: Salesforce: {source}")]
    Salesforce {
        object: String,
        #[source]
        source: SalesforceError,
    },
    #[error("{object}: sink: {source}")]
    Sink {
        object: String,
        #[source]
        source: SinkError,
    },
    #[error("{object}: store: {source}")]
    Store {
        object: String,
        /// Boxed: a store error is several times the size of the other variants.
        #[source]
        source: Box<StoreError>,
    },
    #[error("{object}: a Bulk job kept failing ({attempts} jobs): {last}")]
    BulkGaveUp {
        object: String,
        attempts: u32,
        last: String,
    },
    /// A page's commit ended without an answer (its task panicked, or the runtime is
    /// shutting down); the object resumes from its last durable checkpoint.
    #[error("{object}: a page's commit did not complete: {message}")]
    CommitLost { object: String, message: String },
    /// The host asked this installation's sync to stop; it stopped between two pages (or
    /// mid-page, without committing it) and resumes from the last checkpoint.
    #[error("stopped")]
    Stopped,
}

/// What one pass did, per object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    pub objects: Vec<ObjectReport>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectReport {
    pub object: String,
    /// Rows delivered by a backfill in this pass.
    pub backfilled: u64,
    /// Changed and deleted rows delivered by the incremental step.
    pub changed: u64,
    pub deleted: u64,
    /// Rows dead-lettered by the plugin.
    pub failed: u64,
    /// Configured fields the org does not have (not requested).
    pub missing_fields: Vec<String>,
    /// Why a backfill ran, if one did.
    pub backfill_reason: Option<String>,
    /// Why the object stopped early this pass (Salesforce or sink failure); it resumes
    /// from its last checkpoint next pass, and the other objects went on.
    pub error: Option<String>,
}

impl PassReport {
    /// Objects that stopped early this pass.
    pub fn failed_objects(&self) -> impl Iterator<Item = &ObjectReport> {
        self.objects.iter().filter(|o| o.error.is_some())
    }
}

/// One installation's inbound sync.
pub struct InboundSync {
    installation: Arc<str>,
    config: InboundConfig,
    client: SalesforceClient,
    store: Arc<dyn Store>,
    sink: Sink,
    plugin: deliver::PluginPath,
    progress: Arc<Progress>,
    /// Under `weft serve`: each page takes a turn on the host's scheduler, and a stop
    /// request ends the pass at the next page.
    units: Option<Units>,
    /// Each object's schema for the plugin, as built from the describe it holds: built
    /// again only when the describe changes.
    schemas: HashMap<String, (Arc<SObjectDescribe>, Arc<ObjectSchema>)>,
    /// Objects whose last pass failed: their next one revalidates the describe first (a
    /// field dropped from the org fails the query until the describe shows it gone).
    suspect: HashSet<String>,
    /// A backfill page's commit running while the next page is delivered; settled before
    /// the next commit and before any state is read again.
    committing: Option<tokio::task::JoinHandle<Result<(), InboundError>>>,
}

struct Units {
    scheduler: Arc<Scheduler>,
    stop: watch::Receiver<bool>,
}

impl InboundSync {
    pub fn new(
        installation: &str,
        config: InboundConfig,
        client: SalesforceClient,
        plugins: Arc<InstalledPlugins>,
        store: Arc<dyn Store>,
    ) -> Result<Self, SinkError> {
        let sink = Sink::open(&config.sink, installation)?;
        let installation: Arc<str> = installation.into();
        Ok(InboundSync {
            plugin: deliver::PluginPath {
                installation: installation.clone(),
                plugins,
            },
            progress: Arc::new(Progress::default()),
            installation,
            config,
            client,
            store,
            sink,
            units: None,
            schemas: HashMap::new(),
            suspect: HashSet::new(),
            committing: None,
        })
    }

    /// Runs every page as a unit on `scheduler`; once `stop` turns true the pass ends with
    /// [`InboundError::Stopped`] before its next page, or in the sink's wait to retry.
    pub fn scheduled(mut self, scheduler: Arc<Scheduler>, stop: watch::Receiver<bool>) -> Self {
        self.sink.stop_on(stop.clone());
        self.units = Some(Units { scheduler, stop });
        self
    }

    /// Waits for this installation's turn to process one page (none needed outside the
    /// scheduler), or refuses it when the host asked the sync to stop.
    pub(crate) async fn unit(&self) -> Result<Option<Turn>, InboundError> {
        let Some(units) = &self.units else {
            return Ok(None);
        };
        let mut stop = units.stop.clone();
        if *stop.borrow_and_update() {
            return Err(InboundError::Stopped);
        }
        tokio::select! {
            turn = units.scheduler.turn(&self.installation) => Ok(Some(turn)),
            _ = stop.wait_for(|stopped| *stopped) => Err(InboundError::Stopped),
        }
    }

    /// Live counters for a progress display or status endpoint.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    pub fn config(&self) -> &InboundConfig {
        &self.config
    }

    /// Takes a changed configuration; it applies from the next object the pass starts.
    pub fn reconfigure(&mut self, config: InboundConfig) -> Result<(), SinkError> {
        if config.sink != self.config.sink {
            self.sink = Sink::open(&config.sink, &self.installation)?;
            if let Some(units) = &self.units {
                self.sink.stop_on(units.stop.clone());
            }
        }
        self.config = config;
        Ok(())
    }

    /// One pass over every configured object in order: finish or start a backfill where one
    /// is due, then deliver what changed since the watermark.
    ///
    /// An object that fails against Salesforce or the sink is reported in its
    /// [`ObjectReport::error`] and the pass goes on with the next one; a store failure ends
    /// the pass, since no object can checkpoint without it.
    pub async fn pass(&mut self) -> Result<PassReport, InboundError> {
        let mut report = PassReport::default();
        let objects = self.config.objects.clone();
        for object in &objects {
            let span = tracing::info_span!("inbound", installation = %self.installation, object = %object.name);
            let mut outcome = self.sync_object(object).instrument(span.clone()).await;
            if outcome.is_err() {
                self.suspect.insert(object.name.clone());
            }
            if let Err(InboundError::Salesforce {
                source: SalesforceError::Api { status: 400, .. },
                ..
            }) = &outcome
            {
                // The org refused a request built from the cached describe: most often a
                // field it has dropped since. Once more, on a describe read now.
                outcome = self.sync_object(object).instrument(span).await;
                if outcome.is_err() {
                    self.suspect.insert(object.name.clone());
                }
            }
            match outcome {
                Ok(done) => report.objects.push(done),
                Err(e @ (InboundError::Store { .. } | InboundError::Stopped)) => return Err(e),
                Err(e) => {
                    tracing::error!(installation = %self.installation, object = %object.name, error = %e, "object stopped; it resumes from its checkpoint next pass");
                    report.objects.push(ObjectReport {
                        object: object.name.clone(),
                        error: Some(e.to_string()),
                        ..Default::default()
                    });
                }
            }
        }
        Ok(report)
    }

    async fn sync_object(&mut self, object: &ObjectConfig) -> Result<ObjectReport, InboundError> {
        let name = object.name.as_str();
        let (describe, schema) = self.describe(object).await?;
        let selection = Selection::resolve(&object.source, &describe);
        let mut report = ObjectReport {
            object: name.to_owned(),
            missing_fields: selection.missing.clone(),
            ..Default::default()
        };
        if !selection.missing.is_empty() {
            tracing::warn!(fields = ?selection.missing, "configured fields are not in the org; they are no longer requested");
        }
        let watermark: Option<Watermark> = self
            .store
            .get_watermark(&self.installation, name)
            .map_err(|source| store(name, source))?;
        let checkpoint = Backfill::load(&*self.store, &self.installation, name)
            .map_err(|source| store(name, source))?;
        let due = match (checkpoint, &watermark) {
            (Some(running), _) => Some(running),
            (None, None) => Some(
                self.plan_backfill(object, &selection, "initial".into())
                    .await?,
            ),
            (None, Some(w)) if reread_due(object, w) => Some(
                self.plan_backfill(object, &selection, "formula re-read".into())
                    .await?,
            ),
            (None, Some(w)) => {
                let added: Vec<&String> = selection
                    .fields
                    .iter()
                    .filter(|f| !w.fields.iter().any(|have| have.eq_ignore_ascii_case(f)))
                    .collect();
                if added.is_empty() {
                    None
                } else {
                    let reason = format!("fields added: {}", join(&added));
                    tracing::info!(%reason, "backfilling existing rows for new fields");
                    Some(self.plan_backfill(object, &selection, reason).await?)
                }
            }
        };
        let mut watermark = watermark;
        if let Some(run) = due {
            report.backfill_reason = Some(run.reason.clone());
            let outcome = self
                .backfill(object, &describe, &selection, schema.clone(), run)
                .await?;
            report.backfilled = outcome.delivered;
            report.failed += outcome.failed;
            watermark = Some(outcome.watermark);
        }
        let watermark = match watermark {
            Some(w) => w,
            None => return Ok(report),
        };
        let changes = self
            .incremental(object, &describe, &selection, schema, watermark)
            .await?;
        report.changed = changes.changed;
        report.deleted = changes.deleted;
        report.failed += changes.failed;
        Ok(report)
    }

    /// The object's describe (see the module's note on when it is revalidated) and the
    /// plugin's schema built from it.
    async fn describe(
        &mut self,
        object: &ObjectConfig,
    ) -> Result<(Arc<SObjectDescribe>, Arc<ObjectSchema>), InboundError> {
        let name = object.name.as_str();
        let trusted = if self.suspect.remove(name) {
            Duration::ZERO
        } else {
            self.config.describe_ttl
        };
        let mut describe = self
            .client
            .describe_within(Project::Incremental, name, trusted)
            .await
            .map_err(|source| salesforce(name, source))?;
        if !trusted.is_zero()
            && !Selection::resolve(&object.source, &describe)
                .missing
                .is_empty()
        {
            // A configured field the trusted describe lacks may be new in the org.
            describe = self
                .client
                .refresh_describe(Project::Incremental, name)
                .await
                .map_err(|source| salesforce(name, source))?;
        }
        if let Some((built_from, schema)) = self.schemas.get(name)
            && Arc::ptr_eq(built_from, &describe)
        {
            return Ok((describe, schema.clone()));
        }
        let schema = Arc::new(schema_from_describe(&describe.raw()).unwrap_or_else(|reason| {
            tracing::warn!(%reason, "describe has no usable schema; coercion passes values through");
            ObjectSchema {
                name: name.to_owned(),
                fields: Vec::new(),
            }
        }));
        self.schemas
            .insert(name.to_owned(), (describe.clone(), schema.clone()));
        Ok((describe, schema))
    }

    /// Whether the Ids the object delivers are kept in the store. Only reconciliation reads
    /// them, and it runs only for objects the replication resources do not serve; for the
    /// others they would cost a B-tree insert per row and grow the store by every row, for
    /// nothing. An object whose describe is not known yet keeps them.
    fn tracks_ids(&self, object: &str) -> bool {
        self.schemas
            .get(object)
            .is_none_or(|(describe, _)| !describe.replicateable)
    }

    /// Commits a page: its DLQ entries and the object's new state, in one transaction, after
    /// the sink has the page.
    fn commit(
        &self,
        object: &str,
        page: &Prepared,
        state: &dyn Fn(&mut dyn StoreTxn) -> Result<(), StoreError>,
    ) -> Result<(), InboundError> {
        // A durable commit blocks on fsync: not on an async worker's time.
        let track_ids = self.tracks_ids(object);
        crate::blocking::in_place(|| {
            write_page(
                &*self.store,
                &self.installation,
                object,
                page,
                track_ids,
                state,
            )
        })
        .map_err(|source| store(object, source))
    }

    /// [`InboundSync::commit`] of a page whose checkpoint was encoded when it landed, as
    /// work that owns what it needs: it may run on the blocking pool while the next page
    /// is delivered.
    fn page_commit(
        &self,
        object: &str,
        page: Prepared,
        saving: state::Saving,
    ) -> impl FnOnce() -> Result<(), InboundError> + Send + 'static {
        let store = self.store.clone();
        let installation = self.installation.clone();
        let track_ids = self.tracks_ids(object);
        let object = object.to_owned();
        move || {
            write_page(&*store, &installation, &object, &page, track_ids, &|txn| {
                saving.apply(txn, &installation, &object)
            })
            .map_err(|source| self::store(&object, source))
        }
    }

    /// Waits for the page commit in flight, if any, and returns its outcome.
    async fn settle(&mut self, object: &str) -> Result<(), InboundError> {
        let Some(committing) = self.committing.take() else {
            return Ok(());
        };
        committing.await.map_err(|e| InboundError::CommitLost {
            object: object.to_owned(),
            message: e.to_string(),
        })?
    }

    async fn deliver(&mut self, object: &str, prepared: &Prepared) -> Result<(), InboundError> {
        self.sink
            .deliver(object, &prepared.deliveries)
            .await
            .map_err(|source| match source {
                SinkError::Stopped => InboundError::Stopped,
                source => InboundError::Sink {
                    object: object.to_owned(),
                    source,
                },
            })
    }
}

/// One durable transaction for a page: its DLQ entries, the Ids it delivered and deleted
/// (when `track_ids`: see [`InboundSync::tracks_ids`]), and the object's new state.
fn write_page(
    store: &dyn Store,
    installation: &str,
    object: &str,
    page: &Prepared,
    track_ids: bool,
    state: &dyn Fn(&mut dyn StoreTxn) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let (mut present, mut gone) = (Vec::new(), Vec::new());
    if track_ids {
        for d in page.deliveries.iter() {
            match d.op {
                Op::Upsert => present.push(d.id),
                Op::Delete => gone.push(d.id),
            }
        }
    }
    store.write(&mut |txn| {
        for entry in &page.dead {
            txn.put_dlq(entry)?;
        }
        if track_ids {
            txn.set_synced_ids(installation, object, &present, &gone)?;
        }
        state(txn)
    })
}

/// Whether the object's periodic full re-read (for formula fields) is due.
fn reread_due(object: &ObjectConfig, watermark: &Watermark) -> bool {
    let Some(every) = object.formula_reread else {
        return false;
    };
    let every_ms = i64::try_from(every.as_millis()).unwrap_or(i64::MAX);
    jiff::Timestamp::now().as_millisecond() - watermark.reread_ms >= every_ms
}

fn join(names: &[&String]) -> String {
    names
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn salesforce(object: &str, source: SalesforceError) -> InboundError {
    if matches!(source, SalesforceError::Stopped) {
        // Not the object's failure: the sync was asked to stop in the middle of a page.
        return InboundError::Stopped;
    }
    InboundError::Salesforce {
        object: object.to_owned(),
        source,
    }
}

fn store(object: &str, source: StoreError) -> InboundError {
    InboundError::Store {
        object: object.to_owned(),
        source: Box::new(source),
    }
}
