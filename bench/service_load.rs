//! One `weft serve` for many installations: N installations, each on its own org of an
//! N-org emulator, created through the admin API, each backfilling its small org, then
//! syncing changes both ways; then the host left idle.
//!
//! The host runs as its own process (the release `weft` binary), so its RSS and CPU are
//! read from `/proc` apart from the emulator and the load, which share this process.
//!
//! Phases, each timed:
//! 1. create every installation (`POST /v1/installations`: offline check, plugin compiled
//!    once and shared, one token request and a describe each);
//! 2. wait until every installation's sink holds every live Account of its org;
//! 3. inbound changes: each org edits rows as another integration would, every
//!    installation is asked to sync now, and the bench waits until every sink again
//!    matches its org (every live row at its latest `SystemModstamp`);
//! 4. outbound: `SERVICE_LOAD_ROUNDS` rounds of one product event per installation;
//!    event-to-Salesforce latency from each event's `occurred_at` (stamped as posted) to its
//!    audit entry (written once Salesforce answered);
//! 5. idle: nothing posted and nothing scraped for `SERVICE_LOAD_IDLE_SECS`; the host's CPU
//!    in that window. Inbound keeps polling each org on the spec's interval (the default,
//!    60 s, unless `SERVICE_LOAD_POLL_SECS` says otherwise), so this is what idle
//!    installations really cost.
//!
//! Scheduler overhead per unit is the scheduler's own bookkeeping time over its turns
//! (`weft_scheduler_overhead_seconds_total / weft_scheduler_turns_total`).
//!
//! Run: `cargo bench -p weft --bench service_load`
//! Knobs (env): `SERVICE_LOAD_INSTALLATIONS` (default 1000), `SERVICE_LOAD_ACCOUNTS`
//! (Accounts per org, default 20), `SERVICE_LOAD_CHANGES` (edits per org, default 5),
//! `SERVICE_LOAD_ROUNDS` (default 3), `SERVICE_LOAD_IDLE_SECS` (default 60),
//! `SERVICE_LOAD_POLL_SECS` (inbound interval; default: the spec's default),
//! `SERVICE_LOAD_WEFT` (the `weft` binary to run as the host; default: this build's).

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Semaphore;
use weft_emulator::{Emulator, EmulatorConfig, FieldSpec, FieldType, OrgHandle};

const OPERATOR: &str = "operator-token-for-the-service-load-bench";
const KEY: &str = "Acme_Company_Id__c";
/// Requests the bench keeps in flight against the host at once.
const IN_FLIGHT: usize = 32;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Host {
    child: Child,
    base: String,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Host {
    fn start(dir: &Path) -> Host {
        // `SERVICE_LOAD_WEFT`: another build's binary, to compare two builds side by side.
        let weft = std::env::var_os("SERVICE_LOAD_WEFT")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_weft").into());
        let mut child = Command::new(weft)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .arg("--db")
            .arg(dir.join("weft.redb"))
            .arg("--status-file")
            .arg(dir.join("status.json"))
            .env("WEFT_ADMIN_TOKEN", OPERATOR)
            .env(
                "RUST_LOG",
                std::env::var("SERVICE_LOAD_HOST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("weft serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("weft serve prints its address");
        let ready: Value = serde_json::from_str(&line).expect("address line");
        let addr = ready["listening"].as_str().expect("address");
        Host {
            base: format!("http://{addr}"),
            child,
        }
    }

    fn proc_file(&self, name: &str) -> String {
        std::fs::read_to_string(format!("/proc/{}/{name}", self.child.id())).unwrap_or_default()
    }

    /// User + system CPU seconds the host has used so far.
    fn cpu_secs(&self, ticks_per_sec: f64) -> f64 {
        let stat = self.proc_file("stat");
        // Fields after the command name (which is in parentheses and may hold spaces).
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks = |k: usize| {
            fields
                .get(k)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        (ticks(11) + ticks(12)) / ticks_per_sec
    }

    /// (`VmRSS`, `VmHWM`) in MiB.
    fn rss_mib(&self) -> (f64, f64) {
        let status = self.proc_file("status");
        let kib = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
    }
}

fn clock_ticks_per_sec() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Acme's Account fields, as the outbound plugin writes them.
fn acme_fields(org: &OrgHandle) {
    let mut key = FieldSpec::new(KEY, FieldType::String);
    key.length = Some(40);
    key.external_id = true;
    key.unique = true;
    org.add_field("Account", &key).expect("external id field");
    let mut role = FieldSpec::new("Account_Manager_Role__c", FieldType::Picklist);
    role.picklist_values = ["Account Manager", "Executive Sponsor", "Technical Lead"]
        .iter()
        .map(|r| (*r).to_owned())
        .collect();
    org.add_field("Account", &role).expect("role field");
    org.add_field(
        "Account",
        &FieldSpec::new("Acme_Updated_At__c", FieldType::Datetime),
    )
    .expect("updated-at field");
    org.add_field("Account", &FieldSpec::new("Deleted__c", FieldType::Boolean))
        .expect("deleted flag");
}

fn document(k: usize, org: &OrgHandle, dir: &Path, poll_secs: Option<u64>) -> Value {
    let secret = dir.join(format!("secret-{k}"));
    std::fs::write(&secret, &org.credentials().client_secret).expect("secret");
    let mut inbound = json!({
        "objects": {"Account": {"fields": ["Name", "Industry", KEY]}},
        "sink": {"kind": "ndjson", "dir": sink_dir(dir, k)},
    });
    if let Some(poll) = poll_secs {
        inbound["poll_secs"] = json!(poll);
    }
    json!({
        "id": installation(k),
        "salesforce": {
            "login_url": org.instance_url(),
            "auth": "client_credentials",
            "client_id": org.credentials().client_id,
            "client_secret_file": secret,
        },
        "throttle": {"schedule": {"time_zone": "UTC", "default_ceiling_percent": 100.0}},
        "plugin": {"component": weft_tests::plugin_wasm("acme-accounts")},
        "inbound": inbound,
        "outbound": {"objects": {"Account": {"external_id": KEY}}},
    })
}

fn installation(k: usize) -> String {
    format!("tenant-{k:04}")
}

fn sink_dir(dir: &Path, k: usize) -> PathBuf {
    dir.join(format!("out-{k:04}"))
}

/// Gives every seeded Account of `org` an Acme company id, as if Acme had created them:
/// the acme-accounts plugin maps only Accounts that carry one (others go to the DLQ with
/// the plugin's reason). One sObject Collections update per 200 rows, over HTTP.
async fn stamp_company_ids(http: &reqwest::Client, org: &OrgHandle, k: usize) {
    let ids: Vec<String> = org
        .query("SELECT Id FROM Account", false)
        .expect("query")
        .iter()
        .filter_map(|r| r["Id"].as_str().map(str::to_owned))
        .collect();
    for chunk in ids.chunks(200) {
        let records: Vec<Value> = chunk
            .iter()
            .map(|id| {
                json!({
                    "attributes": {"type": "Account"},
                    "id": id,
                    KEY: format!("C-{k}-{id}"),
                })
            })
            .collect();
        let response = http
            .patch(format!(
                "{}/services/data/v62.0/composite/sobjects",
                org.instance_url()
            ))
            .bearer_auth(org.new_access_token())
            .json(&json!({"allOrNone": true, "records": records}))
            .send()
            .await
            .expect("collections update");
        assert!(
            response.status().is_success(),
            "{:?}",
            response.text().await
        );
    }
}

/// Id → SystemModstamp (RFC 3339 ms, as the sink writes it) of the org's live Accounts
/// that carry an Acme company id (those the plugin maps).
fn org_accounts(org: &OrgHandle) -> HashMap<String, String> {
    let soql = format!("SELECT Id, SystemModstamp FROM Account WHERE {KEY} != null");
    org.query(&soql, false)
        .expect("query")
        .into_iter()
        .filter_map(|r| {
            let id = r["Id"].as_str()?.to_owned();
            let stamp = r["SystemModstamp"].as_str()?;
            Some((id, normalise_stamp(stamp)))
        })
        .collect()
}

/// `2026-11-23T18:20:58.000+0000` → `2026-11-23T18:20:58.000Z`.
fn normalise_stamp(stamp: &str) -> String {
    let parsed: Option<jiff::Timestamp> = stamp.parse().ok().or_else(|| {
        let (head, offset) = stamp.split_at(stamp.len().saturating_sub(5));
        format!("{head}{}:{}", offset.get(..3)?, offset.get(3..)?)
            .parse()
            .ok()
    });
    parsed.map_or_else(
        || stamp.to_owned(),
        |t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
    )
}

/// Whether installation `k`'s sink holds every live Account of its org at its latest stamp.
fn in_sync(dir: &Path, k: usize, org: &OrgHandle) -> bool {
    let Ok(text) = std::fs::read_to_string(sink_dir(dir, k).join("Account.ndjson")) else {
        return false;
    };
    let mut latest: HashMap<String, String> = HashMap::new();
    for line in text.lines() {
        let Ok(line) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if let (Some(id), Some(stamp)) = (line["id"].as_str(), line["system_modstamp"].as_str()) {
            latest.insert(id.to_owned(), stamp.to_owned());
        }
    }
    org_accounts(org)
        .iter()
        .all(|(id, stamp)| latest.get(id) == Some(stamp))
}

/// Waits until every installation is in sync with its org; the time it took.
async fn wait_all_in_sync(dir: &Path, orgs: &Arc<Vec<OrgHandle>>, what: &str) -> Duration {
    let started = Instant::now();
    let mut pending: Vec<usize> = (0..orgs.len()).collect();
    while !pending.is_empty() {
        let (dir, orgs) = (dir.to_owned(), orgs.clone());
        let check = pending.clone();
        pending = tokio::task::spawn_blocking(move || {
            check
                .into_iter()
                .filter(|&k| !in_sync(&dir, k, &orgs[k]))
                .collect()
        })
        .await
        .expect("check");
        if started.elapsed() > Duration::from_secs(1800) {
            panic!("{what}: {} installations never got in sync", pending.len());
        }
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    started.elapsed()
}

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn metrics(&self) -> BTreeMap<String, f64> {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .bearer_auth(OPERATOR)
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_owned(), value.parse().ok()?))
            })
            .collect()
    }
}

/// Asks every installation to sync now.
async fn sync_all(api: &Api, n: usize) {
    for_each(n, |k| {
        let api = api.clone();
        async move {
            let path = format!("/v1/installations/{}/sync", installation(k));
            let (status, body) = api.send(reqwest::Method::POST, &path, OPERATOR, None).await;
            assert_eq!(status, 202, "{body}");
        }
    })
    .await;
}

/// Runs `work(k)` for every k in `0..n`, `IN_FLIGHT` at a time.
async fn for_each<F, Fut, T>(n: usize, work: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = Vec::with_capacity(n);
    for k in 0..n {
        let permit = gate.clone().acquire_owned().await.expect("gate");
        let work = work(k);
        tasks.push(tokio::spawn(async move {
            let out = work.await;
            drop(permit);
            out
        }));
    }
    let mut out = Vec::with_capacity(n);
    for task in tasks {
        out.push(task.await.expect("task"));
    }
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn company_event(id: &str) -> Value {
    json!({
        "id": id,
        "object": "company",
        "operation": "upsert",
        "occurred_at": jiff::Timestamp::now().to_string(),
        "record": {
            "company_id": format!("K-{id}"),
            "name": format!("Load {id}"),
            "billing_city": "Leeds",
            "account_manager_role": "Technical Lead",
            "updated_at": "2026-01-05T10:00:00Z",
        },
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_or("SERVICE_LOAD_INSTALLATIONS", 1000) as usize;
    let accounts = env_or("SERVICE_LOAD_ACCOUNTS", 20) as usize;
    let changes = env_or("SERVICE_LOAD_CHANGES", 5) as usize;
    let rounds = env_or("SERVICE_LOAD_ROUNDS", 3) as usize;
    let idle_secs = env_or("SERVICE_LOAD_IDLE_SECS", 60);
    let poll_secs = std::env::var("SERVICE_LOAD_POLL_SECS")
        .ok()
        .and_then(|v| v.parse().ok());
    let ticks = clock_ticks_per_sec();
    eprintln!(
        "# knobs: SERVICE_LOAD_INSTALLATIONS={n} SERVICE_LOAD_ACCOUNTS={accounts} \
         SERVICE_LOAD_CHANGES={changes} SERVICE_LOAD_ROUNDS={rounds} \
         SERVICE_LOAD_IDLE_SECS={idle_secs} SERVICE_LOAD_POLL_SECS={}",
        poll_secs.map_or("(spec default, 60)".to_owned(), |p: u64| p.to_string())
    );
    // Built before anything is timed.
    let _ = weft_tests::plugin_wasm("acme-accounts");

    let orgs = Emulator::start(EmulatorConfig {
        orgs: n,
        accounts,
        contacts: 0,
        leads: 0,
        opportunities: 0,
        sites: 0,
        users: 3,
        api_daily_max: 1_000_000,
        ..Default::default()
    })
    .await
    .expect("the emulator starts");
    let emulator = orgs;
    let orgs: Arc<Vec<OrgHandle>> =
        Arc::new((0..n).map(|k| emulator.org(k).expect("org")).collect());
    let http = reqwest::Client::new();
    for (k, org) in orgs.iter().enumerate() {
        acme_fields(org);
        stamp_company_ids(&http, org, k).await;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let host = Host::start(dir.path());
    let api = Api {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(IN_FLIGHT)
            .build()
            .expect("client"),
        base: host.base.clone(),
    };
    let (rss_empty, _) = host.rss_mib();

    // 1. Create.
    let started = Instant::now();
    let documents: Vec<Value> = (0..n)
        .map(|k| document(k, &orgs[k], dir.path(), poll_secs))
        .collect();
    let documents = Arc::new(documents);
    let created = for_each(n, |k| {
        let (api, documents) = (api.clone(), documents.clone());
        async move {
            let (status, body) = api
                .send(
                    reqwest::Method::POST,
                    "/v1/installations",
                    OPERATOR,
                    Some(&documents[k]),
                )
                .await;
            assert_eq!(status, 201, "{}: {body}", installation(k));
            let (status, body) = api
                .send(
                    reqwest::Method::POST,
                    &format!("/v1/installations/{}/token", installation(k)),
                    OPERATOR,
                    None,
                )
                .await;
            assert_eq!(status, 201, "{body}");
            body["token"].as_str().expect("token").to_owned()
        }
    })
    .await;
    let tokens = Arc::new(created);
    let create_secs = started.elapsed().as_secs_f64();
    eprintln!("created {n} installations in {create_secs:.1} s");

    // 2. Backfill.
    let backfill = wait_all_in_sync(dir.path(), &orgs, "backfill").await;
    let backfill_secs = started.elapsed().as_secs_f64();
    let (rss_synced, _) = host.rss_mib();
    eprintln!(
        "all {n} backfilled {accounts} Accounts each {:.1} s after the first create ({backfill_secs:.1} s in all); host RSS {rss_synced:.0} MiB",
        backfill.as_secs_f64()
    );

    // 3. Inbound changes.
    let edited = {
        let orgs = orgs.clone();
        tokio::task::spawn_blocking(move || {
            (0..n)
                .map(|k| orgs[k].generate_changes(changes))
                .sum::<usize>()
        })
        .await
        .expect("changes")
    };
    let changed_at = Instant::now();
    sync_all(&api, n).await;
    wait_all_in_sync(dir.path(), &orgs, "inbound changes").await;
    let inbound_secs = changed_at.elapsed().as_secs_f64();
    eprintln!("{edited} edits in {n} orgs synced in {inbound_secs:.1} s (sync asked at once)");

    // 4. Outbound.
    let mut posted: HashMap<String, jiff::Timestamp> = HashMap::new();
    let outbound_started = Instant::now();
    for round in 0..rounds {
        let stamps = for_each(n, |k| {
            let (api, tokens) = (api.clone(), tokens.clone());
            async move {
                let id = installation(k);
                let event_id = format!("{id}-r{round}");
                let event = company_event(&event_id);
                let occurred: jiff::Timestamp = event["occurred_at"]
                    .as_str()
                    .and_then(|t| t.parse().ok())
                    .expect("occurred_at");
                let path = format!("/v1/installations/{id}/events");
                let (status, body) = api
                    .send(
                        reqwest::Method::POST,
                        &path,
                        &tokens[k],
                        Some(&json!([event])),
                    )
                    .await;
                assert_eq!(status, 202, "{body}");
                (event_id, occurred)
            }
        })
        .await;
        posted.extend(stamps);
    }
    let latencies = for_each(n, |k| {
        let (api, tokens) = (api.clone(), tokens.clone());
        async move {
            let path = format!("/v1/installations/{}/audit", installation(k));
            for _ in 0..3000 {
                let (_, audit) = api
                    .send(reqwest::Method::GET, &path, &tokens[k], None)
                    .await;
                let entries = audit["entries"].as_array().cloned().unwrap_or_default();
                if entries.len() >= rounds {
                    return entries
                        .iter()
                        .filter_map(|e| {
                            let at: jiff::Timestamp = e["at"].as_str()?.parse().ok()?;
                            Some((e["event_id"].as_str()?.to_owned(), at))
                        })
                        .collect::<Vec<_>>();
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            panic!("{}: not every event reached Salesforce", installation(k));
        }
    })
    .await;
    let outbound_secs = outbound_started.elapsed().as_secs_f64();
    let mut seconds: Vec<f64> = latencies
        .iter()
        .flatten()
        .map(|(event_id, written)| written.duration_since(posted[event_id]).as_secs_f64())
        .collect();
    seconds.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&seconds, 0.5), percentile(&seconds, 0.99));
    eprintln!(
        "{} events ({rounds} per installation) in Salesforce {outbound_secs:.1} s after the first post: event-to-Salesforce p50 {p50:.3} s, p99 {p99:.3} s",
        seconds.len()
    );

    // The Accounts outbound wrote come back inbound: the round trip closes.
    let round_trip_started = Instant::now();
    sync_all(&api, n).await;
    wait_all_in_sync(dir.path(), &orgs, "outbound writes read back").await;
    let round_trip_secs = round_trip_started.elapsed().as_secs_f64();
    eprintln!(
        "the Accounts outbound wrote were read back inbound by every installation in {round_trip_secs:.1} s (sync asked at once)"
    );

    // 5. Idle: let the last units settle, then measure a window with nothing to do.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = api.metrics().await;
    let cpu_before = host.cpu_secs(ticks);
    let idle_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let cpu_idle = host.cpu_secs(ticks) - cpu_before;
    let idle_wall = idle_started.elapsed().as_secs_f64();
    let after = api.metrics().await;
    let (rss, hwm) = host.rss_mib();
    let idle_core_percent = cpu_idle / idle_wall * 100.0;
    let idle_per_installation_hour = cpu_idle / n as f64 * 3600.0 / idle_wall;
    let turns_in_idle = after
        .get("weft_scheduler_turns_total")
        .copied()
        .unwrap_or(0.0)
        - before
            .get("weft_scheduler_turns_total")
            .copied()
            .unwrap_or(0.0);

    let turns = after
        .get("weft_scheduler_turns_total")
        .copied()
        .unwrap_or(0.0);
    let overhead = after
        .get("weft_scheduler_overhead_seconds_total")
        .copied()
        .unwrap_or(0.0);
    let waited = after
        .get("weft_scheduler_waited_turns_total")
        .copied()
        .unwrap_or(0.0);
    let in_sync = (0..n).filter(|&k| in_sync(dir.path(), k, &orgs[k])).count();
    let mut health: BTreeMap<String, usize> = BTreeMap::new();
    for (series, value) in &after {
        if series.starts_with("weft_installation_health{") && *value == 1.0 {
            let state = series
                .split("state=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or("?");
            *health.entry(state.to_owned()).or_default() += 1;
        }
    }
    let healthy = health.get("healthy").copied().unwrap_or(0);
    let dlq_open: f64 = after
        .iter()
        .filter(|(series, _)| series.starts_with("weft_dlq_open_entries{"))
        .map(|(_, value)| value)
        .sum();
    eprintln!(
        "idle {idle_wall:.0} s: host CPU {cpu_idle:.2} s ({idle_core_percent:.2}% of one core for all {n}; {turns_in_idle:.0} units ran); RSS {rss:.0} MiB (empty host {rss_empty:.0} MiB, peak {hwm:.0} MiB); health {health:?}; {dlq_open} DLQ entries open (Accounts without an Acme id, rejected by the plugin); {in_sync} in sync"
    );
    eprintln!(
        "scheduler: {turns:.0} turns, {waited:.0} waited, overhead {:.2} µs per unit",
        overhead / turns.max(1.0) * 1e6
    );
    println!(
        "installations={n} in_sync={in_sync} healthy={healthy} host_rss_mib={rss:.0} host_peak_rss_mib={hwm:.0} \
         idle_cpu_secs_per_installation_hour={idle_per_installation_hour:.4} idle_core_percent={idle_core_percent:.2} \
         event_to_salesforce_p50_secs={p50:.3} event_to_salesforce_p99_secs={p99:.3} \
         scheduler_overhead_us_per_unit={:.2} create_secs={create_secs:.1} backfill_secs={backfill_secs:.1} inbound_change_secs={inbound_secs:.1} round_trip_secs={round_trip_secs:.1}",
        overhead / turns.max(1.0) * 1e6
    );
}
