//! Shared set-up: an emulated org with Acme's custom Account fields, the real acme-accounts
//! plugin, a redb store in a temp dir, and the pipeline wired over them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Map, Value, json};
use weft::outbound::{DeletePolicy, ObjectConfig, OutboundConfig, Pipeline, RetryConfig};
use weft::plugin::{
    InstalledPlugins, PluginConfig, PluginRuntime, QuarantinePolicy, RuntimeConfig,
};
use weft::salesforce::{ClientConfig, Credentials, SalesforceClient};
use weft::store::{
    AuditEntry, DlqEntry, DlqFilter, Operation, OutboundEvent, RedbStore, Store, StoreExt,
};
use weft::telemetry::Telemetry;
use weft::throttle::{Governor, GovernorConfig, ScaledClock, ScheduleConfig};
use weft_emulator::{Emulator, EmulatorConfig, EmulatorHandle, FieldSpec, FieldType};

pub const INSTALLATION: &str = "acme";
pub const KEY: &str = "Acme_Company_Id__c";
pub const ROLES: &[&str] = &["Account Manager", "Executive Sponsor", "Technical Lead"];

/// An org whose Account has Acme's fields: the external id, a restricted picklist, and an
/// `updated at` stamp the customer's admin made required.
pub async fn acme_org() -> EmulatorHandle {
    let org = Emulator::start(EmulatorConfig {
        accounts: 5,
        api_daily_max: 50_000_000,
        bulk_processing_delay: Duration::from_millis(20),
        ..Default::default()
    })
    .await
    .expect("emulator starts");
    acme_fields(&org);
    org
}

/// Adds Acme's custom Account fields to `org`.
pub fn acme_fields(org: &weft_emulator::OrgHandle) {
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
    org.add_field("Account", &FieldSpec::new("Deleted__c", FieldType::Boolean))
        .expect("deleted flag");
}

pub fn client_credentials(org: &EmulatorHandle) -> Credentials {
    let c = org.credentials();
    Credentials::ClientCredentials {
        client_id: c.client_id.clone(),
        client_secret: c.client_secret.as_str().into(),
    }
}

/// A client on a governor with a 100% ceiling whose clock runs 1,000× fast, so backoff
/// inside the transport costs milliseconds.
pub fn client(org: &EmulatorHandle) -> SalesforceClient {
    let telemetry = Telemetry::new();
    let settings = GovernorConfig {
        schedule: ScheduleConfig::constant("UTC", 100.0),
        ..Default::default()
    }
    .validate()
    .expect("governor config");
    let clock = Arc::new(ScaledClock::new(Timestamp::now(), 1_000.0));
    let governor = Governor::new(settings, clock, telemetry.installation(INSTALLATION));
    let mut config = ClientConfig::new(INSTALLATION, org.base_url(), client_credentials(org));
    config.gzip_requests = false;
    SalesforceClient::new(config, governor).expect("client")
}

/// The acme-accounts plugin, built from `plugins/` for this test run.
pub fn acme_plugins() -> Arc<InstalledPlugins> {
    let runtime = PluginRuntime::new(RuntimeConfig::default()).expect("plugin runtime");
    let plugin = runtime
        .load(&weft_tests::plugin_bytes("acme-accounts"))
        .expect("acme-accounts loads");
    let plugins = Arc::new(InstalledPlugins::new(QuarantinePolicy::default()));
    plugins.install(
        INSTALLATION,
        plugin,
        PluginConfig {
            values: BTreeMap::new(),
            ..Default::default()
        },
    );
    plugins
}

/// Account upserted by Acme's company id; deletes set `Deleted__c`. Retries are quick so
/// tests do not wait minutes.
pub fn acme_config() -> OutboundConfig {
    OutboundConfig {
        retry: RetryConfig {
            max_attempts: 8,
            base_ms: 20,
            max_ms: 200,
        },
        idle_poll_ms: 20,
        objects: BTreeMap::from([(
            "Account".to_owned(),
            ObjectConfig {
                external_id: KEY.to_owned(),
                delete: Some(DeletePolicy::SoftDelete {
                    field: "Deleted__c".into(),
                    value: json!(true),
                }),
            },
        )]),
        ..OutboundConfig::default()
    }
}

pub struct Rig {
    pub org: EmulatorHandle,
    pub store: Arc<RedbStore>,
    pub pipeline: Pipeline,
    pub _dir: tempfile::TempDir,
}

pub async fn rig(config: OutboundConfig) -> Rig {
    let org = acme_org().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(RedbStore::open(&dir.path().join("weft.redb")).expect("store"));
    let pipeline = Pipeline::new(
        INSTALLATION,
        config,
        client(&org),
        acme_plugins(),
        store.clone() as Arc<dyn Store>,
    );
    Rig {
        org,
        store,
        pipeline,
        _dir: dir,
    }
}

/// A product company with every field valid for the org.
pub fn company(i: usize) -> Map<String, Value> {
    let v = json!({
        "company_id": format!("C-{i:05}"),
        "name": format!("Company {i}"),
        "billing_city": format!("City {}", i % 50),
        "employees": (i % 900) as i64,
        "account_manager_role": ROLES[i % ROLES.len()],
        "updated_at": "2026-01-05T10:00:00Z",
    });
    v.as_object().cloned().unwrap_or_default()
}

pub fn event(id: &str, record: Map<String, Value>, occurred_at: Timestamp) -> OutboundEvent {
    OutboundEvent {
        id: id.to_owned(),
        object: "company".into(),
        operation: Operation::Upsert,
        occurred_at,
        record,
    }
}

pub fn accept(store: &RedbStore, events: &[OutboundEvent]) {
    store
        .transact(|txn| txn.accept_events(INSTALLATION, events, Timestamp::now()))
        .expect("events accepted");
}

/// Runs rounds until nothing is pending; panics after `limit`.
pub async fn drain(rig: &mut Rig, limit: Duration) {
    let started = std::time::Instant::now();
    loop {
        let report = rig.pipeline.run_round().await.expect("round");
        let pending = rig
            .store
            .pending_events(INSTALLATION, None, 1)
            .expect("pending read");
        if pending.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "still pending after {limit:?}; last round {report:?}"
        );
        if !report.progressed() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

pub fn open_dlq(store: &RedbStore) -> Vec<DlqEntry> {
    store
        .dlq_list(&DlqFilter {
            installation: Some(INSTALLATION.into()),
            status: Some(weft::store::DlqStatus::Open),
            ..DlqFilter::default()
        })
        .expect("dlq list")
        .entries
}

pub fn audit(store: &RedbStore) -> Vec<AuditEntry> {
    store
        .audit(INSTALLATION, None, usize::MAX)
        .expect("audit read")
        .into_iter()
        .map(|(_, e)| e)
        .collect()
}

/// Accounts carrying Acme's key, as `key → record`.
pub fn accounts(org: &EmulatorHandle) -> BTreeMap<String, Value> {
    org.query(
        &format!(
            "SELECT Id, Name, BillingCity, Account_Manager_Role__c, Deleted__c, {KEY} FROM Account WHERE {KEY} != null"
        ),
        false,
    )
    .expect("query")
    .into_iter()
    .filter_map(|r| Some((r[KEY].as_str()?.to_owned(), r)))
    .collect()
}

/// The installation's intake token (its hash is in the file `kill::write_config` writes)
/// and the operator token `weft serve` is started with.
pub const INTAKE_TOKEN: &str = "weft_acme_outbound_test_token";
pub const ADMIN_TOKEN: &str = "operator-token-for-the-outbound-tests";

/// Default headers that send `token` as the bearer.
pub fn bearer(token: &str) -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("header value"),
    );
    headers
}
