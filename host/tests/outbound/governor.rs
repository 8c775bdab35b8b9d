//! The API governor's spend survives a restart: it is saved in the store (on a timer and at
//! shutdown) and restored when the host builds the installation's governor again.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft::store::{RedbStore, StoreExt};
use weft::telemetry::Telemetry;
use weft::throttle::{
    Governor, GovernorConfig, GovernorSnapshot, Project, ScheduleConfig, SystemClock,
};

use crate::common::{INSTALLATION, accounts, acme_org};
use crate::kill::{company_event, spawn_host, write_config};

fn governor() -> Arc<Governor> {
    let settings = GovernorConfig {
        schedule: ScheduleConfig::constant("UTC", 100.0),
        assumed_daily_max: 1_000_000,
        burst_min_calls: 1_000,
        ..Default::default()
    }
    .validate()
    .expect("governor config");
    Governor::new(
        settings,
        Arc::new(SystemClock),
        Telemetry::new().installation(INSTALLATION),
    )
}

#[tokio::test]
async fn a_snapshot_saved_in_the_store_restores_the_spend_after_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("weft.redb");
    let first = governor();
    for _ in 0..25 {
        first
            .admit(Project::Outbound)
            .await
            .expect("admitted")
            .success();
    }
    assert_eq!(first.usage_24h(), 25);
    {
        let store = RedbStore::open(&db).expect("store");
        assert!(
            store
                .get_governor_snapshot::<GovernorSnapshot>(INSTALLATION)
                .expect("read")
                .is_none()
        );
        store
            .put_governor_snapshot(INSTALLATION, &first.snapshot())
            .expect("saved");
    }
    let store = RedbStore::open(&db).expect("store reopens");
    let saved: GovernorSnapshot = store
        .get_governor_snapshot(INSTALLATION)
        .expect("read")
        .expect("a snapshot");
    assert!(
        store
            .get_governor_snapshot::<GovernorSnapshot>("globex")
            .expect("read")
            .is_none(),
        "snapshots are per installation"
    );
    let second = governor();
    second.restore(&saved).expect("restores");
    assert_eq!(second.usage_24h(), 25);
}

fn sigterm(child: &mut std::process::Child) {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = child.wait().expect("reaped");
    assert!(exit.success(), "weft serve exited with {exit}");
}

fn saved_usage(db: &Path) -> u64 {
    let store = RedbStore::open(db).expect("store opens");
    let snapshot: GovernorSnapshot = store
        .get_governor_snapshot(INSTALLATION)
        .expect("read")
        .expect("weft serve saved the governor at shutdown");
    snapshot.usage.iter().map(|m| m.admitted).sum()
}

/// The status file the restarted host writes first, before it has sent anything.
fn usage_in_status(path: &Path) -> u64 {
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read(path)
            && let Ok(status) = serde_json::from_slice::<Value>(&text)
            && let Some(usage) = status["installations"]
                .as_array()
                .and_then(|all| all.iter().find(|i| i["installation"] == INSTALLATION))
                .and_then(|i| i["throttle"]["usage_24h"].as_u64())
        {
            return usage;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no status file at {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weft_serve_restarted_carries_on_from_the_api_calls_it_spent() {
    let org = acme_org().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("weft.redb");
    let config = write_config(dir.path(), &org);
    let first_status = dir.path().join("status-1.json");
    let mut host = {
        let (db, config, status) = (db.clone(), config.clone(), first_status.clone());
        tokio::task::spawn_blocking(move || spawn_host(&db, &config, &status))
            .await
            .expect("spawn")
    };
    let ids: Vec<String> = (0..10).map(|i| format!("g{i}")).collect();
    let body = json!(ids.iter().map(|id| company_event(id)).collect::<Vec<_>>());
    let response = reqwest::Client::new()
        .post(format!(
            "http://{}/v1/installations/{INSTALLATION}/events",
            host.addr
        ))
        .bearer_auth(crate::common::INTAKE_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 202);
    let started = Instant::now();
    while !ids
        .iter()
        .all(|id| accounts(&org).contains_key(&format!("K-{id}")))
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "events not written"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::task::spawn_blocking(move || sigterm(&mut host.child))
        .await
        .expect("stopped");

    let spent = saved_usage(&db);
    assert!(
        spent >= 2,
        "the first run spent API calls (login, describe, upserts); saved {spent}"
    );

    let second_status = dir.path().join("status-2.json");
    let mut host = {
        let (db, config, status) = (db.clone(), config.clone(), second_status.clone());
        tokio::task::spawn_blocking(move || spawn_host(&db, &config, &status))
            .await
            .expect("spawn")
    };
    let usage = tokio::task::spawn_blocking(move || usage_in_status(&second_status))
        .await
        .expect("status read");
    assert!(
        usage >= spent,
        "the restarted host reports {usage} calls in 24 h; the first run saved {spent}"
    );
    tokio::task::spawn_blocking(move || sigterm(&mut host.child))
        .await
        .expect("stopped");
    assert!(saved_usage(&db) >= spent);
    eprintln!(
        "governor restart: first run saved {spent} calls; the restarted host reported {usage}"
    );
}
