//! `weft serve` with 100 installations, both directions, killed with SIGKILL while
//! backfills, incremental passes and outbound rounds run, then started again on the same
//! store: every installation resumes from its checkpoints, every event that got a `202`
//! ends in Salesforce (once) or the DLQ, and every Account of every org reaches its
//! installation's sink or (refused by the plugin) its DLQ.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use weft_emulator::{Emulator, EmulatorConfig};

use crate::common::{KEY, acme_fields};
use crate::kill::company_event;
use crate::service::{Api, outbound_document, spawn_service};

const INSTALLATIONS: usize = 100;
const ACCOUNTS: usize = 400;
/// REST pages of 200: each backfill takes two pages and checkpoints between them.
const PAGE: usize = 200;

fn sink_ids(dir: &std::path::Path) -> (usize, BTreeSet<String>) {
    let text = std::fs::read_to_string(dir.join("Account.ndjson")).unwrap_or_default();
    // A write torn by the kill is cut when the sink reopens; only whole lines count.
    let whole = text.rfind('\n').map_or("", |end| &text[..=end]);
    let mut ids = BTreeSet::new();
    let mut lines = 0;
    for line in whole.lines() {
        lines += 1;
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(line)
            && let Some(id) = value["id"].as_str()
        {
            ids.insert(id.to_owned());
        }
    }
    (lines, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_100_installations_resumes_every_one_from_its_checkpoints() {
    let emulator = Emulator::start(EmulatorConfig {
        orgs: INSTALLATIONS,
        accounts: ACCOUNTS,
        contacts: 0,
        leads: 0,
        opportunities: 0,
        api_daily_max: 50_000_000,
        ..Default::default()
    })
    .await
    .expect("emulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, log) = (dir.path().join("weft.redb"), dir.path().join("log"));
    let host = spawn_service(&db, dir.path(), &log);
    let mut api = Api::new(host.addr);

    let mut tenants = Vec::new();
    let mut accepted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for k in 0..INSTALLATIONS {
        let org = emulator.org(k).expect("org");
        acme_fields(&org);
        let secret = dir.path().join(format!("secret-{k}"));
        std::fs::write(&secret, &org.credentials().client_secret).expect("secret");
        let id = format!("tenant-{k}");
        let mut document = outbound_document(
            &id,
            org.instance_url(),
            &org.credentials().client_id,
            &secret,
        );
        let sink = dir.path().join(format!("out-{k}"));
        document["inbound"] = json!({
            "poll_secs": 1,
            "page_size": PAGE,
            "objects": {"Account": {"fields": ["Name", KEY]}},
            "sink": {"kind": "ndjson", "dir": sink},
        });
        let (status, _, body) = api
            .admin(Method::POST, "/v1/installations", &[], Some(document))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{id}: {body}");
        let token = api.token(&id).await;
        let event = format!("{id}-r0");
        assert_eq!(
            api.post_event(&id, &token, company_event(&event)).await,
            StatusCode::ACCEPTED
        );
        accepted.entry(id.clone()).or_default().push(event);
        tenants.push((id, token, org, sink));
    }

    // The kill, while the later installations backfill, the earlier ones run incremental
    // passes and outbound rounds write the events.
    let (_, _, last) = api
        .admin(Method::GET, "/v1/installations/tenant-99/status", &[], None)
        .await;
    assert!(
        last["inbound"]["Account"]["last_success"].is_null(),
        "the kill comes while backfills run: {last}"
    );
    drop(host);

    let host = spawn_service(&db, dir.path(), &log);
    let mut api = Api::new(host.addr);
    for (id, token, _, _) in &tenants {
        let event = format!("{id}-after");
        assert_eq!(
            api.post_event(id, token, company_event(&event)).await,
            StatusCode::ACCEPTED
        );
        accepted.entry(id.clone()).or_default().push(event);
    }

    // Every accepted event ends processed (in Salesforce) or in the DLQ.
    for (id, token, _, _) in &tenants {
        for event in &accepted[id] {
            let path = format!("/v1/installations/{id}/events/{event}");
            let mut state = serde_json::Value::Null;
            for _ in 0..600 {
                state =
                    api.call(Method::GET, &path, Some(token), &[], None).await.2["status"].clone();
                if state == "processed" || state == "dlq" {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(
                state == "processed" || state == "dlq",
                "{id} {event}: {state}"
            );
        }
    }
    // Every seeded Account reached its installation's sink or — refused by the plugin,
    // as those without Acme's key are — the DLQ with its reason; and each backfill
    // resumed rather than starting over (at most one page read twice, plus the Accounts
    // outbound wrote, which incremental passes deliver). One listing of the whole DLQ
    // per look, grouped by installation.
    let seeded: Vec<BTreeSet<String>> = tenants
        .iter()
        .map(|(_, _, org, _)| {
            org.query(&format!("SELECT Id FROM Account WHERE {KEY} = null"), false)
                .expect("query")
                .iter()
                .filter_map(|r| r["Id"].as_str().map(str::to_owned))
                .collect()
        })
        .collect();
    let mut handled: Vec<(usize, BTreeSet<String>)> = Vec::new();
    for _ in 0..240 {
        let dlq = api
            .admin(Method::GET, "/v1/admin/dlq?status=all", &[], None)
            .await
            .2;
        let mut by_installation: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for entry in dlq["entries"].as_array().into_iter().flatten() {
            if let (Some(installation), Some(record)) = (
                entry["installation"].as_str(),
                entry["original"]["record"]["Id"].as_str(),
            ) {
                by_installation
                    .entry(installation.to_owned())
                    .or_default()
                    .push(record.to_owned());
            }
        }
        handled = tenants
            .iter()
            .map(|(id, _, _, sink)| {
                let (sunk, mut seen) = sink_ids(sink);
                let dead = by_installation.remove(id).unwrap_or_default();
                let count = sunk + dead.len();
                seen.extend(dead);
                (count, seen)
            })
            .collect();
        if seeded
            .iter()
            .zip(&handled)
            .all(|(s, (_, seen))| s.is_subset(seen))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for (((id, _, org, _), seeded), (count, seen)) in tenants.iter().zip(&seeded).zip(&handled) {
        let missing = seeded.difference(seen).count();
        assert_eq!(
            missing, 0,
            "{id}: {missing} Accounts reached neither the sink nor the DLQ"
        );
        // Once each: the external id is unique, so a second create would have failed.
        let written = org
            .query(
                &format!("SELECT Id, {KEY} FROM Account WHERE {KEY} != null"),
                false,
            )
            .expect("query");
        let keys: BTreeSet<&str> = written.iter().filter_map(|r| r[KEY].as_str()).collect();
        assert_eq!(keys.len(), written.len(), "{id}: no record created twice");
        assert!(
            *count <= ACCOUNTS + PAGE + 3 * written.len(),
            "{id}: {count} deliveries and DLQ entries for {} Accounts: the backfill started over",
            seeded.len()
        );
    }
}
