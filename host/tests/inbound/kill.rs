//! `weft sync` killed with SIGKILL at ten random moments of a 200,000-Account Bulk
//! backfill: the sink ends up holding exactly the org's rows, each once, and each resume
//! re-fetches at most one page.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};

use crate::common::{SINK, org, org_rows, sink_lines, write_config};

/// Rows per checkpoint on the Bulk path: the transport's default batch for a result this
/// narrow (the most rows a batch takes, 10,000).
const PAGE: usize = 10_000;
const ACCOUNTS: usize = 200_000;
const KILLS: usize = 10;

fn spawn(config: &std::path::Path, db: &std::path::Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["sync", "--once", "--config"])
        .arg(config)
        .arg("--db")
        .arg(db)
        .env("WEFT_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("weft sync starts")
}

/// Bytes in the sink file so far: a cheap sign of progress to poll (counting its lines
/// means reading tens of megabytes each time, and the kill would land long after its
/// moment).
fn sink_len(dir: &std::path::Path) -> u64 {
    std::fs::metadata(dir.join("out").join("Account.ndjson")).map_or(0, |m| m.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_and_refetches_at_most_a_page() {
    let org = org(ACCOUNTS, 0).await;
    let dir = tempfile::tempdir().expect("dir");
    let body = format!(
        "[inbound]\nbulk_threshold = 10000\n\n[inbound.objects.Account]\nfields = [\"Name\", \"Website\", \"GoldenAccountID__c\"]\n{SINK}"
    );
    let config = write_config(dir.path(), &org, "golden-dedup", "", &body);
    let db = dir.path().join("weft.redb");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);

    let rows = org_rows(&org, "Account", false).len() as u64;
    let mut seen: HashSet<String> = HashSet::new();
    let mut lines_before = 0usize;
    let mut len_before = 0u64;
    // The whole file's expected length, known once the first lines are written.
    let mut expected_len = None;
    let mut kills = 0;
    let mut refetched_per_resume = Vec::new();
    while kills < KILLS {
        let mut child = spawn(&config, &db);
        // Kill once the file has passed a random point of the part of it still to come,
        // a share of it per kill left: the kills spread over the whole backfill however
        // fast it runs, and each interrupts a backfill in motion (start-up alone takes a
        // second or so).
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut target = None;
        loop {
            let len = sink_len(dir.path());
            if expected_len.is_none() && len > 0 {
                let written = sink_lines(dir.path(), "Account").len() as u64;
                expected_len = len.checked_div(written).map(|per_line| per_line * rows);
            }
            if target.is_none()
                && let Some(expected) = expected_len
            {
                let left = expected.saturating_sub(len_before) / (KILLS - kills) as u64;
                target = Some(len_before + 1 + (left as f64 * rng.random_range(0.3..1.0)) as u64);
            }
            if target.is_some_and(|target| len >= target) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a resumed run did not reach its kill point in 2 minutes"
            );
            if child.try_wait().expect("wait").is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A few milliseconds more, so that kills land in every phase of a page: written,
        // fsynced, its checkpoint committing.
        let delay = Duration::from_millis(rng.random_range(0..30));
        tokio::time::sleep(delay).await;
        if child.try_wait().expect("wait").is_some() {
            break; // finished before the kill: nothing left to interrupt
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        kills += 1;
        len_before = sink_len(dir.path());
        let lines = sink_lines(dir.path(), "Account");
        // The sink cuts a torn last line when it reopens; count whole lines only.
        let new = &lines[lines_before.min(lines.len())..];
        let refetched = new
            .iter()
            .filter(|l| seen.contains(l["id"].as_str().expect("id")))
            .count();
        if kills > 1 {
            refetched_per_resume.push(refetched);
        }
        for l in new {
            seen.insert(l["id"].as_str().expect("id").to_owned());
        }
        lines_before = lines.len();
    }
    let status = spawn(&config, &db).wait().expect("final run");
    assert!(status.success(), "the final run completes: {status:?}");

    let lines = sink_lines(dir.path(), "Account");
    let new = &lines[lines_before.min(lines.len())..];
    refetched_per_resume.push(
        new.iter()
            .filter(|l| seen.contains(l["id"].as_str().expect("id")))
            .count(),
    );
    let org_rows = org_rows(&org, "Account", false);
    assert_eq!(org_rows.len() as u64, rows, "the org did not change");
    let mut delivered: HashSet<&str> = HashSet::new();
    for line in &lines {
        let id = line["id"].as_str().expect("id");
        assert_eq!(
            line["system_modstamp"].as_str(),
            org_rows.get(id).map(String::as_str),
            "{id}: a version the org has"
        );
        delivered.insert(id);
    }
    assert_eq!(delivered.len(), org_rows.len(), "no row lost");
    assert!(org_rows.keys().all(|id| delivered.contains(id.as_str())));
    eprintln!(
        "kills: {kills}; re-fetched per resume: {refetched_per_resume:?}; lines {} for {} rows",
        lines.len(),
        org_rows.len()
    );
    assert!(
        kills >= 5,
        "the backfill outlived at least five kills ({kills})"
    );
    assert!(
        refetched_per_resume.iter().all(|n| *n <= PAGE),
        "each resume re-fetches at most one page: {refetched_per_resume:?}"
    );
    // A resume cuts the file back to where its checkpoint says it ended, so the pages
    // read again replace what was written past it rather than follow it.
    assert_eq!(lines.len(), org_rows.len(), "each row once in the file");
}
