//! Daily allocation, limit header, concurrency cap, injected faults.

use crate::common::{small, start};
use serde_json::json;
use std::time::Duration;
use weft_emulator::{EmulatorConfig, FaultConfig};

#[tokio::test]
async fn daily_allocation_is_counted_reported_and_enforced() {
    let (org, api) = start(EmulatorConfig {
        api_daily_max: 5,
        other_integrations_per_day: 2,
        ..small()
    })
    .await;
    let r = api.get("limits").await;
    assert_eq!(r.header("sforce-limit-info"), Some("api-usage=3/5"));
    assert_eq!(r.body["DailyApiRequests"]["Remaining"], 2, "{}", r.text);
    assert_eq!(
        api.get("limits").await.header("sforce-limit-info"),
        Some("api-usage=4/5")
    );
    assert_eq!(api.get("limits").await.status, 200);
    let r = api.get("limits").await;
    assert_eq!(
        (r.status.as_u16(), r.error_code()),
        (403, "REQUEST_LIMIT_EXCEEDED")
    );
    assert_eq!(r.body[0]["message"], "TotalRequests Limit exceeded.");
    assert_eq!(org.stats().limit_rejections, 1);
    // A simulated day later the window has rolled over.
    org.advance_clock(Duration::from_secs(86_400));
    assert_eq!(
        api.get("limits").await.header("sforce-limit-info"),
        Some("api-usage=3/5")
    );
}

#[tokio::test]
async fn clock_scale_rolls_the_window_in_real_seconds() {
    // 86,400x: one simulated day per real second.
    let (org, api) = start(EmulatorConfig {
        api_daily_max: 2,
        clock_scale: 86_400.0,
        ..small()
    })
    .await;
    assert_eq!(api.get("limits").await.status, 200);
    assert_eq!(api.get("limits").await.status, 200);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(api.get("limits").await.status, 200);
    assert!(org.api_usage().0 <= 2);
}

#[tokio::test]
async fn injected_faults_fire_and_are_counted() {
    let (org, api) = start(small()).await;
    org.set_faults(FaultConfig {
        error_503_rate: 1.0,
        ..Default::default()
    });
    let r = api.get("limits").await;
    assert_eq!(
        (r.status.as_u16(), r.error_code()),
        (503, "SERVER_UNAVAILABLE")
    );
    org.set_faults(FaultConfig {
        error_429_rate: 1.0,
        retry_after_secs: 7,
        ..Default::default()
    });
    let r = api.get("limits").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("7"));
    org.set_faults(FaultConfig {
        error_429_rate: 1.0,
        retry_after_secs: 7,
        retry_after_http_date: true,
        ..Default::default()
    });
    let r = api.get("limits").await;
    assert_eq!(r.status, 429);
    let parse = |h: &str| {
        r.header(h)
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .unwrap_or_else(|| panic!("{h} is an HTTP-date: {:?}", r.header(h)))
    };
    let ahead = parse("retry-after")
        .duration_since(parse("date"))
        .unwrap_or_default();
    assert!((6..=8).contains(&ahead.as_secs()), "{ahead:?}");
    org.set_faults(FaultConfig {
        error_420_rate: 1.0,
        ..Default::default()
    });
    assert_eq!(api.get("limits").await.status, 420);
    org.set_faults(FaultConfig {
        reset_rate: 1.0,
        ..Default::default()
    });
    let err = api
        .http
        .get(api.url("limits"))
        .bearer_auth(&api.token)
        .send()
        .await;
    assert!(err.is_err(), "connection reset");
    org.set_faults(FaultConfig {
        slow_rate: 1.0,
        slow_ms: 300,
        ..Default::default()
    });
    let t = std::time::Instant::now();
    assert_eq!(api.get("limits").await.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    org.set_faults(FaultConfig {
        invalid_session_rate: 1.0,
        ..Default::default()
    });
    assert_eq!(api.get("limits").await.error_code(), "INVALID_SESSION_ID");

    org.set_faults(FaultConfig {
        lock_row_rate: 1.0,
        ..Default::default()
    });
    let r = api
        .post(
            "composite/sobjects",
            json!({"records": [{"attributes": {"type": "Account"}, "Name": "locked"}]}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body[0]["errors"][0]["statusCode"], "UNABLE_TO_LOCK_ROW");

    org.set_faults(FaultConfig {
        bulk_fail_rate: 1.0,
        ..Default::default()
    });
    let r = api
        .post(
            "jobs/query",
            json!({"operation": "query", "query": "SELECT Id FROM Account"}),
        )
        .await;
    let id = r.body["id"].as_str().unwrap_or_default().to_string();
    let mut state = String::new();
    for _ in 0..100 {
        let r = api.get(&format!("jobs/query/{id}")).await;
        state = r.body["state"].as_str().unwrap_or_default().to_string();
        if state == "Failed" {
            assert!(r.body["errorMessage"].is_string());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(state, "Failed");
    org.set_faults(FaultConfig::default());

    let s = org.stats();
    for k in [
        "503",
        "429",
        "420",
        "reset",
        "slow",
        "401",
        "lock_row",
        "bulk_failed",
    ] {
        assert!(
            s.faults_injected.get(k).copied().unwrap_or(0) >= 1,
            "{k}: {:?}",
            s.faults_injected
        );
    }
    // Admin endpoint mirrors it.
    let r = reqwest::get(format!("{}/__admin/faults", api.base))
        .await
        .expect("admin");
    assert_eq!(
        r.json::<serde_json::Value>()
            .await
            .ok()
            .map(|v| v["error_503_rate"].clone()),
        Some(json!(0.0))
    );
}

#[tokio::test]
async fn concurrent_long_running_requests_are_capped() {
    let cfg = EmulatorConfig {
        concurrent_long_running_max: 2,
        long_running_threshold: Duration::from_millis(100),
        faults: FaultConfig {
            slow_rate: 1.0,
            slow_ms: 3_000,
            ..Default::default()
        },
        ..small()
    };
    let (org, api) = start(cfg).await;
    let api = std::sync::Arc::new(api);
    let mut slow = Vec::new();
    for _ in 0..2 {
        let a = api.clone();
        slow.push(tokio::spawn(async move { a.get("limits").await.status }));
    }
    // Wait until both slow requests are in flight and past the threshold (generous margin
    // for a loaded CI machine).
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let s = org.stats();
        if s.faults_injected.get("slow").copied().unwrap_or(0) >= 2 {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    org.set_faults(FaultConfig::default());
    let r = api.get("limits").await;
    assert_eq!(r.error_code(), "REQUEST_LIMIT_EXCEEDED");
    assert!(
        r.body[0]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("ConcurrentRequests"))
    );
    for h in slow {
        assert_eq!(h.await.ok().map(|s| s.as_u16()), Some(200));
    }
    assert_eq!(api.get("limits").await.status, 200);
    assert_eq!(org.stats().concurrency_rejections, 1);
}
