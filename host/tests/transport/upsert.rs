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

#[tokio::test]
async fn chunks_are_sent_one_at_a_time_and_handed_back_as_each_completes() {
    use futures_util::StreamExt;

    let org = org(roomy(10)).await;
    let r = rig(&org, "upsert-chunks");
    let records: Vec<_> = (0..450).map(account).collect();
    let calls = || {
        org.stats()
            .by_kind
            .get("collections.upsert")
            .copied()
            .unwrap_or(0)
    };
    let chunks =
        r.client
            .upsert_collection_chunks(Project::Outbound, "Account", "External_Id__c", &records);
    futures_util::pin_mut!(chunks);
    assert_eq!(calls(), 0, "nothing is sent before the stream is polled");
    let mut seen = Vec::new();
    while let Some(chunk) = chunks.next().await {
        // This chunk is settled and the next one not yet sent: a caller persists here.
        assert_eq!(calls(), seen.len() as u64 + 1);
        assert_eq!(chunk.offset, seen.len() * 200);
        for (i, res) in chunk.results.iter().enumerate() {
            assert!(res.success && res.created == Some(true), "{res:?}");
            let rec = &records[chunk.offset + i];
            // The result belongs to the record at offset + i: read it back by its id.
            let page = first_page(
                &r.client,
                &format!(
                    "SELECT External_Id__c FROM Account WHERE Id = '{}'",
                    res.id.as_deref().unwrap_or_default()
                ),
            )
            .await;
            assert_eq!(
                page.records[0]["External_Id__c"], rec["External_Id__c"],
                "result {i} of the chunk at {}",
                chunk.offset
            );
            if i > 0 {
                break; // two records per chunk suffice to pin the mapping
            }
        }
        seen.push(chunk.results.len());
    }
    assert_eq!(seen, vec![200, 200, 50]);
}

#[tokio::test]
async fn dropping_the_chunk_stream_sends_nothing_further() {
    use futures_util::StreamExt;

    let org = org(roomy(10)).await;
    let r = rig(&org, "upsert-stop");
    let records: Vec<_> = (0..1_000).map(account).collect();
    let first_two: Vec<_> = r
        .client
        .upsert_collection_chunks(Project::Outbound, "Account", "External_Id__c", &records)
        .take(2)
        .collect()
        .await;
    assert_eq!(first_two.len(), 2);
    assert_eq!(org.stats().by_kind.get("collections.upsert"), Some(&2));
    let page = first_page(
        &r.client,
        "SELECT COUNT() FROM Account WHERE External_Id__c LIKE 'WEFT-%'",
    )
    .await;
    assert_eq!(page.total_size, 400);
}

async fn first_page(
    client: &weft::salesforce::SalesforceClient,
    soql: &str,
) -> weft::salesforce::QueryPage {
    use futures_util::StreamExt;
    let mut pages = Box::pin(client.query(Project::Outbound, soql));
    match pages.next().await {
        Some(Ok(p)) => p,
        other => panic!("{soql}: {other:?}"),
    }
}
