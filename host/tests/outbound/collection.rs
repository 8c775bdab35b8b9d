//! A 200-record round with invalid records: the valid ones are written in one Collections
//! call, the invalid ones land in the DLQ with Salesforce's error codes.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::json;
use weft::store::{AuditAction, Stage};

use crate::common::{accept, accounts, acme_config, audit, company, drain, event, open_dlq, rig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_records_seven_invalid_193_written_7_in_the_dlq_with_salesforce_codes() {
    let mut rig = rig(acme_config()).await;
    let now = Timestamp::now();
    let mut expected: BTreeMap<String, &str> = BTreeMap::new();
    let events: Vec<_> = (0..200)
        .map(|i| {
            let mut record = company(i);
            let broken = match i {
                // Not one of the org's restricted values.
                10 | 50 | 90 => {
                    record.insert("account_manager_role".into(), json!("Chief Vibes Officer"));
                    Some("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST")
                }
                // BillingCity holds 40 characters.
                20 | 120 => {
                    record.insert("billing_city".into(), json!("X".repeat(55)));
                    Some("STRING_TOO_LONG")
                }
                // The admin made Acme_Updated_At__c required; these companies have none.
                30 | 170 => {
                    record.remove("updated_at");
                    Some("REQUIRED_FIELD_MISSING")
                }
                _ => None,
            };
            if let Some(code) = broken {
                expected.insert(format!("e{i}"), code);
            }
            event(&format!("e{i}"), record, now)
        })
        .collect();
    accept(&rig.store, &events);
    rig.org.reset_stats();

    drain(&mut rig, Duration::from_secs(60)).await;

    let written = accounts(&rig.org);
    assert_eq!(written.len(), 193, "valid records written");
    let upserts = rig.org.stats().by_kind.get("collections.upsert").copied();
    assert_eq!(upserts, Some(1), "one Collections call for the round");

    let dlq = open_dlq(&rig.store);
    assert_eq!(dlq.len(), 7, "{dlq:#?}");
    let got: BTreeMap<String, &str> = dlq
        .iter()
        .map(|e| {
            (
                e.original.event_id().unwrap_or_default().to_owned(),
                e.error_code.as_str(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    for entry in &dlq {
        assert!(!entry.fields.is_empty(), "fields named: {entry:?}");
        assert!(
            matches!(entry.stage, Stage::Coerce | Stage::Validate),
            "{entry:?}"
        );
        assert_eq!(entry.attempts, 1);
    }
    let required = dlq
        .iter()
        .find(|e| e.error_code == "REQUIRED_FIELD_MISSING")
        .expect("required entry");
    assert_eq!(required.fields, ["Acme_Updated_At__c"]);
    assert_eq!(required.stage, Stage::Validate);

    let log = audit(&rig.store);
    assert_eq!(log.len(), 193);
    let first = log
        .iter()
        .find(|a| a.event_id.as_deref() == Some("e0"))
        .expect("e0 audited");
    assert_eq!(first.action, AuditAction::Upsert);
    let name = first
        .changes
        .iter()
        .find(|c| c.field == "Name")
        .expect("Name change");
    assert_eq!(name.old, serde_json::Value::Null);
    assert_eq!(name.new, json!("Company 0"));
    // Nothing is left anywhere else: every event is processed or dead-lettered.
    for i in 0..200 {
        let status = weft::store::Store::event_status(&*rig.store, "acme", &format!("e{i}"))
            .expect("status")
            .expect("known");
        let want = if expected.contains_key(&format!("e{i}")) {
            weft::store::EventState::Dlq
        } else {
            weft::store::EventState::Processed
        };
        assert_eq!(status.state, want, "e{i}");
    }
}
