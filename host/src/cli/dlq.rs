//! `weft dlq list|show|replay|discard`: the dead-letter queue for operators.
//!
//! These open the store file directly. redb lets one process write a file at a time, so
//! stop `weft serve` on that file first (the command says so if you forget).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use jiff::Timestamp;
use serde_json::json;

use crate::store::{DlqEntry, DlqFilter, DlqStatus, RedbStore, Stage, Store, StoreExt};

pub struct Filters {
    pub installation: Option<String>,
    pub stage: Option<String>,
    pub error_code: Option<String>,
}

impl Filters {
    fn to_filter(&self, status: Option<DlqStatus>) -> anyhow::Result<DlqFilter> {
        let stage = self
            .stage
            .as_deref()
            .map(str::parse::<Stage>)
            .transpose()
            .context("--stage")?;
        Ok(DlqFilter {
            installation: self.installation.clone(),
            stage,
            error_code: self.error_code.clone(),
            status,
        })
    }

    fn is_empty(&self) -> bool {
        self.installation.is_none() && self.stage.is_none() && self.error_code.is_none()
    }
}

fn open(db: &Path) -> anyhow::Result<RedbStore> {
    if !db.exists() {
        bail!(
            "no store at {} (pass --db, or run `weft serve` first)",
            db.display()
        );
    }
    RedbStore::open(db).with_context(|| {
        format!(
            "opening {} (if `weft serve` is running on it, stop it first: one process writes a store at a time)",
            db.display()
        )
    })
}

fn summary(entry: &DlqEntry) -> serde_json::Value {
    json!({
        "id": entry.id,
        "installation": entry.installation,
        "event_id": entry.original.event_id(),
        "object": entry.original.object(),
        "stage": entry.stage,
        "error_code": entry.error_code,
        "message": entry.message,
        "fields": entry.fields,
        "attempts": entry.attempts,
        "first_seen": entry.first_seen.to_string(),
        "last_seen": entry.last_seen.to_string(),
        "status": entry.status,
    })
}

/// Prints matching entries as NDJSON (one summary per line) and a count on stderr.
pub fn list(db: &Path, filters: &Filters, all: bool) -> anyhow::Result<ExitCode> {
    let store = open(db)?;
    let filter = filters.to_filter((!all).then_some(DlqStatus::Open))?;
    let entries = store.dlq_list(&filter).context("listing the DLQ")?;
    for entry in &entries {
        println!("{}", summary(entry));
    }
    eprintln!(
        "{} entr{}",
        entries.len(),
        if entries.len() == 1 { "y" } else { "ies" }
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints one entry in full, original event included, as pretty JSON.
pub fn show(db: &Path, id: u64) -> anyhow::Result<ExitCode> {
    let store = open(db)?;
    let Some(entry) = store.dlq_get(id).context("reading the DLQ")? else {
        bail!("no DLQ entry {id} (see `weft dlq list --all`)");
    };
    println!("{}", serde_json::to_string_pretty(&entry)?);
    Ok(ExitCode::SUCCESS)
}

/// The open entries named by id, or matched by the filters.
fn select(
    store: &RedbStore,
    ids: &[u64],
    filters: &Filters,
    verb: &str,
) -> anyhow::Result<Vec<DlqEntry>> {
    if ids.is_empty() {
        if filters.is_empty() {
            bail!(
                "name the entries to {verb}: give their ids, or narrow with --installation, --stage or --error-code"
            );
        }
        return Ok(store.dlq_list(&filters.to_filter(Some(DlqStatus::Open))?)?);
    }
    let filter = filters.to_filter(None)?;
    let mut out = Vec::new();
    for &id in ids {
        let Some(entry) = store.dlq_get(id)? else {
            bail!("no DLQ entry {id}");
        };
        if !filter.matches(&entry) {
            bail!("DLQ entry {id} does not match the given filters");
        }
        if entry.status != DlqStatus::Open {
            bail!("DLQ entry {id} is already {}", entry.status.as_str());
        }
        out.push(entry);
    }
    Ok(out)
}

pub fn replay(db: &Path, ids: &[u64], filters: &Filters) -> anyhow::Result<ExitCode> {
    let store = open(db)?;
    let entries = select(&store, ids, filters, "replay")?;
    let mut replayed = 0usize;
    for entry in &entries {
        match store
            .replay_dlq(entry.id, Timestamp::now())
            .with_context(|| format!("replaying DLQ entry {}", entry.id))?
        {
            Some(seq) => {
                replayed += 1;
                println!(
                    "{}",
                    json!({"id": entry.id, "installation": entry.installation, "event_id": entry.original.event_id(), "replayed_as_seq": seq})
                );
            }
            None => eprintln!(
                "DLQ entry {} holds a record, not a product event; re-run the sync that produced it",
                entry.id
            ),
        }
    }
    eprintln!("{replayed} event(s) re-enqueued for the outbound pipeline");
    Ok(ExitCode::SUCCESS)
}

pub fn discard(db: &Path, ids: &[u64], filters: &Filters) -> anyhow::Result<ExitCode> {
    let store = open(db)?;
    let entries = select(&store, ids, filters, "discard")?;
    for entry in &entries {
        store
            .transact(|txn| txn.set_dlq_status(entry.id, DlqStatus::Discarded))
            .with_context(|| format!("discarding DLQ entry {}", entry.id))?;
        println!("{}", json!({"id": entry.id, "status": "discarded"}));
    }
    eprintln!(
        "{} entr{} discarded",
        entries.len(),
        if entries.len() == 1 { "y" } else { "ies" }
    );
    Ok(ExitCode::SUCCESS)
}
