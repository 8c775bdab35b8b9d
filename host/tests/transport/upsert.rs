//! sObject Collections upsert by external id.

use serde_json::{Map, Value, json};
use weft::throttle::Project;

use crate::common::{org, rig, roomy};

pub fn account(i: usize) -> Map<String, Value> {
    let v = json!({
        "External_Id__c": format!("WEFT-{i:06}"),
        "Name": format!("Weft Account {i}"),
        "NumberOfEmployees": (i % 1000) as i64,
        "BillingCity": format!("City {}", i % 97),
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[tokio::test]
async fn upsert_chunks_by_200_and_returns_every_result_in_order() {
    let org = org(roomy(10)).await;
    let r = rig(&org, "upsert");
    let records: Vec<_> = (0..450).map(account).collect();
    let results = r
        .client
        .upsert_collection(Project::Outbound, "Account", "External_Id__c", &records)
        .await
        .expect("upsert");
    assert_eq!(results.len(), 450);
    assert!(
        results
            .iter()
            .all(|r| r.success && r.created == Some(true) && r.id.is_some())
    );
    assert_eq!(
        org.stats().by_kind.get("collections.upsert"),
        Some(&3),
        "200 + 200 + 50"
    );

    // Same external ids again: updates, same Ids.
    let again = r
        .client
        .upsert_collection(Project::Outbound, "Account", "External_Id__c", &records)
        .await
        .expect("upsert");
    assert!(again.iter().all(|r| r.success && r.created == Some(false)));
    assert_eq!(
        again.iter().map(|r| &r.id).collect::<Vec<_>>(),
        results.iter().map(|r| &r.id).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_bad_record_fails_alone_with_salesforce_status_code() {
    let org = org(roomy(10)).await;
    let r = rig(&org, "upsert-bad");
    let mut records: Vec<_> = (0..5).map(account).collect();
    records[2].insert("Tier__c".into(), json!("Not A Tier"));
    records[4].remove("Name");
    let results = r
        .client
        .upsert_collection(Project::Outbound, "Account", "External_Id__c", &records)
        .await
        .expect("upsert");
    assert!(results[0].success && results[1].success && results[3].success);
    assert!(!results[2].success);
    assert_eq!(
        results[2].errors[0].status_code,
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    );
    assert!(!results[4].success);
    assert_eq!(results[4].errors[0].status_code, "REQUIRED_FIELD_MISSING");
    assert_eq!(results[4].errors[0].fields, vec!["Name".to_string()]);
}
