//! Schema evolution, change events and webhook, stats, change generator, TLS.

use crate::common::{small, start};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weft_emulator::{EmulatorConfig, FieldSpec, FieldType, ObjectSpec};

#[tokio::test]
async fn fields_and_objects_added_at_run_time_show_at_once() {
    let (org, api) = start(small()).await;
    assert_eq!(
        api.query("SELECT Score__c FROM Account").await.error_code(),
        "INVALID_FIELD"
    );
    org.add_field(
        "Account",
        &FieldSpec {
            length: Some(10),
            ..FieldSpec::new("Segment__c", FieldType::String)
        },
    )
    .expect("add");
    // Over HTTP too.
    let r = reqwest::Client::new()
        .post(format!("{}/__admin/schema/Account/fields", api.base))
        .json(&json!({"name": "Score__c", "type": "double"}))
        .send()
        .await
        .expect("admin");
    assert_eq!(r.status(), 200);
    let since = [("If-Modified-Since", "Wed, 21 Oct 2015 07:28:00 GMT")];
    let r = api
        .call(
            reqwest::Method::GET,
            "sobjects/Account/describe",
            None,
            &since,
        )
        .await;
    assert_eq!(r.status, 200, "schema changed after 2015");
    let r = api
        .call(
            reqwest::Method::GET,
            "sobjects/Account/describe",
            None,
            &[("If-Modified-Since", "Wed, 21 Oct 2099 07:28:00 GMT")],
        )
        .await;
    assert_eq!(r.status, 304);
    let d = api.get("sobjects/Account/describe").await;
    assert!(d.body["fields"].as_array().is_some_and(|f| {
        f.iter()
            .any(|f| f["name"] == "Score__c" && f["type"] == "double")
    }));
    let r = api.query("SELECT Id, Score__c FROM Account LIMIT 1").await;
    assert_eq!(r.body["records"][0]["Score__c"], Value::Null);
    let r = api
        .patch(
            "sobjects/Account/External_Id__c/ACC-7-00000003",
            json!({"Score__c": 4.5, "Segment__c": "Enterprise!"}),
        )
        .await;
    assert_eq!(r.error_code(), "STRING_TOO_LONG");
    let r = api
        .patch(
            "sobjects/Account/External_Id__c/ACC-7-00000003",
            json!({"Score__c": 4.5, "Segment__c": "SMB"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        api.count("SELECT COUNT() FROM Account WHERE Score__c > 4")
            .await,
        1
    );

    org.remove_field("Account", "Score__c").expect("remove");
    assert_eq!(
        api.query("SELECT Score__c FROM Account").await.error_code(),
        "INVALID_FIELD"
    );
    assert!(
        org.remove_field("Account", "Name").is_err(),
        "standard fields stay"
    );

    org.add_object(&ObjectSpec {
        name: "Invoice__c".into(),
        label: Some("Invoice".into()),
        replicateable: true,
        fields: vec![
            FieldSpec {
                external_id: true,
                ..FieldSpec::new("Number__c", FieldType::String)
            },
            FieldSpec {
                reference_to: Some("Account".into()),
                ..FieldSpec::new("Account__c", FieldType::Reference)
            },
        ],
    })
    .expect("object");
    let acc = api.query("SELECT Id FROM Account LIMIT 1").await.body["records"][0]["Id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let r = api
        .post(
            "sobjects/Invoice__c",
            json!({"Name": "INV-1", "Number__c": "N1", "Account__c": acc}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(r.body["id"].as_str().is_some_and(|i| i.starts_with("a00")));
    let q = api
        .query("SELECT Name, Account__r.Name FROM Invoice__c")
        .await;
    assert!(
        q.body["records"][0]["Account__r"]["Name"].is_string(),
        "{}",
        q.text
    );
    org.remove_object("Invoice__c").expect("drop");
    assert_eq!(
        api.query("SELECT Id FROM Invoice__c").await.error_code(),
        "INVALID_TYPE"
    );
}

async fn webhook_sink() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let g = got.clone();
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move |body: axum::body::Bytes| {
            let g = g.clone();
            async move {
                if let (Ok(v), Ok(mut l)) = (serde_json::from_slice::<Value>(&body), g.lock()) {
                    l.push(v);
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (format!("http://{addr}/events"), got)
}

#[tokio::test]
async fn every_write_becomes_a_change_event_posted_to_the_webhook() {
    let (url, got) = webhook_sink().await;
    let (org, api) = start(EmulatorConfig {
        webhook_url: Some(url),
        ..small()
    })
    .await;
    let r = api
        .call(
            reqwest::Method::POST,
            "sobjects/Account",
            Some(json!({"Name": "CDC Co"})),
            &[("Sforce-Call-Options", "client=weft-host")],
        )
        .await;
    let id = r.body["id"].as_str().unwrap_or_default().to_string();
    api.patch(
        &format!("sobjects/Account/{id}"),
        json!({"Phone": "555", "Name": "CDC Co"}),
    )
    .await;
    api.delete(&format!("sobjects/Account/{id}")).await;
    let mut events = Vec::new();
    for _ in 0..100 {
        events = got.lock().map(|l| l.clone()).unwrap_or_default();
        if events.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(events.len(), 3, "{events:?}");
    let h = |i: usize| events[i]["data"]["payload"]["ChangeEventHeader"].clone();
    assert_eq!(events[0]["channel"], "/data/AccountChangeEvent");
    assert_eq!(h(0)["changeType"], "CREATE");
    assert_eq!(h(0)["entityName"], "Account");
    assert_eq!(h(0)["recordIds"][0], id.as_str());
    assert!(
        h(0)["changeOrigin"]
            .as_str()
            .is_some_and(|o| o.ends_with("client=weft-host"))
    );
    assert_eq!(events[0]["data"]["payload"]["Name"], "CDC Co");
    assert_eq!(h(1)["changeType"], "UPDATE");
    assert_eq!(
        h(1)["changedFields"],
        json!(["Phone", "LastModifiedDate"]),
        "unchanged Name is not listed"
    );
    assert_eq!(h(2)["changeType"], "DELETE");
    let replay: Vec<u64> = events
        .iter()
        .map(|e| e["data"]["event"]["replayId"].as_u64().unwrap_or(0))
        .collect();
    assert!(replay.windows(2).all(|w| w[0] < w[1]));
    assert!(h(1)["commitTimestamp"].as_i64().is_some_and(|t| t > 0));
    assert_eq!(org.events_after(replay[0]).len(), 2);

    let mut s = org.stats();
    for _ in 0..100 {
        if s.webhook_delivered == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        s = org.stats();
    }
    assert_eq!(s.by_client_kind["weft-host"]["sobject.create"], 1);
    assert_eq!(s.by_kind["sobject.update"], 1);
    assert_eq!(s.webhook_delivered, 3);
    let r: Value = reqwest::get(format!("{}/__admin/stats", api.base))
        .await
        .expect("stats")
        .json()
        .await
        .unwrap_or(Value::Null);
    assert!(r["api_calls"].as_u64().is_some_and(|n| n >= 3));
}

#[tokio::test]
async fn generated_changes_move_system_modstamp_forward() {
    let (org, api) = start(small()).await;
    let before = api
        .count("SELECT COUNT() FROM Account WHERE SystemModstamp > 2026-01-01T00:00:00Z")
        .await
        + api
            .count("SELECT COUNT() FROM Contact WHERE SystemModstamp > 2026-01-01T00:00:00Z")
            .await;
    assert_eq!(before, 0, "seeded stamps sit before the anchor");
    let n = org.generate_changes(50);
    assert!(n >= 40);
    let after = api
        .count("SELECT COUNT() FROM Account WHERE SystemModstamp > 2026-01-01T00:00:00Z")
        .await
        + api
            .count("SELECT COUNT() FROM Contact WHERE SystemModstamp > 2026-01-01T00:00:00Z")
            .await;
    let deleted = api.query_all("SELECT COUNT() FROM Account WHERE IsDeleted = true AND SystemModstamp > 2026-01-01T00:00:00Z").await.body["totalSize"].as_u64().unwrap_or(0)
        + api.query_all("SELECT COUNT() FROM Contact WHERE IsDeleted = true AND SystemModstamp > 2026-01-01T00:00:00Z").await.body["totalSize"].as_u64().unwrap_or(0);
    assert!(after + deleted >= 30, "{after} + {deleted}");
}

#[tokio::test]
async fn same_seed_same_org() {
    let (_a, api_a) = start(small()).await;
    let (_b, api_b) = start(small()).await;
    let q = "SELECT Id, Name, Phone, SystemModstamp, GoldenAccountID__c FROM Account ORDER BY Id LIMIT 50";
    assert_eq!(api_a.query(q).await.body, api_b.query(q).await.body);
}

#[tokio::test]
async fn tls_serves_https_with_the_written_ca() {
    let (org, api) = start(EmulatorConfig {
        tls: true,
        ..small()
    })
    .await;
    assert!(api.base.starts_with("https://127.0.0.1:"));
    let pem = std::fs::read(org.ca_cert_path().expect("ca path")).expect("ca file");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("pem"))
        .build()
        .expect("client");
    let r = client
        .get(format!("{}/services/data/v60.0/limits", api.base))
        .bearer_auth(&api.token)
        .send()
        .await
        .expect("https");
    assert_eq!(r.status(), 200);
    let r = client
        .get(format!(
            "https://localhost:{}/services/data/",
            org.addr().port()
        ))
        .send()
        .await
        .expect("localhost name");
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn calls_are_counted_by_client_and_org_clock_minute() {
    let (org, api) = start(small()).await;
    let opts = [("Sforce-Call-Options", "client=ledger-test")];
    let t0 = org.now_ms();
    api.call(reqwest::Method::GET, "limits", None, &opts).await;
    org.advance_clock(Duration::from_secs(2 * 3600));
    let t1 = org.now_ms();
    for _ in 0..2 {
        api.call(reqwest::Method::GET, "limits", None, &opts).await;
    }
    api.get("limits").await;
    let between = |from: i64, to: i64| org.client_calls_between("ledger-test", from, to);
    let minute = 60_000;
    assert_eq!(between(t0, t1), 1);
    assert_eq!(
        between(t0 + 5 * minute, t1),
        0,
        "nothing in the skipped two hours"
    );
    assert_eq!(between(t1, t1 + 5 * minute), 2, "other clients not counted");
    org.reset_stats();
    assert_eq!(between(t0, t1 + 5 * minute), 0);
}
