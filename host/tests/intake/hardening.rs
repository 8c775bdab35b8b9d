//! Regressions of the hardening issue (14): who may reach an installation's routes, what
//! intake refuses so that the store can always read back what it accepted, and a DLQ that
//! one undecodable entry cannot poison.

use jiff::Timestamp;
use reqwest::StatusCode;
use serde_json::{Map, Value, json};
use weft::store::{
    DlqOriginal, NewDlqEntry, Operation, OutboundEvent, RedbStore, Stage, Store, StoreError,
    StoreExt,
};

use crate::common::{
    ACME_TOKEN, GLOBEX_TOKEN, INSTALLATION, client, client_with, db_path, event, events_url, start,
};
use crate::dlq::weft;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_intake_needs_the_installations_own_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&db_path(&dir)).await;
    let acme = events_url(&server, INSTALLATION);
    let globex = events_url(&server, "globex");
    let unknown = events_url(&server, "initech");
    let batch = json!([event("e1")]);

    // No token at all, or one that is nobody's: 401, whatever the id.
    for url in [&acme, &globex, &unknown] {
        let anonymous = reqwest::Client::new()
            .post(url)
            .json(&batch)
            .send()
            .await
            .unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED, "{url}");
        assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
        let forged = client_with("weft_not_anyones_token")
            .post(url)
            .json(&batch)
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), StatusCode::UNAUTHORIZED, "{url}");
    }

    // A's token on B's routes answers exactly as an id that does not exist.
    let acme_client = client_with(ACME_TOKEN);
    let on_unknown = acme_client
        .post(&unknown)
        .json(&batch)
        .send()
        .await
        .unwrap();
    let on_globex = acme_client.post(&globex).json(&batch).send().await.unwrap();
    assert_eq!(on_globex.status(), StatusCode::NOT_FOUND);
    assert_eq!(on_unknown.status(), StatusCode::NOT_FOUND);
    let unknown_body: Value = on_unknown.json().await.unwrap();
    let globex_body: Value = on_globex.json().await.unwrap();
    assert_eq!(
        globex_body["error"], unknown_body["error"],
        "another installation looks like no installation"
    );
    let status_of_globex = acme_client
        .get(format!("{globex}/e1"))
        .send()
        .await
        .unwrap();
    assert_eq!(status_of_globex.status(), StatusCode::NOT_FOUND);

    // Each installation's own token reaches its own routes; the operator's reaches all.
    let accepted = acme_client.post(&acme).json(&batch).send().await.unwrap();
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let status: Value = acme_client
        .get(format!("{acme}/e1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "accepted");
    let globex_own = client_with(GLOBEX_TOKEN)
        .post(&globex)
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(globex_own.status(), StatusCode::ACCEPTED);
    let status_by_operator = client().get(format!("{globex}/e1")).send().await.unwrap();
    assert_eq!(status_by_operator.status(), StatusCode::OK);

    // Metrics are the operator's; only the health check is open.
    let base = format!("http://{}", server.local_addr());
    let metrics = acme_client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), StatusCode::UNAUTHORIZED);
    let metrics = client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let health = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    server.stop().await.unwrap();
}

/// An event whose record has `fields` distinct (short) fields.
fn wide_event(id: &str, fields: usize) -> Value {
    let record: Map<String, Value> = (0..fields).map(|i| (format!("{i:x}"), json!(0))).collect();
    json!({"id": id, "object": "company", "operation": "upsert",
           "occurred_at": "2026-01-01T00:00:00Z", "record": record})
}

/// A value nested `levels` objects deep (`levels` ≥ 1).
fn nested(levels: usize) -> Value {
    (1..levels).fold(json!({"leaf": true}), |inner, _| json!({"inner": inner}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_14_intake_refuses_events_wider_or_deeper_than_an_sobject() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_path(&dir);
    let server = start(&db).await;
    let client = client();
    let url = events_url(&server, INSTALLATION);

    // 28,000 distinct fields fit under the body cap but no sObject has them.
    let wide = client
        .post(&url)
        .json(&json!([event("ok-1"), wide_event("wide", 28_000)]))
        .send()
        .await
        .unwrap();
    assert_eq!(wide.status(), StatusCode::BAD_REQUEST);
    let body: Value = wide.json().await.unwrap();
    assert_eq!(body["index"], 1);
    assert_eq!(body["field"], "record");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with("events[1].record: has 28000 fields; the limit is 1000"),
        "{message}"
    );

    // Nesting the store could not read back is refused; what it can is kept whole.
    let deep = {
        let mut record = Map::new();
        record.insert("id".into(), json!("c-1"));
        record.insert("tree".into(), nested(122));
        json!([{"id": "deep", "object": "company", "operation": "upsert",
                "occurred_at": "2026-01-01T00:00:00Z", "record": record}])
    };
    let refused = client.post(&url).json(&deep).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("nests 123 levels deep; the limit is 32"),
        "{body}"
    );
    let mut record = Map::new();
    record.insert("tree".into(), nested(31));
    let fits = json!([{"id": "fits", "object": "company", "operation": "upsert",
                       "occurred_at": "2026-01-01T00:00:00Z", "record": record}]);
    let accepted = client.post(&url).json(&fits).send().await.unwrap();
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);
    let at_the_limit = client.post(&url).json(&[wide_event("1000", 1_000)]).send();
    assert_eq!(at_the_limit.await.unwrap().status(), StatusCode::ACCEPTED);
    server.stop().await.unwrap();

    // What was accepted reads back, and so does its DLQ entry, which wraps it deeper.
    let store = RedbStore::open(&db).unwrap();
    let events = store.events(INSTALLATION, None, 10).unwrap();
    let kept: Vec<&str> = events.iter().map(|e| e.event.id.as_str()).collect();
    assert_eq!(kept, ["fits", "1000"]);
    let entry = store
        .put_dlq(&dead(INSTALLATION, events[0].event.clone()))
        .unwrap();
    assert!(store.dlq_get(entry).unwrap().is_some());
}

fn dead(installation: &str, event: OutboundEvent) -> NewDlqEntry {
    NewDlqEntry {
        installation: installation.into(),
        original: DlqOriginal::Event { event },
        stage: Stage::Map,
        error_code: "MAPPING_REJECTED".into(),
        message: "a company needs a name".into(),
        fields: Vec::new(),
        at: Timestamp::now(),
    }
}

fn event_with(id: &str, record: Map<String, Value>) -> OutboundEvent {
    OutboundEvent {
        id: id.into(),
        object: "company".into(),
        operation: Operation::Upsert,
        occurred_at: "2026-01-01T00:00:00Z".parse().unwrap(),
        record,
    }
}

#[test]
fn issue_14_one_undecodable_dlq_entry_never_hides_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_path(&dir);
    let (poisoned, healthy) = {
        let store = RedbStore::open(&db).unwrap();
        // What an older host let in: a record nested deeper than the decoder reads once
        // the DLQ entry wraps it (writing has no depth limit, reading does).
        let mut deep = Map::new();
        deep.insert("tree".into(), nested(127));
        let poisoned = store
            .put_dlq(&dead("globex", event_with("deep", deep)))
            .unwrap();
        let healthy = store
            .put_dlq(&dead(INSTALLATION, event_with("fine", Map::new())))
            .unwrap();
        (poisoned, healthy)
    };

    let store = RedbStore::open(&db).unwrap();
    let listing = store.dlq_list(&Default::default()).unwrap();
    assert_eq!(listing.entries.len(), 1);
    assert_eq!(listing.entries[0].id, healthy);
    assert_eq!(listing.unreadable.len(), 1);
    assert_eq!(listing.unreadable[0].id, poisoned);
    assert_eq!(
        listing.unreadable[0].installation.as_deref(),
        Some("globex")
    );
    let acme_only = store
        .dlq_list(&weft::store::DlqFilter {
            installation: Some(INSTALLATION.into()),
            ..Default::default()
        })
        .unwrap();
    assert!(acme_only.unreadable.is_empty(), "another tenant's entry");
    assert!(matches!(
        store.dlq_get(poisoned),
        Err(StoreError::DlqUnreadable { .. })
    ));
    assert!(matches!(
        store.replay_dlq(poisoned, Timestamp::now()),
        Err(StoreError::DlqUnreadable { .. })
    ));
    drop(store);

    // The CLI, offline: lists both, shows the bad one raw, discards it.
    let list = weft(&db, &["dlq", "list"]);
    assert!(list.status.success(), "{list:?}");
    let lines: Vec<Value> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[1]["id"], poisoned);
    assert!(
        lines[1]["unreadable"]
            .as_str()
            .unwrap()
            .contains("recursion limit")
    );
    let show = weft(&db, &["dlq", "show", &poisoned.to_string()]);
    assert!(show.status.success(), "{show:?}");
    let shown: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert!(shown["raw"].as_str().unwrap().contains("\"inner\""));
    let discard = weft(&db, &["dlq", "discard", &poisoned.to_string()]);
    assert!(discard.status.success(), "{discard:?}");

    let store = RedbStore::open(&db).unwrap();
    let open = store
        .dlq_list(&weft::store::DlqFilter {
            status: Some(weft::store::DlqStatus::Open),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(open.entries.len(), 1);
    assert!(open.unreadable.is_empty(), "the discarded entry is closed");
    // The original was kept byte for byte.
    let raw = String::from_utf8(store.dlq_raw(poisoned).unwrap().unwrap()).unwrap();
    assert_eq!(raw.matches("\"inner\"").count(), 126);
    assert!(raw.contains("\"status\":\"discarded\""));
}
