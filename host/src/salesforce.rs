//! The Salesforce transport: every API call Weft makes to a customer's org.
//!
//! Owns the HTTP client (reqwest, gzip on responses and, optionally, on request bodies), the
//! login and one transparent re-login on `INVALID_SESSION_ID` ([`auth`]), the retry loop
//! (backoff with full jitter, `Retry-After`, breaker reporting — timing decided by
//! [`crate::throttle`]), and the APIs callers use: REST query/queryAll paging ([`rest`]),
//! describe with a refreshable cache and `/limits`, sObject Collections upsert
//! ([`collections`]), Bulk API 2.0 query with resumable, incrementally parsed CSV results
//! ([`bulk_query`], [`csv`]) and Bulk ingest ([`bulk_ingest`]). Errors keep Salesforce's
//! `errorCode`, message and fields ([`error`]).
//!
//! Every request is admitted by the installation's [`Governor`] first and tagged with a
//! [`Project`]. A request is never dropped: it succeeds, or its caller gets a final
//! [`SalesforceError`] to put in the DLQ. The transport knows nothing of sync logic
//! (pipelines, plugins, storage); callers checkpoint with what it exposes (Bulk job id +
//! locator).

pub mod auth;
pub mod bulk_ingest;
pub mod bulk_query;
pub mod collections;
pub mod csv;
mod describe_keys;
pub mod error;
pub mod replication;
pub mod rest;
mod transport;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

pub use auth::{Credentials, Secret, Session};
pub use bulk_ingest::{
    IngestJob, IngestOperation, IngestOutcome, IngestResultKind, IngestSummary, ResultSet,
};
pub use bulk_query::{BulkBatch, BulkCursor, BulkQueryStream};
pub use collections::{ChunkOutcome, RecordResult};
pub use error::{ApiErrorItem, RecordError, SalesforceError, TransportKind};
pub use replication::{DeletedRecord, DeletedRecords};
pub use rest::{FieldDescribe, Limit, OrgLimits, QueryPage, SObjectDescribe};

use crate::throttle::{Governor, Project};

/// How to reach and talk to one org.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Installation id: on every tracing span and metric.
    pub installation: String,
    /// `https://login.salesforce.com`, `https://test.salesforce.com` or a My Domain URL.
    pub login_url: String,
    pub credentials: Credentials,
    /// API version without the `v`. 62.0 is well past every minimum we rely on (Collections
    /// upsert 46.0, Bulk 2.0 query 47.0) and old enough to be served by every org.
    pub api_version: String,
    /// Sent as `Sforce-Call-Options: client=…`, so the customer's admins can tell Weft's
    /// calls from other integrations' in their event logs.
    pub client_name: String,
    /// Total time for a non-streamed request. 120 s: Salesforce's own limit is 10 minutes,
    /// but a REST call that has not answered in two is better retried than waited on.
    pub request_timeout: Duration,
    /// TCP + TLS connect timeout (10 s).
    pub connect_timeout: Duration,
    /// Longest silence while reading a streamed body (60 s); a stalled download is retried
    /// from its locator instead of hanging.
    pub read_timeout: Duration,
    /// Gzip request bodies of at least `gzip_min_bytes` (`Content-Encoding: gzip`). CSV and
    /// JSON shrink 5–10×; below 8 KiB the CPU is not worth it.
    pub gzip_requests: bool,
    pub gzip_min_bytes: usize,
    /// PEM of an extra CA to trust (a test org with a private CA).
    pub extra_ca_pem: Option<Vec<u8>>,
    pub bulk: bulk_query::BulkConfig,
}

impl ClientConfig {
    /// A configuration with every default; `installation`, `login_url` and `credentials`
    /// are what differs per customer.
    pub fn new(
        installation: impl Into<String>,
        login_url: impl Into<String>,
        credentials: Credentials,
    ) -> Self {
        ClientConfig {
            installation: installation.into(),
            login_url: login_url.into(),
            credentials,
            api_version: "62.0".into(),
            client_name: "weft".into(),
            request_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            gzip_requests: true,
            gzip_min_bytes: 8 * 1024,
            extra_ca_pem: None,
            bulk: bulk_query::BulkConfig::default(),
        }
    }
}

/// A client for one installation's org. Cheap to clone; share it.
#[derive(Debug, Clone)]
pub struct SalesforceClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ClientConfig,
    http: reqwest::Client,
    governor: Arc<Governor>,
    session: RwLock<Option<Session>>,
    login_lock: tokio::sync::Mutex<()>,
    generation: AtomicU64,
    describes: Mutex<HashMap<String, CachedDescribe>>,
}

/// A describe as cached, with the org's `Date` of the response that carried it: the
/// `If-Modified-Since` of the next refresh, which the org answers `304` (no body to send
/// or parse) while the schema is unchanged.
#[derive(Debug, Clone)]
struct CachedDescribe {
    describe: Arc<SObjectDescribe>,
    as_of: Option<String>,
    /// When the org last confirmed it (fetched, or answered `304`).
    checked: std::time::Instant,
}

impl SalesforceClient {
    pub fn new(config: ClientConfig, governor: Arc<Governor>) -> Result<Self, SalesforceError> {
        let mut b = reqwest::Client::builder()
            .gzip(true)
            .connect_timeout(config.connect_timeout)
            .read_timeout(config.read_timeout)
            .user_agent(concat!("weft/", env!("CARGO_PKG_VERSION")))
            // Kept longer than an incremental pass's default interval (60 s), so an idle
            // installation's next pass reuses its connection instead of opening one. A
            // connection the org closed meanwhile is seen closed by the pool (or, in a
            // race, retried as a reset like any other).
            .pool_idle_timeout(Duration::from_secs(120));
        if let Some(pem) = &config.extra_ca_pem {
            let cert = reqwest::Certificate::from_pem(pem)
                .map_err(|e| SalesforceError::Config(format!("extra CA: {e}")))?;
            b = b.add_root_certificate(cert);
        }
        let http = b
            .build()
            .map_err(|e| SalesforceError::Config(format!("HTTP client: {e}")))?;
        Ok(SalesforceClient {
            inner: Arc::new(Inner {
                config,
                http,
                governor,
                session: RwLock::new(None),
                login_lock: tokio::sync::Mutex::new(()),
                generation: AtomicU64::new(1),
                describes: Mutex::new(HashMap::new()),
            }),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    pub fn governor(&self) -> &Arc<Governor> {
        &self.inner.governor
    }

    /// Logs in now (otherwise the first request does). Useful to fail fast on bad
    /// credentials at start-up.
    pub async fn login(&self) -> Result<Session, SalesforceError> {
        self.inner.session().await
    }

    /// Logs in and learns the org's limits, so the governor paces with the real
    /// `DailyApiRequests.Max` from the first request on.
    pub async fn prime(&self, project: Project) -> Result<OrgLimits, SalesforceError> {
        self.login().await?;
        self.limits(project).await
    }

    fn data_path(&self, rest: &str) -> String {
        format!(
            "/services/data/v{}/{}",
            self.inner.config.api_version,
            rest.trim_start_matches('/')
        )
    }
}
