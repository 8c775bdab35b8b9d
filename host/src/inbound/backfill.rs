//! Backfill of one object: every row, in Id order, through REST pages (small objects) or a
//! Bulk API 2.0 job (large ones), checkpointed after each page the sink holds.
//!
//! Rows are read in Id order with the checkpoint keeping the last delivered Id, so a REST
//! backfill resumes with `Id > last`, and a Bulk job that expired, failed or stuck is
//! re-created from the same place instead of from the start.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use jiff::Timestamp;

use super::page::Page;
use super::state::{self, Backfill, Watermark};
use super::{
    InboundError, InboundSync, Prepared, Selection, prefetch, rows, salesforce, soql, store,
};
use crate::config::{Api, ObjectConfig};
use crate::plugin::ObjectSchema;
use crate::salesforce::{QueryPage, SObjectDescribe, SalesforceError};
use crate::throttle::Project;

/// Bulk jobs created in a row without delivering a page before the backfill stops with an
/// error. 3: one failed job is Salesforce's bad luck; three say the query cannot run.
const BULK_JOB_ATTEMPTS: u32 = 3;

pub(super) struct BackfillOutcome {
    pub delivered: u64,
    pub failed: u64,
    pub watermark: Watermark,
}

impl InboundSync {
    /// Counts the object, notes where incremental sync will take over, and commits the plan
    /// so a restart continues this backfill rather than planning a new one.
    pub(super) async fn plan_backfill(
        &mut self,
        object: &ObjectConfig,
        selection: &Selection,
        reason: String,
    ) -> Result<Backfill, InboundError> {
        let name = object.name.as_str();
        let filter = soql::filter(&object.source);
        let started_ms = Timestamp::now().as_millisecond();
        // Two independent questions, asked at once: one round trip to the org, not two.
        let (count_query, newest_query) = (soql::count(name, filter), soql::newest(name, filter));
        let (count, newest) = futures_util::future::try_join(
            self.first_page(Project::Backfill, name, &count_query, false),
            self.first_page(Project::Backfill, name, &newest_query, false),
        )
        .await?;
        let total = count.total_size;
        let high_water_ms = newest
            .records
            .into_iter()
            .next()
            .map(rows::from_rest)
            .and_then(|row| rows::modstamp(&row))
            .map_or(0, |t| t.as_millisecond());
        let use_bulk = match object.api {
            Api::Bulk => true,
            Api::Rest => false,
            Api::Auto => total > self.config.bulk_threshold,
        };
        let plan = Backfill {
            fields: selection.fields.clone(),
            reason,
            last_id: None,
            bulk: None,
            use_bulk,
            done: 0,
            total,
            failed: 0,
            high_water_ms,
            started_ms,
            recent: Default::default(),
            recent_saved: 0,
            sink_end: self.sink.end(name).map_err(|source| InboundError::Sink {
                object: name.to_owned(),
                source,
            })?,
        };
        tracing::info!(total, use_bulk, reason = %plan.reason, "backfill planned");
        let installation = self.installation.clone();
        // No recent rows yet: an earlier backfill's are cleared with them.
        let no_recent = BTreeMap::<String, i64>::new();
        self.commit(name, &Prepared::default(), &|txn| {
            plan.save(txn, &installation, name)?;
            txn.put_backfill_recent(&installation, name, &no_recent)
        })?;
        Ok(plan)
    }

    /// Runs (or resumes) `plan` to the end and hands incremental sync its watermark.
    pub(super) async fn backfill(
        &mut self,
        object: &ObjectConfig,
        describe: &Arc<SObjectDescribe>,
        selection: &Selection,
        schema: Arc<ObjectSchema>,
        mut plan: Backfill,
    ) -> Result<BackfillOutcome, InboundError> {
        let name = object.name.as_str();
        // A field the org dropped since the plan was made would fail every query.
        plan.fields.retain(|f| selection.fields.contains(f));
        if let Some(end) = plan.sink_end {
            self.sink
                .cut(name, end)
                .map_err(|source| InboundError::Sink {
                    object: name.to_owned(),
                    source,
                })?;
        }
        self.progress
            .start(name, plan.done, plan.total, &plan.reason);
        let before = (plan.done, plan.failed);
        let paged = if plan.use_bulk {
            self.bulk_pages(object, describe, &schema, &mut plan).await
        } else {
            self.rest_pages(object, &schema, &mut plan).await
        };
        // Also when paging stopped on an error: the last page's commit lands (or fails)
        // before anything reads the checkpoint again.
        let settled = self.settle(name).await;
        paged?;
        settled?;
        let previous: Option<Watermark> = self.store_watermark(name)?;
        let mut watermark = match previous {
            // A backfill for new fields: incremental sync keeps its place.
            Some(mut w) => {
                w.fields = plan.fields.clone();
                w.reread_ms = plan.started_ms;
                w
            }
            None => Watermark {
                since_ms: plan.high_water_ms,
                after_id: String::new(),
                recent: Default::default(),
                fields: plan.fields.clone(),
                deleted_until_ms: plan.started_ms,
                reread_ms: plan.started_ms,
                reconciled_ms: plan.started_ms,
            },
        };
        watermark.recent.extend(std::mem::take(&mut plan.recent));
        watermark.prune(self.lookback_ms());
        let installation = self.installation.clone();
        let no_recent = BTreeMap::<String, i64>::new();
        self.commit(name, &Prepared::default(), &|txn| {
            txn.put_checkpoint(&installation, name, &None::<Backfill>)?;
            txn.put_backfill_recent(&installation, name, &no_recent)?;
            txn.put_watermark(&installation, name, &watermark)
        })?;
        self.progress.finish(name);
        tracing::info!(
            delivered = plan.done,
            failed = plan.failed,
            "backfill finished"
        );
        Ok(BackfillOutcome {
            delivered: plan.done - before.0,
            failed: plan.failed - before.1,
            watermark,
        })
    }

    async fn rest_pages(
        &mut self,
        object: &ObjectConfig,
        schema: &Arc<ObjectSchema>,
        plan: &mut Backfill,
    ) -> Result<(), InboundError> {
        let name = object.name.as_str();
        let filter = soql::filter(&object.source);
        let page_size = self.config.page_size;
        // The field list is fixed for the whole backfill; pages only move the Id.
        let fields = plan.fields.clone();
        let query_after =
            |last_id: Option<&str>| soql::backfill(name, &fields, filter, last_id, Some(page_size));
        let mut next = prefetch::page(
            &self.client,
            Project::Backfill,
            name,
            query_after(plan.last_id.as_deref()),
        );
        let mut pipeline = Pipeline::new(plan);
        loop {
            let page = match next.join().await {
                Some(page) => page.map_err(|e| salesforce(name, e))?,
                None => return Err(salesforce(name, fetch_cancelled())),
            };
            let read = page.len();
            let Some(last_id) = page.last_id().map(str::to_owned) else {
                break;
            };
            // The next page is keyed by this page's last Id, known before this page is
            // processed: fetch it while the plugin and the sink work.
            next = prefetch::page(
                &self.client,
                Project::Backfill,
                name,
                query_after(Some(&last_id)),
            );
            self.pipe_page(&mut pipeline, name, schema, page, plan, None)
                .await?;
            if read < page_size {
                break;
            }
        }
        self.land(&mut pipeline, name, plan).await
    }

    async fn bulk_pages(
        &mut self,
        object: &ObjectConfig,
        describe: &Arc<SObjectDescribe>,
        schema: &Arc<ObjectSchema>,
        plan: &mut Backfill,
    ) -> Result<(), InboundError> {
        let name = object.name.as_str();
        let filter = soql::filter(&object.source);
        let mut fresh_jobs = 0u32;
        loop {
            let stream = match plan.bulk.clone() {
                Some(cursor) => match self
                    .client
                    .resume_bulk_query(Project::Backfill, cursor)
                    .await
                {
                    Ok(stream) => stream,
                    Err(e) if job_is_gone(&e) => {
                        tracing::warn!(error = %e, last_id = ?plan.last_id, "the Bulk job cannot be resumed; re-creating it from the checkpoint");
                        self.progress
                            .note(name, format!("Bulk job re-created: {e}"));
                        plan.bulk = None;
                        continue;
                    }
                    Err(e) => return Err(salesforce(name, e)),
                },
                None => {
                    fresh_jobs += 1;
                    let query =
                        soql::backfill(name, &plan.fields, filter, plan.last_id.as_deref(), None);
                    match self
                        .client
                        .bulk_query(Project::Backfill, &query, false)
                        .await
                    {
                        Ok(stream) => {
                            plan.bulk = Some(stream.cursor());
                            let installation = self.installation.clone();
                            let saving: &Backfill = plan;
                            self.commit(name, &Prepared::default(), &|txn| {
                                saving.save(txn, &installation, name)
                            })?;
                            plan.saved();
                            stream
                        }
                        Err(e) if job_is_gone(&e) && fresh_jobs < BULK_JOB_ATTEMPTS => {
                            tracing::warn!(error = %e, "a Bulk job failed; creating another");
                            self.progress
                                .note(name, format!("Bulk job failed, re-created: {e}"));
                            continue;
                        }
                        Err(e) if job_is_gone(&e) => {
                            return Err(InboundError::BulkGaveUp {
                                object: name.to_owned(),
                                attempts: fresh_jobs,
                                last: e.to_string(),
                            });
                        }
                        Err(e) => return Err(salesforce(name, e)),
                    }
                }
            };
            let mut stream = prefetch::BulkAhead::start(stream, name, describe.clone());
            let mut pipeline = Pipeline::new(plan);
            loop {
                match stream.next_batch().await {
                    Ok(Some(batch)) => {
                        fresh_jobs = 0;
                        let last = batch.last;
                        self.pipe_page(
                            &mut pipeline,
                            name,
                            schema,
                            batch.page,
                            plan,
                            Some(batch.cursor),
                        )
                        .await?;
                        if last {
                            return self.land(&mut pipeline, name, plan).await;
                        }
                    }
                    Ok(None) => return self.land(&mut pipeline, name, plan).await,
                    Err(e) if job_is_gone(&e) => {
                        tracing::warn!(error = %e, "the Bulk job went away mid-read; re-creating it from the checkpoint");
                        // The pages read before are good: they land, and the new job starts
                        // after them.
                        self.land(&mut pipeline, name, plan).await?;
                        plan.bulk = None;
                        break;
                    }
                    Err(e) => return Err(salesforce(name, e)),
                }
            }
        }
    }

    /// Starts `page` through the plugin, then lands the oldest page in flight once more
    /// than [`IN_FLIGHT`] are: download, plugin work and sink + checkpoint of several pages
    /// overlap, and pages still land (and checkpoint) one at a time, in order.
    async fn pipe_page(
        &mut self,
        pipeline: &mut Pipeline,
        name: &str,
        schema: &Arc<ObjectSchema>,
        page: Page,
        plan: &mut Backfill,
        cursor: Option<crate::salesforce::BulkCursor>,
    ) -> Result<(), InboundError> {
        let horizon = plan.high_water_ms.saturating_sub(self.lookback_ms());
        // Only as many as the cap leaves room for once the pages ahead have landed: past
        // it, a freshly seeded org would copy every Id of every page for nothing.
        let ahead: usize = pipeline.pages.iter().map(|p| p.recent.len()).sum();
        let room = state::RECENT_CAP.saturating_sub(plan.recent.len() + ahead);
        let recent = (0..page.len())
            .filter_map(|row| match (page.id(row), page.rows[row].stamp) {
                (Some(id), Some(stamp)) if stamp.as_millisecond() >= horizon => {
                    Some((id.to_owned(), stamp.as_millisecond()))
                }
                _ => None,
            })
            .take(room)
            .collect();
        let (read, last_id) = (page.len() as u64, page.last_id().map(str::to_owned));
        // A page's plugin work is one unit of the host's scheduler; a stop request ends the
        // backfill here, and the pages in flight (never landed) are read again on resume.
        let turn = self.unit().await?;
        pipeline.pages.push_back(InFlight {
            prepared: Box::pin(self.plugin.prepare(name, page, schema.clone(), turn)),
            read,
            last_id,
            recent,
            cursor,
        });
        if pipeline.pages.len() > IN_FLIGHT
            && let Some(oldest) = pipeline.pages.pop_front()
        {
            self.land_one(pipeline, oldest, name, plan).await?;
        }
        Ok(())
    }

    /// Lands every page still in flight, in order, bringing `plan` up to date.
    async fn land(
        &mut self,
        pipeline: &mut Pipeline,
        name: &str,
        plan: &mut Backfill,
    ) -> Result<(), InboundError> {
        while let Some(page) = pipeline.pages.pop_front() {
            self.land_one(pipeline, page, name, plan).await?;
        }
        self.settle(name).await
    }

    /// Sink → checkpoint for one page whose plugin work has been started.
    async fn land_one(
        &mut self,
        pipeline: &mut Pipeline,
        page: InFlight,
        name: &str,
        plan: &mut Backfill,
    ) -> Result<(), InboundError> {
        let prepared = page.prepared.await;
        if !pipeline.cuttable {
            self.settle(name).await?;
            pipeline.cuttable = pipeline.committing_end;
        }
        self.deliver(name, &prepared).await?;
        let sink_end = self.sink.end(name).map_err(|source| InboundError::Sink {
            object: name.to_owned(),
            source,
        })?;
        // Checkpoints commit one at a time, in order.
        self.settle(name).await?;
        pipeline.cuttable = pipeline.committing_end;
        if let Some(id) = page.last_id {
            plan.last_id = Some(id);
        }
        if page.cursor.is_some() {
            plan.bulk = page.cursor;
        }
        plan.done += page.read;
        // Only once the page is in the sink: these rows are now delivered. Capped (see
        // `Watermark::prune`).
        let room = state::RECENT_CAP.saturating_sub(plan.recent.len());
        plan.recent.extend(page.recent.into_iter().take(room));
        plan.failed += prepared.dead.len() as u64;
        plan.sink_end = sink_end;
        let saving = plan.saving().map_err(|source| store(name, source))?;
        plan.saved();
        self.progress
            .advance(name, page.read, prepared.dead.len() as u64);
        let commit = self.page_commit(name, prepared, saving);
        pipeline.committing_end = sink_end.is_some();
        if pipeline.cuttable && pipeline.committing_end {
            // The next page may be delivered meanwhile: a crash before this commit is
            // durable resumes from the previous checkpoint and cuts both pages away.
            self.committing = Some(tokio::task::spawn_blocking(commit));
        } else {
            crate::blocking::in_place(commit)?;
            pipeline.cuttable = pipeline.committing_end;
        }
        Ok(())
    }

    /// The first page of a query: Weft's own queries carry a `LIMIT` within one page.
    pub(super) async fn first_page(
        &self,
        project: Project,
        object: &str,
        query: &str,
        all: bool,
    ) -> Result<QueryPage, InboundError> {
        prefetch::first_page(&self.client, project, query, all)
            .await
            .map_err(|e| salesforce(object, e))
    }
}

/// Pages whose plugin work may run while an older page lands. Two: a page's plugin work
/// and the next one's fill both cores of a small machine while a third page's sink and
/// checkpoint wait on fsync, and two is what the scheduler allows one installation at once
/// (`SchedulerConfig::per_installation`), so pages never wait on their own turns.
const IN_FLIGHT: usize = 2;

/// The pages of a backfill read and started, oldest first.
struct Pipeline {
    pages: VecDeque<InFlight>,
    /// Whether the last durable checkpoint records where the sink ended: then a page may
    /// be delivered while the previous page's checkpoint commits, since a resume cuts the
    /// sink back to the durable end. Otherwise (an HTTP sink, or a checkpoint written
    /// before checkpoints recorded it) a page is delivered only after the previous
    /// checkpoint is durable, or a crash would re-deliver two.
    cuttable: bool,
    /// Whether the checkpoint last sent to commit records it: `cuttable` once it is durable.
    committing_end: bool,
}

impl Pipeline {
    fn new(plan: &Backfill) -> Self {
        let cuttable = plan.sink_end.is_some();
        Pipeline {
            pages: VecDeque::new(),
            cuttable,
            committing_end: cuttable,
        }
    }
}

struct InFlight {
    prepared: Pin<Box<dyn Future<Output = Prepared> + Send>>,
    read: u64,
    last_id: Option<String>,
    /// Rows inside the lookback window, remembered once the page lands.
    recent: Vec<(String, i64)>,
    /// Where the Bulk result stands once the page lands.
    cursor: Option<crate::salesforce::BulkCursor>,
}

/// A read-ahead task that ended without an answer (it panicked or the runtime is shutting
/// down): reported as a transport failure, so the object resumes from its checkpoint.
fn fetch_cancelled() -> SalesforceError {
    SalesforceError::Transport {
        kind: crate::salesforce::TransportKind::Other,
        message: "the page fetch did not complete".into(),
    }
}

/// The job failed, was aborted (also by our own timeout on a job stuck `InProgress`), or
/// is no longer known (results expire): re-create it from the checkpoint.
fn job_is_gone(e: &SalesforceError) -> bool {
    match e {
        SalesforceError::BulkJob { .. } | SalesforceError::BulkTimeout { .. } => true,
        SalesforceError::Api { status: 404, .. } => true,
        other => {
            other.error_code() == Some("NOT_FOUND") || other.error_code() == Some("INVALIDJOBSTATE")
        }
    }
}
