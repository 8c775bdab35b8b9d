//! [`RedbStore`]: the redb file behind a guard that turns damage in the file into errors.
//!
//! redb answers most damage with errors, but some (a page pointer out of range, a key that
//! is not valid UTF-8) make it panic. Unguarded, that panic ends `weft serve` or `weft dlq`
//! with a backtrace, or kills the intake writer thread and leaves every waiting request
//! unanswered. Here every call into the file runs under [`std::panic::catch_unwind`]: a
//! panic raised inside redb becomes [`StoreError::Corrupt`] naming the file, is logged once
//! (never printed raw), and makes the store refuse every later call, since redb's state
//! after a panic cannot be trusted. A panic raised anywhere else (a bug in our own code,
//! inside a write transaction's closure) is not corruption: it unwinds as it always did.
//!
//! It never repairs a file and never hides a failure as success.

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use super::redb_store::RedbFile;
use super::{
    AcceptedEvent, AppliedMark, AuditEntry, Backlog, DlqEntry, DlqFilter, DlqListing, EventStatus,
    PendingEvent, RetryState, Seq, StateKind, Store, StoreError, StoreTxn,
};

/// The embedded [`Store`]: one redb file per host, one writing process at a time. See the
/// module docs for how damage in the file is reported.
pub struct RedbStore {
    file: RedbFile,
    path: PathBuf,
    /// Set once redb has panicked on this file.
    damaged: AtomicBool,
}

impl RedbStore {
    /// Opens the store at `path`, creating the file and its tables if it does not exist.
    /// An existing empty file is refused ([`StoreError::Empty`]), not started as a new
    /// store.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if std::fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.len() == 0) {
            return Err(StoreError::Empty {
                path: path.to_owned(),
            });
        }
        let damaged = AtomicBool::new(false);
        let file = guarded(path, &damaged, || RedbFile::open(path))?;
        Ok(RedbStore {
            file,
            path: path.to_owned(),
            damaged,
        })
    }

    fn guard<T>(&self, work: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        guarded(&self.path, &self.damaged, work)
    }
}

impl Store for RedbStore {
    fn write(
        &self,
        work: &mut dyn FnMut(&mut dyn StoreTxn) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.guard(|| self.file.write(work))
    }

    fn pending_events(
        &self,
        installation: &str,
        after: Option<Seq>,
        limit: usize,
    ) -> Result<Vec<PendingEvent>, StoreError> {
        self.guard(|| self.file.pending_events(installation, after, limit))
    }

    fn backlog(&self, installation: &str) -> Result<Backlog, StoreError> {
        self.guard(|| self.file.backlog(installation))
    }

    fn events(
        &self,
        installation: &str,
        after: Option<Seq>,
        limit: usize,
    ) -> Result<Vec<AcceptedEvent>, StoreError> {
        self.guard(|| self.file.events(installation, after, limit))
    }

    fn event_status(
        &self,
        installation: &str,
        event_id: &str,
    ) -> Result<Option<EventStatus>, StoreError> {
        self.guard(|| self.file.event_status(installation, event_id))
    }

    fn dlq_list(&self, filter: &DlqFilter) -> Result<DlqListing, StoreError> {
        self.guard(|| self.file.dlq_list(filter))
    }

    fn dlq_open_count(&self, installation: &str) -> Result<u64, StoreError> {
        self.guard(|| self.file.dlq_open_count(installation))
    }

    fn dlq_get(&self, id: u64) -> Result<Option<DlqEntry>, StoreError> {
        self.guard(|| self.file.dlq_get(id))
    }

    fn dlq_raw(&self, id: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.guard(|| self.file.dlq_raw(id))
    }

    fn audit(
        &self,
        installation: &str,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<(u64, AuditEntry)>, StoreError> {
        self.guard(|| self.file.audit(installation, after, limit))
    }

    fn applied_mark(
        &self,
        installation: &str,
        object: &str,
        record_key: &str,
    ) -> Result<Option<AppliedMark>, StoreError> {
        self.guard(|| self.file.applied_mark(installation, object, record_key))
    }

    fn retry_states(&self, installation: &str) -> Result<Vec<(Seq, RetryState)>, StoreError> {
        self.guard(|| self.file.retry_states(installation))
    }

    fn synced_ids(
        &self,
        installation: &str,
        object: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.guard(|| self.file.synced_ids(installation, object, after, limit))
    }

    fn state_raw(
        &self,
        installation: &str,
        object: &str,
        kind: StateKind,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.guard(|| self.file.state_raw(installation, object, kind))
    }

    fn spec_raw(&self, installation: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.guard(|| self.file.spec_raw(installation))
    }

    fn specs_raw(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.guard(|| self.file.specs_raw())
    }

    fn plugin_raw(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.guard(|| self.file.plugin_raw(key))
    }

    fn plugins_raw(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.guard(|| self.file.plugins_raw())
    }

    fn plugin_component(&self, hash: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.guard(|| self.file.plugin_component(hash))
    }
}

thread_local! {
    /// How many guarded calls this thread is inside.
    static GUARDED: Cell<u32> = const { Cell::new(0) };
    /// What the panic hook saw of a redb panic under a guard: message and place.
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Runs `work`, turning a panic inside redb into [`StoreError::Corrupt`] for `path`.
fn guarded<T>(
    path: &Path,
    damaged: &AtomicBool,
    work: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    if damaged.load(Ordering::Relaxed) {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            detail: "an earlier read of it failed on damage".into(),
        });
    }
    install_hook();
    CAUGHT.with(|caught| caught.borrow_mut().take());
    GUARDED.with(|depth| depth.set(depth.get() + 1));
    // Unwind safety: after a redb panic nothing of this store is used again (`damaged`),
    // and a panic from elsewhere is resumed unchanged.
    let outcome = panic::catch_unwind(AssertUnwindSafe(work));
    GUARDED.with(|depth| depth.set(depth.get().saturating_sub(1)));
    match outcome {
        Ok(result) => result,
        Err(payload) => match CAUGHT.with(|caught| caught.borrow_mut().take()) {
            Some(detail) => {
                damaged.store(true, Ordering::Relaxed);
                tracing::error!(path = %path.display(), %detail, "store: the database library failed on damage in the file");
                Err(StoreError::Corrupt {
                    path: path.to_owned(),
                    detail,
                })
            }
            None => panic::resume_unwind(payload),
        },
    }
}

/// Installs, once per process, a panic hook that keeps a guarded redb panic quiet (the
/// guard reports it as an error) and passes every other panic to the hook before it, so
/// their reporting is unchanged.
fn install_hook() {
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let in_redb = info
                .location()
                .filter(|location| is_redb_source(location.file()));
            match in_redb {
                Some(location) if GUARDED.with(Cell::get) > 0 => {
                    let message = info.payload_as_str().unwrap_or("a panic");
                    let detail = format!(
                        "the database library failed: {message} at {}:{}",
                        short_path(location.file()),
                        location.line()
                    );
                    CAUGHT.with(|caught| *caught.borrow_mut() = Some(detail));
                }
                _ => previous(info),
            }
        }));
    });
}

/// Whether a panic's source file is redb's (`…/redb-4.6.0/src/…`, or a vendored `redb/`).
fn is_redb_source(file: &str) -> bool {
    file.split(['/', '\\'])
        .any(|part| part == "redb" || part.starts_with("redb-"))
}

/// The part of a dependency's path from its crate directory on (`redb-4.6.0/src/…`).
fn short_path(file: &str) -> &str {
    file.find("redb").map_or(file, |at| &file[at..])
}
