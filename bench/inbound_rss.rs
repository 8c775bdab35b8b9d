//! Peak memory of a whole inbound backfill as the row count grows: `weft sync --once` (the
//! release binary, a child process, so its peak RSS is its own) backfills a tenth, half
//! and all of an emulated org's Accounts (default 2,000,000) over Bulk, golden-dedup in the
//! sandbox, into the NDJSON sink. Memory holds a few pages in flight and the store's
//! bounded cache whatever the result's size, so the half and whole runs should peak
//! alike. (A run of one or two pages peaks lower: the pipeline never fills.)
//!
//! `cargo bench -p weft --bench inbound_rss` (WEFT_BENCH_ACCOUNTS to resize the org). The
//! last line is `tenth_rows=… tenth_peak_mib=… half_rows=… half_peak_mib=… all_rows=…
//! all_peak_mib=… half_to_all_growth_mib=…`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weft_emulator::{Emulator, EmulatorConfig, EmulatorHandle};

const FIELDS: &str = "Id, Name, Website, Phone, Industry, AnnualRevenue, NumberOfEmployees, GoldenAccountID__c, MasterRecordId, External_Id__c, BillingCity, BillingCountry";

fn write_config(dir: &Path, org: &EmulatorHandle, filter: &str) -> std::path::PathBuf {
    std::fs::write(dir.join("secret"), &org.credentials().client_secret).expect("secret");
    let text = format!(
        r#"
id = "rss"
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
config = {{ "external.system" = "External_Id__c" }}
[inbound]
bulk_threshold = 1000
[inbound.objects.Account]
query = "SELECT {FIELDS} FROM Account{filter}"
api = "bulk"
[inbound.sink]
kind = "ndjson"
dir = "out"
"#,
        url = org.base_url(),
        client_id = org.credentials().client_id,
        component = weft_tests::plugin_wasm("golden-dedup").display(),
    );
    let path = dir.join("rss.toml");
    std::fs::write(&path, text).expect("config");
    path
}

/// `VmHWM` of process `pid`, in KiB, while it runs.
fn peak_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Runs one backfill of the Accounts `filter` selects; returns rows delivered, its peak
/// RSS in MiB and its seconds.
fn backfill(org: &EmulatorHandle, filter: &str) -> (usize, f64, f64) {
    let dir = tempfile::tempdir().expect("dir");
    let config = write_config(dir.path(), org, filter);
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["sync", "--once", "--config"])
        .arg(&config)
        .arg("--db")
        .arg(dir.path().join("weft.redb"))
        .env("WEFT_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("weft sync starts");
    // The high-water mark only grows; polled until the process ends, it misses at most
    // what the last few milliseconds added.
    let mut peak = 0;
    while child.try_wait().expect("wait").is_none() {
        peak = peak.max(peak_kib(child.id()).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(10));
    }
    let secs = started.elapsed().as_secs_f64();
    let status = child.wait().expect("reaped");
    assert!(status.success(), "weft sync failed: {status:?}");
    let out = std::fs::read(dir.path().join("out").join("Account.ndjson")).expect("sink file");
    let rows = out.iter().filter(|&&b| b == b'\n').count();
    (rows, peak as f64 / 1024.0, secs)
}

fn main() {
    let accounts: usize = std::env::var("WEFT_BENCH_ACCOUNTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let org = rt
        .block_on(Emulator::start(EmulatorConfig {
            accounts,
            contacts: 0,
            leads: 0,
            opportunities: 0,
            users: 5,
            api_daily_max: 50_000_000,
            bulk_processing_delay: Duration::from_millis(50),
            ..Default::default()
        }))
        .expect("emulator");
    // A tenth, half and all of the org (NumberOfEmployees is seeded evenly over 1–50,000).
    // A tenth is enough pages for the pipeline to fill; from half to all, memory that grew
    // with the rows would show.
    let mut runs = Vec::new();
    for (name, filter) in [
        ("tenth", " WHERE NumberOfEmployees <= 5000"),
        ("half", " WHERE NumberOfEmployees <= 25000"),
        ("all", ""),
    ] {
        let (rows, mib, secs) = backfill(&org, filter);
        println!(
            "run={name} rows={rows} secs={secs:.1} records_per_sec={:.0} peak_mib={mib:.1}",
            rows as f64 / secs
        );
        runs.push((rows, mib));
    }
    let [
        (tenth_rows, tenth_mib),
        (half_rows, half_mib),
        (all_rows, all_mib),
    ] = runs[..]
    else {
        unreachable!("three runs")
    };
    println!(
        "tenth_rows={tenth_rows} tenth_peak_mib={tenth_mib:.1} half_rows={half_rows} half_peak_mib={half_mib:.1} all_rows={all_rows} all_peak_mib={all_mib:.1} half_to_all_growth_mib={:.1}",
        all_mib - half_mib
    );
    drop(rt);
}
