//! A faithful local Salesforce org for tests, benchmarks and the quickstart.
//!
//! `weft-emulator` serves the Salesforce APIs Weft uses — OAuth 2.0, REST query/queryAll
//! with a real SOQL subset, describe, limits, sObject Rows and Collections, Bulk API 2.0
//! query and ingest, change events — over real HTTP(S), with Salesforce's limits, errors and
//! quirks, so that unmodified clients (simple-salesforce, jsforce) cannot tell it from an org.
//! It shares no code with the host's Salesforce client: a shared bug would pass every test.
//! For the same reason its SOQL parser, id codec and date formats stay private — the host
//! must carry its own.
//!
//! # In-process use (stable API for the host's tests)
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use weft_emulator::{Emulator, EmulatorConfig, FaultConfig, FieldSpec, FieldType};
//! let org = Emulator::start(EmulatorConfig { accounts: 5_000, ..Default::default() }).await?;
//! let base = org.base_url();            // "http://127.0.0.1:PORT" (https with `tls: true`)
//! let token = org.access_token();       // ready Bearer token for User 0
//! let creds = org.credentials();        // client id/secret, username/password, refresh token
//! org.set_faults(FaultConfig { error_503_rate: 0.1, ..Default::default() });
//! org.add_field("Account", &FieldSpec::new("Score__c", FieldType::Double))?;
//! org.generate_changes(100);
//! let stats = org.stats();              // calls by kind and client, usage, jobs, faults
//! # let _ = (base, token, creds, stats); Ok(()) }
//! ```
//!
//! # Many orgs
//!
//! With `orgs: N` one server hosts N orgs; the handle is org 0 (every method above), and
//! `emulator.org(k)` is org `k` — its own id, credentials, data, sessions, limits, faults
//! and change log. Clients reach org `k` by logging in with its credentials
//! (`org(k).credentials()`); its tokens start with its org id and route every call to it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use weft_emulator::{Emulator, EmulatorConfig};
//! let emu = Emulator::start(EmulatorConfig { orgs: 3, accounts: 20, ..Default::default() }).await?;
//! let b = emu.org(1).expect("org 1 exists");   // built (seeded) on first use
//! let (id, token) = (b.org_id().to_string(), b.new_access_token());
//! # let _ = (id, token); Ok(()) }
//! ```
//!
//! The server runs on the caller's Tokio runtime and stops when the handle is dropped.
//! HTTP admin endpoints (`/__admin/…`) mirror the handle's methods; see the README.
//!
//! # Module map
//! `server` (pipeline) → `rest` (routing, query paging, limits resource) → `sobjects`,
//! `collections`, `composite`, `describe`, `bulk` (+ `bulk/query`, `bulk/ingest`, `csv_in`)
//! → `writes` (validation, transactions) / `query` + `soql` (SOQL) / `render` (wire bytes)
//! → `store` (columnar tables) with `schema`, `ids`, `clock`. Cross-cutting: `auth`,
//! `limits`, `faults`, `stats`, `cdc`, `admin`, `seed`, `tls`, `http`, `header_case`, `org`,
//! `orgs` (the orgs one process serves and how a request finds its org).

#![recursion_limit = "256"]

mod admin;
mod aggregate;
mod auth;
mod bulk;
mod cdc;
mod clock;
mod collections;
mod composite;
mod config;
mod csv_in;
mod describe;
mod error;
mod faults;
mod header_case;
mod http;
mod ids;
mod limits;
mod org;
mod orgs;
mod query;
mod render;
mod rest;
mod schema;
mod seed;
mod server;
mod sobjects;
mod soql;
mod stats;
mod store;
mod tls;
mod writes;

pub use admin::{AdminError, FieldSpec, ObjectSpec};
pub use config::{Credentials, EmulatorConfig, FaultConfig};
pub use error::{ApiError, RecordError};
pub use schema::FieldType;
pub use seed::SEED_ANCHOR_MS;
pub use stats::StatsSnapshot;

use org::Org;
use orgs::Orgs;
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use orgs::MAX_ORGS;

/// Why an org could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Org(#[from] org::OrgError),
    #[error("seeding task failed: {0}")]
    Seed(String),
}

/// Starts orgs.
pub struct Emulator;

impl Emulator {
    /// Seeds org 0 and serves it (and, with `config.orgs > 1`, the other orgs, each seeded
    /// on first use) on `config.bind` (default `127.0.0.1:0`). Must be called inside a Tokio
    /// runtime; seeding runs on a blocking thread.
    pub async fn start(config: EmulatorConfig) -> Result<EmulatorHandle, EmulatorError> {
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|source| EmulatorError::Bind {
                addr: config.bind,
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind {
                addr: config.bind,
                source,
            })?;
        // A temp dir we create is ours to remove on drop; a configured one is left alone.
        let tmp_tls_dir = (config.tls && config.tls_dir.is_none()).then(|| {
            std::env::temp_dir().join(format!(
                "weft-emulator-{}-{}",
                std::process::id(),
                addr.port()
            ))
        });
        let tls = match config.tls_dir.clone().or_else(|| tmp_tls_dir.clone()) {
            Some(dir) if config.tls => Some(tls::generate(&dir)?),
            _ => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let host = if addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            addr.ip().to_string()
        };
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let base_url = format!("{scheme}://{host}:{}", addr.port());
        let cfg = config.clone();
        let url = base_url.clone();
        let runtime = tokio::runtime::Handle::current();
        // Seeding a million rows takes seconds: keep it off the async workers.
        let orgs = tokio::task::spawn_blocking(move || Orgs::new(cfg, url, runtime))
            .await
            .map_err(|e| EmulatorError::Seed(e.to_string()))??;
        let orgs = Arc::new(orgs);
        let org = orgs.first().clone();
        let access_token = org.auth.issue(0, &config.credentials.client_id);
        let (tx, rx) = watch::channel(false);
        let ca_path = tls.as_ref().map(|t| t.ca_path.clone());
        let task = tokio::spawn(server::serve(
            listener,
            orgs.clone(),
            tls.map(|t| t.acceptor),
            rx,
        ));
        let changes = (config.change_rate_per_sec > 0.0).then(|| {
            let orgs = orgs.clone();
            let rate = config.change_rate_per_sec;
            tokio::spawn(async move {
                // Ten batches a second keeps the stream smooth without a write lock per change.
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                let mut carry = 0.0;
                loop {
                    tick.tick().await;
                    carry += rate / 10.0;
                    let n = carry.floor() as usize;
                    carry -= n as f64;
                    if n > 0 {
                        // Every org in use is busy at the same rate; unused orgs stay unbuilt.
                        let o = orgs.clone();
                        let _ = tokio::task::spawn_blocking(move || {
                            for org in o.each_built() {
                                org.generate_changes(n);
                            }
                        })
                        .await;
                    }
                }
            })
        });
        Ok(EmulatorHandle {
            first: OrgHandle { org, index: 0 },
            orgs,
            addr,
            base_url,
            ca_path,
            tmp_tls_dir,
            access_token,
            shutdown: tx,
            task,
            changes,
        })
    }
}

/// A running emulator. It derefs to org 0's `OrgHandle`, so a single-org caller uses it as
/// the org; `org(k)` reaches the others. Dropping it stops the server.
pub struct EmulatorHandle {
    first: OrgHandle,
    orgs: Arc<Orgs>,
    addr: SocketAddr,
    base_url: String,
    ca_path: Option<PathBuf>,
    tmp_tls_dir: Option<PathBuf>,
    access_token: String,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
    changes: Option<JoinHandle<()>>,
}

impl Deref for EmulatorHandle {
    type Target = OrgHandle;
    fn deref(&self) -> &OrgHandle {
        &self.first
    }
}

impl EmulatorHandle {
    /// `http(s)://127.0.0.1:PORT` — use as `instance_url` and as the login URL (every org's).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A Bearer token for org 0's API user, minted at start-up (valid for `token_ttl`).
    pub fn access_token(&self) -> &str {
        &self.access_token
    }

    /// PEM of the generated CA when `tls` is on.
    pub fn ca_cert_path(&self) -> Option<&Path> {
        self.ca_path.as_deref()
    }

    /// How many orgs this emulator serves (`EmulatorConfig::orgs`).
    pub fn org_count(&self) -> usize {
        self.orgs.len()
    }

    /// Org `k` (`None` past `org_count`). The first call for an org seeds it, blocking the
    /// caller for as long as seeding takes (microseconds for small orgs).
    pub fn org(&self, k: usize) -> Option<OrgHandle> {
        Some(OrgHandle {
            org: self.orgs.get(k)?,
            index: k,
        })
    }

    /// Org `k`'s id without building it.
    pub fn org_id_of(&self, k: usize) -> Option<String> {
        (k < self.orgs.len()).then(|| self.orgs.org_id(k))
    }

    /// Org `k`'s logins without building it (the scheme is in the README and `orgs.rs`).
    pub fn credentials_of(&self, k: usize) -> Option<Credentials> {
        (k < self.orgs.len()).then(|| self.orgs.credentials(k))
    }

    /// Stops the server now (also done on drop).
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        self.task.abort();
        if let Some(c) = &self.changes {
            c.abort();
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        self.shutdown();
        if let Some(dir) = &self.tmp_tls_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// One org of a running emulator: its identity, data, limits, faults, clock and change log.
/// Cheap to clone. Outliving the `EmulatorHandle` is harmless (the server is gone, the
/// org's state stays readable).
#[derive(Clone)]
pub struct OrgHandle {
    org: Arc<Org>,
    index: usize,
}

impl OrgHandle {
    /// This org's index (0 for the handle's own org).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The org's `instance_url` (the same server for every org: tokens pick the org).
    pub fn instance_url(&self) -> &str {
        &self.org.base_url
    }

    /// The accepted logins (client id/secret, username/password/security token, refresh token).
    pub fn credentials(&self) -> &Credentials {
        &self.org.cfg.credentials
    }

    /// Mints a fresh access token.
    pub fn new_access_token(&self) -> String {
        self.org.auth.issue(0, &self.org.cfg.credentials.client_id)
    }

    /// Mints a token for the seeded user at `row` (row 0 is the API user every login
    /// gets): what it changes is last modified by that user, as a rep's edit would be.
    pub fn access_token_for_user(&self, row: u32) -> String {
        self.org
            .auth
            .issue(row, &self.org.cfg.credentials.client_id)
    }

    /// Invalidates every token of this org (next API call gets `401 INVALID_SESSION_ID`).
    pub fn expire_tokens(&self) {
        self.org.auth.expire_all();
    }

    /// 18-character organization id (`00D…`).
    pub fn org_id(&self) -> &str {
        &self.org.org_id
    }

    pub fn faults(&self) -> FaultConfig {
        self.org.faults.get()
    }

    pub fn set_faults(&self, faults: FaultConfig) {
        self.org.faults.set(faults);
    }

    pub fn add_field(&self, object: &str, spec: &FieldSpec) -> Result<(), AdminError> {
        admin::add_field(&self.org, object, spec)
    }

    pub fn remove_field(&self, object: &str, field: &str) -> Result<(), AdminError> {
        admin::remove_field(&self.org, object, field)
    }

    pub fn add_object(&self, spec: &ObjectSpec) -> Result<(), AdminError> {
        admin::add_object(&self.org, spec)
    }

    pub fn remove_object(&self, name: &str) -> Result<(), AdminError> {
        admin::remove_object(&self.org, name)
    }

    /// Applies `n` random edits (updates, inserts, deletes) as another integration would;
    /// returns how many committed. Blocks on the store lock: call from a blocking context or
    /// with small `n` on the runtime.
    pub fn generate_changes(&self, n: usize) -> usize {
        self.org.generate_changes(n)
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.org.stats()
    }

    /// API calls by `client` the org served between two instants of its own clock (epoch
    /// ms, whole minutes: `from` inclusive, `to` exclusive).
    pub fn client_calls_between(&self, client: &str, from_ms: i64, to_ms: i64) -> u64 {
        self.org.stats.client_calls_between(client, from_ms, to_ms)
    }

    /// Runs SOQL in-process for assertions — bypasses HTTP, limits, faults and stats. Records
    /// are shaped as REST returns them (`attributes`, nested parents). `SELECT COUNT()`
    /// yields one `{"totalSize": n}`. `include_deleted` = `queryAll`.
    pub fn query(
        &self,
        soql: &str,
        include_deleted: bool,
    ) -> Result<Vec<serde_json::Value>, ApiError> {
        self.org.query_records(soql, include_deleted)
    }

    pub fn reset_stats(&self) {
        self.org.stats.reset();
    }

    /// (used, max) of the rolling 24 h API allocation, as `Sforce-Limit-Info` reports it.
    pub fn api_usage(&self) -> (u64, u64) {
        let now = self.org.clock.now_ms();
        (self.org.limits.usage(now), self.org.limits.max())
    }

    pub fn set_api_daily_max(&self, max: u64) {
        self.org.limits.set_max(max);
    }

    pub fn set_other_integrations_per_day(&self, n: u64) {
        self.org.limits.set_other_per_day(n);
    }

    /// Adds a burst of other integrations' requests now.
    pub fn add_other_usage(&self, n: u64) {
        self.org.limits.add_other_usage(self.org.clock.now_ms(), n);
    }

    /// Moves simulated time forward.
    pub fn advance_clock(&self, by: Duration) {
        self.org.clock.advance_ms(by.as_millis() as i64);
    }

    /// Simulated now, epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        self.org.clock.now_ms()
    }

    pub fn set_webhook(&self, url: Option<String>) {
        self.org.cdc.set_webhook(url);
    }

    /// Change events with replay id > `after` (oldest first, at most 10,000).
    pub fn events_after(&self, after: u64) -> Vec<serde_json::Value> {
        self.org.cdc.events_after(after, 10_000)
    }
}
