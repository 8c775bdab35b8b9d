//! The HTTP sink against a real endpoint that fails some requests: every record arrives,
//! each carrying its idempotency key, and retried batches carry the same batch key.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;

use crate::common::{inbound, org, org_rows, write_config};

/// Serves `app` on a free loopback port.
async fn serve(app: Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[derive(Default)]
struct Endpoint {
    requests: usize,
    /// Batch key → bodies received with it.
    batches: HashMap<String, usize>,
    records: Vec<Value>,
}

async fn ingest(
    State(endpoint): State<Arc<Mutex<Endpoint>>>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let mut e = endpoint.lock().expect("endpoint");
    e.requests += 1;
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    *e.batches.entry(key).or_default() += 1;
    // Every third request fails as a deploy or an overloaded endpoint would.
    if e.requests % 3 == 0 {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let body: Value = serde_json::from_str(&body).expect("json body");
    assert_eq!(body["installation"], "acme");
    e.records
        .extend(body["records"].as_array().expect("records").iter().cloned());
    StatusCode::OK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_reaches_a_flaky_endpoint_once_accepted() {
    let org = org(1_000, 0).await;
    let endpoint = Arc::new(Mutex::new(Endpoint::default()));
    let app = Router::new()
        .route("/ingest", post(ingest))
        .with_state(endpoint.clone());
    let addr = serve(app).await;

    let dir = tempfile::tempdir().expect("dir");
    let body = format!(
        "[inbound]\nbulk_threshold = 100000\npage_size = 500\n\n[inbound.objects.Account]\nfields = [\"Name\"]\n\n[inbound.sink]\nkind = \"http\"\nurl = \"http://{addr}/ingest\"\nbatch = 150\n"
    );
    let config = write_config(dir.path(), &org, "golden-dedup", "", &body);
    let mut sync = inbound(&config, &dir.path().join("weft.redb"));
    sync.pass().await.expect("pass");

    let e = endpoint.lock().expect("endpoint");
    let live = org_rows(&org, "Account", false);
    let ids: HashSet<&str> = e
        .records
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), live.len(), "every record arrived");
    assert_eq!(e.records.len(), live.len(), "each accepted once");
    for r in &e.records {
        let id = r["id"].as_str().expect("id");
        let key = format!("acme/Account/{id}/{}", live[id]);
        assert_eq!(r["idempotency_key"].as_str(), Some(key.as_str()));
    }
    let retried = e.batches.values().filter(|n| **n > 1).count();
    assert!(retried > 0, "some batches were retried under the same key");
}

/// When the endpoint's first request came and when its second did.
#[derive(Default)]
struct Throttled {
    arrivals: Vec<std::time::Instant>,
}

/// Answers the first request `429` with `Retry-After` as an HTTP-date two seconds ahead (a
/// form RFC 9110 allows and proxies send), then accepts everything.
async fn throttled(State(endpoint): State<Arc<Mutex<Throttled>>>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut e = endpoint.lock().expect("endpoint");
    e.arrivals.push(std::time::Instant::now());
    if e.arrivals.len() > 1 {
        return StatusCode::OK.into_response();
    }
    let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(2);
    let date = at
        .to_zoned(jiff::tz::TimeZone::UTC)
        .strftime("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    (StatusCode::TOO_MANY_REQUESTS, [("retry-after", date)]).into_response()
}

/// The sink reads `Retry-After` as the transport does (one parser): an HTTP-date is a wait
/// until then, and the wait is at least that long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_waits_out_a_retry_after_date() {
    let org = org(5, 0).await;
    let endpoint = Arc::new(Mutex::new(Throttled::default()));
    let app = Router::new()
        .route("/ingest", post(throttled))
        .with_state(endpoint.clone());
    let addr = serve(app).await;

    let dir = tempfile::tempdir().expect("dir");
    let body = format!(
        "[inbound.objects.Account]\nfields = [\"Name\"]\n\n[inbound.sink]\nkind = \"http\"\nurl = \"http://{addr}/ingest\"\n"
    );
    let config = write_config(dir.path(), &org, "golden-dedup", "", &body);
    let mut sync = inbound(&config, &dir.path().join("weft.redb"));
    sync.pass().await.expect("pass");

    let e = endpoint.lock().expect("endpoint");
    assert!(e.arrivals.len() >= 2, "the batch was retried");
    // The date has whole seconds, so "two seconds ahead" is at least one second ahead.
    let waited = e.arrivals[1] - e.arrivals[0];
    assert!(
        waited >= std::time::Duration::from_millis(1_000),
        "retried after {waited:?}, before the date Retry-After named"
    );
}

/// Regression: an endpoint answering `503` with `Retry-After: 3600` held its sync — and the
/// host's stop — for an hour per attempt. Now a stop ends the wait at once; the page was
/// not delivered as far as the sync knows, so it resumes from the checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_ends_the_wait_for_a_busy_endpoint() {
    use weft::inbound::InboundError;
    use weft::runtime::scheduler::{Scheduler, SchedulerConfig};

    let org = org(5, 0).await;
    let hits = Arc::new(Mutex::new(0usize));
    let busy = |State(hits): State<Arc<Mutex<usize>>>| async move {
        *hits.lock().expect("hits") += 1;
        (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "3600")])
    };
    let app = Router::new()
        .route("/ingest", post(busy))
        .with_state(hits.clone());
    let addr = serve(app).await;

    let dir = tempfile::tempdir().expect("dir");
    let body = format!(
        "[inbound.objects.Account]\nfields = [\"Name\"]\n\n[inbound.sink]\nkind = \"http\"\nurl = \"http://{addr}/ingest\"\n"
    );
    let config = write_config(dir.path(), &org, "golden-dedup", "", &body);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut sync = inbound(&config, &dir.path().join("weft.redb"))
        .scheduled(Scheduler::new(SchedulerConfig::default()), stopping);
    let pass = tokio::spawn(async move { sync.pass().await });
    while *hits.lock().expect("hits") == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    stop.send(true).expect("the sync listens");
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), pass)
        .await
        .expect("the pass ends at the stop, not after the endpoint's hour")
        .expect("task");
    assert!(matches!(ended, Err(InboundError::Stopped)), "{ended:?}");
    assert_eq!(*hits.lock().expect("hits"), 1, "no retry after the stop");
}
