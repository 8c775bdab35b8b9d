//! The conflict check: a rep's edit in Salesforce that is newer than a product event
//! survives it, and the skipped fields are in the audit log. Stale events never overwrite
//! newer ones.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use weft::store::AuditAction;

use crate::common::{
    KEY, accept, accounts, acme_config, audit, company, drain, event, open_dlq, rig,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reps_newer_edit_survives_an_older_product_event() {
    let mut rig = rig(acme_config()).await;
    let now = Timestamp::now();
    let ago = |minutes: i64| now - SignedDuration::from_mins(minutes);
    accept(&rig.store, &[event("create", company(1), ago(10))]);
    drain(&mut rig, Duration::from_secs(30)).await;
    let account = accounts(&rig.org).remove("C-00001").expect("created");
    let id = account["Id"].as_str().expect("Id").to_owned();

    // A rep (a user other than the integration's) renames the account in Salesforce, now.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let url = format!(
        "{}/services/data/v62.0/sobjects/Account/{id}",
        rig.org.base_url()
    );
    let response = reqwest::Client::new()
        .patch(&url)
        .bearer_auth(rig.org.access_token_for_user(1))
        .json(&json!({"Name": "Renamed by a rep"}))
        .send()
        .await
        .expect("rep's edit");
    assert!(response.status().is_success(), "{}", response.status());

    // The product renamed it too, but five minutes ago: after the create, before the rep.
    let mut older = company(1);
    older.insert("name".into(), json!("Product name from before"));
    older.insert("billing_city".into(), json!("Older City"));
    accept(&rig.store, &[event("older", older, ago(5))]);
    drain(&mut rig, Duration::from_secs(30)).await;

    let account = accounts(&rig.org).remove("C-00001").expect("still there");
    assert_eq!(account["Name"], "Renamed by a rep");
    assert_eq!(
        account["BillingCity"], "City 1",
        "no field of the older event written"
    );
    let entry = audit(&rig.store)
        .into_iter()
        .find(|a| a.event_id.as_deref() == Some("older"))
        .expect("the skip is audited");
    assert_eq!(entry.action, AuditAction::Skipped);
    let name = entry
        .skipped
        .iter()
        .find(|s| s.field == "Name")
        .expect("Name skipped");
    assert_eq!(name.incoming, json!("Product name from before"));
    assert_eq!(name.current, json!("Renamed by a rep"));
    assert!(
        name.reason.contains("Salesforce changed the record"),
        "{}",
        name.reason
    );
    assert!(
        entry.changes.iter().all(|c| c.field == KEY),
        "{:?}",
        entry.changes
    );

    // A product event newer than the rep's edit writes.
    let mut newer = company(1);
    newer.insert("name".into(), json!("Newest product name"));
    accept(&rig.store, &[event("newer", newer, Timestamp::now())]);
    drain(&mut rig, Duration::from_secs(30)).await;
    assert_eq!(accounts(&rig.org)["C-00001"]["Name"], "Newest product name");
    assert!(open_dlq(&rig.store).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_for_one_record_apply_in_occurred_order_and_stale_ones_never_overwrite() {
    let mut rig = rig(acme_config()).await;
    let now = Timestamp::now();
    let at = |minutes: i64| now - SignedDuration::from_mins(minutes);
    let named = |name: &str| {
        let mut c = company(7);
        c.insert("name".into(), Value::String(name.to_owned()));
        c
    };
    // Accepted out of order, all in one round: the oldest applies first, the newest last.
    accept(
        &rig.store,
        &[
            event("third", named("third"), at(1)),
            event("first", named("first"), at(3)),
            event("second", named("second"), at(2)),
        ],
    );
    drain(&mut rig, Duration::from_secs(30)).await;
    assert_eq!(accounts(&rig.org)["C-00007"]["Name"], "third");
    let order: Vec<_> = audit(&rig.store)
        .into_iter()
        .filter_map(|a| a.event_id)
        .collect();
    assert_eq!(order, ["first", "second", "third"]);

    // An event older than what was applied arrives late: it is skipped, and audited.
    accept(&rig.store, &[event("late", named("late"), at(10))]);
    drain(&mut rig, Duration::from_secs(30)).await;
    assert_eq!(accounts(&rig.org)["C-00007"]["Name"], "third");
    let late = audit(&rig.store)
        .into_iter()
        .find(|a| a.event_id.as_deref() == Some("late"))
        .expect("late audited");
    assert_eq!(late.action, AuditAction::Skipped);
    assert!(late.skipped.iter().any(|s| s.reason.starts_with("stale")));
}

/// The host died after Salesforce accepted a write and before the round committed: the
/// event runs again and finds the record changed after the event occurred — by Weft itself.
/// That is no rep's edit, so the re-run writes (harmlessly, by external id) and audits a
/// write, not a conflict skip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_after_a_crash_audits_its_own_earlier_write_as_a_write_not_a_conflict() {
    let mut rig = rig(acme_config()).await;
    let occurred = Timestamp::now() - SignedDuration::from_mins(1);
    // The crashed round's write, through the pipeline's own write step and client.
    let record = json!({
        KEY: "C-00004",
        "Name": "Company 4",
        "BillingCity": "City 4",
        "NumberOfEmployees": 4,
        "Account_Manager_Role__c": "Executive Sponsor",
        "Acme_Updated_At__c": "2026-01-05T10:00:00Z",
    });
    let record = record.as_object().cloned().unwrap_or_default();
    let records = vec![&record];
    let results = weft::outbound::write::upsert(
        &crate::common::client(&rig.org),
        "Account",
        KEY,
        &records,
        rig.pipeline.config().bulk_threshold,
    )
    .await;
    assert!(
        matches!(results.as_slice(), [Ok(_)]),
        "the first write: {results:?}"
    );
    // Its round never committed: the event is still pending, and runs again.
    accept(&rig.store, &[event("crashed", company(4), occurred)]);
    drain(&mut rig, Duration::from_secs(30)).await;

    let entry = audit(&rig.store)
        .into_iter()
        .find(|a| a.event_id.as_deref() == Some("crashed"))
        .expect("the re-run is audited");
    assert_eq!(entry.action, AuditAction::Upsert, "{entry:#?}");
    assert!(entry.skipped.is_empty(), "{:#?}", entry.skipped);
    let name = entry
        .changes
        .iter()
        .find(|c| c.field == "Name")
        .expect("Name written");
    assert_eq!(name.old, json!("Company 4"));
    assert_eq!(name.new, json!("Company 4"));
    assert_eq!(accounts(&rig.org)["C-00004"]["Name"], "Company 4");
    assert!(open_dlq(&rig.store).is_empty());
}
