//! A fault storm (503s, 429s with Retry-After, connection resets, row locks) over a
//! 100,000-record Bulk query and a 20,000-record Collections upsert: every record arrives or
//! is written exactly as without faults, and the retries show in telemetry.

use std::collections::BTreeMap;

use futures_util::TryStreamExt;
use weft::throttle::{GovernorConfig, Project, ScheduleConfig};
use weft_emulator::FaultConfig;

use crate::common::{org, rig_with, roomy};
use crate::upsert::account;

async fn bulk_rows(
    client: &weft::salesforce::SalesforceClient,
    soql: &str,
) -> Vec<Vec<Option<String>>> {
    // queryAll: all 100,000 seeded rows, live or in the recycle bin.
    let mut s = client
        .bulk_query(Project::Backfill, soql, true)
        .await
        .expect("bulk job");
    let mut rows = Vec::new();
    while let Some(b) = s.next_batch().await.expect("batch") {
        rows.extend(b.rows.to_rows());
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_lost_under_a_fault_storm() {
    let org = org(roomy(100_000)).await;
    let gov = GovernorConfig {
        schedule: ScheduleConfig::constant("UTC", 100.0),
        ..Default::default()
    };
    let r = rig_with(&org, "storm", gov, crate::common::fast_clock(), |c| {
        c.bulk.page_records = Some(10_000);
    });
    let soql = "SELECT Id, Name, External_Id__c, NumberOfEmployees, LastModifiedDate FROM Account ORDER BY Id";

    // The reference: the same query without faults.
    let clean = bulk_rows(&r.client, soql).await;
    assert_eq!(clean.len(), 100_000);

    let storm = FaultConfig {
        error_503_rate: 0.05,
        error_429_rate: 0.03,
        retry_after_secs: 1,
        reset_rate: 0.02,
        lock_row_rate: 0.02,
        ..Default::default()
    };
    org.set_faults(storm.clone());
    let stormy = bulk_rows(&r.client, soql).await;
    assert_eq!(stormy.len(), 100_000);
    assert!(
        stormy == clean,
        "the Bulk result under faults differs from the fault-free one"
    );

    // 20,000 upserts under the same storm.
    let records: Vec<_> = (0..20_000).map(account).collect();
    let results = r
        .client
        .upsert_collection(Project::Outbound, "Account", "External_Id__c", &records)
        .await
        .expect("upsert");
    assert_eq!(results.len(), 20_000);
    let failed: Vec<_> = results.iter().filter(|x| !x.success).collect();
    assert!(
        failed.is_empty(),
        "{} records failed, e.g. {:?}",
        failed.len(),
        failed.first()
    );
    assert!(
        results.iter().all(|x| x.created == Some(true)),
        "every record inserted once"
    );

    org.set_faults(FaultConfig::default());
    let written: Vec<_> = r
        .client
        .query(Project::Outbound, "SELECT External_Id__c, Name, NumberOfEmployees, BillingCity FROM Account WHERE External_Id__c LIKE 'WEFT-%'")
        .try_collect::<Vec<_>>()
        .await
        .expect("read back");
    let mut by_ext: BTreeMap<String, serde_json::Map<String, serde_json::Value>> = BTreeMap::new();
    for mut rec in written.into_iter().flat_map(|p| p.records) {
        rec.remove("attributes");
        let ext = rec
            .get("External_Id__c")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string();
        assert!(
            by_ext.insert(ext, rec).is_none(),
            "duplicate external id written"
        );
    }
    assert_eq!(by_ext.len(), 20_000);
    for rec in &records {
        let ext = rec["External_Id__c"].as_str().unwrap_or_default();
        let got = &by_ext[ext];
        for (k, v) in rec {
            assert_eq!(&got[k], v, "{ext}.{k}");
        }
    }

    let stats = org.stats();
    let status = r
        .telemetry
        .installation("storm")
        .status(jiff::Timestamp::now());
    let injected = |k: &str| stats.faults_injected.get(k).copied().unwrap_or(0);
    let seen = |k: &str| status.errors_by_code.get(k).copied().unwrap_or(0);
    eprintln!(
        "fault storm: injected {:?}; Weft saw errors {:?}; retries {:?}; record retries {}; calls {}; breaker/backoff events {:?}",
        stats.faults_injected,
        status.errors_by_code,
        status.retries_by_reason,
        status.record_retries,
        status.api_calls_total,
        status.throttle_events
    );
    assert!(
        injected("503") > 0
            && injected("429") > 0
            && injected("reset") > 0
            && injected("lock_row") > 0
    );
    assert_eq!(
        seen("SERVER_UNAVAILABLE"),
        injected("503"),
        "every 503 seen and retried"
    );
    assert_eq!(seen("REQUEST_LIMIT_EXCEEDED"), injected("429"));
    assert_eq!(seen("reset"), injected("reset"));
    assert!(
        status.record_retries >= injected("lock_row"),
        "every locked row re-sent"
    );
    let retries: u64 = status.retries_by_reason.values().sum();
    assert!(retries >= injected("503") + injected("429") + injected("reset"));
    assert_eq!(status.final_failures, 0);
}
