//! A round of one object at or above `bulk_threshold` goes through a Bulk API 2.0 ingest
//! job: the valid records are written, the ones the org refuses land in the DLQ with the
//! code from the job's failed-results CSV, and every written record is audited.

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::json;
use weft::outbound::OutboundConfig;
use weft::store::{AuditAction, EventState, Stage, Store};
use weft_emulator::{FieldSpec, FieldType};

use crate::common::{
    INSTALLATION, KEY, accept, accounts, acme_config, audit, company, drain, event, open_dlq, rig,
};

/// The role the admin retires while the host still trusts its cached describe.
const RETIRED: &str = "Executive Sponsor";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_over_the_bulk_threshold_is_one_ingest_job_and_its_failed_rows_reach_the_dlq() {
    let mut rig = rig(OutboundConfig {
        batch_size: 300,
        bulk_threshold: 100,
        ..acme_config()
    })
    .await;
    // A first, small round reads (and caches) the Account describe.
    accept(
        &rig.store,
        &[event("warm-up", company(1_000), Timestamp::now())],
    );
    drain(&mut rig, Duration::from_secs(30)).await;
    // Then an admin retires a role. Within `describe_ttl_secs` the host's validator still
    // allows it, so only the org can refuse those records: the Bulk job's failed results
    // are the only place their error comes from.
    rig.org
        .remove_field("Account", "Account_Manager_Role__c")
        .expect("role field removed");
    let mut role = FieldSpec::new("Account_Manager_Role__c", FieldType::Picklist);
    role.picklist_values = vec!["Account Manager".into(), "Technical Lead".into()];
    role.restricted_picklist = true;
    rig.org
        .add_field("Account", &role)
        .expect("role field without the retired value");

    let now = Timestamp::now();
    let retired: BTreeSet<String> = [7, 33, 64, 101, 148]
        .into_iter()
        .map(|i| format!("e{i}"))
        .collect();
    let events: Vec<_> = (0..150)
        .map(|i| {
            let id = format!("e{i}");
            let mut record = company(i);
            let role = if retired.contains(&id) {
                RETIRED
            } else {
                "Technical Lead"
            };
            record.insert("account_manager_role".into(), json!(role));
            event(&id, record, now)
        })
        .collect();
    accept(&rig.store, &events);
    rig.org.reset_stats();

    drain(&mut rig, Duration::from_secs(60)).await;

    let stats = rig.org.stats();
    assert_eq!(
        stats.by_kind.get("bulk.ingest.create").copied(),
        Some(1),
        "one ingest job for the round: {:?}",
        stats.by_kind
    );
    assert_eq!(
        stats.by_kind.get("collections.upsert"),
        None,
        "nothing went through Collections: {:?}",
        stats.by_kind
    );

    let written = accounts(&rig.org);
    // The warm-up's account, and the valid records of the Bulk round.
    assert_eq!(written.len(), 146, "valid records written");
    for i in 0..150 {
        let key = format!("C-{i:05}");
        let id = format!("e{i}");
        assert_eq!(written.contains_key(&key), !retired.contains(&id), "{key}");
    }
    assert_eq!(written["C-00000"]["Name"], "Company 0");
    assert_eq!(written["C-00001"]["BillingCity"], "City 1");

    let dlq = open_dlq(&rig.store);
    let in_dlq: BTreeSet<String> = dlq
        .iter()
        .filter_map(|e| e.original.event_id().map(str::to_owned))
        .collect();
    assert_eq!(in_dlq, retired, "{dlq:#?}");
    for entry in &dlq {
        assert_eq!(entry.stage, Stage::Write, "{entry:?}");
        assert_eq!(
            entry.error_code, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            "{entry:?}"
        );
        assert_eq!(entry.fields, ["Account_Manager_Role__c"], "{entry:?}");
        assert!(
            entry.message.ends_with(&format!(
                "bad value for restricted picklist field: {RETIRED}"
            )),
            "Salesforce's message, not the raw CSV cell: {entry:?}"
        );
        assert_eq!(entry.attempts, 1);
    }

    let log = audit(&rig.store);
    assert_eq!(log.len(), 146, "one audit entry per written record");
    let audited: BTreeSet<String> = log.iter().filter_map(|a| a.event_id.clone()).collect();
    assert!(audited.is_disjoint(&retired));
    let first = log
        .iter()
        .find(|a| a.event_id.as_deref() == Some("e0"))
        .expect("e0 audited");
    assert_eq!(first.action, AuditAction::Upsert);
    assert_eq!(first.record_key, "C-00000");
    let name = first
        .changes
        .iter()
        .find(|c| c.field == "Name")
        .expect("Name change");
    assert_eq!(name.old, serde_json::Value::Null);
    assert_eq!(name.new, json!("Company 0"));
    assert!(first.changes.iter().any(|c| c.field == KEY));

    for i in 0..150 {
        let id = format!("e{i}");
        let status = rig
            .store
            .event_status(INSTALLATION, &id)
            .expect("status")
            .expect("known");
        let want = if retired.contains(&id) {
            EventState::Dlq
        } else {
            EventState::Processed
        };
        assert_eq!(status.state, want, "{id}");
    }
}

/// A Bulk job that fails as a whole leaves its rows unprocessed: they are retried (not
/// dead-lettered, not audited) and written by a later job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_bulk_job_leaves_its_rows_to_the_retry_schedule_and_a_later_job_writes_them() {
    let mut rig = rig(OutboundConfig {
        batch_size: 300,
        bulk_threshold: 100,
        ..acme_config()
    })
    .await;
    let now = Timestamp::now();
    let events: Vec<_> = (0..120)
        .map(|i| event(&format!("e{i}"), company(i), now))
        .collect();
    accept(&rig.store, &events);
    rig.org.set_faults(weft_emulator::FaultConfig {
        bulk_fail_rate: 1.0,
        ..weft_emulator::FaultConfig::default()
    });
    let report = rig.pipeline.run_round().await.expect("round");
    assert_eq!(report.retrying, 120, "{report:?}");
    let stats = rig.org.stats();
    assert_eq!(stats.faults_injected.get("bulk_failed").copied(), Some(1));
    assert_eq!(stats.by_kind.get("collections.upsert"), None);
    assert!(open_dlq(&rig.store).is_empty());
    assert!(audit(&rig.store).is_empty());
    assert!(accounts(&rig.org).is_empty());

    rig.org.set_faults(weft_emulator::FaultConfig::default());
    drain(&mut rig, Duration::from_secs(60)).await;
    assert_eq!(accounts(&rig.org).len(), 120);
    assert!(open_dlq(&rig.store).is_empty());
    assert_eq!(audit(&rig.store).len(), 120);
    // Retries come due at jittered times (so a lock storm does not come back at once),
    // so the later rounds may be small enough for Collections: which path writes them is
    // quota economics, not correctness.
}
