//! Incremental sync of one object: rows changed since the watermark, soft deletes through
//! `queryAll`, hard deletes through the replication resource.
//!
//! Each pass re-reads a lookback window behind the cursor, for rows whose `SystemModstamp`
//! was stamped before a slow transaction committed and so became visible late; rows the
//! window re-reads that were already delivered (same Id and `SystemModstamp`) are dropped.

use std::collections::HashSet;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use super::sink::{Delivery, Op};
use super::state::Watermark;
use super::{InboundError, InboundSync, Prepared, Selection, prefetch, salesforce, soql, store};
use crate::config::ObjectConfig;
use crate::plugin::ObjectSchema;
use crate::salesforce::SObjectDescribe;
use crate::stamp;
use crate::throttle::Project;

/// The replication resource answers for the last 30 days; ask for a little less so the
/// start is never refused as too old.
const DELETED_WINDOW_DAYS: i64 = 29;
/// How far the deleted-rows cursor may lag what the org has covered before a pass with
/// nothing deleted saves it anyway.
const QUIET_CURSOR_SAVE_MS: i64 = 60 * 60 * 1000;

#[derive(Debug, Default)]
pub(super) struct Changes {
    pub changed: u64,
    pub deleted: u64,
    pub failed: u64,
}

impl InboundSync {
    pub(super) async fn incremental(
        &mut self,
        object: &ObjectConfig,
        describe: &SObjectDescribe,
        selection: &Selection,
        schema: Arc<ObjectSchema>,
        mut watermark: Watermark,
    ) -> Result<Changes, InboundError> {
        let name = object.name.as_str();
        let filter = soql::filter(&object.source);
        let lookback_ms = self.lookback_ms();
        let page_size = self.config.page_size;
        let mut changes = Changes::default();
        // Rows from now on lack fields the org dropped; should one come back, it is
        // backfilled like any added field.
        let had_fields = watermark.fields.len();
        watermark.fields.retain(|f| selection.fields.contains(f));
        // A dropped field must reach the stored watermark, or its return would not be
        // backfilled; pages with nothing new are not committed, so it is saved below.
        let mut unsaved = watermark.fields.len() != had_fields;
        let start = Timestamp::from_millisecond(watermark.since_ms.saturating_sub(lookback_ms))
            .unwrap_or(Timestamp::UNIX_EPOCH);
        let (mut since, mut after) = (start, String::new());
        loop {
            let query =
                soql::changed_since(name, &selection.fields, filter, since, &after, page_size);
            let page = prefetch::rest_page(&self.client, Project::Incremental, name, &query, true)
                .await
                .map_err(|e| salesforce(name, e))?;
            let count = page.len();
            let Some(last) = count.checked_sub(1) else {
                break;
            };
            let (Some(last_id), Some(last_stamp)) = (page.id(last), page.rows[last].stamp) else {
                break;
            };
            (since, after) = (last_stamp, last_id.to_owned());
            let mut keys = Vec::with_capacity(count);
            let mut fresh = Vec::with_capacity(count);
            for (row, key) in page.rows.iter().enumerate() {
                let key = page
                    .id(row)
                    .zip(key.stamp)
                    .map(|(id, t)| (id.to_owned(), t.as_millisecond()));
                match key {
                    Some((id, ms)) if watermark.seen(&id, ms) => {}
                    _ => {
                        if let Some(key) = key {
                            keys.push(key);
                        }
                        fresh.push(row);
                    }
                }
            }
            // A page of rows already delivered (the lookback re-reads them) changes nothing:
            // no unit, no plugin call and no durable commit, so an idle object's pass costs
            // its queries only.
            if fresh.is_empty() {
                if count < page_size {
                    break;
                }
                continue;
            }
            // A page's plugin work is one unit of the host's scheduler.
            let turn = self.unit().await?;
            let prepared = self
                .plugin
                .prepare(name, page.keep(&fresh), schema.clone(), turn)
                .await;
            self.deliver(name, &prepared).await?;
            for (id, ms) in &keys {
                watermark.advance(id, *ms);
            }
            watermark.prune(lookback_ms);
            tally(&mut changes, &prepared);
            self.commit_watermark(name, &prepared, &watermark)?;
            unsaved = false;
            if count < page_size {
                break;
            }
        }
        if unsaved {
            self.commit_watermark(name, &Prepared::default(), &watermark)?;
        }
        if describe.replicateable {
            self.hard_deletes(name, &mut watermark, &mut changes)
                .await?;
        } else if self.reconcile_due(&watermark) {
            self.reconcile(object, &mut watermark, &mut changes).await?;
        }
        Ok(changes)
    }

    fn reconcile_due(&self, watermark: &Watermark) -> bool {
        let every = i64::try_from(self.config.reconcile_interval.as_millis()).unwrap_or(i64::MAX);
        Timestamp::now().as_millisecond() - watermark.reconciled_ms >= every
    }

    /// For objects the replication resource does not serve: compares the Ids delivered
    /// (and not deleted since) with every Id the org has now; the difference was deleted
    /// for good (or left the configured filter) and is delivered as deletes.
    ///
    /// The org's Ids are held in memory for the comparison — about 60 bytes each, so 60 MB
    /// for a million rows. Objects without replication are rarely that large; a bigger one
    /// would compare page by page against ranges of the delivered Ids instead.
    async fn reconcile(
        &mut self,
        object: &ObjectConfig,
        watermark: &mut Watermark,
        changes: &mut Changes,
    ) -> Result<(), InboundError> {
        let name = object.name.as_str();
        let filter = soql::filter(&object.source);
        let started = Timestamp::now();
        let page_size = self.config.page_size;
        let id_only = ["Id".to_owned()];
        let mut in_org = HashSet::new();
        let mut after: Option<String> = None;
        loop {
            let query = soql::backfill(name, &id_only, filter, after.as_deref(), Some(page_size));
            let page = self
                .first_page(Project::Incremental, name, &query, false)
                .await?;
            let count = page.records.len();
            for record in page.records {
                if let Some(id) = record.get("Id").and_then(Value::as_str) {
                    after = Some(id.to_owned());
                    in_org.insert(id.to_owned());
                }
            }
            if count < page_size {
                break;
            }
        }
        let mut gone = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let ids = self
                .store
                .synced_ids(&self.installation, name, cursor.as_deref(), 10_000)
                .map_err(|e| store(name, e))?;
            let Some(last) = ids.last().cloned() else {
                break;
            };
            gone.extend(ids.into_iter().filter(|id| !in_org.contains(id)));
            cursor = Some(last);
        }
        let stamp = stamp::format(started);
        let mut prepared = Prepared::default();
        for id in gone {
            let delete = Delivery {
                idempotency_key: format!("{}/{name}/{id}/{stamp}", self.installation),
                object: name.to_owned(),
                id,
                system_modstamp: stamp.clone(),
                op: Op::Delete,
                output: Vec::new(),
            };
            push_delete(&mut prepared, name, &delete)?;
        }
        if !prepared.deliveries.is_empty() {
            tracing::info!(
                deleted = prepared.deliveries.len(),
                "reconciliation found rows deleted for good"
            );
        }
        self.deliver(name, &prepared).await?;
        watermark.reconciled_ms = started.as_millisecond();
        tally(changes, &prepared);
        self.commit_watermark(name, &prepared, watermark)
    }

    /// Rows deleted for good since the last pass, from the replication resource.
    async fn hard_deletes(
        &mut self,
        name: &str,
        watermark: &mut Watermark,
        changes: &mut Changes,
    ) -> Result<(), InboundError> {
        let now = Timestamp::now();
        let oldest = now - SignedDuration::from_hours(24 * DELETED_WINDOW_DAYS);
        // The org stamps deletes in whole seconds, so a window starts at the whole second:
        // a row deleted in the same second as the cursor, after it was taken, is listed
        // (those listed before are remembered in `recent` and skipped).
        let cursor = watermark.deleted_until_ms;
        let start = Timestamp::from_millisecond(cursor - cursor.rem_euclid(1000))
            .unwrap_or(oldest)
            .max(oldest);
        if start >= now {
            return Ok(());
        }
        let listed = self
            .client
            .deleted(Project::Incremental, name, start, now)
            .await
            .map_err(|e| super::salesforce(name, e))?;
        let mut prepared = Prepared::default();
        for record in &listed.records {
            let Some(stamp) = stamp::parse(&record.deleted_date) else {
                continue;
            };
            if watermark.seen(&record.id, stamp.as_millisecond()) {
                continue;
            }
            let stamp_text = stamp::format(stamp);
            let delete = Delivery {
                idempotency_key: format!("{}/{name}/{}/{stamp_text}", self.installation, record.id),
                object: name.to_owned(),
                id: record.id.clone(),
                system_modstamp: stamp_text,
                op: Op::Delete,
                output: Vec::new(),
            };
            push_delete(&mut prepared, name, &delete)?;
            // Remembered without moving the cursor: rows changed before this delete may
            // still be unread.
            watermark
                .recent
                .insert(record.id.clone(), stamp.as_millisecond());
        }
        self.deliver(name, &prepared).await?;
        let covered = listed
            .latest_date_covered
            .as_deref()
            .and_then(stamp::parse)
            .unwrap_or(now)
            .as_millisecond();
        // Nothing listed at all: the stored cursor may stay where it is (the next window
        // starts there and finds nothing before `covered`), so a quiet pass makes no
        // durable commit. It is still saved once it lags an hour, to keep windows short.
        let lag = covered.saturating_sub(cursor);
        if listed.records.is_empty() && lag < QUIET_CURSOR_SAVE_MS {
            return Ok(());
        }
        watermark.deleted_until_ms = covered;
        tally(changes, &prepared);
        self.commit_watermark(name, &prepared, watermark)
    }

    fn commit_watermark(
        &self,
        name: &str,
        prepared: &Prepared,
        watermark: &Watermark,
    ) -> Result<(), InboundError> {
        let installation = self.installation.clone();
        self.commit(name, prepared, &|txn| {
            txn.put_watermark(&installation, name, watermark)
        })
    }

    pub(super) fn lookback_ms(&self) -> i64 {
        i64::try_from(self.config.lookback.as_millis()).unwrap_or(i64::MAX)
    }

    pub(super) fn store_watermark(&self, name: &str) -> Result<Option<Watermark>, InboundError> {
        use crate::store::StoreExt;
        self.store
            .get_watermark(&self.installation, name)
            .map_err(|e| store(name, e))
    }
}

fn push_delete(
    prepared: &mut Prepared,
    object: &str,
    delete: &Delivery,
) -> Result<(), InboundError> {
    prepared
        .deliveries
        .push(delete)
        .map_err(|e| InboundError::Sink {
            object: object.to_owned(),
            source: e.into(),
        })
}

fn tally(changes: &mut Changes, prepared: &Prepared) {
    for d in prepared.deliveries.iter() {
        match d.op {
            Op::Upsert => changes.changed += 1,
            Op::Delete => changes.deleted += 1,
        }
    }
    changes.failed += prepared.dead.len() as u64;
}
