//! The embedded backend: every table in one redb file.
//!
//! Tables (keys are tuples so one installation's rows are contiguous and ordered):
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `outbound_events` | (installation, seq) | [`AcceptedEvent`] as JSON |
//! | `outbound_pending` | (installation, seq) | () — the queue the pipeline drains |
//! | `outbound_event_ids` | (installation, event id) | (seq, state code) — idempotency |
//! | `dlq` | id | [`DlqEntry`] as JSON |
//! | `dlq_open_by_event` | (installation, event id) | id of the open entry |
//! | `dlq_by_installation` | (installation, id) | the entry's status code — listings and counts per tenant |
//! | `audit` | (installation, id) | [`AuditEntry`] as JSON |
//! | `sync_state` | (installation, object, kind) | caller's checkpoint/watermark bytes; governor snapshot under object `$governor` |
//! | `outbound_applied` | (installation, object, record key) | [`AppliedMark`] as JSON |
//! | `outbound_retry` | (installation, seq) | [`RetryState`] as JSON — pending events only |
//! | `counters` | name | next value (seq, DLQ id, audit id) |
//!
//! Accepted events are kept after processing (the pending queue is what shrinks): they are
//! the record of what the product sent. Pruning them is a retention policy for later.

use std::ops::Range;
use std::path::Path;

use jiff::Timestamp;
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::error::Doing;
use super::{
    AcceptedEvent, Admission, Admitted, AppliedMark, AuditEntry, Backlog, DlqEntry, DlqFilter,
    DlqListing, DlqOriginal, DlqStatus, EncodedEvent, EventState, EventStatus, NewDlqEntry,
    OutboundEvent, PendingEvent, PurgeCounts, RetryState, Seq, StateKind, Store, StoreError,
    StoreTxn, UnreadableDlqEntry, decode, encode,
};

const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("outbound_events");
const PENDING: TableDefinition<(&str, u64), ()> = TableDefinition::new("outbound_pending");
const EVENT_IDS: TableDefinition<(&str, &str), (u64, u8)> =
    TableDefinition::new("outbound_event_ids");
const DLQ: TableDefinition<u64, &[u8]> = TableDefinition::new("dlq");
const DLQ_OPEN_BY_EVENT: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("dlq_open_by_event");
/// Every DLQ entry whose own fields can be read, by installation, with its status: one
/// tenant's listing, open count or purge reads its own rows, never the whole DLQ.
const DLQ_BY_INSTALLATION: TableDefinition<(&str, u64), u8> =
    TableDefinition::new("dlq_by_installation");
/// Set in `counters` once `dlq_by_installation` holds every entry (files written before it
/// existed are indexed when first opened).
const DLQ_INDEXED: &str = "dlq_by_installation_built";
const AUDIT: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("audit");
const SYNC_STATE: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("sync_state");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
/// Ids of the rows inbound sync has delivered and not seen deleted, per (installation,
/// object): what a reconciliation compares with the org's Ids. Kept only for objects
/// without replication, the only ones reconciled.
const SYNCED_IDS: TableDefinition<(&str, &str, &str), ()> = TableDefinition::new("inbound_ids");
const APPLIED: TableDefinition<(&str, &str, &str), &[u8]> =
    TableDefinition::new("outbound_applied");
/// Retry state of pending events that failed transiently; a row leaves with its event.
const RETRY: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("outbound_retry");
/// The registry: one spec record per installation, encoded by [`crate::registry`].
const SPECS: TableDefinition<&str, &[u8]> = TableDefinition::new("installation_specs");
/// Uploaded plugin versions: `name@version` → the catalog's record (which names the hash).
const PLUGINS: TableDefinition<&str, &[u8]> = TableDefinition::new("plugin_versions");
/// Plugin components by content hash (blake3, hex), stored once however many versions
/// carry them.
const PLUGIN_COMPONENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("plugin_components");

/// Just the event id of a DLQ original (`{"kind": "event", "event": {"id": …}}`); every
/// other member is skipped without being decoded, however deep it nests.
#[derive(Deserialize)]
struct OriginalEventId {
    event: Option<EventId>,
}

#[derive(Deserialize)]
struct EventId {
    id: String,
}

/// Decodes a stored DLQ entry, or says what is known of one that cannot be decoded.
fn read_dlq_entry(id: u64, bytes: &[u8]) -> Result<DlqEntry, UnreadableDlqEntry> {
    let envelope: DlqEntry<Box<RawValue>> =
        serde_json::from_slice(bytes).map_err(|e| UnreadableDlqEntry {
            id,
            installation: None,
            status: None,
            error: format!("the entry cannot be decoded: {e}"),
        })?;
    match serde_json::from_str::<DlqOriginal>(envelope.original.get()) {
        Ok(original) => Ok(DlqEntry {
            id: envelope.id,
            installation: envelope.installation,
            original,
            stage: envelope.stage,
            error_code: envelope.error_code,
            message: envelope.message,
            fields: envelope.fields,
            attempts: envelope.attempts,
            first_seen: envelope.first_seen,
            last_seen: envelope.last_seen,
            status: envelope.status,
        }),
        Err(e) => Err(UnreadableDlqEntry {
            id,
            installation: Some(envelope.installation),
            status: Some(envelope.status),
            error: format!("its original cannot be decoded: {e}"),
        }),
    }
}

/// Whether a stored [`AcceptedEvent`] holds the same event as `event`, for telling a
/// repeated post (a duplicate) from a reused id (a conflict). Only duplicates get here, so
/// the intake fast path pays nothing for it and stores nothing extra. The bytes are compared
/// first: every event is encoded by [`EncodedEvent::new`] with sorted record keys, so the
/// same event gives the same bytes. Only when they differ are both decoded and compared,
/// so an event stored in another encoding of the same content (an older version) is still
/// the same; a stored value that cannot be decoded cannot be compared, and the id alone
/// decides, as it always did.
fn same_event(stored: &[u8], event: &EncodedEvent) -> bool {
    if stored_event_json(stored) == Some(event.json()) {
        return true;
    }
    match (
        serde_json::from_slice::<AcceptedEvent>(stored),
        serde_json::from_slice::<OutboundEvent>(event.json()),
    ) {
        (Ok(stored), Ok(offered)) => stored.event == offered,
        _ => true,
    }
}

/// The event's own JSON inside a stored [`AcceptedEvent`], which ends `,"event":{…}}`.
/// The first `,"event":` is the member's: a JSON string can never hold a bare `"`.
fn stored_event_json(stored: &[u8]) -> Option<&[u8]> {
    const MEMBER: &[u8] = br#","event":"#;
    let start = stored
        .windows(MEMBER.len())
        .position(|window| window == MEMBER)?
        + MEMBER.len();
    stored.get(start..stored.len().checked_sub(1)?)
}

const NEXT_SEQ: &str = "next_seq";
const NEXT_DLQ_ID: &str = "next_dlq_id";
const NEXT_AUDIT_ID: &str = "next_audit_id";

/// The redb file as a [`Store`]: one file, one writing process. Reached only through
/// [`RedbStore`](super::RedbStore), which contains the panics redb raises on a damaged file.
///
/// Commits are durable (`Durability::Immediate`, redb's default: fsync before `commit`
/// returns) and use quick repair: each commit also persists the allocator state, which
/// costs a little per commit but means reopening after a crash or `kill -9` does not walk
/// the whole file to rebuild it — on a large store that walk takes minutes, during which
/// the host accepts nothing. With group commit the per-commit cost is shared by many events.
pub(super) struct RedbFile {
    db: Database,
}

/// Memory redb may keep for pages it read or is about to write. Its default, 1 GiB, lets
/// the process grow by as much of the file as it has touched, and the file grows with every
/// org's synced ids (a 2,000,000-row backfill made it 70 MB, and the host 60 MiB larger).
/// The hot pages (pending events, checkpoints) fit in far less; other pages come back
/// from the OS page cache, which is shared and not charged to the host.
const CACHE_BYTES: usize = 32 << 20;

impl RedbFile {
    /// Opens the store at `path`, creating the file and its tables if needed.
    pub(super) fn open(path: &Path) -> Result<Self, StoreError> {
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|source| StoreError::Open {
                path: path.to_owned(),
                source,
            })?;
        let store = RedbFile { db };
        store.write(&mut |_txn| Ok(()))?;
        store.index_dlq()?;
        Ok(store)
    }

    /// Builds `dlq_by_installation` from the DLQ once, for a file written before the index
    /// existed; later opens find the mark and do nothing. An entry whose own fields cannot
    /// be read has no known installation, so no tenant's listing would show it anyway; the
    /// unfiltered listing still does.
    fn index_dlq(&self) -> Result<(), StoreError> {
        const DOING: &str = "indexing the DLQ by installation";
        let txn = self.read(DOING)?;
        if txn
            .open_table(COUNTERS)
            .doing(DOING)?
            .get(DLQ_INDEXED)
            .doing(DOING)?
            .is_some()
        {
            return Ok(());
        }
        drop(txn);
        let mut txn = self.db.begin_write().doing(DOING)?;
        txn.set_quick_repair(true);
        ensure_tables(&txn)?;
        {
            let dlq = txn.open_table(DLQ).doing(DOING)?;
            let mut index = txn.open_table(DLQ_BY_INSTALLATION).doing(DOING)?;
            for row in dlq.iter().doing(DOING)? {
                let (key, value) = row.doing(DOING)?;
                if let Ok(owner) = serde_json::from_slice::<DlqOwner>(value.value()) {
                    index
                        .insert(
                            (owner.installation.as_str(), key.value()),
                            owner.status.code(),
                        )
                        .doing(DOING)?;
                }
            }
            txn.open_table(COUNTERS)
                .doing(DOING)?
                .insert(DLQ_INDEXED, 1)
                .doing(DOING)?;
        }
        txn.commit().doing(DOING)
    }

    /// One value of a string-keyed table, in its own read transaction.
    fn read_value(
        &self,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
        doing: &'static str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.read(doing)?;
        let rows = txn.open_table(table).doing(doing)?;
        let found = rows.get(key).doing(doing)?;
        Ok(found.map(|guard| guard.value().to_vec()))
    }

    fn read(&self, doing: &'static str) -> Result<redb::ReadTransaction, StoreError> {
        self.db.begin_read().doing(doing)
    }

    /// Events as `T`: an [`AcceptedEvent`], or a [`PendingEvent`] whose record stays text.
    fn event_range<T: DeserializeOwned>(
        &self,
        installation: &str,
        after: Option<Seq>,
        limit: usize,
        pending_only: bool,
    ) -> Result<Vec<T>, StoreError> {
        const DOING: &str = "reading accepted events";
        let txn = self.read(DOING)?;
        let events = txn.open_table(EVENTS).doing(DOING)?;
        let start = after.map_or(0, |seq| seq.saturating_add(1));
        let mut out = Vec::new();
        if pending_only {
            let pending = txn.open_table(PENDING).doing(DOING)?;
            for row in pending
                .range((installation, start)..=(installation, u64::MAX))
                .doing(DOING)?
                .take(limit)
            {
                let (key, _) = row.doing(DOING)?;
                let (_, seq) = key.value();
                let stored = events
                    .get((installation, seq))
                    .doing(DOING)?
                    .ok_or_else(|| StoreError::EventNotFound {
                        installation: installation.to_owned(),
                        seq,
                    })?;
                out.push(decode(stored.value(), DOING)?);
            }
        } else {
            for row in events
                .range((installation, start)..=(installation, u64::MAX))
                .doing(DOING)?
                .take(limit)
            {
                let (_, value) = row.doing(DOING)?;
                out.push(decode(value.value(), DOING)?);
            }
        }
        Ok(out)
    }
}

impl Store for RedbFile {
    fn write(
        &self,
        work: &mut dyn FnMut(&mut dyn StoreTxn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        const DOING: &str = "writing to the store";
        let mut txn = self.db.begin_write().doing(DOING)?;
        txn.set_quick_repair(true);
        ensure_tables(&txn)?;
        // On error `txn` is dropped, which aborts it: nothing `work` did is kept.
        work(&mut RedbTxn { txn: &txn })?;
        txn.commit().doing(DOING)
    }

    fn pending_events(
        &self,
        installation: &str,
        after: Option<Seq>,
        limit: usize,
    ) -> Result<Vec<PendingEvent>, StoreError> {
        self.event_range(installation, after, limit, true)
    }

    fn backlog(&self, installation: &str) -> Result<Backlog, StoreError> {
        const DOING: &str = "counting pending events";
        let txn = self.read(DOING)?;
        let pending = txn.open_table(PENDING).doing(DOING)?;
        let mut backlog = Backlog::default();
        let mut first = None;
        for row in pending
            .range((installation, 0)..=(installation, u64::MAX))
            .doing(DOING)?
        {
            let (key, _) = row.doing(DOING)?;
            first.get_or_insert(key.value().1);
            backlog.pending += 1;
        }
        if let Some(seq) = first {
            let events = txn.open_table(EVENTS).doing(DOING)?;
            if let Some(stored) = events.get((installation, seq)).doing(DOING)? {
                let event: AcceptedEvent = decode(stored.value(), DOING)?;
                backlog.oldest_accepted_at = Some(event.accepted_at);
            }
        }
        Ok(backlog)
    }

    fn events(
        &self,
        installation: &str,
        after: Option<Seq>,
        limit: usize,
    ) -> Result<Vec<AcceptedEvent>, StoreError> {
        self.event_range(installation, after, limit, false)
    }

    fn event_status(
        &self,
        installation: &str,
        event_id: &str,
    ) -> Result<Option<EventStatus>, StoreError> {
        const DOING: &str = "reading an event's status";
        let txn = self.read(DOING)?;
        let ids = txn.open_table(EVENT_IDS).doing(DOING)?;
        let found = ids.get((installation, event_id)).doing(DOING)?;
        Ok(found.map(|guard| {
            let (seq, code) = guard.value();
            EventStatus {
                event_id: event_id.to_owned(),
                seq,
                state: EventState::from_code(code),
            }
        }))
    }

    fn dlq_list(&self, filter: &DlqFilter) -> Result<DlqListing, StoreError> {
        const DOING: &str = "listing DLQ entries";
        let txn = self.read(DOING)?;
        let dlq = txn.open_table(DLQ).doing(DOING)?;
        let mut out = DlqListing::default();
        let mut take = |id: u64, bytes: &[u8]| match read_dlq_entry(id, bytes) {
            Ok(entry) if filter.matches(&entry) => out.entries.push(entry),
            Ok(_) => {}
            Err(unreadable) if filter.may_match(&unreadable) => out.unreadable.push(unreadable),
            Err(_) => {}
        };
        if let Some(installation) = filter.installation.as_deref() {
            // One tenant's rows through the index; the status is there too, so entries of
            // another status are never read.
            let index = txn.open_table(DLQ_BY_INSTALLATION).doing(DOING)?;
            for row in index
                .range((installation, 0)..=(installation, u64::MAX))
                .doing(DOING)?
            {
                let (key, status) = row.doing(DOING)?;
                if filter
                    .status
                    .is_some_and(|wanted| wanted.code() != status.value())
                {
                    continue;
                }
                let id = key.value().1;
                if let Some(stored) = dlq.get(id).doing(DOING)? {
                    take(id, stored.value());
                }
            }
        } else {
            for row in dlq.iter().doing(DOING)? {
                let (key, value) = row.doing(DOING)?;
                take(key.value(), value.value());
            }
        }
        Ok(out)
    }

    fn dlq_open_count(&self, installation: &str) -> Result<u64, StoreError> {
        const DOING: &str = "counting open DLQ entries";
        let txn = self.read(DOING)?;
        let index = txn.open_table(DLQ_BY_INSTALLATION).doing(DOING)?;
        let mut open = 0;
        for row in index
            .range((installation, 0)..=(installation, u64::MAX))
            .doing(DOING)?
        {
            let (_, status) = row.doing(DOING)?;
            open += u64::from(status.value() == DlqStatus::Open.code());
        }
        Ok(open)
    }

    fn dlq_get(&self, id: u64) -> Result<Option<DlqEntry>, StoreError> {
        const DOING: &str = "reading a DLQ entry";
        let txn = self.read(DOING)?;
        let dlq = txn.open_table(DLQ).doing(DOING)?;
        let found = dlq.get(id).doing(DOING)?;
        found
            .map(|guard| read_dlq_entry(id, guard.value()).map_err(StoreError::from))
            .transpose()
    }

    fn dlq_raw(&self, id: u64) -> Result<Option<Vec<u8>>, StoreError> {
        const DOING: &str = "reading a DLQ entry";
        let txn = self.read(DOING)?;
        let dlq = txn.open_table(DLQ).doing(DOING)?;
        let found = dlq.get(id).doing(DOING)?;
        Ok(found.map(|guard| guard.value().to_vec()))
    }

    fn audit(
        &self,
        installation: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, AuditEntry)>, StoreError> {
        const DOING: &str = "reading the audit log";
        let txn = self.read(DOING)?;
        let audit = txn.open_table(AUDIT).doing(DOING)?;
        let start = after.map_or(0, |id| id.saturating_add(1));
        let mut out = Vec::new();
        for row in audit
            .range((installation, start)..=(installation, u64::MAX))
            .doing(DOING)?
            .take(limit)
        {
            let (key, value) = row.doing(DOING)?;
            out.push((key.value().1, decode(value.value(), DOING)?));
        }
        Ok(out)
    }

    fn applied_mark(
        &self,
        installation: &str,
        object: &str,
        record_key: &str,
    ) -> Result<Option<AppliedMark>, StoreError> {
        const DOING: &str = "reading a record's last applied event";
        let txn = self.read(DOING)?;
        let applied = txn.open_table(APPLIED).doing(DOING)?;
        let found = applied
            .get((installation, object, record_key))
            .doing(DOING)?;
        found.map(|guard| decode(guard.value(), DOING)).transpose()
    }

    fn retry_states(&self, installation: &str) -> Result<Vec<(Seq, RetryState)>, StoreError> {
        const DOING: &str = "reading outbound retry states";
        let txn = self.read(DOING)?;
        let retry = txn.open_table(RETRY).doing(DOING)?;
        let mut out = Vec::new();
        for row in retry
            .range((installation, 0)..=(installation, u64::MAX))
            .doing(DOING)?
        {
            let (key, value) = row.doing(DOING)?;
            out.push((key.value().1, decode(value.value(), DOING)?));
        }
        Ok(out)
    }

    fn synced_ids(
        &self,
        installation: &str,
        object: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        const DOING: &str = "reading synced ids";
        let txn = self.read(DOING)?;
        let ids = txn.open_table(SYNCED_IDS).doing(DOING)?;
        let start = (installation, object, after.unwrap_or(""));
        let mut out = Vec::with_capacity(limit.min(10_000));
        for row in ids.range(start..).doing(DOING)? {
            let (key, _) = row.doing(DOING)?;
            let (inst, obj, id) = key.value();
            if inst != installation || obj != object || out.len() >= limit {
                break;
            }
            if after == Some(id) {
                continue;
            }
            out.push(id.to_owned());
        }
        Ok(out)
    }

    fn state_raw(
        &self,
        installation: &str,
        object: &str,
        kind: StateKind,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        const DOING: &str = "reading a checkpoint or watermark";
        let txn = self.read(DOING)?;
        let state = txn.open_table(SYNC_STATE).doing(DOING)?;
        let found = state
            .get((installation, object, kind.as_str()))
            .doing(DOING)?;
        Ok(found.map(|guard| guard.value().to_vec()))
    }

    fn spec_raw(&self, installation: &str) -> Result<Option<Vec<u8>>, StoreError> {
        const DOING: &str = "reading an installation spec";
        let txn = self.read(DOING)?;
        let specs = txn.open_table(SPECS).doing(DOING)?;
        let found = specs.get(installation).doing(DOING)?;
        Ok(found.map(|guard| guard.value().to_vec()))
    }

    fn specs_raw(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        const DOING: &str = "listing installation specs";
        let txn = self.read(DOING)?;
        let specs = txn.open_table(SPECS).doing(DOING)?;
        let mut out = Vec::new();
        for row in specs.iter().doing(DOING)? {
            let (key, value) = row.doing(DOING)?;
            out.push((key.value().to_owned(), value.value().to_vec()));
        }
        Ok(out)
    }

    fn plugin_raw(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read_value(PLUGINS, key, "reading a plugin record")
    }

    fn plugins_raw(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        const DOING: &str = "listing plugin records";
        let txn = self.read(DOING)?;
        let plugins = txn.open_table(PLUGINS).doing(DOING)?;
        let mut out = Vec::new();
        for row in plugins.iter().doing(DOING)? {
            let (key, value) = row.doing(DOING)?;
            out.push((key.value().to_owned(), value.value().to_vec()));
        }
        Ok(out)
    }

    fn plugin_component(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read_value(PLUGIN_COMPONENTS, hash, "reading a plugin component")
    }
}

/// Creating tables is idempotent and cheap once they exist; doing it in every write keeps
/// readers from ever seeing "table does not exist" on a fresh file.
fn ensure_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    const DOING: &str = "creating tables";
    txn.open_table(EVENTS).doing(DOING)?;
    txn.open_table(PENDING).doing(DOING)?;
    txn.open_table(EVENT_IDS).doing(DOING)?;
    txn.open_table(DLQ).doing(DOING)?;
    txn.open_table(DLQ_OPEN_BY_EVENT).doing(DOING)?;
    txn.open_table(DLQ_BY_INSTALLATION).doing(DOING)?;
    txn.open_table(AUDIT).doing(DOING)?;
    txn.open_table(SYNC_STATE).doing(DOING)?;
    txn.open_table(COUNTERS).doing(DOING)?;
    txn.open_table(APPLIED).doing(DOING)?;
    txn.open_table(SYNCED_IDS).doing(DOING)?;
    txn.open_table(RETRY).doing(DOING)?;
    txn.open_table(SPECS).doing(DOING)?;
    txn.open_table(PLUGINS).doing(DOING)?;
    txn.open_table(PLUGIN_COMPONENTS).doing(DOING)?;
    Ok(())
}

struct RedbTxn<'t> {
    txn: &'t WriteTransaction,
}

impl RedbTxn<'_> {
    /// Takes the next value of a counter (starting at 1) and stores its successor.
    fn next(&self, counter: &str, doing: &'static str) -> Result<u64, StoreError> {
        let mut counters = self.txn.open_table(COUNTERS).doing(doing)?;
        let value = counters.get(counter).doing(doing)?.map_or(1, |g| g.value());
        counters.insert(counter, value + 1).doing(doing)?;
        Ok(value)
    }

    fn set_event_state(
        &self,
        installation: &str,
        event_id: &str,
        seq: Seq,
        state: EventState,
        doing: &'static str,
    ) -> Result<(), StoreError> {
        let mut ids = self.txn.open_table(EVENT_IDS).doing(doing)?;
        ids.insert((installation, event_id), (seq, state.code()))
            .doing(doing)?;
        Ok(())
    }

    /// Writes an entry and its row in the per-installation index.
    fn put_dlq_entry<O: serde::Serialize>(
        &self,
        entry: &DlqEntry<O>,
        doing: &'static str,
    ) -> Result<(), StoreError> {
        let bytes = encode(entry, doing)?;
        let mut dlq = self.txn.open_table(DLQ).doing(doing)?;
        dlq.insert(entry.id, bytes.as_slice()).doing(doing)?;
        self.txn
            .open_table(DLQ_BY_INSTALLATION)
            .doing(doing)?
            .insert((entry.installation.as_str(), entry.id), entry.status.code())
            .doing(doing)?;
        Ok(())
    }

    fn forget_retry(
        &self,
        installation: &str,
        seq: Seq,
        doing: &'static str,
    ) -> Result<(), StoreError> {
        self.txn
            .open_table(RETRY)
            .doing(doing)?
            .remove((installation, seq))
            .doing(doing)?;
        Ok(())
    }

    fn load_dlq_entry(&self, id: u64, doing: &'static str) -> Result<DlqEntry, StoreError> {
        let dlq = self.txn.open_table(DLQ).doing(doing)?;
        let found = dlq.get(id).doing(doing)?;
        match found {
            Some(guard) => read_dlq_entry(id, guard.value()).map_err(StoreError::from),
            None => Err(StoreError::DlqNotFound(id)),
        }
    }

    /// The entry's own fields, its original left as raw JSON: readable however the
    /// original nests.
    fn load_dlq_envelope(
        &self,
        id: u64,
        doing: &'static str,
    ) -> Result<DlqEntry<Box<RawValue>>, StoreError> {
        let dlq = self.txn.open_table(DLQ).doing(doing)?;
        let found = dlq.get(id).doing(doing)?;
        match found {
            Some(guard) => {
                serde_json::from_slice(guard.value()).map_err(|e| StoreError::DlqUnreadable {
                    id,
                    reason: e.to_string(),
                })
            }
            None => Err(StoreError::DlqNotFound(id)),
        }
    }
}

impl StoreTxn for RedbTxn<'_> {
    fn accept_events(
        &mut self,
        installation: &str,
        events: &[OutboundEvent],
        at: Timestamp,
    ) -> Result<Vec<Admission>, StoreError> {
        let encoded = events
            .iter()
            .map(EncodedEvent::new)
            .collect::<Result<Vec<_>, _>>()?;
        let admitted = self.accept_encoded(&[(installation, &encoded)], at)?;
        Ok(encoded
            .into_iter()
            .zip(admitted)
            .map(|(event, admitted)| Admission {
                event_id: event.id().to_owned(),
                seq: admitted.seq,
                duplicate: admitted.duplicate,
                conflict: admitted.conflict,
            })
            .collect())
    }

    fn accept_encoded(
        &mut self,
        batches: &[(&str, &[EncodedEvent])],
        at: Timestamp,
    ) -> Result<Vec<Admitted>, StoreError> {
        const DOING: &str = "accepting outbound events";
        let mut counters = self.txn.open_table(COUNTERS).doing(DOING)?;
        let mut stored = self.txn.open_table(EVENTS).doing(DOING)?;
        let mut pending = self.txn.open_table(PENDING).doing(DOING)?;
        let mut ids = self.txn.open_table(EVENT_IDS).doing(DOING)?;
        let mut next = counters
            .get(NEXT_SEQ)
            .doing(DOING)?
            .map_or(1, |g| g.value());
        // The stored value is `AcceptedEvent` as JSON, assembled around the event's bytes
        // (encoded once, by whoever parsed it) instead of re-encoding the whole event here:
        // this runs on the single writer, and every microsecond per event is throughput.
        let after_seq = format!(r#","accepted_at":"{at}","event":"#);
        let total = batches.iter().map(|(_, events)| events.len()).sum();
        let mut out = Vec::with_capacity(total);
        let mut value = Vec::with_capacity(2048);
        for &(installation, events) in batches {
            let mut head = br#"{"installation":"#.to_vec();
            serde_json::to_writer(&mut head, installation).doing(DOING)?;
            head.extend_from_slice(br#","seq":"#);
            for event in events {
                let key = (installation, event.id());
                // Insert first: one B-tree walk for the usual case, a new id. A duplicate
                // (rare) gets its original entry put back, so the first one wins.
                let previous = ids
                    .insert(key, (next, EventState::Accepted.code()))
                    .doing(DOING)?
                    .map(|g| g.value());
                if let Some(original) = previous {
                    ids.insert(key, original).doing(DOING)?;
                    let conflict = match stored.get((installation, original.0)).doing(DOING)? {
                        Some(first) => !same_event(first.value(), event),
                        // Nothing left to compare with: the id alone decides.
                        None => false,
                    };
                    out.push(Admitted {
                        seq: original.0,
                        duplicate: true,
                        conflict,
                    });
                    continue;
                }
                let seq = next;
                next += 1;
                value.clear();
                value.extend_from_slice(&head);
                value.extend_from_slice(seq.to_string().as_bytes());
                value.extend_from_slice(after_seq.as_bytes());
                value.extend_from_slice(event.json());
                value.push(b'}');
                stored
                    .insert((installation, seq), value.as_slice())
                    .doing(DOING)?;
                pending.insert((installation, seq), ()).doing(DOING)?;
                out.push(Admitted {
                    seq,
                    duplicate: false,
                    conflict: false,
                });
            }
        }
        counters.insert(NEXT_SEQ, next).doing(DOING)?;
        Ok(out)
    }

    fn put_retry(
        &mut self,
        installation: &str,
        seq: Seq,
        state: &RetryState,
    ) -> Result<(), StoreError> {
        const DOING: &str = "recording an outbound retry";
        let bytes = encode(state, DOING)?;
        self.txn
            .open_table(RETRY)
            .doing(DOING)?
            .insert((installation, seq), bytes.as_slice())
            .doing(DOING)?;
        Ok(())
    }

    fn mark_processed(
        &mut self,
        installation: &str,
        events: &[(Seq, &str)],
    ) -> Result<(), StoreError> {
        const DOING: &str = "marking events processed";
        // A round finishes hundreds of events: each table is opened once for all of them,
        // and an event's stored text is not read back (its id comes with it).
        let mut pending = self.txn.open_table(PENDING).doing(DOING)?;
        let mut retry = self.txn.open_table(RETRY).doing(DOING)?;
        let mut ids = self.txn.open_table(EVENT_IDS).doing(DOING)?;
        let stored = self.txn.open_table(EVENTS).doing(DOING)?;
        for &(seq, id) in events {
            let was_pending = pending.remove((installation, seq)).doing(DOING)?.is_some();
            // Only an event that is not pending (any more) costs a look-up: it must exist.
            if !was_pending && stored.get((installation, seq)).doing(DOING)?.is_none() {
                return Err(StoreError::EventNotFound {
                    installation: installation.to_owned(),
                    seq,
                });
            }
            retry.remove((installation, seq)).doing(DOING)?;
            ids.insert((installation, id), (seq, EventState::Processed.code()))
                .doing(DOING)?;
        }
        Ok(())
    }

    fn requeue_event(
        &mut self,
        installation: &str,
        event: &OutboundEvent,
        at: Timestamp,
    ) -> Result<Seq, StoreError> {
        const DOING: &str = "re-enqueueing an event";
        let seq = self.next(NEXT_SEQ, DOING)?;
        let bytes = encode(
            &AcceptedEventRef {
                installation,
                seq,
                accepted_at: at,
                event,
            },
            DOING,
        )?;
        self.txn
            .open_table(EVENTS)
            .doing(DOING)?
            .insert((installation, seq), bytes.as_slice())
            .doing(DOING)?;
        self.txn
            .open_table(PENDING)
            .doing(DOING)?
            .insert((installation, seq), ())
            .doing(DOING)?;
        self.set_event_state(installation, &event.id, seq, EventState::Accepted, DOING)?;
        Ok(seq)
    }

    fn put_dlq(&mut self, new: &NewDlqEntry) -> Result<u64, StoreError> {
        const DOING: &str = "recording a DLQ entry";
        let event_id = new.original.event_id();
        let open_id = match event_id {
            Some(event_id) => self
                .txn
                .open_table(DLQ_OPEN_BY_EVENT)
                .doing(DOING)?
                .get((new.installation.as_str(), event_id))
                .doing(DOING)?
                .map(|g| g.value()),
            None => None,
        };
        let entry = match open_id {
            Some(id) => {
                // The new failure's original replaces the stored one, so only the entry's
                // own fields are read: an entry whose original cannot be decoded is healed.
                let known = self.load_dlq_envelope(id, DOING)?;
                DlqEntry {
                    id,
                    installation: known.installation,
                    original: new.original.clone(),
                    stage: new.stage,
                    error_code: new.error_code.clone(),
                    message: new.message.clone(),
                    fields: new.fields.clone(),
                    attempts: known.attempts.saturating_add(1),
                    first_seen: known.first_seen,
                    last_seen: new.at,
                    status: known.status,
                }
            }
            None => DlqEntry {
                id: self.next(NEXT_DLQ_ID, DOING)?,
                installation: new.installation.clone(),
                original: new.original.clone(),
                stage: new.stage,
                error_code: new.error_code.clone(),
                message: new.message.clone(),
                fields: new.fields.clone(),
                attempts: 1,
                first_seen: new.at,
                last_seen: new.at,
                status: DlqStatus::Open,
            },
        };
        self.put_dlq_entry(&entry, DOING)?;
        if let DlqOriginal::Event { event } = &new.original {
            let installation = new.installation.as_str();
            self.txn
                .open_table(DLQ_OPEN_BY_EVENT)
                .doing(DOING)?
                .insert((installation, event.id.as_str()), entry.id)
                .doing(DOING)?;
            let known = self
                .txn
                .open_table(EVENT_IDS)
                .doing(DOING)?
                .get((installation, event.id.as_str()))
                .doing(DOING)?
                .map(|g| g.value().0);
            if let Some(seq) = known {
                self.txn
                    .open_table(PENDING)
                    .doing(DOING)?
                    .remove((installation, seq))
                    .doing(DOING)?;
                self.forget_retry(installation, seq, DOING)?;
                self.set_event_state(installation, &event.id, seq, EventState::Dlq, DOING)?;
            }
        }
        Ok(entry.id)
    }

    fn set_dlq_status(&mut self, id: u64, status: DlqStatus) -> Result<(), StoreError> {
        const DOING: &str = "changing a DLQ entry's status";
        // Through the envelope, so the original is written back byte for byte and an
        // entry whose original cannot be decoded can still be discarded.
        let mut entry = self.load_dlq_envelope(id, DOING)?;
        entry.status = status;
        self.put_dlq_entry(&entry, DOING)?;
        let event_id = serde_json::from_str::<OriginalEventId>(entry.original.get())
            .ok()
            .and_then(|original| original.event.map(|event| event.id));
        if status != DlqStatus::Open
            && let Some(event_id) = event_id.as_deref()
        {
            // The entry is closed: a later failure of the same event opens a fresh one,
            // so the history of what was tried stays readable.
            let mut open = self.txn.open_table(DLQ_OPEN_BY_EVENT).doing(DOING)?;
            let current = open
                .get((entry.installation.as_str(), event_id))
                .doing(DOING)?
                .map(|g| g.value());
            if current == Some(id) {
                open.remove((entry.installation.as_str(), event_id))
                    .doing(DOING)?;
            }
        }
        Ok(())
    }

    fn dlq_status(&mut self, id: u64) -> Result<Option<DlqStatus>, StoreError> {
        const DOING: &str = "reading a DLQ entry's status";
        match self.load_dlq_envelope(id, DOING) {
            Ok(entry) => Ok(Some(entry.status)),
            Err(StoreError::DlqNotFound(_)) => Ok(None),
            Err(other) => Err(other),
        }
    }

    fn get_dlq(&mut self, id: u64) -> Result<Option<DlqEntry>, StoreError> {
        const DOING: &str = "reading a DLQ entry";
        match self.load_dlq_entry(id, DOING) {
            Ok(entry) => Ok(Some(entry)),
            Err(StoreError::DlqNotFound(_)) => Ok(None),
            Err(other) => Err(other),
        }
    }

    fn append_audit(&mut self, entries: &[&AuditEntry]) -> Result<Range<u64>, StoreError> {
        const DOING: &str = "appending to the audit log";
        if entries.is_empty() {
            return Ok(0..0);
        }
        // The ids are taken as one range and the table opened once: a round audits
        // hundreds of records.
        let first = {
            let mut counters = self.txn.open_table(COUNTERS).doing(DOING)?;
            let first = counters
                .get(NEXT_AUDIT_ID)
                .doing(DOING)?
                .map_or(1, |g| g.value());
            counters
                .insert(NEXT_AUDIT_ID, first + entries.len() as u64)
                .doing(DOING)?;
            first
        };
        let mut audit = self.txn.open_table(AUDIT).doing(DOING)?;
        for (id, entry) in (first..).zip(entries) {
            let bytes = encode(entry, DOING)?;
            audit
                .insert((entry.installation.as_str(), id), bytes.as_slice())
                .doing(DOING)?;
        }
        Ok(first..first + entries.len() as u64)
    }

    fn put_applied_marks(
        &mut self,
        installation: &str,
        marks: &[(&str, &str, &AppliedMark)],
    ) -> Result<(), StoreError> {
        const DOING: &str = "recording a record's last applied event";
        let mut applied = self.txn.open_table(APPLIED).doing(DOING)?;
        for (object, record_key, mark) in marks {
            let bytes = encode(mark, DOING)?;
            applied
                .insert((installation, *object, *record_key), bytes.as_slice())
                .doing(DOING)?;
        }
        Ok(())
    }

    fn put_state_raw(
        &mut self,
        installation: &str,
        object: &str,
        kind: StateKind,
        value: &[u8],
    ) -> Result<(), StoreError> {
        const DOING: &str = "storing a checkpoint or watermark";
        self.txn
            .open_table(SYNC_STATE)
            .doing(DOING)?
            .insert((installation, object, kind.as_str()), value)
            .doing(DOING)?;
        Ok(())
    }

    fn set_synced_ids(
        &mut self,
        installation: &str,
        object: &str,
        present: &[&str],
        gone: &[&str],
    ) -> Result<(), StoreError> {
        const DOING: &str = "recording synced ids";
        let mut ids = self.txn.open_table(SYNCED_IDS).doing(DOING)?;
        for id in present {
            ids.insert((installation, object, *id), ()).doing(DOING)?;
        }
        for id in gone {
            ids.remove((installation, object, *id)).doing(DOING)?;
        }
        Ok(())
    }

    fn get_state_raw(
        &mut self,
        installation: &str,
        object: &str,
        kind: StateKind,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        const DOING: &str = "reading a checkpoint or watermark";
        let state = self.txn.open_table(SYNC_STATE).doing(DOING)?;
        let found = state
            .get((installation, object, kind.as_str()))
            .doing(DOING)?;
        Ok(found.map(|guard| guard.value().to_vec()))
    }

    fn put_spec_raw(&mut self, installation: &str, record: &[u8]) -> Result<(), StoreError> {
        const DOING: &str = "storing an installation spec";
        self.txn
            .open_table(SPECS)
            .doing(DOING)?
            .insert(installation, record)
            .doing(DOING)?;
        Ok(())
    }

    fn get_spec_raw(&mut self, installation: &str) -> Result<Option<Vec<u8>>, StoreError> {
        const DOING: &str = "reading an installation spec";
        let specs = self.txn.open_table(SPECS).doing(DOING)?;
        let found = specs.get(installation).doing(DOING)?;
        Ok(found.map(|guard| guard.value().to_vec()))
    }

    fn delete_spec_raw(&mut self, installation: &str) -> Result<bool, StoreError> {
        const DOING: &str = "removing an installation spec";
        let mut specs = self.txn.open_table(SPECS).doing(DOING)?;
        let removed = specs.remove(installation).doing(DOING)?;
        Ok(removed.is_some())
    }

    fn put_plugin_raw(&mut self, key: &str, record: &[u8]) -> Result<(), StoreError> {
        const DOING: &str = "storing a plugin record";
        self.txn
            .open_table(PLUGINS)
            .doing(DOING)?
            .insert(key, record)
            .doing(DOING)?;
        Ok(())
    }

    fn get_plugin_raw(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        const DOING: &str = "reading a plugin record";
        let plugins = self.txn.open_table(PLUGINS).doing(DOING)?;
        let found = plugins.get(key).doing(DOING)?;
        Ok(found.map(|guard| guard.value().to_vec()))
    }

    fn delete_plugin_raw(&mut self, key: &str) -> Result<bool, StoreError> {
        const DOING: &str = "removing a plugin record";
        let mut plugins = self.txn.open_table(PLUGINS).doing(DOING)?;
        let removed = plugins.remove(key).doing(DOING)?;
        Ok(removed.is_some())
    }

    fn put_plugin_component(&mut self, hash: &str, wasm: &[u8]) -> Result<(), StoreError> {
        const DOING: &str = "storing a plugin component";
        let mut components = self.txn.open_table(PLUGIN_COMPONENTS).doing(DOING)?;
        if components.get(hash).doing(DOING)?.is_none() {
            components.insert(hash, wasm).doing(DOING)?;
        }
        Ok(())
    }

    fn delete_plugin_component(&mut self, hash: &str) -> Result<(), StoreError> {
        const DOING: &str = "removing a plugin component";
        let mut components = self.txn.open_table(PLUGIN_COMPONENTS).doing(DOING)?;
        components.remove(hash).doing(DOING)?;
        Ok(())
    }

    fn purge_installation(&mut self, installation: &str) -> Result<PurgeCounts, StoreError> {
        const DOING: &str = "purging an installation";
        // Every key of this installation sorts at or after `(installation, …)` with the
        // smallest rest and before `(installation + "\0", …)`: the ranges below hold
        // exactly its rows, so no other installation's row is even visited.
        let next = format!("{installation}\0");
        let next = next.as_str();
        let seqs = (installation, 0u64)..(next, 0u64);
        let pairs = (installation, "")..(next, "");
        let triples = (installation, "", "")..(next, "", "");
        let txn = self.txn;
        let mut counts = PurgeCounts::default();
        macro_rules! purge {
            ($table:expr, $range:expr) => {{
                let mut table = txn.open_table($table).doing(DOING)?;
                let before = table.len().doing(DOING)?;
                table.retain_in($range, |_, _| false).doing(DOING)?;
                before - table.len().doing(DOING)?
            }};
        }
        counts.events = purge!(EVENTS, seqs.clone());
        // Index rows: counted with the events they index.
        let _ = purge!(PENDING, seqs.clone());
        let _ = purge!(EVENT_IDS, pairs.clone());
        counts.audit_entries = purge!(AUDIT, seqs.clone());
        counts.state_rows += purge!(RETRY, seqs);
        counts.state_rows += purge!(SYNC_STATE, triples.clone());
        counts.state_rows += purge!(SYNCED_IDS, triples.clone());
        counts.state_rows += purge!(APPLIED, triples);
        let _ = purge!(DLQ_OPEN_BY_EVENT, pairs);
        let mut index = txn.open_table(DLQ_BY_INSTALLATION).doing(DOING)?;
        let mut ids = Vec::new();
        for row in index
            .range((installation, 0u64)..(next, 0u64))
            .doing(DOING)?
        {
            ids.push(row.doing(DOING)?.0.value().1);
        }
        index
            .retain_in((installation, 0u64)..(next, 0u64), |_, _| false)
            .doing(DOING)?;
        let mut dlq = txn.open_table(DLQ).doing(DOING)?;
        for id in ids {
            counts.dlq_entries += u64::from(dlq.remove(id).doing(DOING)?.is_some());
        }
        Ok(counts)
    }
}

/// The own fields of a stored DLQ entry the index needs; the original is skipped.
#[derive(Deserialize)]
struct DlqOwner {
    installation: String,
    status: DlqStatus,
}

/// Serializes like [`AcceptedEvent`] without cloning the event.
#[derive(serde::Serialize)]
struct AcceptedEventRef<'a> {
    installation: &'a str,
    seq: Seq,
    #[serde(with = "super::model::rfc3339")]
    accepted_at: Timestamp,
    event: &'a OutboundEvent,
}
