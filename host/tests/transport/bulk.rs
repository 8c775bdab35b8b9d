//! Bulk API 2.0 query (streamed, resumable) and ingest.

use std::collections::HashSet;

use bytes::Bytes;
use weft::salesforce::{BulkCursor, IngestJob, IngestOperation, IngestResultKind};
use weft::throttle::Project;

use crate::common::{org, rig, rig_with, roomy};

#[tokio::test]
async fn bulk_query_streams_every_row_once_across_pages() {
    let org = org(roomy(25_000)).await;
    let gov = weft::throttle::GovernorConfig {
        schedule: weft::throttle::ScheduleConfig::constant("UTC", 100.0),
        ..Default::default()
    };
    let r = rig_with(&org, "bulk-q", gov, crate::common::fast_clock(), |c| {
        c.bulk.page_records = Some(10_000);
        c.bulk.batch_records = 3_000;
    });
    let mut s = r
        .client
        .bulk_query(
            Project::Backfill,
            "SELECT Id, Name, External_Id__c FROM Account",
            true,
        )
        .await
        .expect("job");
    let mut ids = HashSet::new();
    let mut batches = 0;
    let mut last_seen = false;
    while let Some(b) = s.next_batch().await.expect("batch") {
        assert_eq!(
            &*b.columns,
            &["Id".to_string(), "Name".into(), "External_Id__c".into()]
        );
        assert!(b.rows.len() <= 3_000);
        for row in b.rows.to_rows() {
            assert!(ids.insert(row[0].clone().expect("Id")), "duplicate row");
        }
        batches += 1;
        last_seen = b.last;
    }
    assert!(last_seen);
    assert_eq!(ids.len(), 25_000);
    assert!(batches >= 9, "{batches}");
    assert_eq!(
        org.stats().by_kind.get("bulk.query.results"),
        Some(&3),
        "three pages of ≤10,000"
    );
}

#[tokio::test]
async fn bulk_query_resumes_exactly_from_a_checkpointed_cursor() {
    let org = org(roomy(12_000)).await;
    let gov = weft::throttle::GovernorConfig {
        schedule: weft::throttle::ScheduleConfig::constant("UTC", 100.0),
        ..Default::default()
    };
    let r = rig_with(&org, "bulk-resume", gov, crate::common::fast_clock(), |c| {
        c.bulk.page_records = Some(5_000);
        c.bulk.batch_records = 1_500;
    });
    let soql = "SELECT Id FROM Account ORDER BY Id";
    // queryAll: every seeded row, live or in the recycle bin.
    let mut s = r
        .client
        .bulk_query(Project::Backfill, soql, true)
        .await
        .expect("job");
    let mut first: Vec<String> = Vec::new();
    let mut checkpoint: Option<BulkCursor> = None;
    // Read 5 batches (5,000-row pages in 1,500-row batches: 1,500 ×3 + 500, then 1,500 of
    // the second page), "commit", then crash.
    for _ in 0..5 {
        let b = s.next_batch().await.expect("batch").expect("rows");
        first.extend(
            b.rows
                .to_rows()
                .into_iter()
                .map(|r| r[0].clone().unwrap_or_default()),
        );
        checkpoint = Some(b.cursor);
    }
    drop(s);
    let cp = checkpoint.expect("cursor");
    assert_eq!(
        cp.skip, 1_500,
        "1,500 rows of the second page were handed out"
    );
    assert!(cp.locator.is_some());
    let mut resumed = r
        .client
        .resume_bulk_query(Project::Backfill, cp)
        .await
        .expect("resume");
    let mut rest: Vec<String> = Vec::new();
    while let Some(b) = resumed.next_batch().await.expect("batch") {
        rest.extend(
            b.rows
                .to_rows()
                .into_iter()
                .map(|r| r[0].clone().unwrap_or_default()),
        );
    }
    let mut all = first.clone();
    all.extend(rest);
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 12_000);
    assert_eq!(unique.len(), 12_000, "nothing repeated, nothing skipped");
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted, "order preserved across the resume");
}

#[tokio::test]
async fn bulk_ingest_reports_success_failed_and_unprocessed() {
    let org = org(roomy(10)).await;
    let r = rig(&org, "bulk-ingest");
    let mut csv = String::from("External_Id__c,Name,Tier__c\n");
    for i in 0..300 {
        let tier = if i % 100 == 7 { "Bogus" } else { "" };
        csv.push_str(&format!("ING-{i:04},Ingested {i},{tier}\n"));
    }
    let out = r
        .client
        .bulk_ingest(
            Project::Outbound,
            IngestJob {
                object: "Account".into(),
                operation: IngestOperation::Upsert {
                    external_id_field: "External_Id__c".into(),
                },
                csv: Bytes::from(csv),
            },
        )
        .await
        .expect("ingest");
    assert_eq!(out.state, "JobComplete");
    assert_eq!(out.successful.rows.len(), 297);
    assert_eq!(out.failed.rows.len(), 3);
    assert_eq!(out.records_failed, 3);
    let err = out
        .failed
        .get(&out.failed.rows[0], "sf__Error")
        .unwrap_or_default();
    assert!(
        err.starts_with("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"),
        "{err}"
    );
    assert!(out.successful.columns.iter().any(|c| c == "sf__Created"));
    assert!(out.unprocessed.rows.is_empty());
}

#[tokio::test]
async fn ingest_results_are_read_in_chunks_and_survive_mid_body_resets() {
    let org = org(roomy(10)).await;
    let r = rig(&org, "bulk-ingest-resets");
    let mut csv = String::from("External_Id__c,Name,Tier__c\n");
    for i in 0..3_000 {
        let tier = if i % 100 == 7 { "Bogus" } else { "" };
        csv.push_str(&format!("RST-{i:05},Reset {i},{tier}\n"));
    }
    let summary = r
        .client
        .bulk_ingest_job(
            Project::Outbound,
            IngestJob {
                object: "Account".into(),
                operation: IngestOperation::Upsert {
                    external_id_field: "External_Id__c".into(),
                },
                csv: Bytes::from(csv),
            },
        )
        .await
        .expect("ingest");
    assert_eq!(summary.state, "JobComplete");
    // Half the result downloads now break off part-way.
    org.set_faults(weft_emulator::FaultConfig {
        body_reset_rate: 0.5,
        ..Default::default()
    });
    let mut seen: Vec<String> = Vec::new();
    let mut calls = 0;
    for kind in [IngestResultKind::Successful, IngestResultKind::Failed] {
        let n = r
            .client
            .bulk_ingest_results(Project::Outbound, &summary.job_id, kind, |cols, rows| {
                calls += 1;
                let ext = cols
                    .iter()
                    .position(|c| c == "External_Id__c")
                    .expect("input columns");
                seen.extend(rows.into_iter().map(|r| r[ext].clone().unwrap_or_default()));
            })
            .await
            .expect("results");
        assert!(n > 0);
    }
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(seen.len(), 3_000, "every input row once");
    assert_eq!(unique.len(), 3_000, "none twice");
    assert!(calls > 2, "rows arrive chunk by chunk ({calls} hand-overs)");
    assert!(
        org.stats()
            .faults_injected
            .get("body_reset")
            .copied()
            .unwrap_or(0)
            > 0,
        "downloads were cut"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_query_with_mid_body_resets_yields_every_row_exactly_once() {
    let org = org(roomy(100_000)).await;
    let gov = weft::throttle::GovernorConfig {
        schedule: weft::throttle::ScheduleConfig::constant("UTC", 100.0),
        ..Default::default()
    };
    let r = rig_with(&org, "bulk-resets", gov, crate::common::fast_clock(), |c| {
        c.bulk.page_records = Some(10_000);
        c.bulk.batch_records = 1_000;
    });
    // A third of the page downloads break off part-way, inside a row, after some batches of
    // the page have been handed out: the re-download must skip exactly those.
    org.set_faults(weft_emulator::FaultConfig {
        body_reset_rate: 0.3,
        ..Default::default()
    });
    let mut s = r
        .client
        .bulk_query(
            Project::Backfill,
            "SELECT Id, Name, External_Id__c FROM Account ORDER BY Id",
            true,
        )
        .await
        .expect("job");
    let mut ids: Vec<String> = Vec::with_capacity(100_000);
    while let Some(b) = s.next_batch().await.expect("batch") {
        ids.extend(
            b.rows
                .to_rows()
                .into_iter()
                .map(|r| r[0].clone().unwrap_or_default()),
        );
    }
    let resets = org
        .stats()
        .faults_injected
        .get("body_reset")
        .copied()
        .unwrap_or(0);
    assert!(resets >= 2, "{resets} downloads were cut");
    assert_eq!(ids.len(), 100_000);
    let unique: HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 100_000, "no row repeated, none lost");
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "order kept across re-downloads"
    );
    let status = r
        .telemetry
        .installation("bulk-resets")
        .status(jiff::Timestamp::now());
    assert!(
        status
            .retries_by_reason
            .get("bulk_body")
            .copied()
            .unwrap_or(0)
            >= resets,
        "every cut page was read again: {:?}",
        status.retries_by_reason
    );
    assert_eq!(status.final_failures, 0);
}
