//! Fairness under `weft serve`: one tenant backfills a million-row org while 50 small
//! tenants, each on its own org, post product events. The scheduler gives the small
//! tenants' outbound rounds their turns between the big backfill's pages, so their
//! event-to-Salesforce latency stays low while the backfill runs. Measured from each
//! event's `occurred_at` (stamped when posted) to its audit entry (written once
//! Salesforce answered); asserted loosely (p99 under 10 s) — the precise figures belong
//! to the `service_load` benchmark.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use weft_emulator::{Emulator, EmulatorConfig, FaultConfig};

use crate::common::acme_fields;
use crate::kill::company_event;
use crate::service::{Api, outbound_document, spawn_service};

const BIG_ROWS: usize = 1_000_000;
const SMALL: usize = 50;
const ROUNDS: usize = 8;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_tenants_events_reach_salesforce_promptly_while_a_big_tenant_backfills() {
    let big_org = Emulator::start(EmulatorConfig {
        accounts: BIG_ROWS,
        contacts: 0,
        leads: 0,
        opportunities: 0,
        api_daily_max: 50_000_000,
        // A real org's round trip, on every request.
        faults: FaultConfig {
            slow_rate: 1.0,
            slow_ms: 40,
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .expect("big org");
    let small_orgs = Emulator::start(EmulatorConfig {
        orgs: SMALL,
        accounts: 5,
        contacts: 0,
        leads: 0,
        opportunities: 0,
        api_daily_max: 50_000_000,
        ..Default::default()
    })
    .await
    .expect("small orgs");
    let dir = tempfile::tempdir().expect("tempdir");
    let host = spawn_service(
        &dir.path().join("weft.redb"),
        dir.path(),
        &dir.path().join("log"),
    );
    let mut api = Api::new(host.addr);

    let big_secret = dir.path().join("big-secret");
    std::fs::write(&big_secret, &big_org.credentials().client_secret).expect("secret");
    let big = json!({
        "id": "big",
        "salesforce": {
            "login_url": big_org.base_url(),
            "auth": "client_credentials",
            "client_id": big_org.credentials().client_id,
            "client_secret_file": big_secret,
        },
        "throttle": {"schedule": {"time_zone": "UTC", "default_ceiling_percent": 100.0}},
        "plugin": {"component": weft_tests::plugin_wasm("golden-dedup")},
        "inbound": {
            // REST pages of 2,000, each answered after 40 ms (below): the backfill takes at
            // least 20 s however fast the host is, and outlasts the posting below.
            "objects": {"Account": {"fields": ["Name"], "api": "rest"}},
            "sink": {"kind": "ndjson", "dir": dir.path().join("big-out")},
        },
    });
    let (status, _, body) = api
        .admin(Method::POST, "/v1/installations", &[], Some(big))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let big_token = api.token("big").await;
    let big_progress = |status: &Value| {
        let backfill = &status["inbound"]["Account"]["backfill"];
        (
            backfill["done"].as_u64().unwrap_or(0),
            backfill["finished"].as_bool().unwrap_or(false),
        )
    };
    let mut started = false;
    for _ in 0..600 {
        let (_, _, status) = api
            .call(
                Method::GET,
                "/v1/installations/big/status",
                Some(&big_token),
                &[],
                None,
            )
            .await;
        if big_progress(&status).0 > 0 {
            started = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(started, "the big backfill delivered its first page");

    let mut tokens = Vec::new();
    for k in 0..SMALL {
        let org = small_orgs.org(k).expect("org");
        acme_fields(&org);
        let secret = dir.path().join(format!("secret-{k}"));
        std::fs::write(&secret, &org.credentials().client_secret).expect("secret");
        let id = format!("small-{k}");
        let document = outbound_document(
            &id,
            org.instance_url(),
            &org.credentials().client_id,
            &secret,
        );
        let (status, _, body) = api
            .admin(Method::POST, "/v1/installations", &[], Some(document))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{id}: {body}");
        tokens.push((id.clone(), api.token(&id).await));
    }

    let mut posted = std::collections::HashMap::new();
    for round in 0..ROUNDS {
        for (id, token) in &tokens {
            let event_id = format!("{id}-r{round}");
            let event = company_event(&event_id);
            let occurred: jiff::Timestamp = event["occurred_at"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .expect("occurred_at");
            assert_eq!(api.post_event(id, token, event).await, StatusCode::ACCEPTED);
            posted.insert(event_id, occurred);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (_, _, status) = api
        .call(
            Method::GET,
            "/v1/installations/big/status",
            Some(&big_token),
            &[],
            None,
        )
        .await;
    let (done_by_then, finished) = big_progress(&status);
    assert!(
        !finished,
        "the big backfill ran the whole time the small tenants posted ({done_by_then} rows by then)"
    );

    let mut latencies = Vec::new();
    for (id, token) in &tokens {
        let path = format!("/v1/installations/{id}/audit");
        let mut entries = Vec::new();
        for _ in 0..600 {
            let (_, _, audit) = api.call(Method::GET, &path, Some(token), &[], None).await;
            entries = audit["entries"].as_array().cloned().unwrap_or_default();
            if entries.len() >= ROUNDS {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            entries.len(),
            ROUNDS,
            "{id}: every event reached Salesforce"
        );
        for entry in &entries {
            let event_id = entry["event_id"].as_str().expect("event id");
            let (_, _, status) = api
                .call(
                    Method::GET,
                    &format!("/v1/installations/{id}/events/{event_id}"),
                    Some(token),
                    &[],
                    None,
                )
                .await;
            assert_eq!(status["status"], "processed", "{status}");
            let written: jiff::Timestamp = entry["at"].as_str().expect("at").parse().expect("ts");
            latencies.push((written, event_id.to_owned()));
        }
    }
    // `occurred_at` is stamped as the event is posted; the audit stamp once Salesforce
    // has it.
    let mut seconds: Vec<f64> = latencies
        .iter()
        .map(|(written, event_id)| written.duration_since(posted[event_id]).as_secs_f64())
        .collect();
    seconds.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&seconds, 0.5), percentile(&seconds, 0.99));
    eprintln!(
        "fairness: {} events of {SMALL} small tenants while the big one backfilled ({done_by_then} of {BIG_ROWS} rows by the last post): event-to-Salesforce p50 {p50:.2} s, p99 {p99:.2} s",
        seconds.len()
    );
    assert!(p99 < 10.0, "p99 {p99:.2} s");
}
