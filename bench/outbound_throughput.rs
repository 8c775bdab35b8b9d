//! Outbound throughput of one installation's pipeline against the emulator: queued product
//! events through map and coerce (the real acme-accounts plugin in the sandbox), the
//! conflict read, validation, the resolver, the upsert, the audit and the commit, rounds
//! back to back as the worker runs them.
//!
//! `cargo bench -p weft --bench outbound_throughput` (OUTBOUND_BENCH_EVENTS to resize,
//! default 20,000; OUTBOUND_BENCH_ROUNDS, default 3). Each round queues the events of new
//! companies (every upsert creates an Account), drains the queue, then queues a change to
//! each of them (every upsert updates one, after the resolver compared it with Salesforce's
//! values) and drains again. The emulator runs in the same process, so `cpu_us_per_event`
//! counts its share too. The last line holds the medians:
//! `create_events_per_sec=… update_events_per_sec=… create_cpu_us_per_event=…
//! update_cpu_us_per_event=…`.

#[path = "support/process.rs"]
mod process;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{Map, Value, json};
use weft::outbound::{ObjectConfig, OutboundConfig, Pipeline};
use weft::plugin::{
    InstalledPlugins, PluginConfig, PluginRuntime, QuarantinePolicy, RuntimeConfig,
};
use weft::salesforce::{ClientConfig, Credentials, SalesforceClient};
use weft::store::{Operation, OutboundEvent, RedbStore, Store, StoreExt};
use weft::telemetry::Telemetry;
use weft::throttle::{Governor, GovernorConfig, ScheduleConfig, SystemClock};
use weft_emulator::{Emulator, EmulatorConfig, EmulatorHandle, FieldSpec, FieldType};

use process::{cpu_secs, median};

const INSTALLATION: &str = "acme";
const KEY: &str = "Acme_Company_Id__c";
const ROLES: &[&str] = &["Account Manager", "Executive Sponsor", "Technical Lead"];

/// The org with Acme's Account fields (as the outbound tests set them up).
async fn org() -> EmulatorHandle {
    let org = Emulator::start(EmulatorConfig {
        accounts: 0,
        api_daily_max: 500_000_000,
        ..Default::default()
    })
    .await
    .expect("emulator starts");
    let mut key = FieldSpec::new(KEY, FieldType::String);
    key.length = Some(40);
    key.external_id = true;
    key.unique = true;
    org.add_field("Account", &key).expect("external id field");
    let mut role = FieldSpec::new("Account_Manager_Role__c", FieldType::Picklist);
    role.picklist_values = ROLES.iter().map(|r| (*r).to_owned()).collect();
    role.restricted_picklist = true;
    org.add_field("Account", &role).expect("role field");
    let mut updated = FieldSpec::new("Acme_Updated_At__c", FieldType::Datetime);
    updated.required = true;
    org.add_field("Account", &updated)
        .expect("updated-at field");
    org
}

/// A client on a governor with a 100% ceiling (the bench measures the pipeline, not
/// pacing) and the real clock.
fn client(org: &EmulatorHandle) -> SalesforceClient {
    let settings = GovernorConfig {
        schedule: ScheduleConfig::constant("UTC", 100.0),
        ..Default::default()
    }
    .validate()
    .expect("governor config");
    let governor = Governor::new(
        settings,
        Arc::new(SystemClock),
        Telemetry::new().installation(INSTALLATION),
    );
    let credentials = org.credentials();
    let mut config = ClientConfig::new(
        INSTALLATION,
        org.base_url(),
        Credentials::ClientCredentials {
            client_id: credentials.client_id.clone(),
            client_secret: credentials.client_secret.as_str().into(),
        },
    );
    config.gzip_requests = false;
    SalesforceClient::new(config, governor).expect("client")
}

fn plugins() -> Arc<InstalledPlugins> {
    let runtime = PluginRuntime::new(RuntimeConfig::default()).expect("plugin runtime");
    let plugin = runtime
        .load(&weft_tests::plugin_bytes("acme-accounts"))
        .expect("acme-accounts loads");
    let plugins = Arc::new(InstalledPlugins::new(QuarantinePolicy::default()));
    plugins.install(INSTALLATION, plugin, PluginConfig::default());
    plugins
}

/// Company `i` of round `round`, as the product would send it; `version` changes the values.
fn company_event(round: usize, i: usize, version: usize) -> OutboundEvent {
    let record = json!({
        "company_id": format!("C-{round}-{i:06}"),
        "name": format!("Company {i} v{version}"),
        "billing_city": format!("City {}", (i + version) % 50),
        "employees": ((i + version) % 900) as i64,
        "account_manager_role": ROLES[(i + version) % ROLES.len()],
        "updated_at": "2026-01-05T10:00:00Z",
    });
    let record: Map<String, Value> = record.as_object().cloned().unwrap_or_default();
    OutboundEvent {
        id: format!("e-{round}-{i}-{version}"),
        object: "company".into(),
        operation: Operation::Upsert,
        occurred_at: Timestamp::now(),
        record,
    }
}

/// Queues `events` and runs rounds until none is pending: (events/s, CPU µs per event).
async fn drain(pipeline: &mut Pipeline, store: &RedbStore, events: &[OutboundEvent]) -> (f64, f64) {
    for chunk in events.chunks(5_000) {
        store
            .transact(|txn| txn.accept_events(INSTALLATION, chunk, Timestamp::now()))
            .expect("events accepted");
    }
    let (started, cpu) = (Instant::now(), cpu_secs());
    let mut done = 0;
    while done < events.len() {
        let report = pipeline.run_round().await.expect("round");
        assert_eq!(
            report.dead_lettered + report.retrying,
            0,
            "every event is valid: {report:?}"
        );
        done += report.done;
    }
    let secs = started.elapsed().as_secs_f64();
    let n = events.len() as f64;
    (n / secs, (cpu_secs() - cpu) * 1e6 / n)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let events: usize = std::env::var("OUTBOUND_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let rounds: usize = std::env::var("OUTBOUND_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let org = org().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(RedbStore::open(&dir.path().join("weft.redb")).expect("store"));
    let config = OutboundConfig {
        objects: BTreeMap::from([(
            "Account".to_owned(),
            ObjectConfig {
                external_id: KEY.to_owned(),
                delete: None,
            },
        )]),
        ..OutboundConfig::default()
    };
    println!(
        "outbound_throughput: {events} events per pass, batch_size {}, bulk_threshold {}",
        config.batch_size, config.bulk_threshold
    );
    let mut pipeline = Pipeline::new(
        INSTALLATION,
        config,
        client(&org),
        plugins(),
        store.clone() as Arc<dyn Store>,
    );
    let (mut create, mut update) = (Vec::new(), Vec::new());
    let (mut create_cpu, mut update_cpu) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let new: Vec<OutboundEvent> = (0..events).map(|i| company_event(round, i, 0)).collect();
        let (rate, cpu) = drain(&mut pipeline, &store, &new).await;
        println!("round {round} create: {rate:.0} events/s, {cpu:.1} CPU µs/event");
        create.push(rate);
        create_cpu.push(cpu);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let changed: Vec<OutboundEvent> = (0..events).map(|i| company_event(round, i, 1)).collect();
        let (rate, cpu) = drain(&mut pipeline, &store, &changed).await;
        println!("round {round} update: {rate:.0} events/s, {cpu:.1} CPU µs/event");
        update.push(rate);
        update_cpu.push(cpu);
    }
    println!(
        "create_events_per_sec={:.0} update_events_per_sec={:.0} create_cpu_us_per_event={:.1} update_cpu_us_per_event={:.1}",
        median(&mut create),
        median(&mut update),
        median(&mut create_cpu),
        median(&mut update_cpu)
    );
}
