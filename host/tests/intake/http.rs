use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::{INSTALLATION, all_events, db_path, event, events_url, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_events_are_durable_and_ordered() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_path(&dir);
    let server = start(&db).await;
    let client = crate::common::client();
    let url = events_url(&server, INSTALLATION);

    let response = client
        .post(&url)
        .json(&json!({"events": [event("e1"), event("e2")]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"accepted": ["e1", "e2"], "duplicates": []}));

    // A bare array is accepted too.
    let response = client
        .post(&url)
        .json(&json!([event("e3")]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    let status: Value = client
        .get(format!("{url}/e2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "accepted");

    server.stop().await.unwrap();
    let events = all_events(&db, INSTALLATION);
    let ids: Vec<&str> = events.iter().map(|e| e.event.id.as_str()).collect();
    assert_eq!(ids, ["e1", "e2", "e3"]);
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(events[0].event.record["name"], "Acme Corp");
    assert_eq!(
        events[0].event.occurred_at.to_string(),
        "2026-01-01T00:00:00Z"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_event_id_is_accepted_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_path(&dir);
    let server = start(&db).await;
    let client = crate::common::client();
    let url = events_url(&server, INSTALLATION);

    let first: Value = client
        .post(&url)
        .json(&json!({"events": [event("a"), event("b")]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first, json!({"accepted": ["a", "b"], "duplicates": []}));
    let response = client
        .post(&url)
        .json(&json!({"events": [event("b"), event("c"), event("c")]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let second: Value = response.json().await.unwrap();
    assert_eq!(second, json!({"accepted": ["c"], "duplicates": ["b", "c"]}));

    // The same id under another installation is a different event.
    let other: Value = client
        .post(events_url(&server, "globex"))
        .json(&json!([event("a")]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(other, json!({"accepted": ["a"], "duplicates": []}));

    server.stop().await.unwrap();
    let ids: Vec<String> = all_events(&db, INSTALLATION)
        .into_iter()
        .map(|e| e.event.id)
        .collect();
    assert_eq!(ids, ["a", "b", "c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_gets_413_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_path(&dir);
    let server = start(&db).await;
    let client = crate::common::client();
    let url = events_url(&server, INSTALLATION);
    client
        .post(&url)
        .json(&json!([event("kept")]))
        .send()
        .await
        .unwrap();

    let mut big = event("big");
    big["record"]["notes"] = json!("x".repeat(300 * 1024));
    let response = client.post(&url).json(&json!([big])).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "payload_too_large");

    // Without Content-Length (chunked), the limit holds while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..40).map(|_| Ok(vec![b' '; 10 * 1024])).collect();
    let response = client
        .post(&url)
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Just under the limit is fine.
    let mut fits = event("fits");
    fits["record"]["notes"] = json!("x".repeat(290 * 1024));
    let response = client.post(&url).json(&json!([fits])).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    server.stop().await.unwrap();
    let ids: Vec<String> = all_events(&db, INSTALLATION)
        .into_iter()
        .map(|e| e.event.id)
        .collect();
    assert_eq!(ids, ["kept", "fits"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_400_naming_the_event_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_path(&dir);
    let server = start(&db).await;
    let client = crate::common::client();
    let url = events_url(&server, INSTALLATION);

    let post = |body: String| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let response = client
                .post(&url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap())
        }
    };

    let (status, body) = post("{\"events\": [".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "malformed_json");
    assert!(
        body["message"].as_str().unwrap().contains("line 1"),
        "{body}"
    );

    let mut missing = event("m");
    missing.as_object_mut().unwrap().remove("occurred_at");
    let (status, body) = post(json!([event("ok"), missing]).to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["index"], 1);
    assert_eq!(body["field"], "occurred_at");
    assert_eq!(
        body["message"],
        "events[1].occurred_at: missing required field"
    );

    let mut wrong = event("w");
    wrong["operation"] = json!("merge");
    let (status, body) = post(json!({"events": [wrong]}).to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "operation");
    assert!(body["message"].as_str().unwrap().contains("\"merge\""));

    let mut bad_time = event("t");
    bad_time["occurred_at"] = json!("yesterday");
    let (_, body) = post(json!([bad_time]).to_string()).await;
    assert_eq!(body["field"], "occurred_at");

    let mut bad_record = event("r");
    bad_record["record"] = json!([1, 2]);
    let (_, body) = post(json!([bad_record]).to_string()).await;
    assert_eq!(
        body["message"],
        "events[0].record: expected an object, got an array"
    );

    let (status, body) = post(json!({"evts": []}).to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "events");

    let (status, _) = post("[]".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    server.stop().await.unwrap();
    // A batch with a bad event is rejected whole: "ok" was not stored.
    assert!(all_events(&db, INSTALLATION).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_installation_gets_404() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_path(&dir);
    let server = start(&db).await;
    let client = crate::common::client();
    let response = client
        .post(events_url(&server, "initech"))
        .json(&json!([event("e")]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "unknown_installation");

    let response = client
        .get(format!("{}/nope", events_url(&server, INSTALLATION)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    let metrics = client
        .get(format!("http://{}/metrics", server.local_addr()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("weft_intake_requests_total{installation=\"acme\"} 0"));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_posters_all_land_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_path(&dir);
    let server = start(&db).await;
    let client = crate::common::client();
    let url = events_url(&server, INSTALLATION);

    let posters = 16;
    let per_poster = 25;
    let mut tasks = Vec::new();
    for p in 0..posters {
        let client = client.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_poster {
                // Every poster also repeats its neighbour's first id: duplicates across
                // concurrent requests in one group commit must still be caught.
                let batch = json!([
                    event(&format!("p{p}-{i}")),
                    event(&format!("p{}-0", (p + 1) % posters))
                ]);
                let response = client.post(&url).json(&batch).send().await.unwrap();
                assert_eq!(response.status(), StatusCode::ACCEPTED);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    server.stop().await.unwrap();

    let events = all_events(&db, INSTALLATION);
    let ids: HashSet<&str> = events.iter().map(|e| e.event.id.as_str()).collect();
    assert_eq!(events.len(), posters * per_poster);
    assert_eq!(ids.len(), posters * per_poster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_json_gets_415() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_path(&dir);
    let server = start(&db).await;
    let client = crate::common::client();
    let url = events_url(&server, INSTALLATION);
    let body = json!([event("typed")]).to_string();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut request = client.post(&url).body(body.clone());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}"
        );
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["error"], "unsupported_media_type");
    }
    // JSON with a charset, and a structured +json type, are JSON.
    for content_type in [
        "application/json; charset=utf-8",
        "application/vnd.weft+json",
    ] {
        let response = client
            .post(&url)
            .header("content-type", content_type)
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED, "{content_type}");
    }
    server.stop().await.unwrap();
    assert_eq!(all_events(&db, INSTALLATION).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_event_id_with_different_content_gets_409() {
    let dir = tempfile::tempdir().unwrap();
    let db = db_path(&dir);
    let server = start(&db).await;
    let client = crate::common::client();
    let url = events_url(&server, INSTALLATION);
    let post = |body: Value| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let response = client.post(&url).json(&body).send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, _) = post(json!([event("a")])).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let mut changed = event("a");
    changed["record"]["name"] = json!("Not Acme");
    let (status, body) = post(json!([changed, event("d")])).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "event_id_conflict");
    assert_eq!(body["conflicts"], json!(["a"]));
    assert_eq!(body["accepted"], json!(["d"]));

    // The same content again is still a plain duplicate; key order does not matter.
    let reordered: Value = serde_json::from_str(
        r#"[{"record": {"employees": 42, "name": "Acme Corp", "id": "c-a"},
             "occurred_at": "2026-01-01T00:00:00Z", "operation": "upsert",
             "object": "company", "id": "a"}]"#,
    )
    .unwrap();
    let (status, body) = post(reordered).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body, json!({"accepted": [], "duplicates": ["a"]}));

    // Within one batch, the first content wins and the second is the conflict.
    let mut second = event("x");
    second["operation"] = json!("delete");
    let (status, body) = post(json!([event("x"), second])).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["accepted"], json!(["x"]));
    assert_eq!(body["conflicts"], json!(["x"]));

    server.stop().await.unwrap();
    let events = all_events(&db, INSTALLATION);
    let stored: Vec<(&str, &Value)> = events
        .iter()
        .map(|e| (e.event.id.as_str(), &e.event.record["name"]))
        .collect();
    assert_eq!(
        stored,
        [
            ("a", &json!("Acme Corp")),
            ("d", &json!("Acme Corp")),
            ("x", &json!("Acme Corp"))
        ]
    );
    assert_eq!(events[2].event.operation, weft::store::Operation::Upsert);
}
