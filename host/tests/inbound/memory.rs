//! A backfill's memory stays flat as the row count grows: `weft sync --once`, a child
//! process so that its peak RSS (`VmHWM`) is its own, backfills a quarter and then all of an
//! org of 1,000,000 Accounts over Bulk, golden-dedup in the sandbox, into the NDJSON sink.
//! It holds a few pages in flight and the store's bounded cache whatever the result's size,
//! so the whole org peaks within 32 MiB of the quarter. The smaller run is a quarter and
//! not a page or two: a run that short never fills the pipeline and peaks lower.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use weft_emulator::EmulatorHandle;

use crate::common::{org, write_config};

const ACCOUNTS: usize = 1_000_000;
const MARGIN_KIB: u64 = 32 * 1024;
/// Far beyond what a debug build takes for the whole org (under half a minute here).
const DEADLINE: Duration = Duration::from_secs(600);
const FIELDS: &str = "Id, Name, Website, Phone, Industry, AnnualRevenue, NumberOfEmployees, GoldenAccountID__c, MasterRecordId, External_Id__c, BillingCity, BillingCountry";

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

/// How many Accounts `filter` selects, by the org's own count.
fn org_count(org: &EmulatorHandle, filter: &str) -> usize {
    let rows = org
        .query(&format!("SELECT COUNT() FROM Account{filter}"), false)
        .expect("count");
    rows.first()
        .and_then(|r| r.get("totalSize"))
        .and_then(Value::as_u64)
        .expect("totalSize") as usize
}

/// Backfills the Accounts `filter` selects in a child `weft sync --once`; returns the rows
/// in the sink file and the child's peak RSS in KiB.
fn backfill(org: &EmulatorHandle, filter: &str) -> (usize, u64) {
    let dir = tempfile::tempdir().expect("dir");
    let body = format!(
        "[inbound]\nbulk_threshold = 1000\n\n[inbound.objects.Account]\nquery = \"SELECT {FIELDS} FROM Account{filter}\"\napi = \"bulk\"\n\n[inbound.sink]\nkind = \"ndjson\"\ndir = \"out\"\n"
    );
    let config = write_config(
        dir.path(),
        org,
        "golden-dedup",
        "\"external.system\" = \"External_Id__c\"",
        &body,
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["sync", "--once", "--config"])
        .arg(&config)
        .arg("--db")
        .arg(dir.path().join("weft.redb"))
        .env("WEFT_LOG", "warn")
        // One malloc arena. By default glibc gives threads arenas of their own as the
        // blocking pool's threads come and go, and each keeps memory it freed. Measured,
        // that added 26–43 MiB between a quarter of the org and all of it (and no steady
        // growth from one to two million rows, `inbound_rss`): enough to hide a leak that
        // size.
        // With one arena the peak is the host's own use (4–14 MiB of growth here).
        .env("MALLOC_ARENA_MAX", "1")
        .stdout(Stdio::null())
        .spawn()
        .expect("weft sync starts");
    // The high-water mark only grows: polled until the process ends, it misses at most
    // what the last few milliseconds added.
    let started = Instant::now();
    let mut peak = 0;
    while child.try_wait().expect("wait").is_none() {
        peak = peak.max(peak_kib(child.id()).unwrap_or(0));
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!("weft sync still running after {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = child.wait().expect("reaped");
    assert!(status.success(), "weft sync failed: {status:?}");
    (sink_rows(dir.path()), peak)
}

fn sink_rows(dir: &Path) -> usize {
    let out = std::fs::read(dir.join("out").join("Account.ndjson")).expect("sink file");
    out.iter().filter(|&&b| b == b'\n').count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_row_backfill_peaks_within_32_mib_of_a_quarter_of_it() {
    let org = org(ACCOUNTS, 0).await;
    // NumberOfEmployees is seeded evenly over 1–50,000.
    let quarter = " WHERE NumberOfEmployees <= 12500";
    // The org serves from this runtime's other worker while this one waits on the child.
    let (quarter_rows, quarter_kib) = tokio::task::block_in_place(|| backfill(&org, quarter));
    let (all_rows, all_kib) = tokio::task::block_in_place(|| backfill(&org, ""));
    eprintln!(
        "backfill peak RSS: {quarter_rows} rows {:.1} MiB; {all_rows} rows {:.1} MiB; growth {:.1} MiB",
        quarter_kib as f64 / 1024.0,
        all_kib as f64 / 1024.0,
        (all_kib as f64 - quarter_kib as f64) / 1024.0
    );
    assert_eq!(quarter_rows, org_count(&org, quarter));
    assert_eq!(all_rows, org_count(&org, ""));
    assert!(quarter_kib > 0 && all_kib > 0);
    assert!(
        all_kib <= quarter_kib + MARGIN_KIB,
        "{all_rows} rows peaked at {all_kib} KiB, {quarter_rows} at {quarter_kib} KiB"
    );
}
