//! Plugins as managed artifacts: components uploaded to the running `weft serve` as
//! `name@version`, named by installations' specs, swapped by a `PATCH` without a restart,
//! and kept in the host's store across restarts.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{KEY, acme_org};
use crate::kill::company_event;
use crate::service::{Api, outbound_document, spawn_service, wait_for_account};

/// An event that is already an Account: written as it is by an identity mapping, refused
/// by acme-accounts (which reads a product `company` and needs its `company_id`).
fn account_event(id: &str) -> Value {
    json!({
        "id": id,
        "object": "Account",
        "operation": "upsert",
        "occurred_at": jiff::Timestamp::now().to_string(),
        "record": {
            KEY: format!("K-{id}"),
            "Name": format!("Identity {id}"),
            "Acme_Updated_At__c": "2026-01-05T10:00:00Z",
        },
    })
}

/// Waits until the event leaves `accepted`; its final state.
async fn settled(api: &mut Api, installation: &str, token: &str, event: &str) -> Value {
    let path = format!("/v1/installations/{installation}/events/{event}");
    for _ in 0..400 {
        let (_, _, body) = api.call(Method::GET, &path, Some(token), &[], None).await;
        if body["status"] != "accepted" && !body["status"].is_null() {
            return body["status"].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("event {event} of {installation} was never processed");
}

async fn wait_for_name(org: &weft_emulator::EmulatorHandle, key: &str) -> String {
    let account = wait_for_account(org, key, "uploaded plugin").await;
    account["Name"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_plugin_version_is_named_by_a_spec_and_swapped_without_a_restart() {
    let org = acme_org().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("client_secret");
    std::fs::write(&secret, &org.credentials().client_secret).expect("secret file");
    let db = dir.path().join("weft.redb");
    let log = dir.path().join("weft.log");
    let host = spawn_service(&db, dir.path(), &log);
    let mut api = Api::new(host.addr);
    let acme = std::fs::read(weft_tests::plugin_wasm("acme-accounts")).expect("acme-accounts");
    // `hostile` in its default mode is the SDK's defaults: an identity mapping.
    let identity = std::fs::read(weft_tests::plugin_wasm("hostile")).expect("hostile");

    // Upload: checked and compiled before it is stored; a version is immutable.
    let (status, v1) = api
        .admin_put_bytes("/v1/plugins/acme/1", acme.clone())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v1}");
    assert_eq!(v1["size"], acme.len(), "{v1}");
    assert!(
        v1["exports"]
            .as_array()
            .is_some_and(|e| e.contains(&json!("mapper"))),
        "{v1}"
    );
    let (status, again) = api
        .admin_put_bytes("/v1/plugins/acme/1", acme.clone())
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the same bytes again change nothing: {again}"
    );
    assert_eq!(again["hash"], v1["hash"]);
    let (status, body) = api
        .admin_put_bytes("/v1/plugins/acme/1", identity.clone())
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "version_taken", "{body}");
    let (status, body) = api
        .admin_put_bytes("/v1/plugins/junk/1", b"\0asm not a component".to_vec())
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"], "invalid_component", "{body}");
    let (status, _, _) = api
        .admin(Method::GET, "/v1/plugins/junk/1", &[], None)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a refused component is not stored"
    );
    let (status, body) = api
        .admin_put_bytes("/v1/plugins/-acme/1", acme.clone())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, v2) = api.admin_put_bytes("/v1/plugins/acme/2", identity).await;
    assert_eq!(status, StatusCode::CREATED, "{v2}");

    // A spec names a version; one nobody uploaded is refused by its key.
    let mut doc = outbound_document(
        "tenant-a",
        org.base_url(),
        &org.credentials().client_id,
        &secret,
    );
    doc["plugin"] = json!({"artifact": "acme@9"});
    let (status, _, body) = api
        .admin(Method::POST, "/v1/installations", &[], Some(doc.clone()))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["key"], "plugin.artifact", "{body}");
    doc["plugin"] = json!({"artifact": "acme@1"});
    let (status, _, body) = api
        .admin(Method::POST, "/v1/installations", &[], Some(doc))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let token = api.token("tenant-a").await;

    // Version 1 is acme-accounts: a company is mapped, an Account-shaped record refused.
    assert_eq!(
        api.post_event("tenant-a", &token, company_event("c1"))
            .await,
        StatusCode::ACCEPTED
    );
    assert_eq!(wait_for_name(&org, "K-c1").await, "Kill test c1");
    assert_eq!(
        api.post_event("tenant-a", &token, account_event("r1"))
            .await,
        StatusCode::ACCEPTED
    );
    assert_eq!(settled(&mut api, "tenant-a", &token, "r1").await, "dlq");

    // Switching the version swaps the plugin at the next batch, no restart.
    let (status, _, body) = api
        .admin(
            Method::PATCH,
            "/v1/installations/tenant-a",
            &[("if-match", "\"2\"")],
            Some(json!({"plugin": {"artifact": "acme@2"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        api.post_event("tenant-a", &token, account_event("r2"))
            .await,
        StatusCode::ACCEPTED
    );
    assert_eq!(wait_for_name(&org, "K-r2").await, "Identity r2");

    // A version in use cannot go; one nobody names can, and its listing says who uses what.
    let (status, _, body) = api
        .admin(Method::DELETE, "/v1/plugins/acme/2", &[], None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["used_by"], json!(["tenant-a"]), "{body}");
    let (status, _, body) = api
        .admin(Method::DELETE, "/v1/plugins/acme/1", &[], None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, _, listed) = api.admin(Method::GET, "/v1/plugins", &[], None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        listed["plugins"],
        json!([{
            "name": "acme",
            "version": "2",
            "hash": v2["hash"],
            "size": v2["size"],
            "uploaded_at": v2["uploaded_at"],
            "used_by": ["tenant-a"],
        }]),
        "{listed}"
    );

    // The upload lives in the host's store: after a restart the installation runs on it.
    drop(host);
    let host = spawn_service(&db, dir.path(), &log);
    let mut api = Api::new(host.addr);
    assert_eq!(
        api.post_event("tenant-a", &token, account_event("r3"))
            .await,
        StatusCode::ACCEPTED
    );
    assert_eq!(wait_for_name(&org, "K-r3").await, "Identity r3");
}
