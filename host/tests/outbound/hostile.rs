//! The hostile test plugin against the real binary and the outbound pipeline: a plugin that
//! sleeps cannot hold a worker or delay `SIGTERM`, one that fans out is stopped before the
//! host decodes its output, with its own DLQ code, and one that writes control characters
//! into its logs cannot forge a host log line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{Value, json};
use weft::outbound::Pipeline;
use weft::plugin::{
    CallLimits, InstalledPlugins, PluginConfig, PluginRuntime, QuarantinePolicy, RuntimeConfig,
};
use weft::store::{RedbStore, Store};

use crate::common::{
    INSTALLATION, INTAKE_TOKEN, accept, acme_config, acme_org, bearer, client, company, event,
    open_dlq,
};
use crate::kill::{Host, company_event, spawn_host, write_config};

/// Kills the host if a test fails before stopping it.
struct Running(Option<Host>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(host) = self.0.as_mut() {
            let _ = host.child.kill();
            let _ = host.child.wait();
        }
    }
}

/// `kill::write_config`'s installation with the hostile plugin in `mode`.
fn hostile_config(dir: &Path, org: &weft_emulator::EmulatorHandle, plugin: &str) -> PathBuf {
    let config = write_config(dir, org);
    let text = std::fs::read_to_string(&config).expect("config");
    let acme = weft_tests::plugin_wasm("acme-accounts")
        .display()
        .to_string();
    let hostile = weft_tests::plugin_wasm("hostile").display().to_string();
    let text = text.replace(
        &format!("component = \"{acme}\""),
        &format!("component = \"{hostile}\"\n{plugin}"),
    );
    assert!(text.contains("hostile"), "the plugin line is replaced");
    std::fs::write(&config, text).expect("config file");
    config
}

async fn event_state(client: &reqwest::Client, host: &Host, id: &str) -> Option<String> {
    let url = format!(
        "http://{}/v1/installations/{INSTALLATION}/events/{id}",
        host.addr
    );
    let response = client.get(&url).send().await.ok()?;
    let body: Value = response.json().await.ok()?;
    body["status"].as_str().map(str::to_owned)
}

/// Regression: a plugin calling `std::thread::sleep` blocked a host thread in WASI's
/// `poll` for as long as it asked (20 s measured), held its pool slot, was reported as a
/// 500 ms timeout, and delayed `SIGTERM` by 57 s. Now each sleep past the budget is a
/// timeout at once, three of them quarantine the plugin, and the host stops promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_plugin_times_out_at_once_is_quarantined_and_does_not_delay_sigterm() {
    let org = acme_org().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("weft.redb");
    let status = dir.path().join("status.json");
    let config = hostile_config(
        dir.path(),
        &org,
        r#"config = { mode = "sleep", millis = "60000" }"#,
    );
    let spawned = {
        let (db, config, status) = (db.clone(), config.clone(), status.clone());
        tokio::task::spawn_blocking(move || spawn_host(&db, &config, &status))
            .await
            .expect("spawn task")
    };
    let mut running = Running(Some(spawned));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .default_headers(bearer(INTAKE_TOKEN))
        .build()
        .expect("http client");
    let host = running.0.as_ref().expect("host");
    // One event per round: three sleeps time out, the fourth finds the plugin quarantined.
    for i in 0..4 {
        let id = format!("sleep-{i}");
        let url = format!(
            "http://{}/v1/installations/{INSTALLATION}/events",
            host.addr
        );
        let response = client
            .post(&url)
            .json(&json!([company_event(&id)]))
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), 202);
        let started = Instant::now();
        while event_state(&client, host, &id).await.as_deref() != Some("dlq") {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{id} not dead-lettered after 10 s: the plugin's sleep holds the worker"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // SIGTERM while the worker is busy with the next event.
    let url = format!(
        "http://{}/v1/installations/{INSTALLATION}/events",
        host.addr
    );
    client
        .post(&url)
        .json(&json!([company_event("sleep-last")]))
        .send()
        .await
        .expect("post");
    let mut host = running.0.take().expect("host");
    let terminated = Command::new("kill")
        .args(["-TERM", &host.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(terminated.success());
    let asked = Instant::now();
    let exited = loop {
        if let Some(status) = host.child.try_wait().expect("wait") {
            break status;
        }
        if asked.elapsed() > Duration::from_secs(5) {
            running.0 = Some(host);
            panic!("weft serve still running 5 s after SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exited.success(), "{exited:?}");

    let store = RedbStore::open(&db).expect("store reopens");
    let codes: BTreeMap<String, String> = store
        .dlq_list(&Default::default())
        .expect("dlq")
        .entries
        .into_iter()
        .map(|e| {
            (
                e.original.event_id().unwrap_or_default().to_owned(),
                e.error_code,
            )
        })
        .collect();
    for i in 0..3 {
        assert_eq!(
            codes.get(&format!("sleep-{i}")).map(String::as_str),
            Some("PLUGIN_TIMEOUT"),
            "{codes:?}"
        );
    }
    assert_eq!(
        codes.get("sleep-3").map(String::as_str),
        Some("PLUGIN_QUARANTINED"),
        "{codes:?}"
    );
}

fn hostile_plugins(values: &[(&str, &str)], limits: CallLimits) -> Arc<InstalledPlugins> {
    let runtime = PluginRuntime::new(RuntimeConfig::default()).expect("plugin runtime");
    let plugin = runtime
        .load(&weft_tests::plugin_bytes("hostile"))
        .expect("hostile loads");
    let plugins = Arc::new(InstalledPlugins::new(QuarantinePolicy { strikes: 1000 }));
    let values = values
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    plugins.install(INSTALLATION, plugin, PluginConfig { values, limits });
    plugins
}

/// Regression: one event could map to 10⁶ rows within the 16 MiB wire cap, and the host
/// decoded all of them. A fan-out past the installation's `max_fanout` and output past the
/// row cap now fail the batch into the DLQ, each with its own code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanned_out_and_oversized_output_fails_into_the_dlq_with_its_own_code() {
    let org = acme_org().await;
    for (rows, max_fanout, code) in [
        ("3", 2, "PLUGIN_FANOUT_EXCEEDED"),
        ("200000", 100, "PLUGIN_OUTPUT_TOO_LARGE"),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(RedbStore::open(&dir.path().join("weft.redb")).expect("store"));
        let limits = CallLimits {
            max_fanout,
            ..CallLimits::default()
        };
        let plugins = hostile_plugins(&[("mode", "fanout"), ("fanout.rows", rows)], limits);
        let mut pipeline = Pipeline::new(
            INSTALLATION,
            acme_config(),
            client(&org),
            plugins,
            store.clone() as Arc<dyn Store>,
        );
        let events: Vec<_> = (0..5)
            .map(|i| event(&format!("f{i}"), company(i), Timestamp::now()))
            .collect();
        accept(&store, &events);
        pipeline.run_round().await.expect("round");
        let dead = open_dlq(&store);
        assert_eq!(dead.len(), events.len(), "fan-out {rows}: every event");
        assert!(
            dead.iter().all(|d| d.error_code == code),
            "fan-out {rows}: {:?}",
            dead[0]
        );
    }
}

/// Regression: a `\n` in a plugin's log message started a well-formed host log line
/// (`… ERROR weft::api::admin: FORGED admin token accepted`), and `\r` and NUL passed raw.
#[test]
fn plugin_log_lines_cannot_forge_host_log_lines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, "{\"Id\": \"001A\", \"Name\": \"Acme\"}\n").expect("input");
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["plugin", "run"])
        .arg(weft_tests::plugin_wasm("hostile"))
        .arg("--input")
        .arg(&input)
        .args(["--object", "Account", "--direction", "inbound"])
        .args(["--config", "mode=forge-log"])
        .env("WEFT_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("weft plugin run");
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("innocent\\n2026-01-01T00:00:00.000000Z ERROR weft::api::admin"),
        "the forged text is logged, escaped: {stderr}"
    );
    let forged = stderr
        .lines()
        .filter(|line| line.starts_with("2026-01-01T00:00:00.000000Z"))
        .count();
    assert_eq!(forged, 0, "a forged line: {stderr}");
    for raw in ['\r', '\0', '\x1b'] {
        assert!(!stderr.contains(raw), "{raw:?} passed raw: {stderr:?}");
    }
}
