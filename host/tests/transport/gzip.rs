//! Request bodies are gzipped (`Content-Encoding: gzip`) once they are large enough. The
//! emulator does not decode compressed request bodies, so this uses a minimal stand-in org
//! that does, and checks the records arrive intact.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{patch, post};
use serde_json::{Value, json};
use weft::salesforce::{ClientConfig, Credentials, SalesforceClient};
use weft::telemetry::Telemetry;
use weft::throttle::{Governor, GovernorConfig, Project, ScheduleConfig};

use crate::upsert::account;

#[tokio::test]
async fn large_bodies_are_gzipped_and_arrive_intact() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let gzipped = Arc::new(AtomicU64::new(0));
    let records_seen = Arc::new(AtomicU64::new(0));
    let app = Router::new()
        .route("/services/oauth2/token", post({
            let base = base.clone();
            move || async move { axum::Json(json!({"access_token": "stand-in", "instance_url": base})) }
        }))
        .route("/services/data/v62.0/composite/sobjects/Account/External_Id__c", patch({
            let (gzipped, seen) = (gzipped.clone(), records_seen.clone());
            move |headers: HeaderMap, body: Bytes| async move {
                let raw = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
                    gzipped.fetch_add(1, Ordering::Relaxed);
                    let mut out = Vec::new();
                    let _ = std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut out);
                    out
                } else {
                    body.to_vec()
                };
                let v: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
                let recs = v["records"].as_array().cloned().unwrap_or_default();
                seen.fetch_add(recs.len() as u64, Ordering::Relaxed);
                let results: Vec<Value> = recs
                    .iter()
                    .map(|r| json!({"id": format!("001{}", r["External_Id__c"].as_str().unwrap_or("")), "success": r["Name"].is_string(), "errors": [], "created": true}))
                    .collect();
                (StatusCode::OK, [("Sforce-Limit-Info", "api-usage=1/100000")], axum::Json(Value::Array(results)))
            }
        }));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let telemetry = Telemetry::new();
    let gov = GovernorConfig {
        schedule: ScheduleConfig::constant("UTC", 100.0),
        ..Default::default()
    };
    let governor = Governor::new(
        gov.validate().expect("valid"),
        crate::common::fast_clock(),
        telemetry.installation("gzip"),
    );
    let cfg = ClientConfig::new(
        "gzip",
        &base,
        Credentials::ClientCredentials {
            client_id: "id".into(),
            client_secret: "secret".into(),
        },
    );
    assert!(cfg.gzip_requests, "on by default");
    let client = SalesforceClient::new(cfg, governor).expect("client");
    let small: Vec<_> = (0..3).map(account).collect();
    let big: Vec<_> = (0..200).map(account).collect();
    let r1 = client
        .upsert_collection(Project::Outbound, "Account", "External_Id__c", &small)
        .await
        .expect("small");
    assert_eq!(
        gzipped.load(Ordering::Relaxed),
        0,
        "a few hundred bytes are sent as they are"
    );
    let r2 = client
        .upsert_collection(Project::Outbound, "Account", "External_Id__c", &big)
        .await
        .expect("big");
    assert_eq!(
        gzipped.load(Ordering::Relaxed),
        1,
        "a 200-record body is gzipped"
    );
    assert!(r1.iter().chain(&r2).all(|r| r.success));
    assert_eq!(r2[199].id.as_deref(), Some("001WEFT-000199"));
    assert_eq!(records_seen.load(Ordering::Relaxed), 203);
    server.abort();
}
