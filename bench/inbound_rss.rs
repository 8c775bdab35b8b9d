//! Peak memory of a whole inbound backfill as the row count grows: `weft sync --once` (the
//! release binary, a child process, so its peak RSS is its own) backfills about 100,000
//! and then 1,000,000 Accounts of one emulated org over Bulk, golden-dedup in the sandbox,
//! into the NDJSON sink. Memory holds a few pages in flight whatever the result's size, so
//! the two peaks should be close. (A run of one or two pages peaks lower: the pipeline
//! never fills.)
//!
//! `cargo bench -p weft --bench inbound_rss` (WEFT_BENCH_ACCOUNTS to resize the large run;
//! default 1,000,000). The last line is
//! `small_rows=… small_peak_mib=… large_rows=… large_peak_mib=… growth_mib=…`.

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
        .unwrap_or(1_000_000);
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
    // A tenth of the org (NumberOfEmployees is seeded evenly over 1–50,000): enough pages
    // for the pipeline to fill, so the two runs compare steady states.
    let (small_rows, small_mib, small_secs) = backfill(&org, " WHERE NumberOfEmployees <= 5000");
    println!("run=small rows={small_rows} secs={small_secs:.1} peak_mib={small_mib:.1}");
    let (large_rows, large_mib, large_secs) = backfill(&org, "");
    println!(
        "run=large rows={large_rows} secs={large_secs:.1} records_per_sec={:.0} peak_mib={large_mib:.1}",
        large_rows as f64 / large_secs
    );
    println!(
        "small_rows={small_rows} small_peak_mib={small_mib:.1} large_rows={large_rows} large_peak_mib={large_mib:.1} growth_mib={:.1}",
        large_mib - small_mib
    );
    drop(rt);
}
