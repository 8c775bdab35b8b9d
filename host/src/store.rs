//! The durable state layer: accepted outbound events (the outbox), the idempotency index,
//! the retry state of events that failed transiently, the dead-letter queue, the audit log,
//! and per-(installation, object) checkpoints and watermarks.
//!
//! It owns *what* is stored and the transaction boundaries; it never decides what to sync,
//! never talks to Salesforce and never runs plugins. Every write goes through one
//! [`Store::write`] transaction that commits durably (fsync) before it returns, so writes that
//! must agree — an accepted event and its idempotency entry, a sink write and its
//! checkpoint, a DLQ entry and its event's state — share one transaction.
//!
//! Each installation's governor snapshot (what it spent of the org's API quota) lives in the
//! same sync-state table, so `weft serve` and `weft sync` carry the day's spend across a
//! restart.
//!
//! Storage sits behind two narrow, object-safe traits: [`Store`] (reads, and running a write
//! transaction) and [`StoreTxn`] (the writes inside one). [`RedbStore`] is the embedded
//! default: one redb file per host. A PostgreSQL backend with per-installation leases fits
//! the same traits — `write` becomes `BEGIN … COMMIT` (retrying the closure on serialization
//! failure, which is why it is `FnMut`), sequence numbers come from a sequence, and a lease
//! check joins each transaction — without the pipeline noticing.
//!
//! Intake does not call [`Store::write`] per request: [`IntakeWriter`] gathers concurrent
//! requests into one transaction (group commit), which is what makes durable intake fast.
//!
//! Values are encoded as JSON (serde_json). The trade-off: JSON is 1.5–2× larger and slower
//! than a binary encoding, but event records are JSON already (re-encoding them costs little),
//! `weft dlq show` and forensic reads of the file need no schema, and `#[serde(default)]`
//! lets a newer host read an older file.

mod contain;
mod error;
mod group_commit;
mod model;
mod redb_store;

use std::ops::Range;

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use contain::RedbStore;
pub use error::StoreError;
pub use group_commit::{Committed, GroupCommitConfig, IntakeWriter, WriterHandle, WriterStats};
use model::GOVERNOR_OBJECT;
pub(crate) use model::rfc3339;
pub use model::{
    AcceptedEvent, Admission, Admitted, AppliedMark, AuditAction, AuditEntry, DlqEntry, DlqFilter,
    DlqListing, DlqOriginal, DlqStatus, EncodedEvent, EventState, EventStatus, FieldChange,
    NewDlqEntry, Operation, OutboundEvent, PendingEvent, RecordText, RetryState, Seq, SkippedField,
    Stage, StateKind, UnknownStage, UnreadableDlqEntry,
};

use jiff::Timestamp;

/// An installation's outbound queue at a glance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    pub pending: u64,
    pub oldest_accepted_at: Option<Timestamp>,
}

/// What [`StoreTxn::purge_installation`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PurgeCounts {
    pub events: u64,
    pub dlq_entries: u64,
    pub audit_entries: u64,
    /// Checkpoints, watermarks, synced ids, applied marks and retry states together.
    pub state_rows: u64,
}

/// Reads, and the one way to write: a durable transaction.
pub trait Store: Send + Sync {
    /// Runs `work` inside one write transaction and commits it durably. If `work` returns an
    /// error, nothing it did is kept. A backend may call `work` more than once (to retry a
    /// serialization failure), so `work` must not have side effects outside the
    /// transaction.
    fn write(
        &self,
        work: &mut dyn FnMut(&mut dyn StoreTxn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError>;

    /// Accepted events of `installation` not yet processed nor dead-lettered, in seq order,
    /// starting after `after` (pass the last seq of the previous page), at most `limit`.
    fn pending_events(
        &self,
        installation: &str,
        after: Option<Seq>,
        limit: usize,
    ) -> Result<Vec<PendingEvent>, StoreError>;

    /// How many events of `installation` wait for outbound, and when the oldest was
    /// accepted. Counts index keys only; reads one event.
    fn backlog(&self, installation: &str) -> Result<Backlog, StoreError>;

    /// Every accepted event of `installation` (whatever its state), in seq order.
    fn events(
        &self,
        installation: &str,
        after: Option<Seq>,
        limit: usize,
    ) -> Result<Vec<AcceptedEvent>, StoreError>;

    /// Where the event with this id is, if the installation ever accepted it.
    fn event_status(
        &self,
        installation: &str,
        event_id: &str,
    ) -> Result<Option<EventStatus>, StoreError>;

    /// DLQ entries matching `filter`, oldest first, and those that may match but cannot be
    /// decoded: one bad entry never hides the others.
    fn dlq_list(&self, filter: &DlqFilter) -> Result<DlqListing, StoreError>;

    /// How many of `installation`'s DLQ entries are open. Counts index keys only.
    fn dlq_open_count(&self, installation: &str) -> Result<u64, StoreError>;

    /// One entry; [`StoreError::DlqUnreadable`] for one that cannot be decoded.
    fn dlq_get(&self, id: u64) -> Result<Option<DlqEntry>, StoreError>;

    /// One entry's stored bytes, for showing an entry that cannot be decoded.
    fn dlq_raw(&self, id: u64) -> Result<Option<Vec<u8>>, StoreError>;

    /// Audit entries of `installation`, oldest first, with their ids, after `after`.
    fn audit(
        &self,
        installation: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, AuditEntry)>, StoreError>;

    /// The newest event applied to the Salesforce record `object`/`record_key`.
    fn applied_mark(
        &self,
        installation: &str,
        object: &str,
        record_key: &str,
    ) -> Result<Option<AppliedMark>, StoreError>;

    /// Pending events of `installation` waiting after a transient failure, in seq order
    /// (what the outbound worker's retry schedule resumes from).
    fn retry_states(&self, installation: &str) -> Result<Vec<(Seq, RetryState)>, StoreError>;

    /// Ids inbound sync delivered for (installation, object) and has not seen deleted, in
    /// byte order, after `after`, at most `limit`.
    fn synced_ids(
        &self,
        installation: &str,
        object: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;

    /// The raw encoded checkpoint or watermark; prefer [`StoreExt::get_checkpoint`].
    fn state_raw(
        &self,
        installation: &str,
        object: &str,
        kind: StateKind,
    ) -> Result<Option<Vec<u8>>, StoreError>;

    /// One installation's stored spec record, as the registry encoded it.
    fn spec_raw(&self, installation: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Every stored spec record, by installation id.
    fn specs_raw(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// One uploaded plugin version's record (`name@version`), as the catalog encoded it.
    fn plugin_raw(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Every uploaded plugin version's record, by `name@version`.
    fn plugins_raw(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// A plugin component's bytes, by content hash (blake3, hex).
    fn plugin_component(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError>;
}

/// The writes available inside one [`Store::write`] transaction.
pub trait StoreTxn {
    /// Makes each event durable unless the installation already has an event with its id
    /// (then it is reported as a duplicate with the original seq). Duplicates within
    /// `events` are caught too: the first wins.
    fn accept_events(
        &mut self,
        installation: &str,
        events: &[OutboundEvent],
        at: Timestamp,
    ) -> Result<Vec<Admission>, StoreError>;

    /// Intake's fast path: like [`StoreTxn::accept_events`] for several requests at once
    /// (each an installation and its already-encoded events), returning one [`Admitted`]
    /// per event, in order across all of them. Tables are opened once for the whole group.
    fn accept_encoded(
        &mut self,
        batches: &[(&str, &[EncodedEvent])],
        at: Timestamp,
    ) -> Result<Vec<Admitted>, StoreError>;

    /// Records that the pending event `seq` failed transiently (replacing its previous
    /// state). The event stays pending; [`StoreTxn::mark_processed`] and
    /// [`StoreTxn::put_dlq`] drop the state when it leaves the queue.
    fn put_retry(
        &mut self,
        installation: &str,
        seq: Seq,
        state: &RetryState,
    ) -> Result<(), StoreError>;

    /// The pipeline finished with these events (each its seq and id, as
    /// [`Store::pending_events`] read them): they leave the pending queue, with state
    /// `processed`. An event the store does not have is [`StoreError::EventNotFound`].
    fn mark_processed(
        &mut self,
        installation: &str,
        events: &[(Seq, &str)],
    ) -> Result<(), StoreError>;

    /// Accepts `event` again under a new seq even though its id is known (a DLQ replay):
    /// it rejoins the pending queue at the end and its state is `accepted` again.
    fn requeue_event(
        &mut self,
        installation: &str,
        event: &OutboundEvent,
        at: Timestamp,
    ) -> Result<Seq, StoreError>;

    /// Records a permanent failure. If an open entry exists for the same installation and
    /// event id, it is updated (attempts + 1, last seen, latest error) instead of adding a
    /// second one. An event original also leaves the pending queue with state `dlq`.
    /// Returns the entry's id.
    fn put_dlq(&mut self, entry: &NewDlqEntry) -> Result<u64, StoreError>;

    /// Changes an entry's status without decoding its original, so an entry that cannot
    /// be decoded can still be discarded.
    fn set_dlq_status(&mut self, id: u64, status: DlqStatus) -> Result<(), StoreError>;

    /// An entry's status, read without decoding its original.
    fn dlq_status(&mut self, id: u64) -> Result<Option<DlqStatus>, StoreError>;

    /// A DLQ entry as this transaction sees it (for checks that must not race a concurrent
    /// change of the same entry).
    fn get_dlq(&mut self, id: u64) -> Result<Option<DlqEntry>, StoreError>;

    /// Appends `entries` to the audit log, in order; returns their ids.
    fn append_audit(&mut self, entries: &[&AuditEntry]) -> Result<Range<u64>, StoreError>;

    /// Records the newest event applied to each Salesforce record, given as `(object,
    /// record key, mark)` (see [`AppliedMark`]).
    fn put_applied_marks(
        &mut self,
        installation: &str,
        marks: &[(&str, &str, &AppliedMark)],
    ) -> Result<(), StoreError>;

    /// Stores an encoded checkpoint or watermark; prefer
    /// [`put_checkpoint`](trait.StoreTxn.html#method.put_checkpoint).
    fn put_state_raw(
        &mut self,
        installation: &str,
        object: &str,
        kind: StateKind,
        value: &[u8],
    ) -> Result<(), StoreError>;

    fn get_state_raw(
        &mut self,
        installation: &str,
        object: &str,
        kind: StateKind,
    ) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores an installation's spec record (the registry owns its encoding and versions).
    fn put_spec_raw(&mut self, installation: &str, record: &[u8]) -> Result<(), StoreError>;

    /// An installation's spec record as this transaction sees it, so a version check and
    /// the write it guards cannot race another writer.
    fn get_spec_raw(&mut self, installation: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Removes an installation's spec record; whether there was one.
    fn delete_spec_raw(&mut self, installation: &str) -> Result<bool, StoreError>;

    /// Stores a plugin version's record (the catalog owns its encoding).
    fn put_plugin_raw(&mut self, key: &str, record: &[u8]) -> Result<(), StoreError>;

    /// A plugin version's record as this transaction sees it.
    fn get_plugin_raw(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    fn delete_plugin_raw(&mut self, key: &str) -> Result<bool, StoreError>;

    /// Stores a component's bytes under their content hash (a no-op when present).
    fn put_plugin_component(&mut self, hash: &str, wasm: &[u8]) -> Result<(), StoreError>;

    fn delete_plugin_component(&mut self, hash: &str) -> Result<(), StoreError>;

    /// Removes everything the store holds for an installation except its spec: events and
    /// their index, retry state, DLQ entries, audit, checkpoints, watermarks, governor
    /// snapshot, synced ids and applied marks. What `DELETE …?purge=true` runs.
    fn purge_installation(&mut self, installation: &str) -> Result<PurgeCounts, StoreError>;

    /// Records rows inbound sync delivered (`present`) and delivered as deleted (`gone`).
    fn set_synced_ids(
        &mut self,
        installation: &str,
        object: &str,
        present: &[&str],
        gone: &[&str],
    ) -> Result<(), StoreError>;
}

impl dyn StoreTxn + '_ {
    /// Stores the backfill checkpoint of (installation, object) in this transaction.
    pub fn put_checkpoint<T: Serialize>(
        &mut self,
        installation: &str,
        object: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = encode(value, "encoding a checkpoint")?;
        self.put_state_raw(installation, object, StateKind::Checkpoint, &bytes)
    }

    pub fn get_checkpoint<T: DeserializeOwned>(
        &mut self,
        installation: &str,
        object: &str,
    ) -> Result<Option<T>, StoreError> {
        self.get_state_raw(installation, object, StateKind::Checkpoint)?
            .map(|bytes| decode(&bytes, "decoding a checkpoint"))
            .transpose()
    }

    /// Stores a running backfill's rows within the lookback window (see
    /// [`StateKind::BackfillRecent`]) in this transaction.
    pub fn put_backfill_recent<T: Serialize>(
        &mut self,
        installation: &str,
        object: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = encode(value, "encoding a backfill's recent rows")?;
        self.put_state_raw(installation, object, StateKind::BackfillRecent, &bytes)
    }

    /// Stores the incremental watermark of (installation, object) in this transaction.
    pub fn put_watermark<T: Serialize>(
        &mut self,
        installation: &str,
        object: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let bytes = encode(value, "encoding a watermark")?;
        self.put_state_raw(installation, object, StateKind::Watermark, &bytes)
    }

    pub fn get_watermark<T: DeserializeOwned>(
        &mut self,
        installation: &str,
        object: &str,
    ) -> Result<Option<T>, StoreError> {
        self.get_state_raw(installation, object, StateKind::Watermark)?
            .map(|bytes| decode(&bytes, "decoding a watermark"))
            .transpose()
    }
}

/// Conveniences over [`Store`] for callers that write one thing at a time.
pub trait StoreExt: Store {
    /// Runs `work` once in a durable transaction and returns its value. (Backends that retry
    /// call [`Store::write`] directly with an idempotent closure.)
    fn transact<R>(
        &self,
        work: impl FnOnce(&mut dyn StoreTxn) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut work = Some(work);
        let mut out = None;
        self.write(&mut |txn| {
            if let Some(work) = work.take() {
                out = Some(work(txn)?);
            }
            Ok(())
        })?;
        // `write` returned Ok, so the closure ran and `out` is set.
        out.ok_or(StoreError::WriterStopped)
    }

    fn put_checkpoint<T: Serialize>(
        &self,
        installation: &str,
        object: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        self.transact(|txn| txn.put_checkpoint(installation, object, value))
    }

    fn get_checkpoint<T: DeserializeOwned>(
        &self,
        installation: &str,
        object: &str,
    ) -> Result<Option<T>, StoreError> {
        self.state_raw(installation, object, StateKind::Checkpoint)?
            .map(|bytes| decode(&bytes, "decoding a checkpoint"))
            .transpose()
    }

    fn get_backfill_recent<T: DeserializeOwned>(
        &self,
        installation: &str,
        object: &str,
    ) -> Result<Option<T>, StoreError> {
        self.state_raw(installation, object, StateKind::BackfillRecent)?
            .map(|bytes| decode(&bytes, "decoding a backfill's recent rows"))
            .transpose()
    }

    fn get_watermark<T: DeserializeOwned>(
        &self,
        installation: &str,
        object: &str,
    ) -> Result<Option<T>, StoreError> {
        self.state_raw(installation, object, StateKind::Watermark)?
            .map(|bytes| decode(&bytes, "decoding a watermark"))
            .transpose()
    }

    /// Stores the installation's governor snapshot (replacing the previous one). Its own
    /// small transaction: callers save it on a timer and at shutdown, not with a checkpoint.
    fn put_governor_snapshot<T: Serialize>(
        &self,
        installation: &str,
        snapshot: &T,
    ) -> Result<(), StoreError> {
        let bytes = encode(snapshot, "encoding a governor snapshot")?;
        self.transact(|txn| {
            txn.put_state_raw(installation, GOVERNOR_OBJECT, StateKind::Governor, &bytes)
        })
    }

    /// Saves several installations' governor snapshots in one durable transaction.
    fn put_governor_snapshots<T: Serialize>(
        &self,
        snapshots: &[(&str, &T)],
    ) -> Result<(), StoreError> {
        let encoded = snapshots
            .iter()
            .map(|(installation, snapshot)| {
                Ok((
                    *installation,
                    encode(snapshot, "encoding a governor snapshot")?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.transact(|txn| {
            for (installation, bytes) in &encoded {
                txn.put_state_raw(installation, GOVERNOR_OBJECT, StateKind::Governor, bytes)?;
            }
            Ok(())
        })
    }

    /// The installation's last saved governor snapshot, if one was saved.
    fn get_governor_snapshot<T: DeserializeOwned>(
        &self,
        installation: &str,
    ) -> Result<Option<T>, StoreError> {
        self.state_raw(installation, GOVERNOR_OBJECT, StateKind::Governor)?
            .map(|bytes| decode(&bytes, "decoding a governor snapshot"))
            .transpose()
    }

    fn mark_processed(&self, installation: &str, seq: Seq, id: &str) -> Result<(), StoreError> {
        self.transact(|txn| txn.mark_processed(installation, &[(seq, id)]))
    }

    fn put_dlq(&self, entry: &NewDlqEntry) -> Result<u64, StoreError> {
        self.transact(|txn| txn.put_dlq(entry))
    }

    /// Appends one entry to the audit log; returns its id.
    fn append_audit(&self, entry: &AuditEntry) -> Result<u64, StoreError> {
        self.transact(|txn| txn.append_audit(&[entry]).map(|ids| ids.start))
    }

    /// Sends an open DLQ entry's original event through the pipeline again: re-enqueues it
    /// as a new accepted event and marks the entry replayed, in one transaction. Returns the
    /// new seq, or `None` when the entry holds a record rather than an event (an inbound
    /// failure is replayed by re-running that sync). An entry that is no longer open is
    /// refused with [`StoreError::DlqNotOpen`]; the check is inside the transaction, so two
    /// concurrent replays of one entry re-enqueue it once.
    fn replay_dlq(&self, id: u64, at: Timestamp) -> Result<Option<Seq>, StoreError> {
        self.transact(|txn| {
            let entry = open_dlq_entry(txn, id)?;
            let seq = match &entry.original {
                DlqOriginal::Event { event } => {
                    Some(txn.requeue_event(&entry.installation, event, at)?)
                }
                DlqOriginal::Record { .. } => None,
            };
            if seq.is_some() {
                txn.set_dlq_status(id, DlqStatus::Replayed)?;
            }
            Ok(seq)
        })
    }

    /// Marks an open DLQ entry discarded (kept for the record, never replayed). Refused with
    /// [`StoreError::DlqNotOpen`] when the entry is no longer open.
    fn discard_dlq(&self, id: u64) -> Result<(), StoreError> {
        self.transact(|txn| {
            match txn.dlq_status(id)? {
                None => return Err(StoreError::DlqNotFound(id)),
                Some(DlqStatus::Open) => {}
                Some(status) => return Err(StoreError::DlqNotOpen { id, status }),
            }
            txn.set_dlq_status(id, DlqStatus::Discarded)
        })
    }
}

fn open_dlq_entry(txn: &mut dyn StoreTxn, id: u64) -> Result<DlqEntry, StoreError> {
    let entry = txn.get_dlq(id)?.ok_or(StoreError::DlqNotFound(id))?;
    if entry.status != DlqStatus::Open {
        return Err(StoreError::DlqNotOpen {
            id,
            status: entry.status,
        });
    }
    Ok(entry)
}

impl<S: Store + ?Sized> StoreExt for S {}

pub(crate) fn encode<T: Serialize + ?Sized>(
    value: &T,
    doing: &'static str,
) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|source| StoreError::Codec { doing, source })
}

pub(crate) fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    doing: &'static str,
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Codec { doing, source })
}
