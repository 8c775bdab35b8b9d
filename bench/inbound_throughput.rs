//! Backfill throughput of `weft sync` against the emulator, with the plugin in the path:
//! records/s and API calls per 10,000 records, for the Bulk and the REST path side by
//! side in one run, and with a real dedup plugin versus a pass-through one (the plugin's
//! share of the cost).
//!
//! `cargo bench -p weft --bench inbound_throughput` (WEFT_BENCH_ACCOUNTS to resize; default
//! 100,000). Each scenario backfills the same org into a fresh store and sink; the last line
//! is `bulk_records_per_sec=… rest_records_per_sec=… bulk_over_rest=…`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use weft::config::InstallationConfig;
use weft::inbound::InboundSync;
use weft::plugin::{
    InstalledPlugins, PluginConfig, PluginRuntime, QuarantinePolicy, RuntimeConfig,
};
use weft::salesforce::SalesforceClient;
use weft::store::{RedbStore, Store};
use weft::telemetry::Telemetry;
use weft::throttle::{Governor, SystemClock};
use weft_emulator::{Emulator, EmulatorConfig, EmulatorHandle};

struct Scenario {
    name: &'static str,
    api: &'static str,
    plugin: &'static str,
    plugin_config: &'static str,
}

const SCENARIOS: [Scenario; 3] = [
    Scenario {
        name: "bulk+golden-dedup",
        api: "bulk",
        plugin: "golden-dedup",
        plugin_config: "\"external.system\" = \"External_Id__c\"",
    },
    Scenario {
        name: "rest+golden-dedup",
        api: "rest",
        plugin: "golden-dedup",
        plugin_config: "\"external.system\" = \"External_Id__c\"",
    },
    Scenario {
        name: "bulk+pass-through",
        api: "bulk",
        plugin: "hostile",
        plugin_config: "mode = \"ok\"",
    },
];

fn write_config(dir: &Path, org: &EmulatorHandle, s: &Scenario) -> std::path::PathBuf {
    std::fs::write(dir.join("secret"), &org.credentials().client_secret).expect("secret");
    let text = format!(
        r#"
id = "bench"
[salesforce]
login_url = "{url}"
auth = "client_credentials"
client_id = "{client_id}"
client_secret_file = "secret"
[throttle.schedule]
time_zone = "UTC"
default_ceiling_percent = 100.0
[plugin]
component = "{component}"
config = {{ {config} }}
[inbound]
page_size = 2000
[inbound.objects.Account]
query = "SELECT Id, Name, Website, Phone, Industry, AnnualRevenue, NumberOfEmployees, GoldenAccountID__c, MasterRecordId, External_Id__c, BillingCity, BillingCountry FROM Account"
api = "{api}"
[inbound.sink]
kind = "ndjson"
dir = "out"
"#,
        url = org.base_url(),
        client_id = org.credentials().client_id,
        component = weft_tests::plugin_wasm(s.plugin).display(),
        config = s.plugin_config,
        api = s.api,
    );
    let path = dir.join("bench.toml");
    std::fs::write(&path, text).expect("config");
    path
}

fn sync_for(config: &Path, db: &Path, runtime: &PluginRuntime) -> InboundSync {
    let config = InstallationConfig::load(config).unwrap_or_else(|e| panic!("{e}"));
    let telemetry = Telemetry::new();
    let governor = Governor::new(
        config.governor.clone(),
        Arc::new(SystemClock),
        telemetry.installation(&config.id),
    );
    let client = SalesforceClient::new(config.salesforce.client_config(&config.id), governor)
        .expect("client");
    let plugins = Arc::new(InstalledPlugins::new(QuarantinePolicy::default()));
    let weft::config::PluginSource::File(component) = &config.plugin.source else {
        panic!("the bench installations name their component file");
    };
    let plugin = runtime.load_file(component).expect("plugin");
    plugins.install(
        &config.id,
        plugin,
        PluginConfig {
            values: config.plugin.config.clone(),
            limits: config.plugin.limits.clone(),
        },
    );
    let store: Arc<dyn Store> = Arc::new(RedbStore::open(db).expect("store"));
    InboundSync::new(&config.id, config.inbound.clone(), client, plugins, store).expect("sink")
}

fn main() {
    let accounts: usize = std::env::var("WEFT_BENCH_ACCOUNTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let runtime = PluginRuntime::new(RuntimeConfig::default()).expect("plugin runtime");
    rt.block_on(async {
        let org = Emulator::start(EmulatorConfig {
            accounts,
            contacts: 0,
            leads: 0,
            opportunities: 0,
            users: 5,
            api_daily_max: 50_000_000,
            bulk_processing_delay: std::time::Duration::from_millis(50),
            ..Default::default()
        })
        .await
        .expect("emulator");
        let mut rates = Vec::new();
        for s in &SCENARIOS {
            let dir = tempfile::tempdir().expect("dir");
            let config = write_config(dir.path(), &org, s);
            let mut sync = sync_for(&config, &dir.path().join("weft.redb"), &runtime);
            org.reset_stats();
            let started = Instant::now();
            let report = sync.pass().await.expect("pass");
            let secs = started.elapsed().as_secs_f64();
            let records = report.objects[0].backfilled;
            let calls = org.stats().api_calls;
            let rate = records as f64 / secs;
            println!(
                "scenario={} records={records} secs={secs:.2} records_per_sec={rate:.0} api_calls={calls} api_calls_per_10k={:.1}",
                s.name,
                calls as f64 * 10_000.0 / records.max(1) as f64
            );
            rates.push(rate);
        }
        println!(
            "bulk_records_per_sec={:.0} rest_records_per_sec={:.0} bulk_over_rest={:.2} pass_through_over_dedup={:.2}",
            rates[0],
            rates[1],
            rates[0] / rates[1],
            rates[2] / rates[0]
        );
    });
}
