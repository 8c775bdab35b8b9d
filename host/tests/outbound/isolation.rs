//! One `weft serve`, several installations: while the others receive pathological input —
//! floods of the widest events intake takes, a plugin that sleeps in every call, a hundred
//! connections trickling their request heads — one installation's events are still
//! accepted at once and written within their normal round (the hardening issue, 14).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::common::{INSTALLATION, INTAKE_TOKEN, accounts, acme_org, bearer};
use crate::kill::{company_event, spawn_host_with, write_config};

/// The noisy tenants: one floods wide events, one's plugin sleeps in every call.
const NOISY: &str = "noisy";
const NOISY_TOKEN: &str = "weft_noisy_outbound_test_token";
const SLEEPY: &str = "sleepy";
const SLEEPY_TOKEN: &str = "weft_sleepy_outbound_test_token";

/// A copy of the acme installation's file as installation `id` with its own token and,
/// given `plugin`, the hostile plugin configured so.
fn tenant_config(acme: &Path, id: &str, token: &str, plugin: Option<&str>) -> PathBuf {
    let mut text = std::fs::read_to_string(acme)
        .expect("acme config")
        .replace(
            &format!("id = \"{INSTALLATION}\""),
            &format!("id = \"{id}\""),
        )
        .replace(
            &weft::api::TokenHash::of(INTAKE_TOKEN).to_hex(),
            &weft::api::TokenHash::of(token).to_hex(),
        );
    if let Some(plugin) = plugin {
        let acme_plugin = weft_tests::plugin_wasm("acme-accounts")
            .display()
            .to_string();
        let hostile = weft_tests::plugin_wasm("hostile").display().to_string();
        text = text.replace(
            &format!("component = \"{acme_plugin}\""),
            &format!("component = \"{hostile}\"\n{plugin}"),
        );
        assert!(text.contains("hostile"), "the plugin is replaced");
    }
    let path = acme.with_file_name(format!("{id}.toml"));
    std::fs::write(&path, text).expect("tenant config");
    path
}

/// A connection that sends a request head one byte every half second and never
/// finishes it, for as long as the test runs.
async fn trickle(addr: std::net::SocketAddr, stop: Arc<AtomicBool>) {
    let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
        return;
    };
    let head = format!("POST /v1/installations/{NOISY}/events HTTP/1.1\r\nhost: x\r\n");
    for byte in head.bytes().cycle() {
        if stop.load(Ordering::Relaxed)
            || tokio::io::AsyncWriteExt::write_all(&mut stream, &[byte])
                .await
                .is_err()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
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
async fn issue_14_pathological_tenants_never_stall_another_installation() {
    let org = acme_org().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let acme = write_config(dir.path(), &org);
    let noisy = tenant_config(&acme, NOISY, NOISY_TOKEN, None);
    let sleepy = tenant_config(
        &acme,
        SLEEPY,
        SLEEPY_TOKEN,
        Some(r#"config = { mode = "sleep", millis = "60000" }"#),
    );
    let db = dir.path().join("weft.redb");
    let status = dir.path().join("status.json");
    let host = {
        let (db, status) = (db.clone(), status.clone());
        let configs = [acme.clone(), noisy, sleepy];
        tokio::task::spawn_blocking(move || {
            let configs: Vec<&Path> = configs.iter().map(PathBuf::as_path).collect();
            spawn_host_with(&db, &configs, &status)
        })
        .await
        .expect("spawn")
    };
    let mut host = host;
    let addr = host.addr;
    let stop = Arc::new(AtomicBool::new(false));

    // Slow connections hold what the host gives them...
    let trickles: Vec<_> = (0..100)
        .map(|_| tokio::spawn(trickle(addr, stop.clone())))
        .collect();
    // ...a plugin sleeps in every call of its installation...
    let sleeper = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .default_headers(bearer(SLEEPY_TOKEN))
                .build()
                .expect("client");
            let url = format!("http://{addr}/v1/installations/{SLEEPY}/events");
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let _ = client
                    .post(&url)
                    .json(&json!([company_event(&format!("sleepy-{n}"))]))
                    .send()
                    .await;
                n += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    // ...and two senders keep another installation's queue full of wide events.
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
    for task in floods.into_iter().chain(trickles).chain([sleeper]) {
        let _ = task.await;
    }

    assert!(flooded >= 90, "the flood was accepted: {flooded} events");
    let _ = host.child.kill();
    let _ = host.child.wait();
}
