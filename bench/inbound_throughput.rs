//! Backfill throughput of `weft sync` against the emulator, with the plugin in the path:
//! records/s and API calls per 10,000 records, for the Bulk and the REST path side by
//! side in one run, and with a real dedup plugin versus a pass-through one (the plugin's
//! share of the cost). Each round first downloads the pages of a completed Bulk job of the
//! same query without parsing them: the wire the backfill is measured against. A second
//! yardstick creates a fresh job of that query each round and downloads it, so that the
//! job's wait, which the backfill pays too, is in both.
//!
//! `cargo bench -p weft --bench inbound_throughput` (WEFT_BENCH_ACCOUNTS to resize, default
//! 100,000; WEFT_BENCH_ROUNDS, default 3). Each scenario backfills the same org into a
//! fresh store and sink; medians over the rounds are on the last three lines, the last one
//! `download_records_per_sec=… bulk_records_per_sec=… rest_records_per_sec=…
//! bulk_over_download=…`.

#[path = "support/process.rs"]
mod process;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

use process::{cpu_secs, median};

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

const QUERY: &str = "SELECT Id, Name, Website, Phone, Industry, AnnualRevenue, NumberOfEmployees, GoldenAccountID__c, MasterRecordId, External_Id__c, BillingCity, BillingCountry FROM Account";

/// Creates a Bulk query job for `query` and waits until its results are ready.
async fn bulk_job(http: &reqwest::Client, org: &EmulatorHandle, query: &str) -> String {
    let base = format!("{}/services/data/v62.0/jobs/query", org.base_url());
    let job: serde_json::Value = http
        .post(&base)
        .bearer_auth(org.access_token())
        .json(&serde_json::json!({"operation": "query", "query": query}))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("create the job")
        .json()
        .await
        .expect("job");
    let id = job["id"].as_str().expect("job id").to_owned();
    loop {
        let state: serde_json::Value = http
            .get(format!("{base}/{id}"))
            .bearer_auth(org.access_token())
            .send()
            .await
            .expect("poll")
            .json()
            .await
            .expect("job state");
        if state["state"] == "JobComplete" {
            return id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Downloads every result page of job `id` as Weft asks for them (50,000 records a page,
/// gzip accepted), reading the bytes and dropping them; returns the records the pages
/// announced.
async fn download(http: &reqwest::Client, org: &EmulatorHandle, id: &str) -> u64 {
    let url = format!(
        "{}/services/data/v62.0/jobs/query/{id}/results",
        org.base_url()
    );
    let (mut records, mut locator) = (0u64, None::<String>);
    loop {
        let mut request = http
            .get(&url)
            .bearer_auth(org.access_token())
            .header("accept", "text/csv")
            .query(&[("maxRecords", "50000")]);
        if let Some(l) = &locator {
            request = request.query(&[("locator", l)]);
        }
        let mut response = request
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .expect("a result page");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        records += header("sforce-numberofrecords")
            .and_then(|n| n.parse::<u64>().ok())
            .expect("the page's record count");
        locator = header("sforce-locator").filter(|l| !l.is_empty() && l != "null");
        while let Some(chunk) = response.chunk().await.expect("body") {
            std::hint::black_box(chunk);
        }
        if locator.is_none() {
            return records;
        }
    }
}

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
query = "{QUERY}"
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
    let rounds: usize = std::env::var("WEFT_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
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
            bulk_processing_delay: Duration::from_millis(50),
            ..Default::default()
        })
        .await
        .expect("emulator");
        let http = reqwest::Client::builder()
            .gzip(true)
            .build()
            .expect("http client");
        let job = bulk_job(&http, &org, QUERY).await;
        let (mut downloads, mut from_job) = (Vec::new(), Vec::new());
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); SCENARIOS.len()];
        for round in 1..=rounds {
            let (started, cpu) = (Instant::now(), cpu_secs());
            let records = download(&http, &org, &job).await;
            let secs = started.elapsed().as_secs_f64();
            let rate = records as f64 / secs;
            println!(
                "round={round} scenario=download records={records} secs={secs:.2} records_per_sec={rate:.0} cores_busy={:.2}",
                (cpu_secs() - cpu) / secs
            );
            downloads.push(rate);
            // The same wire with its job in front: a new job of the same query, created,
            // polled every 20 ms until complete, and downloaded. The backfill runs its own
            // job first too; this is the yardstick with that wait included.
            let started = Instant::now();
            let fresh = bulk_job(&http, &org, QUERY).await;
            let records = download(&http, &org, &fresh).await;
            let secs = started.elapsed().as_secs_f64();
            let rate = records as f64 / secs;
            println!(
                "round={round} scenario=download-from-job records={records} secs={secs:.2} records_per_sec={rate:.0}"
            );
            from_job.push(rate);
            for (s, rates) in SCENARIOS.iter().zip(&mut rates) {
                let dir = tempfile::tempdir().expect("dir");
                let config = write_config(dir.path(), &org, s);
                let mut sync = sync_for(&config, &dir.path().join("weft.redb"), &runtime);
                org.reset_stats();
                let (started, cpu) = (Instant::now(), cpu_secs());
                let report = sync.pass().await.expect("pass");
                let secs = started.elapsed().as_secs_f64();
                let records = report.objects[0].backfilled;
                let calls = org.stats().api_calls;
                let rate = records as f64 / secs;
                println!(
                    "round={round} scenario={} records={records} secs={secs:.2} records_per_sec={rate:.0} cores_busy={:.2} api_calls={calls} api_calls_per_10k={:.1}",
                    s.name,
                    (cpu_secs() - cpu) / secs,
                    calls as f64 * 10_000.0 / records.max(1) as f64
                );
                rates.push(rate);
            }
        }
        let download = median(&mut downloads);
        let [bulk, rest, pass_through] = [0, 1, 2].map(|i| median(&mut rates[i]));
        println!(
            "pass_through_records_per_sec={pass_through:.0} pass_through_over_dedup={:.2} bulk_over_rest={:.2}",
            pass_through / bulk,
            bulk / rest
        );
        let from_job = median(&mut from_job);
        println!(
            "download_from_job_records_per_sec={from_job:.0} bulk_over_download_from_job={:.2}",
            bulk / from_job
        );
        println!(
            "download_records_per_sec={download:.0} bulk_records_per_sec={bulk:.0} rest_records_per_sec={rest:.0} bulk_over_download={:.2}",
            bulk / download
        );
    });
}
