//! One `weft serve`, two installations: while one receives pathological input, the other's
//! events are still accepted at once and written within their normal round (the
//! hardening issue, 14).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::common::{INSTALLATION, INTAKE_TOKEN, accounts, acme_org, bearer};
use crate::kill::{company_event, spawn_host_with, write_config};

/// The noisy tenant's installation and token.
const NOISY: &str = "noisy";
const NOISY_TOKEN: &str = "weft_noisy_outbound_test_token";

/// A copy of the acme installation's file as installation `noisy`, with its own token.
fn noisy_config(acme: &Path) -> PathBuf {
    let text = std::fs::read_to_string(acme).expect("acme config");
    let text = text
        .replace(
            &format!("id = \"{INSTALLATION}\""),
            &format!("id = \"{NOISY}\""),
        )
        .replace(
            &weft::api::TokenHash::of(INTAKE_TOKEN).to_hex(),
            &weft::api::TokenHash::of(NOISY_TOKEN).to_hex(),
        );
    let path = acme.with_file_name("noisy.toml");
    std::fs::write(&path, text).expect("noisy config");
    path
}

/// Nine events of 1,000 fields each (the most intake takes), no field name shared with
/// any other event: a round of them is as wide as every name together.
fn wide_batch(request: u64) -> Value {
    let events: Vec<Value> = (0..9)
        .map(|e| {
            let mut record: Map<String, Value> = (0..999)
                .map(|f| (format!("r{request}e{e}f{f}"), json!(f)))
                .collect();
            record.insert("company_id".into(), json!(format!("N-{request}-{e}")));
            json!({"id": format!("wide-{request}-{e}"), "object": "company",
                   "operation": "upsert", "occurred_at": "2026-01-05T10:00:00Z",
                   "record": record})
        })
        .collect();
    Value::Array(events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_a_flood_of_wide_events_never_stalls_another_installation() {
    let org = acme_org().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let acme = write_config(dir.path(), &org);
    let noisy = noisy_config(&acme);
    let db = dir.path().join("weft.redb");
    let status = dir.path().join("status.json");
    let host = {
        let (db, acme, noisy, status) = (db.clone(), acme.clone(), noisy.clone(), status.clone());
        tokio::task::spawn_blocking(move || spawn_host_with(&db, &[&acme, &noisy], &status))
            .await
            .expect("spawn")
    };
    let mut host = host;
    let addr = host.addr;

    // Two senders keep the noisy installation's queue full of wide events.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let floods: Vec<_> = (0..2)
        .map(|sender| {
            let (stop, sent) = (stop.clone(), sent.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .default_headers(bearer(NOISY_TOKEN))
                    .timeout(Duration::from_secs(30))
                    .build()
                    .expect("client");
                let url = format!("http://{addr}/v1/installations/{NOISY}/events");
                let mut request = sender * 1_000_000;
                while !stop.load(Ordering::Relaxed) {
                    let answer = client.post(&url).json(&wide_batch(request)).send().await;
                    if answer.is_ok_and(|a| a.status() == 202) {
                        sent.fetch_add(9, Ordering::Relaxed);
                    }
                    request += 1;
                }
            })
        })
        .collect();
    while sent.load(Ordering::Relaxed) < 90 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Meanwhile the quiet installation's events are accepted at once and written.
    let quiet = reqwest::Client::builder()
        .default_headers(bearer(INTAKE_TOKEN))
        .build()
        .expect("client");
    for i in 0..3 {
        let id = format!("quiet-{i}");
        let started = Instant::now();
        let response = quiet
            .post(format!(
                "http://{addr}/v1/installations/{INSTALLATION}/events"
            ))
            .json(&json!([company_event(&id)]))
            .send()
            .await
            .expect("post");
        let accepted_in = started.elapsed();
        assert_eq!(response.status(), 202);
        assert!(
            accepted_in < Duration::from_secs(1),
            "acme's event took {accepted_in:?} to be accepted"
        );
        while !accounts(&org).contains_key(&format!("K-{id}")) {
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "acme's event was not written while the other installation was flooded"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let flooded = sent.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for flood in floods {
        let _ = flood.await;
    }

    assert!(flooded >= 90, "the flood was accepted: {flooded} events");
    let _ = host.child.kill();
    let _ = host.child.wait();
}
