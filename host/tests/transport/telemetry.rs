//! Breaker, final errors and the status views (JSON, Prometheus, `weft status`).

use std::process::Command;

use weft::salesforce::SalesforceError;
use weft::throttle::{BackoffPolicy, BreakerConfig, GovernorConfig, Project, ScheduleConfig};
use weft_emulator::FaultConfig;

use crate::common::{org, rig_with, roomy};

#[tokio::test]
async fn breaker_opens_in_an_outage_half_opens_and_closes_and_nothing_is_dropped() {
    let org = org(roomy(10)).await;
    let gov = GovernorConfig {
        schedule: ScheduleConfig::constant("UTC", 100.0),
        breaker: BreakerConfig {
            failure_threshold: 3,
            open_for_secs: 20,
            max_open_for_secs: 60,
        },
        backoff: BackoffPolicy {
            max_attempts: 4,
            ..Default::default()
        },
        ..Default::default()
    };
    let r = rig_with(&org, "outage", gov, crate::common::fast_clock(), |_| {});
    r.client
        .limits(Project::Incremental)
        .await
        .expect("healthy");
    org.set_faults(FaultConfig {
        error_503_rate: 1.0,
        ..Default::default()
    });
    // A total outage: the request gets a final typed error after its attempts, never silence.
    match r.client.limits(Project::Incremental).await {
        Err(SalesforceError::RetriesExhausted { attempts, last }) => {
            assert_eq!(attempts, 4);
            assert_eq!(last.error_code(), Some("SERVER_UNAVAILABLE"));
        }
        other => panic!("expected a final error, got {other:?}"),
    }
    org.set_faults(FaultConfig::default());
    r.client
        .limits(Project::Incremental)
        .await
        .expect("recovered through a half-open probe");
    let s = r
        .telemetry
        .installation("outage")
        .status(jiff::Timestamp::now());
    assert!(
        s.throttle_events
            .get("breaker_open:SERVER_UNAVAILABLE")
            .copied()
            .unwrap_or(0)
            >= 1,
        "{:?}",
        s.throttle_events
    );
    assert_eq!(
        s.throttle_events.get("breaker_close:probe_succeeded"),
        Some(&1)
    );
    assert_eq!(s.final_failures, 1);
    assert_eq!(s.throttle.breaker, "closed");
}

#[tokio::test]
async fn status_json_prometheus_and_the_cli_agree() {
    let org = org(roomy(10)).await;
    let r = crate::common::rig(&org, "acme-prod");
    r.client.limits(Project::Incremental).await.expect("limits");
    r.client
        .describe(Project::Outbound, "Account")
        .await
        .expect("describe");
    let text = r.telemetry.render_prometheus();
    assert!(
        text.contains("weft_api_calls_total{installation=\"acme-prod\",kind=\"limits\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("weft_ceiling_ratio{installation=\"acme-prod\"} 1"),
        "{text}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("weft-status.json");
    r.telemetry
        .write_status_file(&path, jiff::Timestamp::now())
        .expect("write status");
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["status", "--file"])
        .arg(&path)
        .output()
        .expect("weft status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let inst = &v["installations"][0];
    assert_eq!(inst["installation"], "acme-prod");
    assert_eq!(inst["api_calls_total"], 2);
    assert_eq!(inst["throttle"]["daily_max"], 50_000_000);
    let out = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["status", "--file"])
        .arg(dir.path().join("missing.json"))
        .output()
        .expect("weft status");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.json"));
}
