//! `weft serve` killed with SIGKILL five times while a client posts at a steady rate: every
//! event that got a 202 is in the store afterwards, exactly once.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{ADMIN_TOKEN, INSTALLATION, all_events, db_path, event};

struct Host {
    child: Child,
    addr: SocketAddr,
}

fn spawn_host(db: &Path) -> Host {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--installation",
            INSTALLATION,
        ])
        .arg("--db")
        .arg(db)
        .arg("--status-file")
        .arg(db.with_extension("status.json"))
        .args(["--worker-threads", "2"])
        .env("WEFT_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("weft serve starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("weft serve prints its address");
    let ready: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("weft serve printed {line:?}: {e}"));
    let addr = ready["listening"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    Host { child, addr }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_never_loses_an_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_path(&dir);
    let spawn = {
        let db = db.clone();
        move || {
            let db = db.clone();
            async move {
                tokio::task::spawn_blocking(move || spawn_host(&db))
                    .await
                    .unwrap()
            }
        }
    };
    let mut host = spawn().await;
    let addr = Arc::new(Mutex::new(host.addr));
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();

    let poster = {
        let addr = addr.clone();
        let stop = stop.clone();
        let acked = acked.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .default_headers(crate::common::client_headers(ADMIN_TOKEN))
                .build()
                .unwrap();
            let mut batch_no = 0u64;
            let mut failures = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let ids: Vec<String> = (0..5).map(|j| format!("k{batch_no}-{j}")).collect();
                let body = json!(ids.iter().map(|id| event(id)).collect::<Vec<_>>());
                // Retry the same batch (same ids) until it is acknowledged: what a real
                // sender does, and it exercises idempotency across crashes.
                loop {
                    let target = *addr.lock().unwrap();
                    let url = format!("http://{target}/v1/installations/{INSTALLATION}/events");
                    match client.post(&url).json(&body).send().await {
                        Ok(response) if response.status() == 202 => {
                            let answer: Value = response.json().await.unwrap_or(Value::Null);
                            if answer.is_null() {
                                // The 202 arrived but its body was cut by the kill: the
                                // events are durable, but the client cannot know; retry.
                                failures += 1;
                                continue;
                            }
                            let mut acked = acked.lock().unwrap();
                            for id in &ids {
                                acked.insert(id.clone());
                            }
                            break;
                        }
                        Ok(response) => panic!("unexpected status {}", response.status()),
                        Err(_) => {
                            failures += 1;
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                }
                batch_no += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (batch_no, failures)
        })
    };

    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        host.child.kill().expect("SIGKILL");
        host.child.wait().expect("reaped");
        host = spawn().await;
        *addr.lock().unwrap() = host.addr;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (batches, failures) = poster.await.unwrap();
    host.child.kill().expect("SIGKILL");
    host.child.wait().expect("reaped");

    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 100,
        "only {} events acknowledged",
        acked.len()
    );
    let events = all_events(&db, INSTALLATION);
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for e in &events {
        *counts.entry(e.event.id.as_str()).or_default() += 1;
    }
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "stored more than once: {repeated:?}");
    let lost: Vec<_> = acked
        .iter()
        .filter(|id| !counts.contains_key(id.as_str()))
        .collect();
    assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    eprintln!(
        "kill test: {batches} batches, {} events acknowledged, {} stored, {failures} failed attempts",
        acked.len(),
        events.len()
    );
}
