//! Bulk result streaming keeps memory flat: peak RSS of a client streaming 1,000,000 rows is
//! within 64 MiB of one streaming 10,000. Each run is a child process (this test binary
//! re-executed), so its peak RSS (`VmHWM`) is the client's alone; the org runs here.

use std::process::Command;

use weft::throttle::Project;

use crate::common::{org, rig, roomy};

const CHILD_ENV: &str = "WEFT_RSS_CHILD";

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The child: streams a Bulk query and prints rows and peak RSS. A no-op in a normal run.
#[tokio::test]
async fn rss_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.splitn(4, '|');
    let (Some(url), Some(id), Some(secret), Some(limit)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        panic!("bad child spec");
    };
    let telemetry = weft::telemetry::Telemetry::new();
    let gov = weft::throttle::GovernorConfig {
        schedule: weft::throttle::ScheduleConfig::constant("UTC", 100.0),
        ..Default::default()
    };
    let governor = weft::throttle::Governor::new(
        gov.validate().expect("valid"),
        crate::common::fast_clock(),
        telemetry.installation("rss"),
    );
    let mut cfg = weft::salesforce::ClientConfig::new(
        "rss",
        url,
        weft::salesforce::Credentials::ClientCredentials {
            client_id: id.into(),
            client_secret: secret.into(),
        },
    );
    cfg.gzip_requests = false;
    let client = weft::salesforce::SalesforceClient::new(cfg, governor).expect("client");
    let mut s = client
        .bulk_query(
            Project::Backfill,
            &format!("SELECT Id, Name, External_Id__c FROM Account LIMIT {limit}"),
            true,
        )
        .await
        .expect("job");
    let mut rows = 0u64;
    while let Some(b) = s.next_batch().await.expect("batch") {
        rows += b.rows.len() as u64;
    }
    println!("WEFT_RSS rows={rows} vmhwm_kib={}", vm_hwm_kib());
}

fn run_child(url: &str, id: &str, secret: &str, limit: u64) -> (u64, u64) {
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new(exe)
        .args([
            "rss::rss_child",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{url}|{id}|{secret}|{limit}"))
        .output()
        .expect("child runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.find("WEFT_RSS ").map(|i| &l[i..]))
        .unwrap_or_else(|| panic!("no report: {stdout}"));
    let field = |k: &str| -> u64 {
        line.split_whitespace()
            .find_map(|p| p.strip_prefix(k)?.parse().ok())
            .unwrap_or(0)
    };
    (field("rows="), field("vmhwm_kib="))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_streaming_memory_is_flat_from_10k_to_1m_rows() {
    let org = org(roomy(1_000_000)).await;
    let _ = rig(&org, "rss-parent");
    let c = org.credentials().clone();
    let url = org.base_url().to_string();
    let (small_rows, small_kib) = tokio::task::spawn_blocking({
        let (u, i, s) = (url.clone(), c.client_id.clone(), c.client_secret.clone());
        move || run_child(&u, &i, &s, 10_000)
    })
    .await
    .expect("join");
    let (big_rows, big_kib) = tokio::task::spawn_blocking({
        let (u, i, s) = (url.clone(), c.client_id.clone(), c.client_secret.clone());
        move || run_child(&u, &i, &s, 1_000_000)
    })
    .await
    .expect("join");
    eprintln!(
        "bulk streaming peak RSS: 10,000 rows {:.1} MiB; 1,000,000 rows {:.1} MiB; difference {:.1} MiB",
        small_kib as f64 / 1024.0,
        big_kib as f64 / 1024.0,
        (big_kib as f64 - small_kib as f64) / 1024.0
    );
    assert_eq!(small_rows, 10_000);
    assert_eq!(big_rows, 1_000_000);
    assert!(big_kib > 0 && small_kib > 0);
    assert!(
        big_kib <= small_kib + 64 * 1024,
        "{big_kib} KiB vs {small_kib} KiB"
    );
}
