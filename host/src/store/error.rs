//! The store's error type: every failure says what the store was doing when it happened.

use std::path::PathBuf;

/// A failure of the durable state layer.
///
/// Each storage variant carries `doing` — the operation in words ("accepting outbound
/// events", "listing DLQ entries") — and wraps the backend's own error as its source, so
/// `{:#}` at the binary edge prints the whole chain.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be created or opened (permissions, a corrupt file, or
    /// another process holding it — redb allows one writing process per file).
    #[error("opening the store at {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: redb::DatabaseError,
    },
    /// The file holds no database at all (0 bytes): truncated by a failed copy or a full
    /// disk, or created by hand. It is refused rather than started as a new, empty store,
    /// which would silently lose every accepted event, checkpoint and DLQ entry it held.
    #[error(
        "store file {} is empty (0 bytes), not a weft store: if it held one, it was truncated \
         and should be restored from a backup; to start a new store, delete the file",
        path.display()
    )]
    Empty { path: PathBuf },
    /// The database library failed on damage inside the file (it panicked rather than
    /// returning an error). Every later call on the same open store is refused too: the
    /// library's state after such a failure cannot be trusted.
    #[error(
        "store file {} is corrupt ({detail}); restore it from a backup, or move it aside to \
         start a new store",
        path.display()
    )]
    Corrupt { path: PathBuf, detail: String },
    /// A transaction could not begin.
    #[error("{doing}: starting a transaction")]
    Transaction {
        doing: &'static str,
        #[source]
        source: redb::TransactionError,
    },
    /// A table could not be opened (type mismatch after an incompatible upgrade, I/O).
    #[error("{doing}: opening a table")]
    Table {
        doing: &'static str,
        #[source]
        source: redb::TableError,
    },
    /// Reading or writing pages failed.
    #[error("{doing}")]
    Storage {
        doing: &'static str,
        #[source]
        source: redb::StorageError,
    },
    /// The commit (including its fsync) failed; nothing of the transaction is visible.
    #[error("{doing}: committing")]
    Commit {
        doing: &'static str,
        #[source]
        source: redb::CommitError,
    },
    /// A stored value could not be encoded or decoded (a caller's checkpoint type changed
    /// shape, or the file holds values written by an incompatible version).
    #[error("{doing}: encoding or decoding a stored value")]
    Codec {
        doing: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// A DLQ entry that does not exist.
    #[error("no DLQ entry with id {0}")]
    DlqNotFound(u64),
    /// A DLQ entry that was already replayed or discarded: only open entries are acted on,
    /// so a replay sent twice (two operators, a retried request) re-enqueues once.
    #[error("DLQ entry {id} is already {}", status.as_str())]
    DlqNotOpen { id: u64, status: super::DlqStatus },
    /// A DLQ entry the store holds but cannot decode (see
    /// [`UnreadableDlqEntry`](super::UnreadableDlqEntry)): it can be shown raw and
    /// discarded, not replayed.
    #[error("DLQ entry {id} cannot be decoded ({reason}); show it raw or discard it")]
    DlqUnreadable { id: u64, reason: String },
    /// An accepted event that does not exist.
    #[error("installation {installation:?} has no accepted event with sequence number {seq}")]
    EventNotFound { installation: String, seq: u64 },
    /// The caller's transaction stopped on a refusal of its own (a registry version check,
    /// say) and reports it separately; nothing of the transaction was kept.
    #[error("the transaction was abandoned by its caller; nothing was written")]
    Aborted,
    /// The intake writer thread is gone (the host is shutting down, or it could not start).
    #[error("the intake writer has stopped")]
    WriterStopped,
}

impl From<super::UnreadableDlqEntry> for StoreError {
    fn from(entry: super::UnreadableDlqEntry) -> Self {
        StoreError::DlqUnreadable {
            id: entry.id,
            reason: entry.error,
        }
    }
}

/// Attaches "what was being done" to a backend error.
pub(crate) trait Doing<T> {
    fn doing(self, doing: &'static str) -> Result<T, StoreError>;
}

macro_rules! doing_for {
    ($source:ty, $variant:ident) => {
        impl<T> Doing<T> for Result<T, $source> {
            fn doing(self, doing: &'static str) -> Result<T, StoreError> {
                self.map_err(|source| StoreError::$variant { doing, source })
            }
        }
    };
}

doing_for!(redb::TransactionError, Transaction);
doing_for!(redb::TableError, Table);
doing_for!(redb::StorageError, Storage);
doing_for!(redb::CommitError, Commit);
doing_for!(serde_json::Error, Codec);
