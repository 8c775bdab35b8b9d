//! The values the store keeps: outbound events, DLQ entries, audit entries, state kinds.
//!
//! These are plain serde types; they are what every backend stores and returns, so the
//! pipeline never sees a backend's row or page types.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The intake sequence number: assigned at acceptance, strictly increasing across the whole
/// store, so one installation's events in seq order are in the order they were accepted.
pub type Seq = u64;

/// What a product change event asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Upsert,
    Delete,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Upsert => "upsert",
            Operation::Delete => "delete",
        }
    }
}

/// One product change event as the vendor's app posted it. The record is a JSON object:
/// parsed (`Map`) where it is checked or shown, its stored text ([`RecordText`]) where the
/// outbound pipeline reads it into a plugin batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboundEvent<R = Map<String, Value>> {
    /// The vendor's id for the event; the idempotency key within an installation.
    pub id: String,
    /// The product's object kind, e.g. `company`; the plugin maps it to a Salesforce object.
    pub object: String,
    pub operation: Operation,
    #[serde(with = "rfc3339")]
    pub occurred_at: Timestamp,
    /// The product record (for a delete, at least its key fields).
    pub record: R,
}

/// An event the store has made durable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptedEvent<R = Map<String, Value>> {
    pub installation: String,
    pub seq: Seq,
    #[serde(with = "rfc3339")]
    pub accepted_at: Timestamp,
    pub event: OutboundEvent<R>,
}

/// An accepted event as the outbound pipeline reads it: the record stays the text the
/// store keeps, so no JSON tree is built per event on the way into the plugin.
pub type PendingEvent = AcceptedEvent<RecordText>;

/// A product record as JSON text, known to be an object.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct RecordText(Box<RawValue>);

impl RecordText {
    pub fn as_str(&self) -> &str {
        self.0.get()
    }

    /// The record parsed, for where it is kept or shown as a value (a DLQ entry's original).
    pub fn to_map(&self) -> Result<Map<String, Value>, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }
}

impl<'de> Deserialize<'de> for RecordText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        if !raw.get().starts_with('{') {
            return Err(serde::de::Error::custom("a record must be a JSON object"));
        }
        Ok(RecordText(raw))
    }
}

/// The same text; stored records are written by one encoder, so equal records are equal
/// text.
impl PartialEq for RecordText {
    fn eq(&self, other: &Self) -> bool {
        self.0.get() == other.0.get()
    }
}

impl OutboundEvent<RecordText> {
    /// The event with its record parsed.
    pub fn to_parsed(&self) -> Result<OutboundEvent, serde_json::Error> {
        Ok(OutboundEvent {
            id: self.id.clone(),
            object: self.object.clone(),
            operation: self.operation,
            occurred_at: self.occurred_at,
            record: self.record.to_map()?,
        })
    }
}

/// An event encoded once, where it was parsed (on the intake's HTTP workers), in the form
/// the store keeps it: the store's single writer then only copies bytes, which is what
/// lets one writer thread keep up with every core parsing requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedEvent {
    id: String,
    /// `OutboundEvent` as JSON; private so only [`EncodedEvent::new`] produces it and the
    /// stored value always decodes.
    json: Vec<u8>,
}

impl EncodedEvent {
    pub fn new(event: &OutboundEvent) -> Result<Self, crate::store::StoreError> {
        Ok(EncodedEvent {
            id: event.id.clone(),
            json: crate::store::encode(event, "encoding an outbound event")?,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn json(&self) -> &[u8] {
        &self.json
    }
}

/// The outcome of offering one encoded event to the store (its id is the caller's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// New for an accepted event, the original one for a duplicate.
    pub seq: Seq,
    pub duplicate: bool,
    /// A duplicate whose content differs from the event first accepted under its id: the
    /// sender reused an id, and the first content stays.
    pub conflict: bool,
}

/// The outcome of offering one event to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub event_id: String,
    /// The event's sequence number: new for an accepted event, the original one for a
    /// duplicate.
    pub seq: Seq,
    /// The installation already had an event with this id; nothing was written for it.
    pub duplicate: bool,
    /// A duplicate whose content differs from the event first accepted under its id.
    pub conflict: bool,
}

/// Where an accepted event is in the outbound pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventState {
    /// Durable and waiting for (or in) the outbound pipeline.
    Accepted,
    /// The pipeline finished with it (written, skipped on purpose, or deleted).
    Processed,
    /// It failed permanently and sits in the DLQ.
    Dlq,
}

impl EventState {
    pub(crate) fn code(self) -> u8 {
        match self {
            EventState::Accepted => 0,
            EventState::Processed => 1,
            EventState::Dlq => 2,
        }
    }

    pub(crate) fn from_code(code: u8) -> Self {
        match code {
            1 => EventState::Processed,
            2 => EventState::Dlq,
            // 0, and anything a newer version might write, reads as "not finished": the
            // safe reading, since it keeps the event visible to operators.
            _ => EventState::Accepted,
        }
    }
}

/// An event's id, sequence number and state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventStatus {
    pub event_id: String,
    pub seq: Seq,
    pub state: EventState,
}

/// The pipeline stage a record failed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Map,
    Coerce,
    /// Dedup keys (inbound: the plugin could not key the record).
    Dedup,
    Validate,
    Conflict,
    Write,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Map,
        Stage::Coerce,
        Stage::Dedup,
        Stage::Validate,
        Stage::Conflict,
        Stage::Write,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Map => "map",
            Stage::Coerce => "coerce",
            Stage::Dedup => "dedup",
            Stage::Validate => "validate",
            Stage::Conflict => "conflict",
            Stage::Write => "write",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stage name that is not one of map, coerce, dedup, validate, conflict, write.
#[derive(Debug, thiserror::Error)]
#[error("unknown stage {0:?}: expected one of map, coerce, dedup, validate, conflict, write")]
pub struct UnknownStage(String);

impl FromStr for Stage {
    type Err = UnknownStage;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Stage::ALL
            .into_iter()
            .find(|stage| stage.as_str() == s)
            .ok_or_else(|| UnknownStage(s.to_owned()))
    }
}

/// What failed: the original event when there is one (so a replay starts from what the
/// product sent), otherwise the record as the failing stage saw it (inbound failures).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DlqOriginal {
    Event {
        event: OutboundEvent,
    },
    Record {
        object: String,
        record: Map<String, Value>,
    },
}

impl DlqOriginal {
    pub fn event_id(&self) -> Option<&str> {
        match self {
            DlqOriginal::Event { event } => Some(&event.id),
            DlqOriginal::Record { .. } => None,
        }
    }

    pub fn object(&self) -> &str {
        match self {
            DlqOriginal::Event { event } => &event.object,
            DlqOriginal::Record { object, .. } => object,
        }
    }
}

/// A failure to record in the DLQ.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewDlqEntry {
    pub installation: String,
    pub original: DlqOriginal,
    pub stage: Stage,
    /// Salesforce's `errorCode` (e.g. `REQUIRED_FIELD_MISSING`), or the host's own code for
    /// failures before Salesforce (e.g. `PLUGIN_TRAP`, `INVALID_PICKLIST_VALUE`).
    pub error_code: String,
    pub message: String,
    /// The fields Salesforce (or the validator) named.
    pub fields: Vec<String>,
    #[serde(with = "rfc3339")]
    pub at: Timestamp,
}

/// What an operator did with a DLQ entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DlqStatus {
    /// Waiting for a fix.
    Open,
    /// Sent through the pipeline again.
    Replayed,
    /// Dropped on purpose.
    Discarded,
}

impl DlqStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DlqStatus::Open => "open",
            DlqStatus::Replayed => "replayed",
            DlqStatus::Discarded => "discarded",
        }
    }

    /// How the store's per-installation index holds it.
    pub fn code(self) -> u8 {
        match self {
            DlqStatus::Open => 0,
            DlqStatus::Replayed => 1,
            DlqStatus::Discarded => 2,
        }
    }
}

/// A DLQ entry as stored. `O` is how the original is held: decoded ([`DlqOriginal`]), or
/// as its raw JSON (`Box<RawValue>`) where only the entry's own fields matter — the store
/// reads those whatever the original holds, so listing or discarding an entry never fails
/// on its original.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DlqEntry<O = DlqOriginal> {
    pub id: u64,
    pub installation: String,
    pub original: O,
    pub stage: Stage,
    pub error_code: String,
    pub message: String,
    pub fields: Vec<String>,
    /// How many times this event failed while the entry was open (a retried event that
    /// fails again bumps this instead of adding a second entry).
    pub attempts: u32,
    #[serde(with = "rfc3339")]
    pub first_seen: Timestamp,
    #[serde(with = "rfc3339")]
    pub last_seen: Timestamp,
    pub status: DlqStatus,
}

/// Which DLQ entries to list; `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DlqFilter {
    pub installation: Option<String>,
    pub stage: Option<Stage>,
    pub error_code: Option<String>,
    pub status: Option<DlqStatus>,
}

/// A DLQ entry the store holds but cannot decode: its original nests deeper than the
/// decoder reads (written before intake limited nesting), or the value was written by an
/// incompatible version. Lists show it instead of failing; it can be shown raw and
/// discarded, not replayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnreadableDlqEntry {
    pub id: u64,
    /// `None` when not even the entry's own fields could be read.
    pub installation: Option<String>,
    pub status: Option<DlqStatus>,
    /// Why it could not be decoded.
    pub error: String,
}

/// What a DLQ listing found: the entries, and those that could not be decoded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DlqListing {
    pub entries: Vec<DlqEntry>,
    #[serde(default)]
    pub unreadable: Vec<UnreadableDlqEntry>,
}

impl DlqFilter {
    /// Whether an unreadable entry may be one the filter asks for: what is known of it
    /// must match; what is not known is not held against it, so it stays visible.
    pub fn may_match(&self, entry: &UnreadableDlqEntry) -> bool {
        self.installation
            .as_deref()
            .is_none_or(|i| entry.installation.as_deref() == Some(i))
            && self
                .status
                .is_none_or(|s| entry.status.is_none_or(|known| known == s))
    }

    pub fn matches<O>(&self, entry: &DlqEntry<O>) -> bool {
        self.installation
            .as_deref()
            .is_none_or(|i| i == entry.installation)
            && self.stage.is_none_or(|s| s == entry.stage)
            && self
                .error_code
                .as_deref()
                .is_none_or(|c| c == entry.error_code)
            && self.status.is_none_or(|s| s == entry.status)
    }
}

/// One field's change in a write Weft made to Salesforce.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub old: Value,
    pub new: Value,
}

/// A successful write, for the audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub installation: String,
    /// The product event that caused the write (absent for writes not caused by one).
    pub event_id: Option<String>,
    /// The Salesforce object written, e.g. `Account`.
    pub object: String,
    /// The record's key (external id value or Salesforce Id).
    pub record_key: String,
    pub changes: Vec<FieldChange>,
    /// Fields the event carried that were not written, each with the reason (a newer edit
    /// in Salesforce won the conflict check, or the whole event was stale). Absent in
    /// entries written before skips were recorded.
    #[serde(default)]
    pub skipped: Vec<SkippedField>,
    /// What Weft did to the record. Absent (read as an upsert) in older entries.
    #[serde(default)]
    pub action: AuditAction,
    #[serde(with = "rfc3339")]
    pub at: Timestamp,
}

/// One field an event carried that Weft chose not to write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedField {
    pub field: String,
    /// The value the event asked for.
    pub incoming: Value,
    /// Salesforce's value, which stays.
    pub current: Value,
    pub reason: String,
}

/// What an audited outbound write did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// Upserted by external id (created or updated).
    #[default]
    Upsert,
    /// Deleted in Salesforce (delete policy `hard_delete`).
    HardDelete,
    /// A field set to mark the record deleted (delete policy `soft_delete`).
    SoftDelete,
    /// A field set to mark the record inactive (delete policy `mark_inactive`).
    MarkInactive,
    /// A delete the object's policy says to ignore; nothing was written.
    DeleteIgnored,
    /// A delete for a record Salesforce does not have; nothing was written.
    DeleteNotFound,
    /// Nothing written: every field lost the conflict check, or the event was older than
    /// one already applied to the record.
    Skipped,
}

/// The newest event applied to one Salesforce record, which orders later events: an event
/// that occurred before it is stale and never overwrites it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AppliedMark {
    /// When the applied event occurred in the product.
    #[serde(with = "rfc3339")]
    pub occurred_at: Timestamp,
    /// When Weft's write of it finished: a `LastModifiedDate` at or before this is Weft's
    /// own write, not someone else's edit.
    #[serde(with = "rfc3339")]
    pub written_at: Timestamp,
}

/// An accepted event that failed transiently and waits for another round: how many rounds
/// it has failed, when it may run again, and the records it holds back. Kept in the store so
/// a restart neither resets the count (a poison record would otherwise retry forever across
/// restarts) nor lets a later event for the same record overtake it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryState {
    /// Rounds the event has failed transiently so far.
    pub attempts: u32,
    /// Not before this moment.
    #[serde(with = "rfc3339")]
    pub next_attempt_at: Timestamp,
    /// `(Salesforce object, record key)` of each record the event maps to.
    #[serde(default)]
    pub keys: Vec<(String, String)>,
}

/// The kinds of per-installation state kept in the sync-state table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    /// Where a backfill is (Bulk job id, locator, counts).
    Checkpoint,
    /// Where incremental sync is (`SystemModstamp` high-water mark).
    Watermark,
    /// The rows a running backfill delivered inside the lookback window. Apart from the
    /// checkpoint, which is rewritten with every page, because these change only on the
    /// pages that add to them (up to ~1 MB of them once the cap is reached).
    BackfillRecent,
    /// What the installation's API governor has spent and learned (its snapshot), so a
    /// restarted host does not start the day's quota from zero. One per installation: it
    /// is stored under the object slot `$governor`, never a Salesforce object name.
    Governor,
}

/// The object slot the governor snapshot is stored under. Not a valid Salesforce object
/// name (those never start with `$`), so it cannot collide with a checkpoint.
pub(crate) const GOVERNOR_OBJECT: &str = "$governor";

impl StateKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StateKind::Checkpoint => "checkpoint",
            StateKind::Watermark => "watermark",
            StateKind::BackfillRecent => "backfill_recent",
            StateKind::Governor => "governor",
        }
    }
}

/// Timestamps are stored as RFC 3339 text: readable in `weft dlq show`, and independent of
/// which serde features the time crate was built with.
pub(crate) mod rfc3339 {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(at)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}
