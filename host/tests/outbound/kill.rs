//! `weft serve` — the real binary, running the outbound pipeline — killed with SIGKILL five
//! times while a client posts events at a steady rate: every event that got a 202 ends in
//! Salesforce or the DLQ, no record is created twice, none is lost.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use weft::store::{EventState, RedbStore, Store};

use crate::common::{ADMIN_TOKEN, INSTALLATION, INTAKE_TOKEN, KEY, accounts, acme_org, bearer};

pub(crate) struct Host {
    pub child: Child,
    pub addr: SocketAddr,
}

pub(crate) fn spawn_host(db: &Path, config: &Path, status: &Path) -> Host {
    spawn_host_with(db, &[config], status)
}

/// `weft serve` on `db` with every installation file in `configs`.
pub(crate) fn spawn_host_with(db: &Path, configs: &[&Path], status: &Path) -> Host {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weft"));
    command.args(["serve", "--listen", "127.0.0.1:0", "--worker-threads", "2"]);
    for config in configs {
        command.arg("--config").arg(config);
    }
    let mut child = command
        .arg("--db")
        .arg(db)
        .arg("--status-file")
        .arg(status)
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

pub(crate) fn write_config(dir: &Path, org: &weft_emulator::EmulatorHandle) -> PathBuf {
    let secret = dir.join("client_secret");
    std::fs::write(&secret, &org.credentials().client_secret).expect("secret file");
    let config = dir.join("acme.toml");
    let text = format!(
        r#"
id = "{INSTALLATION}"

[salesforce]
login_url = "{url}"
auth = "client_credentials"
client_id = "{client_id}"
client_secret_file = "client_secret"
gzip_requests = false

[plugin]
component = "{component}"

[intake]
token_sha256 = "{token_sha256}"

[outbound]
idle_poll_ms = 20

[outbound.retry]
base_ms = 50
max_ms = 500

[outbound.objects.Account]
external_id = "{KEY}"
delete = {{ policy = "soft_delete", field = "Deleted__c", value = true }}
"#,
        url = org.base_url(),
        client_id = org.credentials().client_id,
        component = weft_tests::plugin_wasm("acme-accounts").display(),
        token_sha256 = weft::api::TokenHash::of(INTAKE_TOKEN).to_hex(),
    );
    std::fs::write(&config, text).expect("config file");
    config
}

pub(crate) fn company_event(id: &str) -> Value {
    json!({
        "id": id,
        "object": "company",
        "operation": "upsert",
        "occurred_at": jiff::Timestamp::now().to_string(),
        "record": {
            "company_id": format!("K-{id}"),
            "name": format!("Kill test {id}"),
            "billing_city": "Leeds",
            "account_manager_role": "Technical Lead",
            "updated_at": "2026-01-05T10:00:00Z",
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_five_times_every_acknowledged_event_ends_in_salesforce_or_the_dlq() {
    let org = acme_org().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("weft.redb");
    let status = dir.path().join("status.json");
    let config = write_config(dir.path(), &org);
    let spawn = {
        let (db, config, status) = (db.clone(), config.clone(), status.clone());
        move || {
            let (db, config, status) = (db.clone(), config.clone(), status.clone());
            async move {
                tokio::task::spawn_blocking(move || spawn_host(&db, &config, &status))
                    .await
                    .expect("spawn task")
            }
        }
    };
    let mut host = spawn().await;
    let addr = Arc::new(Mutex::new(host.addr));
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();

    let poster = {
        let (addr, stop, acked) = (addr.clone(), stop.clone(), acked.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .default_headers(bearer(INTAKE_TOKEN))
                .build()
                .expect("http client");
            let mut batch_no = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let ids: Vec<String> = (0..5).map(|j| format!("k{batch_no}-{j}")).collect();
                let body = json!(ids.iter().map(|id| company_event(id)).collect::<Vec<_>>());
                // The same batch (same ids) until acknowledged, as a real sender does.
                loop {
                    let target = *addr.lock().expect("addr");
                    let url = format!("http://{target}/v1/installations/{INSTALLATION}/events");
                    match client.post(&url).json(&body).send().await {
                        Ok(response) if response.status() == 202 => {
                            if response.json::<Value>().await.is_err() {
                                continue;
                            }
                            acked.lock().expect("acked").extend(ids.iter().cloned());
                            break;
                        }
                        Ok(response) => panic!("unexpected status {}", response.status()),
                        Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
                batch_no += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        host.child.kill().expect("SIGKILL");
        host.child.wait().expect("reaped");
        host = spawn().await;
        *addr.lock().expect("addr") = host.addr;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    poster.await.expect("poster");
    let acked = acked.lock().expect("acked").clone();
    assert!(
        acked.len() >= 100,
        "only {} events acknowledged",
        acked.len()
    );

    // The last host drains the queue; wait until every acknowledged event is in the org.
    let started = std::time::Instant::now();
    loop {
        let written = accounts(&org);
        if acked
            .iter()
            .all(|id| written.contains_key(&format!("K-{id}")))
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{} of {} acknowledged events in Salesforce after 90 s",
            acked
                .iter()
                .filter(|id| written.contains_key(&format!("K-{id}")))
                .count(),
            acked.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drained = started.elapsed();
    // `weft status` works against the running host.
    let status_out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("status")
        .arg("--file")
        .arg(&status)
        .output()
        .expect("weft status runs");
    assert!(
        status_out.status.success(),
        "{}",
        String::from_utf8_lossy(&status_out.stderr)
    );
    let metrics = reqwest::Client::new()
        .get(format!("http://{}/metrics", host.addr))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.contains("weft_api_calls_total{installation=\"acme\""),
        "{metrics}"
    );
    host.child.kill().expect("SIGKILL");
    host.child.wait().expect("reaped");

    // Nothing created twice: every Account with Acme's key is one distinct key.
    let rows = org
        .query(
            &format!("SELECT Id, {KEY} FROM Account WHERE {KEY} != null"),
            false,
        )
        .expect("query");
    let mut per_key: HashMap<String, usize> = HashMap::new();
    for row in &rows {
        *per_key
            .entry(row[KEY].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    assert!(per_key.values().all(|&n| n == 1), "a key written twice");
    // In the store, every acknowledged event is processed (written) or dead-lettered.
    let store = RedbStore::open(&db).expect("store reopens");
    for id in &acked {
        let state = store
            .event_status(INSTALLATION, id)
            .expect("status")
            .map(|s| s.state);
        assert!(
            matches!(state, Some(EventState::Processed) | Some(EventState::Dlq)),
            "{id}: {state:?}"
        );
    }
    let audited: HashSet<String> = store
        .audit(INSTALLATION, None, usize::MAX)
        .expect("audit")
        .into_iter()
        .filter_map(|(_, a)| a.event_id)
        .collect();
    assert!(
        acked.iter().all(|id| audited.contains(id)),
        "every written event audited"
    );
    eprintln!(
        "kill test: {} events acknowledged, {} Accounts written, queue drained {drained:?} after the last post",
        acked.len(),
        rows.len(),
    );
}
