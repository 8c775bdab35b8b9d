//! Deletes follow the object's explicit policy; an object without one sends its deletes to
//! the DLQ instead of guessing.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use weft::outbound::DeletePolicy;
use weft::store::{AuditAction, Operation, Stage};

use crate::common::{accept, accounts, acme_config, audit, company, drain, event, open_dlq, rig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_delete_sets_the_field_and_a_missing_policy_goes_to_the_dlq() {
    let mut rig = rig(acme_config()).await;
    let then = Timestamp::now() - SignedDuration::from_mins(1);
    accept(
        &rig.store,
        &[event("c1", company(1), then), event("c2", company(2), then)],
    );
    drain(&mut rig, Duration::from_secs(30)).await;

    let mut delete = event("d1", company(1), Timestamp::now());
    delete.operation = Operation::Delete;
    accept(&rig.store, &[delete]);
    drain(&mut rig, Duration::from_secs(30)).await;
    let written = accounts(&rig.org);
    assert_eq!(written["C-00001"]["Deleted__c"], true);
    assert_eq!(written["C-00002"]["Deleted__c"], false);
    let entry = audit(&rig.store)
        .into_iter()
        .find(|a| a.event_id.as_deref() == Some("d1"))
        .expect("delete audited");
    assert_eq!(entry.action, AuditAction::SoftDelete);

    // The same object without a delete policy: the delete is dead-lettered, loudly.
    let mut config = acme_config();
    if let Some(account) = config.objects.get_mut("Account") {
        account.delete = None;
    }
    let mut rig2 = crate::common::rig(config).await;
    let mut delete = event("d2", company(2), Timestamp::now());
    delete.operation = Operation::Delete;
    accept(&rig2.store, &[delete]);
    drain(&mut rig2, Duration::from_secs(30)).await;
    let dlq = open_dlq(&rig2.store);
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].error_code, "NO_DELETE_POLICY");
    assert_eq!(dlq[0].stage, Stage::Validate);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_delete_removes_the_record_and_a_late_older_upsert_does_not_revive_it() {
    let mut config = acme_config();
    if let Some(account) = config.objects.get_mut("Account") {
        account.delete = Some(DeletePolicy::HardDelete);
    }
    let mut rig = rig(config).await;
    let then = Timestamp::now() - SignedDuration::from_mins(1);
    accept(
        &rig.store,
        &[event("c1", company(1), then), event("c2", company(2), then)],
    );
    drain(&mut rig, Duration::from_secs(30)).await;
    let mut delete = event("d1", company(1), Timestamp::now());
    delete.operation = Operation::Delete;
    accept(&rig.store, &[delete]);
    drain(&mut rig, Duration::from_secs(30)).await;
    let written = accounts(&rig.org);
    assert!(!written.contains_key("C-00001"), "deleted");
    assert!(written.contains_key("C-00002"));
    let entry = audit(&rig.store)
        .into_iter()
        .find(|a| a.event_id.as_deref() == Some("d1"))
        .expect("delete audited");
    assert_eq!(entry.action, AuditAction::HardDelete);
    // An older upsert arriving late does not bring the record back.
    accept(&rig.store, &[event("late", company(1), then)]);
    drain(&mut rig, Duration::from_secs(30)).await;
    assert!(!accounts(&rig.org).contains_key("C-00001"));
}
