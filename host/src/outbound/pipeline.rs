//! One installation's outbound pipeline, one round at a time: take due events from the
//! queue → plugin map and coerce → order and staleness → conflict read → validate →
//! resolve → write → commit every event's outcome in one store transaction.
//!
//! Why validation follows the conflict read: whether a record exists decides which rules
//! apply (required and createable on create, updateable on update), and only the read
//! tells. The Salesforce writes happen before the commit; a crash in between leaves the
//! events pending, so they are written again (by external id, which cannot duplicate a
//! record) and audited then.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{Map, Value as Json};

use crate::plugin::InstalledPlugins;
use crate::salesforce::SalesforceClient;
use crate::store::{
    AppliedMark, AuditAction, AuditEntry, DlqOriginal, FieldChange, NewDlqEntry, Operation,
    OutboundEvent, PendingEvent, RetryState, SkippedField, Stage, Store, StoreError,
};

use super::config::{DeletePolicy, OutboundConfig};
use super::current::{Current, key_text, read_current};
use super::identity::{integration_user, same_id};
use super::outcome::{Applied, EventOutcome, Problem, Tally};
use super::resolve::{Contest, resolve};
use super::retry::{RetrySchedule, Verdict};
use super::schemas::Schemas;
use super::transform::{MappedRecord, transform};
use super::write;

/// How long after a failed look-up of the integration user the pipeline asks again. A
/// minute: an outage of the identity endpoint costs one request a minute, not one a round,
/// and the conflict rule is only stricter than needed meanwhile.
const IDENTITY_RETRY: Duration = Duration::from_secs(60);

/// A round could not finish (the store failed); its events stay pending.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("installation {installation}: {source}")]
    Store {
        installation: String,
        #[source]
        source: StoreError,
    },
    #[error("installation {installation}: a store task failed: {message}")]
    Task {
        installation: String,
        message: String,
    },
}

/// What one round did, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// Events taken from the queue.
    pub taken: usize,
    /// Events finished: written, deleted, or skipped on purpose (and audited).
    pub done: usize,
    pub dead_lettered: usize,
    /// Events that failed transiently and wait in the retry schedule.
    pub retrying: usize,
    /// Events held back behind an earlier event for the same record.
    pub deferred: usize,
    /// Events left queued as they were because the installation stopped mid-round.
    pub interrupted: usize,
}

impl RoundReport {
    /// Whether the round moved any event out of the queue.
    pub fn progressed(&self) -> bool {
        self.done + self.dead_lettered > 0
    }
}

/// The outbound pipeline of one installation.
pub struct Pipeline {
    installation: String,
    config: OutboundConfig,
    client: SalesforceClient,
    plugins: Arc<InstalledPlugins>,
    store: Arc<dyn Store>,
    schedule: RetrySchedule,
    /// The Salesforce user the client is logged in as (learned once; see [`identity`]).
    ///
    /// [`identity`]: super::identity
    integration_user: Option<String>,
    /// When the integration user was last asked for without success.
    integration_user_failed: Option<Instant>,
    /// Whether `schedule` was taken up from the store (done before the first round).
    schedule_restored: bool,
    /// When the client's describe cache was last emptied (see `describe_ttl_secs`).
    schemas_read: Instant,
    /// The coercer's schema and the validator's rules of each object, per describe read.
    schemas: Schemas,
}

/// What the pipeline does with one mapped record.
#[derive(Debug, Clone)]
enum Op {
    Upsert,
    Delete(DeletePolicy),
}

#[derive(Debug, Clone)]
struct Item {
    event: usize,
    object: String,
    key_field: String,
    key: String,
    /// Shared with the resolver's work on the blocking pool.
    fields: Arc<Map<String, Json>>,
    op: Op,
    mark: Option<AppliedMark>,
}

/// A write the round will send, and how to audit it.
struct Pending {
    item: usize,
    record: Map<String, Json>,
    skipped: Vec<SkippedField>,
    action: AuditAction,
}

impl Pipeline {
    pub fn new(
        installation: impl Into<String>,
        config: OutboundConfig,
        client: SalesforceClient,
        plugins: Arc<InstalledPlugins>,
        store: Arc<dyn Store>,
    ) -> Self {
        Pipeline {
            installation: installation.into(),
            config,
            client,
            plugins,
            store,
            schedule: RetrySchedule::default(),
            schedule_restored: false,
            integration_user: None,
            integration_user_failed: None,
            schemas_read: Instant::now(),
            schemas: Schemas::default(),
        }
    }

    pub fn installation(&self) -> &str {
        &self.installation
    }

    /// The installation's API governor (the worker checks its pacing before a round).
    pub fn governor(&self) -> &Arc<crate::throttle::Governor> {
        self.client.governor()
    }

    pub fn config(&self) -> &OutboundConfig {
        &self.config
    }

    /// Forgets the org's describes, so the next round validates against the org as it is
    /// now (after an admin added a field or a picklist value, before a replay).
    pub fn refresh_schemas(&mut self) {
        self.client.clear_describe_cache();
        self.schemas = Schemas::default();
        self.schemas_read = Instant::now();
    }

    /// Events waiting in the retry schedule.
    pub fn retrying(&self) -> usize {
        self.schedule.waiting()
    }

    /// When the next waiting retry becomes due, if any.
    pub fn next_retry(&self) -> Option<Instant> {
        self.schedule.next_due()
    }

    /// Runs one round over up to `batch_size` due events.
    #[tracing::instrument(name = "outbound_round", skip_all, fields(installation = %self.installation))]
    pub async fn run_round(&mut self) -> Result<RoundReport, OutboundError> {
        let now = Instant::now();
        if now.duration_since(self.schemas_read) >= self.config.describe_ttl() {
            self.refresh_schemas();
        }
        if !self.schedule_restored {
            self.restore_schedule(now).await?;
        }
        let events = self.due_events(now).await?;
        if events.is_empty() {
            return Ok(RoundReport::default());
        }
        self.learn_integration_user().await;
        let mut tally = Tally::new(events.len());
        for index in 0..events.len() {
            tally.start(index);
        }
        let inputs: Vec<_> = events
            .iter()
            .enumerate()
            .map(|(i, e)| (i, &e.event))
            .collect();
        let mapped = transform(
            &self.installation,
            &self.plugins,
            &self.client,
            &mut self.schemas,
            &inputs,
            &mut tally,
        )
        .await;
        let mut items = self.items(&events, mapped, &mut tally);
        self.order(&events, &mut items, &mut tally, now);
        self.load_marks(&mut items).await?;
        let items = drop_stale(&events, items, &mut tally, &self.installation);
        let mut by_object: BTreeMap<String, Vec<Item>> = BTreeMap::new();
        for item in items {
            by_object.entry(item.object.clone()).or_default().push(item);
        }
        for (object, group) in by_object {
            self.sync_object(&object, &events, group, &mut tally).await;
        }
        self.commit(&events, tally).await
    }

    /// Learns which user Weft writes as, once. Without it every change counts as someone
    /// else's (the conflict rule errs towards keeping Salesforce's values), so a failure
    /// only warns, and is asked again after [`IDENTITY_RETRY`] rather than every round.
    async fn learn_integration_user(&mut self) {
        if self.integration_user.is_some()
            || self
                .integration_user_failed
                .is_some_and(|at| at.elapsed() < IDENTITY_RETRY)
        {
            return;
        }
        match integration_user(&self.client).await {
            Ok(id) => {
                tracing::info!(installation = %self.installation, user_id = %id, "integration user learned");
                self.integration_user = Some(id);
            }
            Err(error) => {
                self.integration_user_failed = Some(Instant::now());
                tracing::warn!(
                    installation = %self.installation,
                    "could not learn the integration user; until it is known, every change in Salesforce counts as someone else's: {error}"
                );
            }
        }
    }

    /// Takes up the retry state an earlier process left in the store, so its attempt counts
    /// and waits carry on instead of starting again.
    async fn restore_schedule(&mut self, now: Instant) -> Result<(), OutboundError> {
        let store = self.store.clone();
        let installation = self.installation.clone();
        let states = self
            .blocking(move || store.retry_states(&installation))
            .await?;
        let at = Timestamp::now();
        let restored = states.len();
        for (seq, state) in states {
            // A wait already over is due now; one longer than the policy allows (the clock
            // moved back, or the policy was shortened) is cut to the policy's longest.
            let wait = Duration::try_from(state.next_attempt_at.duration_since(at))
                .unwrap_or(Duration::ZERO)
                .min(self.config.retry.max());
            self.schedule
                .restore(seq, state.attempts, now + wait, state.keys);
        }
        self.schedule_restored = true;
        if restored > 0 {
            tracing::info!(
                installation = %self.installation,
                events = restored,
                "resumed the outbound retry schedule from the store"
            );
        }
        Ok(())
    }

    /// Pending events whose retry wait (if any) is over, oldest first.
    async fn due_events(&self, now: Instant) -> Result<Vec<PendingEvent>, OutboundError> {
        let batch = self.config.batch_size;
        // Waiting retries sit at the head of the queue; look past them, but not forever.
        let scan_limit = batch.saturating_mul(10);
        let mut out = Vec::new();
        let mut after = None;
        let mut scanned = 0;
        while out.len() < batch && scanned < scan_limit {
            let store = self.store.clone();
            let installation = self.installation.clone();
            let page = self
                .blocking(move || store.pending_events(&installation, after, batch))
                .await?;
            let Some(last) = page.last() else {
                break;
            };
            after = Some(last.seq);
            scanned += page.len();
            for event in page {
                if out.len() < batch && self.schedule.is_due(event.seq, now) {
                    out.push(event);
                }
            }
        }
        Ok(out)
    }

    /// Turns mapped records into work items, failing records the configuration cannot
    /// place (no object settings, no external id, no delete policy).
    fn items(
        &self,
        events: &[PendingEvent],
        mapped: Vec<MappedRecord>,
        tally: &mut Tally,
    ) -> Vec<Item> {
        let mut items = Vec::with_capacity(mapped.len());
        for record in mapped {
            let Some(event) = events.get(record.event) else {
                continue;
            };
            let Some(settings) = self.config.objects.get(&record.object) else {
                tally.fail(
                    record.event,
                    Problem::permanent(
                        Stage::Validate,
                        "NO_OUTBOUND_OBJECT",
                        format!(
                            "the plugin mapped this event to {obj}, but the installation's configuration has no [outbound.objects.{obj}] (which external id to upsert by)",
                            obj = record.object
                        ),
                    ),
                );
                continue;
            };
            let key_field = settings.external_id.clone();
            let Some(key) = record.fields.get(&key_field).and_then(key_text) else {
                tally.fail(
                    record.event,
                    Problem::permanent(
                        Stage::Validate,
                        "MISSING_EXTERNAL_ID",
                        format!(
                            "the mapped {} record has no value for its external id {key_field}",
                            record.object
                        ),
                    )
                    .with_fields(vec![key_field]),
                );
                continue;
            };
            let op = match (event.event.operation, &settings.delete) {
                (Operation::Upsert, _) => Op::Upsert,
                (Operation::Delete, Some(policy)) => Op::Delete(policy.clone()),
                (Operation::Delete, None) => {
                    tally.fail(
                        record.event,
                        Problem::permanent(
                            Stage::Validate,
                            "NO_DELETE_POLICY",
                            format!(
                                "a delete for {obj} {key}, but [outbound.objects.{obj}] sets no delete policy; set delete = {{ policy = \"hard_delete\" | \"soft_delete\" | \"mark_inactive\" | \"ignore\" }} and replay",
                                obj = record.object
                            ),
                        ),
                    );
                    continue;
                }
            };
            tally.note_key(record.event, &record.object, &key);
            items.push(Item {
                event: record.event,
                object: record.object,
                key_field,
                key,
                fields: Arc::new(record.fields),
                op,
                mark: None,
            });
        }
        items
    }

    /// Events for the same record go one per round, oldest occurrence first, and never
    /// ahead of an earlier event still waiting to be retried.
    fn order(
        &self,
        events: &[PendingEvent],
        items: &mut Vec<Item>,
        tally: &mut Tally,
        now: Instant,
    ) {
        let held = self.schedule.held_keys(now);
        let mut order: Vec<usize> = (0..events.len()).collect();
        order.sort_by_key(|&i| {
            events
                .get(i)
                .map(|e| (e.event.occurred_at, e.seq))
                .unwrap_or((Timestamp::MAX, u64::MAX))
        });
        let mut claimed: HashSet<(String, String)> = HashSet::new();
        for index in order {
            if tally.is_failed(index) {
                continue;
            }
            let keys = tally.keys(index);
            if keys.iter().any(|k| held.contains(k) || claimed.contains(k)) {
                tally.defer(index);
            } else {
                claimed.extend(keys.iter().cloned());
            }
        }
        items.retain(|item| !tally.is_deferred(item.event) && !tally.is_failed(item.event));
    }

    async fn load_marks(&self, items: &mut [Item]) -> Result<(), OutboundError> {
        let keys: Vec<(String, String)> = items
            .iter()
            .map(|i| (i.object.clone(), i.key.clone()))
            .collect();
        let store = self.store.clone();
        let installation = self.installation.clone();
        let marks = self
            .blocking(move || {
                keys.iter()
                    .map(|(object, key)| store.applied_mark(&installation, object, key))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        for (item, mark) in items.iter_mut().zip(marks) {
            item.mark = mark;
        }
        Ok(())
    }

    /// Conflict read, validation, resolution and the writes for one object's items.
    async fn sync_object(
        &mut self,
        object: &str,
        events: &[PendingEvent],
        items: Vec<Item>,
        tally: &mut Tally,
    ) {
        let fail_all = |tally: &mut Tally, problem: Problem| {
            for item in &items {
                tally.fail(item.event, problem.clone());
            }
        };
        let rules = match self.schemas.get(&self.client, object).await {
            Ok(described) => described.rules,
            Err(error) => {
                return fail_all(tally, Problem::from_salesforce(Stage::Conflict, &error));
            }
        };
        let Some(key_field) = items.first().map(|i| i.key_field.clone()) else {
            return;
        };
        let mut read_fields: Vec<String> = Vec::new();
        for item in &items {
            for field in item.fields.keys() {
                if let Some(name) = rules.field_name(field)
                    && !read_fields.iter().any(|f| f == name)
                {
                    read_fields.push(name.to_owned());
                }
            }
        }
        let keys: Vec<String> = items.iter().map(|i| i.key.clone()).collect();
        let current =
            match read_current(&self.client, object, &key_field, &read_fields, &keys).await {
                Ok(current) => current,
                Err(error) => {
                    return fail_all(tally, Problem::from_salesforce(Stage::Conflict, &error));
                }
            };

        let mut writes: Vec<Pending> = Vec::new();
        let mut deletes: Vec<(usize, String)> = Vec::new();
        let mut contests: Vec<usize> = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let now_there = current.get(&item.key);
            match &item.op {
                Op::Upsert => {
                    let violations =
                        rules.check_record(&item.fields, now_there.is_some(), &key_field);
                    if let Some(first) = violations.first() {
                        let message = violations
                            .iter()
                            .map(|v| v.message.as_str())
                            .collect::<Vec<_>>()
                            .join("; ");
                        let mut fields: Vec<String> =
                            violations.iter().flat_map(|v| v.fields.clone()).collect();
                        fields.dedup();
                        tally.fail(
                            item.event,
                            Problem::permanent(Stage::Validate, first.code, message)
                                .with_fields(fields),
                        );
                    } else {
                        contests.push(index);
                    }
                }
                Op::Delete(policy) => {
                    let done = |action| Applied {
                        audit: self.audit(events, item, action, Vec::new(), Vec::new()),
                        mark: Some(self.mark(events, item)),
                    };
                    match (policy, now_there) {
                        (DeletePolicy::Ignore, _) => {
                            tally.applied(item.event, done(AuditAction::DeleteIgnored))
                        }
                        (_, None) => tally.applied(item.event, done(AuditAction::DeleteNotFound)),
                        (DeletePolicy::HardDelete, Some(found)) => match &found.id {
                            Some(id) => deletes.push((index, id.clone())),
                            None => tally.applied(item.event, done(AuditAction::DeleteNotFound)),
                        },
                        (
                            DeletePolicy::SoftDelete { field, value }
                            | DeletePolicy::MarkInactive { field, value },
                            Some(_),
                        ) => {
                            let mut record = Map::new();
                            record.insert(key_field.clone(), Json::String(item.key.clone()));
                            record.insert(field.clone(), value.clone());
                            let action = match policy {
                                DeletePolicy::SoftDelete { .. } => AuditAction::SoftDelete,
                                _ => AuditAction::MarkInactive,
                            };
                            writes.push(Pending {
                                item: index,
                                record,
                                skipped: Vec::new(),
                                action,
                            });
                        }
                    }
                }
            }
        }

        let decided = {
            let list: Vec<Contest> = contests
                .iter()
                .filter_map(|&index| {
                    let item = items.get(index)?;
                    let event = events.get(item.event)?;
                    let now_there = current.get(&item.key);
                    Some(Contest {
                        incoming: item.fields.clone(),
                        incoming_at: event.event.occurred_at,
                        current: now_there.map(|c| c.values.clone()),
                        changed_at: changed_by_others(
                            now_there,
                            item.mark.as_ref(),
                            self.integration_user.as_deref(),
                        ),
                    })
                })
                .collect();
            resolve(&self.installation, &self.plugins, &key_field, list).await
        };
        for (&index, result) in contests.iter().zip(decided) {
            let Some(item) = items.get(index) else {
                continue;
            };
            match result {
                Err(problem) => tally.fail(item.event, problem),
                Ok(decided) => {
                    let exists = current.contains_key(&item.key);
                    let only_key = decided
                        .write
                        .keys()
                        .all(|f| f.eq_ignore_ascii_case(&key_field));
                    if exists && only_key {
                        // Every field lost the conflict check: nothing to send.
                        let audit = self.audit(
                            events,
                            item,
                            AuditAction::Skipped,
                            Vec::new(),
                            decided.skipped,
                        );
                        tally.applied(
                            item.event,
                            Applied {
                                audit,
                                mark: Some(self.mark(events, item)),
                            },
                        );
                    } else {
                        writes.push(Pending {
                            item: index,
                            record: decided.write,
                            skipped: decided.skipped,
                            action: AuditAction::Upsert,
                        });
                    }
                }
            }
        }

        let records: Vec<&Map<String, Json>> = writes.iter().map(|w| &w.record).collect();
        let results = write::upsert(
            &self.client,
            object,
            &key_field,
            &records,
            self.config.bulk_threshold,
        )
        .await;
        for (pending, result) in writes.into_iter().zip(results) {
            let Some(item) = items.get(pending.item) else {
                continue;
            };
            match result {
                Err(problem) => tally.fail(item.event, problem),
                Ok(_created) => {
                    let old = current.get(&item.key).map(|c| c.values.as_ref());
                    let changes = pending
                        .record
                        .iter()
                        .map(|(field, new)| FieldChange {
                            field: field.clone(),
                            old: old
                                .and_then(|o| o.get(field))
                                .cloned()
                                .unwrap_or(Json::Null),
                            new: new.clone(),
                        })
                        .collect();
                    let audit = self.audit(events, item, pending.action, changes, pending.skipped);
                    tally.applied(
                        item.event,
                        Applied {
                            audit,
                            mark: Some(self.mark(events, item)),
                        },
                    );
                }
            }
        }

        let ids: Vec<String> = deletes.iter().map(|(_, id)| id.clone()).collect();
        let results = write::delete(&self.client, object, &ids).await;
        for ((index, id), result) in deletes.into_iter().zip(results) {
            let Some(item) = items.get(index) else {
                continue;
            };
            match result {
                Err(problem) => tally.fail(item.event, problem),
                Ok(_) => {
                    let old = current
                        .get(&item.key)
                        .map(|c| Json::Object(c.values.as_ref().clone()))
                        .unwrap_or(Json::Null);
                    let changes = vec![FieldChange {
                        field: "Id".into(),
                        old,
                        new: Json::Null,
                    }];
                    let _ = id;
                    let audit =
                        self.audit(events, item, AuditAction::HardDelete, changes, Vec::new());
                    tally.applied(
                        item.event,
                        Applied {
                            audit,
                            mark: Some(self.mark(events, item)),
                        },
                    );
                }
            }
        }
    }

    fn audit(
        &self,
        events: &[PendingEvent],
        item: &Item,
        action: AuditAction,
        changes: Vec<FieldChange>,
        skipped: Vec<SkippedField>,
    ) -> AuditEntry {
        AuditEntry {
            installation: self.installation.clone(),
            event_id: events.get(item.event).map(|e| e.event.id.clone()),
            object: item.object.clone(),
            record_key: item.key.clone(),
            changes,
            skipped,
            action,
            at: Timestamp::now(),
        }
    }

    /// The ordering mark a finished item leaves: when its event occurred, and now (after
    /// the write), so the next conflict read can tell this write from someone else's.
    fn mark(&self, events: &[PendingEvent], item: &Item) -> (String, String, AppliedMark) {
        let occurred_at = events
            .get(item.event)
            .map_or_else(Timestamp::now, |e| e.event.occurred_at);
        (
            item.object.clone(),
            item.key.clone(),
            AppliedMark {
                occurred_at,
                written_at: Timestamp::now(),
            },
        )
    }

    /// Records every event's outcome — written, dead-lettered, or waiting to be retried —
    /// in one durable transaction, and updates the retry schedule.
    async fn commit(
        &mut self,
        events: &[PendingEvent],
        tally: Tally,
    ) -> Result<RoundReport, OutboundError> {
        let now = Instant::now();
        let at = Timestamp::now();
        let keys: Vec<Vec<(String, String)>> =
            (0..events.len()).map(|i| tally.keys(i).to_vec()).collect();
        let mut report = RoundReport {
            taken: events.len(),
            ..RoundReport::default()
        };
        let mut done = Vec::new();
        let mut dlq = Vec::new();
        let mut retries: Vec<(u64, RetryState)> = Vec::new();
        for ((event, outcome), keys) in events.iter().zip(tally.into_outcomes()).zip(keys) {
            match outcome {
                EventOutcome::Deferred => report.deferred += 1,
                EventOutcome::Interrupted => report.interrupted += 1,
                EventOutcome::Done(applied) => {
                    done.push((event.seq, event.event.id.clone(), applied))
                }
                EventOutcome::Dlq(problem) => dlq.push(self.dlq_entry(event, problem, at, None)),
                EventOutcome::Retry(problem) => {
                    match self
                        .schedule
                        .failed(event.seq, keys.clone(), &self.config.retry, now)
                    {
                        Verdict::RetryIn(wait) => {
                            report.retrying += 1;
                            retries.push((
                                event.seq,
                                RetryState {
                                    attempts: self.schedule.attempts(event.seq),
                                    next_attempt_at: at.saturating_add(wait).unwrap_or(at),
                                    keys,
                                },
                            ));
                            tracing::info!(
                                installation = %self.installation,
                                event_id = %event.event.id,
                                code = %problem.code,
                                attempt = self.schedule.attempts(event.seq),
                                wait_ms = wait.as_millis() as u64,
                                "transient failure; retrying later"
                            );
                        }
                        Verdict::GiveUp { attempts } => {
                            dlq.push(self.dlq_entry(event, problem, at, Some(attempts)));
                        }
                    }
                }
            }
        }
        report.done = done.len();
        report.dead_lettered = dlq.len();
        for (seq, _, _) in &done {
            self.schedule.finished(*seq);
        }
        for entry in &dlq {
            if let DlqOriginal::Event { event } = &entry.original
                && let Some(seq) = events
                    .iter()
                    .find(|e| e.event.id == event.id)
                    .map(|e| e.seq)
            {
                self.schedule.finished(seq);
            }
            tracing::warn!(
                installation = %self.installation,
                event_id = entry.original.event_id().unwrap_or_default(),
                stage = %entry.stage,
                code = %entry.error_code,
                "event dead-lettered: {}", entry.message
            );
        }
        if done.is_empty() && dlq.is_empty() && retries.is_empty() {
            return Ok(report);
        }
        let store = self.store.clone();
        let installation = self.installation.clone();
        self.blocking(move || {
            store.write(&mut |txn| {
                let applied = done.iter().flat_map(|(_, _, applied)| applied);
                let audits: Vec<&AuditEntry> = applied.clone().map(|a| &a.audit).collect();
                txn.append_audit(&audits)?;
                let marks: Vec<(&str, &str, &AppliedMark)> = applied
                    .filter_map(|a| a.mark.as_ref())
                    .map(|(object, key, mark)| (object.as_str(), key.as_str(), mark))
                    .collect();
                txn.put_applied_marks(&installation, &marks)?;
                let finished: Vec<(u64, &str)> = done
                    .iter()
                    .map(|(seq, id, _)| (*seq, id.as_str()))
                    .collect();
                txn.mark_processed(&installation, &finished)?;
                for entry in &dlq {
                    txn.put_dlq(entry)?;
                }
                // The attempt counts are durable with the round: a restart resumes them.
                for (seq, state) in &retries {
                    txn.put_retry(&installation, *seq, state)?;
                }
                Ok(())
            })
        })
        .await?;
        tracing::debug!(installation = %self.installation, ?report, "outbound round committed");
        Ok(report)
    }

    fn dlq_entry(
        &self,
        event: &PendingEvent,
        problem: Problem,
        at: Timestamp,
        gave_up_after: Option<u32>,
    ) -> NewDlqEntry {
        let mut message = match gave_up_after {
            Some(attempts) => format!(
                "still failing after {attempts} rounds of retries: {}",
                problem.message
            ),
            None => problem.message,
        };
        // The record was an object when intake parsed it, so this reads; if the stored text
        // was damaged, the entry says so (the event itself stays in the store by its seq).
        let original = event.event.to_parsed().unwrap_or_else(|error| {
            message.push_str(&format!(
                " (the stored record could not be read back: {error})"
            ));
            OutboundEvent {
                id: event.event.id.clone(),
                object: event.event.object.clone(),
                operation: event.event.operation,
                occurred_at: event.event.occurred_at,
                record: Map::new(),
            }
        });
        NewDlqEntry {
            installation: self.installation.clone(),
            original: DlqOriginal::Event { event: original },
            stage: problem.stage,
            error_code: problem.code,
            message,
            fields: problem.fields,
            at,
        }
    }

    async fn blocking<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<R, StoreError> + Send + 'static,
    ) -> Result<R, OutboundError> {
        match tokio::task::spawn_blocking(work).await {
            Ok(result) => result.map_err(|source| OutboundError::Store {
                installation: self.installation.clone(),
                source,
            }),
            Err(join) => Err(OutboundError::Task {
                installation: self.installation.clone(),
                message: join.to_string(),
            }),
        }
    }
}

/// When someone other than Weft last changed the record: its `LastModifiedDate`, unless
/// the change was Weft's own — made by the integration user (this covers a write whose
/// round never committed: the host died after Salesforce accepted it, so no mark says it
/// was Weft's), or no later than Weft's own last write of it. Then there is no newer edit
/// to protect, except what the mark says the record stands for.
fn changed_by_others(
    current: Option<&Current>,
    mark: Option<&AppliedMark>,
    integration_user: Option<&str>,
) -> Option<Timestamp> {
    let current = current?;
    if let (Some(by), Some(us)) = (current.last_modified_by.as_deref(), integration_user)
        && same_id(by, us)
    {
        return mark.map(|m| m.occurred_at);
    }
    let modified = current.last_modified?;
    match mark {
        Some(mark) if modified <= mark.written_at => Some(mark.occurred_at),
        _ => Some(modified),
    }
}

/// Events older than the newest one already applied to their record never overwrite it:
/// they finish as skipped, with every field audited as held back.
fn drop_stale(
    events: &[PendingEvent],
    items: Vec<Item>,
    tally: &mut Tally,
    installation: &str,
) -> Vec<Item> {
    let mut fresh = Vec::with_capacity(items.len());
    // An event is stale if any of its records is.
    let mut stale_events: HashMap<usize, Timestamp> = HashMap::new();
    for item in &items {
        let (Some(event), Some(mark)) = (events.get(item.event), item.mark.as_ref()) else {
            continue;
        };
        if event.event.occurred_at < mark.occurred_at {
            stale_events.insert(item.event, mark.occurred_at);
        }
    }
    for item in items {
        let Some(&newer) = stale_events.get(&item.event) else {
            fresh.push(item);
            continue;
        };
        let occurred = events
            .get(item.event)
            .map_or_else(Timestamp::now, |e| e.event.occurred_at);
        let reason = format!(
            "stale: this event occurred at {occurred}, but an event that occurred at {newer} was already applied to the record"
        );
        let skipped = item
            .fields
            .iter()
            .map(|(field, value)| SkippedField {
                field: field.clone(),
                incoming: value.clone(),
                current: Json::Null,
                reason: reason.clone(),
            })
            .collect();
        tally.applied(
            item.event,
            Applied {
                audit: AuditEntry {
                    installation: installation.to_owned(),
                    event_id: events.get(item.event).map(|e| e.event.id.clone()),
                    object: item.object.clone(),
                    record_key: item.key.clone(),
                    changes: Vec::new(),
                    skipped,
                    action: AuditAction::Skipped,
                    at: Timestamp::now(),
                },
                mark: None,
            },
        );
    }
    fresh
}
