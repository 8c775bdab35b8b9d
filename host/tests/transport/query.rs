//! REST query paging, describe cache, limits and typed errors.

use futures_util::TryStreamExt;
use std::collections::HashSet;
use weft::salesforce::SalesforceError;
use weft::throttle::Project;
use weft_emulator::{FieldSpec, FieldType};

use crate::common::{org, rig, roomy, weft_calls};

#[tokio::test]
async fn query_follows_next_records_url_to_the_end() {
    let org = org(roomy(5_500)).await;
    let r = rig(&org, "query-paging");
    let pages: Vec<_> = r
        .client
        .query(Project::Backfill, "SELECT Id, Name FROM Account")
        .try_collect()
        .await
        .expect("query");
    assert_eq!(pages.len(), 3, "2,000 + 2,000 + the rest");
    let total = pages[0].total_size;
    assert!(
        total > 4_000 && pages.iter().all(|p| p.total_size == total),
        "live rows (the seed soft-deletes some)"
    );
    let ids: HashSet<_> = pages
        .iter()
        .flat_map(|p| &p.records)
        .filter_map(|r| r.get("Id")?.as_str())
        .collect();
    assert_eq!(ids.len() as u64, total);
    let stats = org.stats();
    assert_eq!(stats.by_kind.get("query"), Some(&1));
    assert_eq!(stats.by_kind.get("queryMore"), Some(&2));
}

#[tokio::test]
async fn query_all_sees_deleted_rows() {
    let org = org(roomy(300)).await;
    let r = rig(&org, "query-all");
    let live: usize = r
        .client
        .query(Project::Incremental, "SELECT Id FROM Account")
        .map_ok(|p| p.records.len())
        .try_collect::<Vec<_>>()
        .await
        .expect("query")
        .iter()
        .sum();
    let all: usize = r
        .client
        .query_all(Project::Incremental, "SELECT Id FROM Account")
        .map_ok(|p| p.records.len())
        .try_collect::<Vec<_>>()
        .await
        .expect("queryAll")
        .iter()
        .sum();
    assert!(
        all > live,
        "the seed puts merged duplicates in the recycle bin: {all} vs {live}"
    );
}

#[tokio::test]
async fn describe_is_cached_and_refreshable() {
    let org = org(roomy(10)).await;
    let r = rig(&org, "describe");
    let d = r
        .client
        .describe(Project::Outbound, "Account")
        .await
        .expect("describe");
    assert!(d.field("External_Id__c").is_some_and(|f| f.external_id));
    assert!(d.field("Tier__c").is_some_and(|f| f.restricted_picklist));
    let before = weft_calls(&org);
    r.client
        .describe(Project::Outbound, "Account")
        .await
        .expect("cached");
    assert_eq!(
        weft_calls(&org),
        before,
        "second describe comes from the cache"
    );
    org.add_field("Account", &FieldSpec::new("Score__c", FieldType::Double))
        .expect("add field");
    assert!(
        r.client
            .describe(Project::Outbound, "Account")
            .await
            .expect("cached")
            .field("Score__c")
            .is_none()
    );
    let fresh = r
        .client
        .refresh_describe(Project::Outbound, "Account")
        .await
        .expect("refresh");
    assert!(fresh.field("Score__c").is_some());
    assert_eq!(weft_calls(&org), before + 1);
}

/// A refresh asks `If-Modified-Since` the org's `Date` of the cached describe: while the
/// schema is unchanged the org answers `304` and the cached describe stays (the same one,
/// not a re-parsed copy); a field added since — even within the same second — is fetched.
#[tokio::test]
async fn refreshing_an_unchanged_describe_keeps_the_cached_one_and_a_change_is_fetched() {
    let org = org(roomy(10)).await;
    let r = rig(&org, "describe-304");
    let first = r
        .client
        .describe(Project::Incremental, "Account")
        .await
        .expect("describe");
    let before = weft_calls(&org);
    let again = r
        .client
        .refresh_describe(Project::Incremental, "Account")
        .await
        .expect("refresh");
    assert!(
        std::sync::Arc::ptr_eq(&first, &again),
        "an unchanged schema keeps the cached describe"
    );
    assert_eq!(weft_calls(&org), before + 1, "the 304 is still one call");
    org.add_field("Account", &FieldSpec::new("Score__c", FieldType::Double))
        .expect("add field");
    let changed = r
        .client
        .refresh_describe(Project::Incremental, "Account")
        .await
        .expect("refresh");
    assert!(
        changed.field("Score__c").is_some(),
        "the added field is seen"
    );
    let settled = r
        .client
        .refresh_describe(Project::Incremental, "Account")
        .await
        .expect("refresh");
    assert!(settled.field("Score__c").is_some());
}

#[tokio::test]
async fn errors_keep_salesforce_code_message_and_fields() {
    let org = org(roomy(10)).await;
    let r = rig(&org, "errors");
    let e = r
        .client
        .query(Project::Incremental, "SELECT Nope__c FROM Account")
        .try_collect::<Vec<_>>()
        .await
        .expect_err("bad field");
    match &e {
        SalesforceError::Api { status, errors, .. } => {
            assert_eq!(*status, 400);
            assert_eq!(errors[0].error_code, "INVALID_FIELD");
            assert!(
                errors[0].message.contains("Nope__c"),
                "{}",
                errors[0].message
            );
        }
        other => panic!("{other:?}"),
    }
    let e = r
        .client
        .describe(Project::Incremental, "NoSuchObject__c")
        .await
        .expect_err("unknown object");
    assert_eq!(e.error_code(), Some("NOT_FOUND"));
    // Final errors are not retried: one call each.
    assert_eq!(weft_calls(&org), 2);
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_honoured() {
    let org = org(roomy(50)).await;
    let r = rig(&org, "retry-after-date");
    // Half the requests get a 429 whose Retry-After is a date 3 s after the response's Date.
    org.set_faults(weft_emulator::FaultConfig {
        error_429_rate: 0.5,
        retry_after_secs: 3,
        retry_after_http_date: true,
        ..Default::default()
    });
    for _ in 0..6 {
        r.client.limits(Project::Incremental).await.expect("limits");
    }
    let injected = org.stats().faults_injected.get("429").copied().unwrap_or(0);
    assert!(injected > 0);
    let status = r
        .telemetry
        .installation("retry-after-date")
        .status(jiff::Timestamp::now());
    let waits: Vec<u64> = status
        .recent_events
        .iter()
        .filter(|e| e.reason == "REQUEST_LIMIT_EXCEEDED")
        .filter_map(|e| {
            e.detail
                .split(" in ")
                .nth(1)?
                .strip_suffix(" ms")?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(waits.len() as u64, injected, "{:?}", status.recent_events);
    // Both headers have whole seconds, so the wait is 3 s give or take one, plus up to one
    // backoff base (500 ms) of jitter; the exponential delay alone would be under 500 ms.
    for w in waits {
        assert!((2_000..=4_500).contains(&w), "waited {w} ms");
    }
}
