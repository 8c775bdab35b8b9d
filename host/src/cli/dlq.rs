//! `weft dlq list|show|replay|discard`: the dead-letter queue for operators.
//!
//! Two ways in, same output: with `--url` the commands go through a running `weft serve`'s
//! admin API (bearer token from `--token` or `WEFT_ADMIN_TOKEN`); without it they open the
//! store file directly, which redb allows only while no other process (such as `weft
//! serve`) has it open — the error says to pass `--url` when it is held.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use jiff::Timestamp;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::api::AdminToken;
use crate::store::{
    DlqEntry, DlqFilter, DlqListing, DlqStatus, RedbStore, Seq, Stage, Store, StoreError, StoreExt,
    UnreadableDlqEntry,
};

pub struct Filters {
    pub installation: Option<String>,
    pub stage: Option<String>,
    pub error_code: Option<String>,
}

/// Where the DLQ is: a store file, or a running host's admin API.
pub struct Target {
    pub db: PathBuf,
    pub url: Option<String>,
    pub token: Option<AdminToken>,
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

/// What a replay did to one entry.
struct Replayed {
    seq: Option<Seq>,
}

/// One entry as `show` finds it.
enum Found {
    Entry(Box<DlqEntry>),
    /// An entry the store cannot decode: why, and its stored text.
    Unreadable {
        reason: String,
        raw: String,
    },
}

impl Found {
    fn into_entry(self, id: u64) -> anyhow::Result<DlqEntry> {
        match self {
            Found::Entry(entry) => Ok(*entry),
            Found::Unreadable { reason, .. } => bail!(
                "DLQ entry {id} cannot be decoded ({reason}): `weft dlq show {id}` prints it \
                 raw, `weft dlq discard {id}` closes it"
            ),
        }
    }
}

enum Dlq {
    Local(RedbStore),
    Remote(Remote),
}

impl Dlq {
    fn open(target: &Target) -> anyhow::Result<Dlq> {
        match &target.url {
            Some(url) => Ok(Dlq::Remote(Remote::new(url, target.token.clone())?)),
            None => Ok(Dlq::Local(open_file(&target.db)?)),
        }
    }

    fn list(&self, filter: &DlqFilter) -> anyhow::Result<DlqListing> {
        match self {
            Dlq::Local(store) => Ok(store.dlq_list(filter).context("listing the DLQ")?),
            Dlq::Remote(remote) => remote.list(filter),
        }
    }

    fn get(&self, id: u64) -> anyhow::Result<Option<Found>> {
        match self {
            Dlq::Local(store) => match store.dlq_get(id) {
                Ok(entry) => Ok(entry.map(|e| Found::Entry(Box::new(e)))),
                Err(StoreError::DlqUnreadable { reason, .. }) => {
                    let raw = store.dlq_raw(id).context("reading the DLQ")?;
                    Ok(raw.map(|raw| Found::Unreadable {
                        reason,
                        raw: String::from_utf8_lossy(&raw).into_owned(),
                    }))
                }
                Err(other) => Err(other).context("reading the DLQ"),
            },
            Dlq::Remote(remote) => remote.get(id),
        }
    }

    fn replay(&self, id: u64) -> anyhow::Result<Replayed> {
        match self {
            Dlq::Local(store) => Ok(Replayed {
                seq: store
                    .replay_dlq(id, Timestamp::now())
                    .with_context(|| format!("replaying DLQ entry {id}"))?,
            }),
            Dlq::Remote(remote) => remote.replay(id),
        }
    }

    fn discard(&self, id: u64) -> anyhow::Result<()> {
        match self {
            Dlq::Local(store) => Ok(store
                .discard_dlq(id)
                .with_context(|| format!("discarding DLQ entry {id}"))?),
            Dlq::Remote(remote) => remote.discard(id),
        }
    }
}

fn open_file(db: &Path) -> anyhow::Result<RedbStore> {
    if !db.exists() {
        bail!(
            "no store at {} (pass --db, or run `weft serve` first)",
            db.display()
        );
    }
    match RedbStore::open(db) {
        Ok(store) => Ok(store),
        Err(StoreError::Open {
            source: redb::DatabaseError::DatabaseAlreadyOpen,
            ..
        }) => bail!(
            "{} is held by another process (is `weft serve` running on it?): pass --url \
             http://ADDR (the address weft serve listens on) and --token or WEFT_ADMIN_TOKEN \
             (its admin token) to go through the running host",
            db.display()
        ),
        Err(other) => Err(other).with_context(|| format!("opening {}", db.display())),
    }
}

/// A blocking client of the admin API (the CLI is synchronous; one small runtime per
/// command is cheaper than making every command async).
struct Remote {
    base: String,
    token: Option<AdminToken>,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

/// Long enough for a replay's durable commit on a busy disk; short enough that a host
/// that stopped answering is reported instead of waited on.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl Remote {
    fn new(url: &str, token: Option<AdminToken>) -> anyhow::Result<Remote> {
        let url = url.trim_end_matches('/');
        let base = if url.contains("://") {
            url.to_owned()
        } else {
            format!("http://{url}")
        };
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("building the HTTP client")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the Tokio runtime")?;
        Ok(Remote {
            base,
            token,
            client,
            runtime,
        })
    }

    /// Sends one request; returns the status and the JSON body.
    fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
    ) -> anyhow::Result<(StatusCode, Value)> {
        let url = format!("{}{path}", self.base);
        let mut request = self.client.request(method, &url).query(query);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.reveal());
        }
        self.runtime.block_on(async {
            let response = request
                .send()
                .await
                .with_context(|| format!("reaching weft serve at {}", self.base))?;
            let status = response.status();
            let body: Value = response
                .json()
                .await
                .with_context(|| format!("reading the answer of {url}"))?;
            match status {
                StatusCode::UNAUTHORIZED => Err(anyhow!(
                    "weft serve at {} refused the admin token: pass --token or set \
                     WEFT_ADMIN_TOKEN to the token it was started with",
                    self.base
                )),
                StatusCode::FORBIDDEN => Err(anyhow!("{}", message(&body))),
                _ => Ok((status, body)),
            }
        })
    }

    fn list(&self, filter: &DlqFilter) -> anyhow::Result<DlqListing> {
        let mut query = vec![(
            "status",
            filter.status.map_or("all", |status| status.as_str()),
        )];
        if let Some(installation) = &filter.installation {
            query.push(("installation", installation));
        }
        if let Some(stage) = filter.stage {
            query.push(("stage", stage.as_str()));
        }
        if let Some(code) = &filter.error_code {
            query.push(("error_code", code));
        }
        let (status, body) = self.call(Method::GET, "/v1/admin/dlq", &query)?;
        if status != StatusCode::OK {
            bail!("listing the DLQ: {}", message(&body));
        }
        serde_json::from_value(body).context("reading the DLQ entries")
    }

    fn get(&self, id: u64) -> anyhow::Result<Option<Found>> {
        let (status, body) = self.call(Method::GET, &format!("/v1/admin/dlq/{id}"), &[])?;
        match status {
            StatusCode::OK if body.get("unreadable").is_some() => Ok(Some(Found::Unreadable {
                reason: message_of(&body, "unreadable"),
                raw: message_of(&body, "raw"),
            })),
            StatusCode::OK => Ok(Some(Found::Entry(
                serde_json::from_value(body).context("reading the DLQ entry")?,
            ))),
            StatusCode::NOT_FOUND => Ok(None),
            _ => bail!("reading DLQ entry {id}: {}", message(&body)),
        }
    }

    fn replay(&self, id: u64) -> anyhow::Result<Replayed> {
        let (status, body) = self.call(Method::POST, &format!("/v1/admin/dlq/{id}/replay"), &[])?;
        if status != StatusCode::OK {
            bail!("replaying DLQ entry {id}: {}", message(&body));
        }
        Ok(Replayed {
            seq: body["replayed_as_seq"].as_u64(),
        })
    }

    fn discard(&self, id: u64) -> anyhow::Result<()> {
        let (status, body) =
            self.call(Method::POST, &format!("/v1/admin/dlq/{id}/discard"), &[])?;
        if status != StatusCode::OK {
            bail!("discarding DLQ entry {id}: {}", message(&body));
        }
        Ok(())
    }
}

fn message(body: &Value) -> String {
    message_of(body, "message")
}

fn message_of(body: &Value, key: &str) -> String {
    body[key]
        .as_str()
        .map_or_else(|| body.to_string(), str::to_owned)
}

fn unreadable_summary(entry: &UnreadableDlqEntry) -> serde_json::Value {
    json!({
        "id": entry.id,
        "installation": entry.installation,
        "status": entry.status,
        "unreadable": entry.error,
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
pub fn list(target: &Target, filters: &Filters, all: bool) -> anyhow::Result<ExitCode> {
    let filter = filters.to_filter((!all).then_some(DlqStatus::Open))?;
    let dlq = Dlq::open(target)?;
    let listing = dlq.list(&filter)?;
    for entry in &listing.entries {
        println!("{}", summary(entry));
    }
    for entry in &listing.unreadable {
        println!("{}", unreadable_summary(entry));
    }
    let count = listing.entries.len() + listing.unreadable.len();
    eprintln!("{count} entr{}", if count == 1 { "y" } else { "ies" });
    if let Some(first) = listing.unreadable.first() {
        eprintln!(
            "{} cannot be decoded: `weft dlq show {}` prints one raw, `weft dlq discard {}` \
             closes it",
            listing.unreadable.len(),
            first.id,
            first.id
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints one entry in full, original event included, as pretty JSON; an entry that
/// cannot be decoded as `{"id", "unreadable", "raw"}`.
pub fn show(target: &Target, id: u64) -> anyhow::Result<ExitCode> {
    let dlq = Dlq::open(target)?;
    match dlq.get(id)? {
        None => bail!("no DLQ entry {id} (see `weft dlq list --all`)"),
        Some(Found::Entry(entry)) => println!("{}", serde_json::to_string_pretty(&entry)?),
        Some(Found::Unreadable { reason, raw }) => println!(
            "{}",
            serde_json::to_string_pretty(&json!({"id": id, "unreadable": reason, "raw": raw}))?
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// The open entries named by id, or matched by the filters.
fn select(dlq: &Dlq, ids: &[u64], filters: &Filters, verb: &str) -> anyhow::Result<Vec<DlqEntry>> {
    if ids.is_empty() {
        if filters.is_empty() {
            bail!(
                "name the entries to {verb}: give their ids, or narrow with --installation, --stage or --error-code"
            );
        }
        return Ok(dlq
            .list(&filters.to_filter(Some(DlqStatus::Open))?)?
            .entries);
    }
    let filter = filters.to_filter(None)?;
    let mut out = Vec::new();
    for &id in ids {
        let Some(found) = dlq.get(id)? else {
            bail!("no DLQ entry {id}");
        };
        let entry = found.into_entry(id)?;
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

pub fn replay(target: &Target, ids: &[u64], filters: &Filters) -> anyhow::Result<ExitCode> {
    let dlq = Dlq::open(target)?;
    let entries = select(&dlq, ids, filters, "replay")?;
    let mut replayed = 0usize;
    for entry in &entries {
        match dlq.replay(entry.id)?.seq {
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

/// Discards the named entries, or the open ones matching the filters. Entries that cannot be
/// decoded are discarded too when named by id (the store checks they are open) — that is
/// how an operator clears one.
pub fn discard(target: &Target, ids: &[u64], filters: &Filters) -> anyhow::Result<ExitCode> {
    let dlq = Dlq::open(target)?;
    let (readable, unreadable): (Vec<u64>, Vec<u64>) = if ids.is_empty() {
        let ids = select(&dlq, ids, filters, "discard")?
            .iter()
            .map(|e| e.id)
            .collect();
        (ids, Vec::new())
    } else {
        let mut unreadable = Vec::new();
        for &id in ids {
            if let Some(Found::Unreadable { .. }) = dlq.get(id)? {
                unreadable.push(id);
            }
        }
        let rest: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| !unreadable.contains(id))
            .collect();
        let readable = if rest.is_empty() {
            Vec::new()
        } else {
            select(&dlq, &rest, filters, "discard")?
                .iter()
                .map(|e| e.id)
                .collect()
        };
        (readable, unreadable)
    };
    for &id in readable.iter().chain(&unreadable) {
        dlq.discard(id)?;
        println!("{}", json!({"id": id, "status": "discarded"}));
    }
    let count = readable.len() + unreadable.len();
    eprintln!(
        "{count} entr{} discarded",
        if count == 1 { "y" } else { "ies" }
    );
    Ok(ExitCode::SUCCESS)
}
