//! Start-up configuration of an emulated org.
//!
//! Owns every knob, its default and the trade-off behind the default. It is plain data (no
//! I/O): `Emulator::start` turns it into live objects. It must never hold runtime state.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Injected faults. Rates are probabilities in `[0, 1]` applied per API request (or per
/// record / per job where stated); all zero by default. Changeable at run time through
/// `EmulatorHandle::set_faults` or `PUT /__admin/faults`. Draws come from a PRNG seeded with
/// the org seed, so a run with the same requests sees the same faults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultConfig {
    /// Share of API requests answered `503 SERVER_UNAVAILABLE`.
    pub error_503_rate: f64,
    /// Share of API requests answered `429` with `Retry-After` (not Salesforce's usual quota
    /// signal, but some edges send it and clients must honour it).
    pub error_429_rate: f64,
    /// Share of API requests answered `420` (Salesforce Edge still routing the org — seen
    /// right after a My Domain change; clients retry it).
    pub error_420_rate: f64,
    /// `Retry-After` seconds sent with injected 429s.
    pub retry_after_secs: u64,
    /// Send that `Retry-After` as an HTTP-date (`retry_after_secs` from now by the wall
    /// clock, like the `Date` header) instead of delta-seconds. RFC 9110 allows either, and
    /// proxies in front of an org may send the date form.
    pub retry_after_http_date: bool,
    /// Share of API requests whose TCP connection is reset before any response byte.
    pub reset_rate: f64,
    /// Share of API requests delayed by `slow_ms` before being served.
    pub slow_rate: f64,
    /// Delay for slow requests, in milliseconds.
    pub slow_ms: u64,
    /// Share of records in sObject Collections and Bulk ingest that fail with
    /// `UNABLE_TO_LOCK_ROW` (retryable; the rest of the request proceeds).
    pub lock_row_rate: f64,
    /// Share of Bulk 2.0 jobs (query and ingest) that end `Failed` with an `errorMessage`.
    pub bulk_fail_rate: f64,
    /// Share of Bulk 2.0 query jobs that stay `InProgress` and never finish — the stuck
    /// jobs real orgs occasionally leave behind; clients must time out, abort and re-create.
    pub bulk_stuck_rate: f64,
    /// Share of API requests answered `401 INVALID_SESSION_ID` although the token is valid
    /// (exercises a client's refresh path).
    pub invalid_session_rate: f64,
    /// Share of Bulk result downloads (query result pages and ingest result CSVs) whose TCP
    /// connection is reset part-way through the body: the status, headers and a random share
    /// of the rows (ending inside a row) arrive, then an RST. Exercises a client's
    /// resume-from-locator path, which a reset before the first byte (`reset_rate`) does not.
    pub body_reset_rate: f64,
}

/// Login credentials the org accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Credentials {
    /// Connected-app consumer key (`client_id`).
    pub client_id: String,
    /// Connected-app consumer secret.
    pub client_secret: String,
    /// Username of the API user (User row 0).
    pub username: String,
    /// Password; `password + security_token` is accepted too, as Salesforce does.
    pub password: String,
    pub security_token: String,
    /// A refresh token that is valid from start-up (Airbyte-style `refresh_token` grant).
    pub refresh_token: String,
}

impl Default for Credentials {
    fn default() -> Self {
        Credentials {
            client_id: "3MVG9WeftEmulatorConsumerKey".into(),
            client_secret: "weft-emulator-consumer-secret".into(),
            username: "integration@weft-emulator.example.com".into(),
            password: "weft-password".into(),
            security_token: "WEFTTOKEN".into(),
            refresh_token: "5Aep861WeftEmulatorRefreshToken".into(),
        }
    }
}

/// Everything needed to start an org.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Seed of the synthetic data and of fault draws. Same seed + sizes ⇒ same org.
    pub seed: u64,
    /// Seeded row counts. Defaults are small so a test org starts in milliseconds; a million
    /// Accounts take a few seconds and about a gigabyte.
    pub users: usize,
    pub accounts: usize,
    pub contacts: usize,
    pub leads: usize,
    pub opportunities: usize,
    /// Seeded `Site__c` rows: the custom object with a geolocation field (`Location__c`).
    /// Few by default — it exists to exercise compound fields, not volume.
    pub sites: usize,
    /// Address to bind. Default `127.0.0.1:0` (a free loopback port; never a public interface).
    pub bind: SocketAddr,
    /// Serve HTTPS with a CA and server certificate generated at start-up.
    pub tls: bool,
    /// Where `ca.pem` (and the server cert) are written when `tls`; default a fresh temp dir.
    pub tls_dir: Option<PathBuf>,
    /// The daily API request allocation (`DailyApiRequests.Max`). Default 100,000, the base of
    /// a production org; Developer Edition has 15,000. Lower it to test throttling.
    pub api_daily_max: u64,
    /// Requests per simulated day made by other integrations in the org, spread evenly. They
    /// show in `Sforce-Limit-Info` and `/limits` but not in Weft's per-client stats.
    pub other_integrations_per_day: u64,
    /// Simulated seconds per real second. 1 = real time; 1440 = one simulated day a minute.
    /// Affects audit stamps, the rolling 24 h window and relative date literals; token TTL and
    /// Bulk processing delay stay in real time so tests do not race the clock.
    pub clock_scale: f64,
    /// Simulated start instant (epoch ms). Default: the wall clock at start-up.
    pub clock_start_ms: Option<i64>,
    /// Real time a Bulk job spends `InProgress` before it completes. Default 200 ms: long
    /// enough that clients must poll, short enough for fast tests.
    pub bulk_processing_delay: Duration,
    /// Rows per Bulk 2.0 result page when the client sends no `maxRecords`. Salesforce chooses
    /// this itself (pages are sized by bytes); 100,000 keeps pages near 20–30 MB for wide rows.
    pub bulk_default_page_records: usize,
    /// Access token lifetime in real time (Salesforce's session timeout). Default 2 h.
    pub token_ttl: Duration,
    /// Concurrent long-running request cap (25 for production orgs, 5 for Developer Edition).
    pub concurrent_long_running_max: usize,
    /// A request counts as long-running once it has run this long (Salesforce: 20 s).
    pub long_running_threshold: Duration,
    /// Faults active from start-up.
    pub faults: FaultConfig,
    /// Change events are POSTed here when set.
    pub webhook_url: Option<String>,
    /// Accepted logins.
    pub credentials: Credentials,
    /// PEM public key (SPKI or PKCS#1) for the JWT bearer grant; without it that grant fails.
    pub jwt_public_key_pem: Option<String>,
    /// Ongoing changes per real second made by a background generator (0 = off).
    pub change_rate_per_sec: f64,
    /// Orgs served by this process (1 = the single org of every earlier release). Org 0 is
    /// this config as given; org `k` is seeded with `seed + k` at the same sizes, has its
    /// own org id, credentials (see `Orgs`), sessions, limits, faults, clock and change
    /// log, and is built on first use, so a thousand small orgs cost little until touched
    /// (~70 KiB each once built at 20 rows per object). Clamped to `1..=MAX_ORGS`.
    pub orgs: usize,
    /// Gzip REST JSON responses when the client sends `Accept-Encoding: gzip`, as Salesforce
    /// does. Off by default: compression costs the emulator CPU in benchmarks and clients
    /// must accept identity anyway; turn it on to exercise a client's decompression path.
    /// (Bulk result downloads are always compressed on request.)
    pub gzip_responses: bool,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        EmulatorConfig {
            seed: 7,
            users: 20,
            accounts: 1_000,
            contacts: 2_000,
            leads: 500,
            opportunities: 500,
            sites: 50,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: false,
            tls_dir: None,
            api_daily_max: 100_000,
            other_integrations_per_day: 0,
            clock_scale: 1.0,
            clock_start_ms: None,
            bulk_processing_delay: Duration::from_millis(200),
            bulk_default_page_records: 100_000,
            token_ttl: Duration::from_secs(2 * 3600),
            concurrent_long_running_max: 25,
            long_running_threshold: Duration::from_secs(20),
            faults: FaultConfig::default(),
            webhook_url: None,
            credentials: Credentials::default(),
            jwt_public_key_pem: None,
            change_rate_per_sec: 0.0,
            gzip_responses: false,
            orgs: 1,
        }
    }
}
